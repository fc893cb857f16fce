"""The webhooks service. Placeholder: it connects and reports a heartbeat, nothing more yet."""

from cocopilot.service import ServiceContext


async def start(context: ServiceContext) -> None:
    pass


async def stop(context: ServiceContext) -> None:
    pass
