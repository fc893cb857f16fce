"""The one place that turns errors into the API's format: ``{"error": {"status", "message"}}``."""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from cocopilot.errors import CocopilotError

log = logging.getLogger(__name__)


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"status": status, "message": message}}, status_code=status, headers=headers
    )


def describe_validation_error(exc: RequestValidationError) -> str:
    """Return one sentence naming the first invalid field and what is wrong with it."""
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    location = [str(part) for part in first.get("loc", ()) if part not in ("body",)]
    field = ".".join(location)
    message = str(first.get("msg", "invalid value"))
    if first.get("type") == "json_invalid":
        return "request body is not valid JSON"
    if first.get("type") == "model_attributes_type" or (not field and "dict" in message):
        return "request body must be a JSON object"
    if first.get("type") == "missing":
        return f"{field} is required"
    # Pydantic prefixes messages of validators that raised ValueError; the rest reads fine as is.
    message = message.removeprefix("Value error, ")
    return f"invalid {field}: {message}" if field else message


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CocopilotError)
    async def domain_error(request: Request, exc: CocopilotError) -> JSONResponse:
        if exc.status >= 500:
            log.warning("request failed", extra={"path": request.url.path, "error": exc.message})
        return error_response(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, describe_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return error_response(500, "internal error")


class ErrorDetail(BaseModel):
    status: int = Field(examples=[404])
    message: str = Field(examples=['Worker "Snickers" not found'])


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


_STATUS_DESCRIPTIONS = {
    400: "Invalid request: the message names the field and the problem",
    401: "Missing or invalid bearer token",
    404: "Not found",
    409: "Conflict with the current state",
    413: "Request body over 1 MiB",
    503: "A service is not running",
    504: "A service did not reply in time",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer."""
    return {
        status: {"model": ErrorBody, "description": _STATUS_DESCRIPTIONS[status]}
        for status in statuses
    }
