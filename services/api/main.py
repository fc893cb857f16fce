"""Entry point: ``python -m services.api.main``."""

import uvicorn

from cocopilot.logs import setup_logging
from cocopilot.settings import get_settings
from services.api.app import create_app


def main() -> None:
    settings = get_settings()
    setup_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep the JSON logging set up above
        access_log=False,
    )


if __name__ == "__main__":
    main()
