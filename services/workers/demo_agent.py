"""The demo agent: no AI and no key. It records the task in a file and commits it, so the whole
flow from spawn to branch can be tried anywhere.

Usage: ``python -m services.workers.demo_agent TASK`` in a git worktree. The worker's name comes
from COCOPILOT_WORKER_NAME; COCOPILOT_DEMO_DELAY_S sets a pause before the commit (seconds).
"""

import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python -m services.workers.demo_agent TASK", file=sys.stderr)
        return 2
    task = sys.argv[1]
    worker = os.environ.get("COCOPILOT_WORKER_NAME", "demo")
    delay_s = float(os.environ.get("COCOPILOT_DEMO_DELAY_S", "1"))

    print(f"demo agent {worker}: working on the task", flush=True)
    time.sleep(delay_s)

    note = Path("cocopilot-demo") / f"{worker}.md"
    note.parent.mkdir(exist_ok=True)
    note.write_text(f"# Task for {worker}\n\n{task}\n")
    subprocess.run(["git", "add", "--", str(note)], check=True)
    summary = task.strip().splitlines()[0][:72]
    subprocess.run(["git", "commit", "--quiet", "-m", f"Record demo task: {summary}"], check=True)
    print(f"demo agent {worker}: committed {note}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
