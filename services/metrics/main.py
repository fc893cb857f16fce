"""Entry point: ``python -m services.metrics.main``."""

import asyncio

from cocopilot.service import run_service
from services.metrics.service import start, stop


def main() -> None:
    asyncio.run(run_service("metrics", start, stop))


if __name__ == "__main__":
    main()
