"""Git, run as a subprocess with an argv list: nothing reaches a shell."""

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

from cocopilot.errors import CocopilotError

log = logging.getLogger(__name__)

# No password or host-key prompt (GIT_TERMINAL_PROMPT=0, ssh BatchMode): a clone with bad
# credentials fails at once instead of waiting for input.
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


async def run_git(
    *args: str, cwd: Path | None = None, timeout_s: float = 60.0, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run ``git args``; return its exit code, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **_GIT_ENV, **(env or {})},
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise GitError(f"git {args[0]} timed out after {timeout_s:g} s") from None
    code = process.returncode if process.returncode is not None else -1
    return code, stdout.decode(errors="replace"), stderr.decode(errors="replace")


async def git(
    *args: str, cwd: Path | None = None, timeout_s: float = 60.0, env: dict[str, str] | None = None
) -> str:
    """Run ``git args`` and return its stdout; raise GitError with git's message on failure."""
    code, stdout, stderr = await run_git(*args, cwd=cwd, timeout_s=timeout_s, env=env)
    if code != 0:
        error = stderr.strip()
        last_line = error.splitlines()[-1] if error else f"exit code {code}"
        raise GitError(f"git {args[0]} failed: {last_line}", error)
    return stdout


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
    """Return ``(ref, commit)`` for a branch: a local branch first, since the merge queue
    merges into those, else the remote's copy."""
    for ref in (f"refs/heads/{branch}", f"refs/remotes/origin/{branch}"):
        commit = await resolve_commit(repo, ref)
        if commit:
            return ref, commit
    return None


async def branch_exists(repo: Path, branch: str) -> bool:
    return await resolve_commit(repo, f"refs/heads/{branch}") is not None


@contextlib.asynccontextmanager
async def worktree_lock(repo: Path) -> AsyncIterator[None]:
    """Hold the repository's worktree lock: git 2.39 fails when worktrees of one repository
    are added, removed or pruned at once (a prune can delete the files of an add in progress).
    An asyncio lock orders this process's tasks; a file lock in ``.git`` orders replicas that
    share the clone."""
    async with _process_locks.setdefault(str(repo), asyncio.Lock()):
        with (repo / ".git" / "cocopilot-worktrees.lock").open("w") as lock_file:
            while True:
                try:
                    fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.01)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)


_process_locks: dict[str, asyncio.Lock] = {}


async def add_worktree(
    repo: Path, path: Path, start_commit: str, branch: str | None = None
) -> None:
    """Add a worktree at ``path``: on a new ``branch``, or detached when branch is None."""
    path.parent.mkdir(parents=True, exist_ok=True)
    target = ["-b", branch] if branch else ["--detach"]
    async with worktree_lock(repo):
        # A worktree folder deleted by hand stays registered until pruned, and git then
        # refuses to add another worktree at the same path.
        await git("worktree", "prune", cwd=repo)
        await git("worktree", "add", *target, "--", str(path), start_commit, cwd=repo)


async def remove_worktree(repo: Path, path: Path) -> None:
    """Remove a worktree, also when its folder is already gone."""
    async with worktree_lock(repo):
        if await asyncio.to_thread(path.exists):
            await git("worktree", "remove", "--force", "--force", "--", str(path), cwd=repo)
        await git("worktree", "prune", cwd=repo)


async def prune_worktrees(repo: Path) -> None:
    """Let git forget worktrees whose folder is gone."""
    async with worktree_lock(repo):
        await git("worktree", "prune", cwd=repo)


async def commits_ahead(repo: Path, branch: str, base_commit: str) -> int:
    output = await git("rev-list", "--count", f"{base_commit}..refs/heads/{branch}", cwd=repo)
    return int(output.strip())


async def delete_branch(repo: Path, branch: str) -> None:
    await git("branch", "-D", "--", branch, cwd=repo)


async def is_ancestor(repo: Path, ancestor: str, descendant: str) -> bool:
    code, _, _ = await run_git("merge-base", "--is-ancestor", ancestor, descendant, cwd=repo)
    return code == 0


async def merge_trees(repo: Path, ours: str, theirs: str) -> tuple[str | None, list[str]]:
    """Merge two commits without a checkout (git 2.38 or newer); return the merged tree, or
    None and the conflicting paths."""
    code, stdout, stderr = await run_git(
        "merge-tree", "--write-tree", "--name-only", "--no-messages", ours, theirs, cwd=repo
    )
    lines = stdout.splitlines()
    if code == 0:
        return lines[0], []
    if code == 1:
        return None, [line for line in lines[1:] if line]
    raise GitError(f"git merge-tree failed: {stderr.strip()}", stderr)


async def commit_tree(
    repo: Path, tree: str, parents: list[str], message: str, identity: dict[str, str]
) -> str:
    args = ["commit-tree", tree, "-m", message]
    for parent in parents:
        args += ["-p", parent]
    return (await git(*args, cwd=repo, env=identity)).strip()


async def update_ref(repo: Path, ref: str, new: str, old: str) -> None:
    """Move ``ref`` to ``new`` only if it still points at ``old``."""
    await git("update-ref", ref, new, old, cwd=repo)
