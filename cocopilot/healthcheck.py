"""Container healthcheck: ``python -m cocopilot.healthcheck SERVICE``.

Exits 0 when the service touched its heartbeat file recently, which it does only while its
Redis and NATS connections work; exits 1 otherwise.
"""

import os
import sys
import time

from cocopilot.settings import get_settings


def main() -> int:
    settings = get_settings()
    path = settings.health_dir / sys.argv[1]
    try:
        age_s = time.time() - os.path.getmtime(path)
    except OSError:
        return 1
    return 0 if age_s <= 3 * settings.heartbeat_interval_s else 1


if __name__ == "__main__":
    sys.exit(main())
