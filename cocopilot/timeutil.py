"""Timestamps in the API's format: UTC, milliseconds, a ``Z`` suffix."""

from datetime import UTC, datetime


def format_time(moment: datetime) -> str:
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def utc_now() -> datetime:
    return datetime.now(UTC)


def now_iso() -> str:
    return format_time(utc_now())


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
