"""Domain errors. Each carries the HTTP status of the api's response, and the api's one handler
turns them into the error format ``{"error": {"status": ..., "message": ...}}``."""


class CocopilotError(Exception):
    status = 500

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class InvalidRequest(CocopilotError, ValueError):
    status = 400


class NotFound(CocopilotError, LookupError):
    status = 404


class Conflict(CocopilotError):
    status = 409


class ServiceUnavailable(CocopilotError):
    status = 503


class ServiceTimeout(CocopilotError, TimeoutError):
    status = 504
