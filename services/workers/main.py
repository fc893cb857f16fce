"""Entry point: ``python -m services.workers.main``."""

import asyncio

from cocopilot.service import run_service
from services.workers.service import start, stop


def main() -> None:
    asyncio.run(run_service("workers", start, stop))


if __name__ == "__main__":
    main()
