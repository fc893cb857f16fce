"""Checks on names, branches, URLs and tasks from requests, before they reach git or the disk."""

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from cocopilot.errors import InvalidRequest

MAX_NAME_LENGTH = 64
MAX_TASK_BYTES = 64 * 1024
MAX_BRANCH_LENGTH = 255
MAX_MODEL_LENGTH = 200

# Letters, digits, '.', '_' and '-', starting with a letter or digit: safe as a path component,
# a Redis key part and a ref component of work/<Name>.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]*")
# Characters that git check-ref-format rejects anywhere in a ref (git 2.39, refs.c).
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
# scp-like git address: user@host:path
_SCP_URL = re.compile(r"[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^\s]+")
REMOTE_SCHEMES = frozenset({"https", "http", "ssh", "git"})


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
    """Check a branch name by the rules of ``git check-ref-format --branch``."""
    if not value:
        raise InvalidRequest(f"{field} must not be empty")
    problem = _branch_problem(value)
    if problem:
        raise InvalidRequest(f"invalid {field} {value!r}: {problem}")
    return value


def _branch_problem(value: str) -> str | None:
    if len(value) > MAX_BRANCH_LENGTH:
        return f"longer than {MAX_BRANCH_LENGTH} characters"
    if value.startswith("-"):
        return "starts with '-'"
    if value == "@" or "@{" in value:
        return "contains '@{' or is '@'"
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


def check_task(value: str) -> str:
    if not value.strip():
        raise InvalidRequest("task must not be empty")
    if len(value.encode()) > MAX_TASK_BYTES:
        raise InvalidRequest(f"task must be at most {MAX_TASK_BYTES} bytes")
    if "\x00" in value:
        raise InvalidRequest("task must not contain NUL characters")
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
