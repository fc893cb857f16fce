"""Checks on names, branches, URLs and tasks from requests, before they reach git or the disk."""

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from cocopilot.errors import InvalidRequest

MAX_NAME_LENGTH = 64
MAX_TEXT_BYTES = 64 * 1024  # a task or a message, as UTF-8
MAX_BRANCH_LENGTH = 255
MAX_MODEL_LENGTH = 200

# Letters, digits, '.', '_' and '-', starting with a letter or digit: safe as a path component,
# a Redis key part and a ref component of work/<Name>.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# The whole of check_name as a JSON Schema (ECMA-262) pattern, for the OpenAPI document.
NAME_PATTERN = r"^(?!.*\.\.)(?!.*\.$)(?!.*\.lock$)[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# ECMA-262 white space and line terminators: what \s means in a JSON Schema pattern. Text is
# blank when it has only these. Python's str.isspace() differs (it counts \x1c-\x1f, not \ufeff),
# so the set is spelt out, and the check and the documented pattern stay the same.
_BLANK = "".join(
    [
        *"\t\n\v\f\r \u00a0\u1680",
        *map(chr, range(0x2000, 0x200B)),
        *"\u2028\u2029\u202f\u205f\u3000\ufeff",
    ]
)
_NOT_BLANK = re.compile(f"[^{re.escape(_BLANK)}]")
_BLANK_ESCAPED = "".join(f"\\u{ord(character):04x}" for character in _BLANK)
# check_text as a JSON Schema pattern: no NUL, and at least one character that is not blank.
TEXT_PATTERN = f"^[^\\u0000]*[^\\u0000{_BLANK_ESCAPED}][^\\u0000]*$"
# Control characters other than tab and newline act as keys in a terminal: ^C interrupts the
# agent and ^D ends its input. Text typed into a session must not carry them.
_TERMINAL_KEYS = "".join(chr(code) for code in (*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F))
_TERMINAL_KEYS_ESCAPED = "".join(f"\\u{ord(character):04x}" for character in _TERMINAL_KEYS)
TERMINAL_TEXT_PATTERN = (
    f"^[^{_TERMINAL_KEYS_ESCAPED}]*[^{_TERMINAL_KEYS_ESCAPED}{_BLANK_ESCAPED}]"
    f"[^{_TERMINAL_KEYS_ESCAPED}]*$"
)
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]*")
MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$"  # check_model, for the OpenAPI document
# Characters that git check-ref-format rejects anywhere in a ref (git 2.39, refs.c).
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
# check_branch as a JSON Schema pattern, for the OpenAPI document. A test keeps the two equal.
# The look-aheads use [^\n]* rather than .*, because ECMA-262's dot stops at \u2028 and \u2029,
# which git allows in a name.
BRANCH_PATTERN = (
    r"^(?!-)(?!HEAD$)(?![^\n]*@\{)(?![^\n]*\.\.)(?![^\n]*//)(?!/)(?![^\n]*/$)(?![^\n]*\.$)"
    r"(?![^\n]*(^|/)\.)(?![^\n]*\.lock(/|$))[^\x00-\x20\x7f~^:?*\[\\]{1,255}$"
)
# scp-like git address: user@host:path
_SCP_URL = re.compile(r"[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+")
REMOTE_SCHEMES = frozenset({"https", "http", "ssh", "git"})


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def find_lone_surrogate(value: object, path: str = "") -> str | None:
    """Return where ``value`` has a string with a lone surrogate (``task``, ``payload.notes.0``;
    "" for ``value`` itself), or None. JSON can carry one (``"\\ud800"``), but it has no UTF-8
    form, so it could reach neither git, nor the disk, nor a JSON reply."""
    if isinstance(value, str):
        return path if _LONE_SURROGATE.search(value) else None
    if isinstance(value, dict):
        items = [(str(key), item) for key, item in value.items()]
        if any(_LONE_SURROGATE.search(key) for key, _ in items):
            return path
    elif isinstance(value, list):
        items = [(str(index), item) for index, item in enumerate(value)]
    else:
        return None
    for key, item in items:
        found = find_lone_surrogate(item, f"{path}.{key}" if path else key)
        if found is not None:
            return found
    return None


def check_name(value: str, field: str) -> str:
    """Check a worker or repository name: 1 to 64 letters, digits, '.', '_' or '-'."""
    if not value:
        raise InvalidRequest(f"{field} must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidRequest(f"{field} must be at most {MAX_NAME_LENGTH} characters")
    if not _NAME.fullmatch(value):
        raise InvalidRequest(
            f"invalid {field} {value!r}: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    if ".." in value or value.endswith((".", ".lock")):
        raise InvalidRequest(f"invalid {field} {value!r}: no '..' and no trailing '.' or '.lock'")
    return value


def check_branch(value: str, field: str = "branch") -> str:
    """Check a branch name by the rules of ``git check-ref-format --branch`` (git 2.39, run
    outside a repository, where ``@`` is not expanded), plus a length limit."""
    if not value:
        raise InvalidRequest(f"{field} must not be empty")
    problem = _branch_problem(value)
    if problem:
        raise InvalidRequest(f"invalid {field} {value!r}: {problem}")
    return value


def _branch_problem(value: str) -> str | None:
    # Our own limit, stricter than git, which has none: a longer name fails on most file systems.
    if len(value) > MAX_BRANCH_LENGTH:
        return f"longer than {MAX_BRANCH_LENGTH} characters"
    if value.startswith("-"):
        return "starts with '-'"
    if value == "HEAD":
        return "HEAD is not a branch name"
    if "@{" in value:
        return "contains '@{'"
    if _REF_FORBIDDEN.search(value):
        return "contains a space, a control character or one of ~ ^ : ? * [ \\"
    if ".." in value or "//" in value:
        return "contains '..' or '//'"
    if value.startswith("/") or value.endswith(("/", ".")):
        return "starts with '/' or ends with '/' or '.'"
    for component in value.split("/"):
        if component.startswith(".") or component.endswith(".lock"):
            return "a part starts with '.' or ends with '.lock'"
    return None


def check_text(value: str, field: str) -> str:
    """Check free text, a task or a message: not blank, no NUL, at most MAX_TEXT_BYTES."""
    if not _NOT_BLANK.search(value):
        raise InvalidRequest(f"{field} must not be empty or only white space")
    if len(value.encode()) > MAX_TEXT_BYTES:
        raise InvalidRequest(f"{field} must be at most {MAX_TEXT_BYTES} bytes as UTF-8")
    if "\x00" in value:
        raise InvalidRequest(f"{field} must not contain NUL characters")
    return value


def check_terminal_text(value: str, field: str) -> str:
    """Check text that is typed into an agent's terminal: check_text, and no control
    characters but tab and newline."""
    check_text(value, field)
    if any(character in _TERMINAL_KEYS for character in value):
        raise InvalidRequest(
            f"{field} must not contain control characters other than tab and newline; "
            "in the agent's terminal they would act as keys such as Ctrl-C"
        )
    return value


def check_model(value: str) -> str:
    if len(value) > MAX_MODEL_LENGTH or not _MODEL.fullmatch(value):
        raise InvalidRequest(
            f"invalid model {value!r}: use up to {MAX_MODEL_LENGTH} letters, digits and "
            "'.', '_', ':', '/', '@', '+', '-', starting with a letter or digit"
        )
    return value


def local_repository_path(url: str) -> Path | None:
    """Return the folder that ``url`` names when it is a local path or file:// URL, else None."""
    if url.startswith("file://"):
        return Path(unquote(urlsplit(url).path))
    if url.startswith("/"):
        return Path(url)
    return None


def check_repository_url(url: str, local_roots: list[Path]) -> str:
    """Check a clone source: an https, http, ssh or git URL, a user@host:path address, or a
    local path or file:// URL inside one of ``local_roots``."""
    if not url:
        raise InvalidRequest("url must not be empty")
    if url.startswith("-") or any(ord(ch) < 0x20 or ch == "\x7f" for ch in url):
        raise InvalidRequest(
            f"invalid url {url!r}: starts with '-' or contains a control character"
        )
    local = local_repository_path(url)
    if local is not None:
        return _check_local_path(url, local, local_roots)
    if _SCP_URL.fullmatch(url):
        return url
    parts = urlsplit(url)
    if parts.scheme not in REMOTE_SCHEMES or not parts.hostname:
        raise InvalidRequest(
            f"invalid url {url!r}: use an https, http, ssh or git URL, user@host:path, "
            "or a local path"
        )
    return url


def _check_local_path(url: str, path: Path, local_roots: list[Path]) -> str:
    resolved = path.resolve()
    for root in local_roots:
        if resolved.is_relative_to(root.resolve()):
            return url
    roots = ", ".join(str(root) for root in local_roots) or "none configured"
    raise InvalidRequest(
        f"invalid url {url!r}: a local repository must be inside one of the folders "
        f"in COCOPILOT_LOCAL_REPO_ROOTS ({roots})"
    )
