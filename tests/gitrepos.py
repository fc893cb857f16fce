"""Git repositories made by the tests, with real git."""

import subprocess
from pathlib import Path

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.com",
}


def run_git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(repo), **GIT_IDENTITY},
    )
    return result.stdout


def make_repository(path: Path, branch: str = "main", files: dict[str, str] | None = None) -> Path:
    """Create a repository at ``path`` with one commit on ``branch``."""
    path.mkdir(parents=True)
    run_git(path, "init", "--quiet", "--initial-branch", branch)
    for name, text in (files or {"README.md": "# Sample project\n"}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    run_git(path, "add", "--all")
    run_git(path, "commit", "--quiet", "-m", "Initial commit")
    return path
