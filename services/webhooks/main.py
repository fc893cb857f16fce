"""Entry point: ``python -m services.webhooks.main``."""

import asyncio

from cocopilot.service import run_service
from services.webhooks.service import start, stop


def main() -> None:
    asyncio.run(run_service("webhooks", start, stop))


if __name__ == "__main__":
    main()
