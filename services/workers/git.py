"""Git, run as a subprocess with an argv list: nothing reaches a shell."""

import asyncio
import logging
import os
from pathlib import Path

from cocopilot.errors import CocopilotError

log = logging.getLogger(__name__)

# Never wait for a password or a host-key prompt: a clone with bad credentials fails at once.
_GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "",
    "SSH_ASKPASS": "",
    "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
    "LC_ALL": "C",
}


class GitError(CocopilotError):
    status = 400

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr


async def git(*args: str, cwd: Path | None = None, timeout_s: float = 60.0) -> str:
    """Run ``git args`` and return its stdout; raise GitError with git's message on failure."""
    process = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **_GIT_ENV},
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise GitError(f"git {args[0]} timed out after {timeout_s:g} s") from None
    if process.returncode != 0:
        error = stderr.decode(errors="replace").strip()
        last_line = error.splitlines()[-1] if error else f"exit code {process.returncode}"
        raise GitError(f"git {args[0]} failed: {last_line}", error)
    return stdout.decode(errors="replace")


async def clone(url: str, path: Path, timeout_s: float) -> None:
    # "--" ends the options, so a URL can never be read as one.
    await git("clone", "--no-hardlinks", "--", url, str(path), timeout_s=timeout_s)


async def default_branch(repo: Path) -> str:
    """Return the branch that the remote's HEAD points to, else the clone's current branch."""
    try:
        ref = await git("symbolic-ref", "--short", "refs/remotes/origin/HEAD", cwd=repo)
        return ref.strip().removeprefix("origin/")
    except GitError:
        return (await git("symbolic-ref", "--short", "HEAD", cwd=repo)).strip()


async def resolve_commit(repo: Path, ref: str) -> str | None:
    try:
        output = await git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=repo)
    except GitError:
        return None
    return output.strip()


async def resolve_branch(repo: Path, branch: str) -> tuple[str, str] | None:
    """Return ``(ref, commit)`` for a branch: the remote's copy first, else a local branch."""
    for ref in (f"refs/remotes/origin/{branch}", f"refs/heads/{branch}"):
        commit = await resolve_commit(repo, ref)
        if commit:
            return ref, commit
    return None


async def branch_exists(repo: Path, branch: str) -> bool:
    return await resolve_commit(repo, f"refs/heads/{branch}") is not None


async def add_worktree(repo: Path, path: Path, branch: str, start_commit: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A worktree folder deleted by hand stays registered until pruned, and git then refuses to
    # add another worktree at the same path.
    await git("worktree", "prune", cwd=repo)
    await git("worktree", "add", "-b", branch, "--", str(path), start_commit, cwd=repo)


async def remove_worktree(repo: Path, path: Path) -> None:
    """Remove a worktree, also when its folder is already gone."""
    if await asyncio.to_thread(path.exists):
        await git("worktree", "remove", "--force", "--force", "--", str(path), cwd=repo)
    await git("worktree", "prune", cwd=repo)


async def commits_ahead(repo: Path, branch: str, base_commit: str) -> int:
    output = await git("rev-list", "--count", f"{base_commit}..refs/heads/{branch}", cwd=repo)
    return int(output.strip())


async def delete_branch(repo: Path, branch: str) -> None:
    await git("branch", "-D", "--", branch, cwd=repo)
