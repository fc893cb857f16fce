"""The one place that turns errors into the API's format: ``{"error": {"status", "message"}}``,
and documents that format in the OpenAPI document."""

import logging
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from cocopilot.errors import CocopilotError

log = logging.getLogger(__name__)

# Sources of request values, as FastAPI names them first in an error's location.
_PARAMETER_KINDS = {"query": "query parameter", "path": "path parameter", "header": "header"}
_NOT_AN_OBJECT = {"model_attributes_type", "model_type", "dict_type"}


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"status": status, "message": message}}, status_code=status, headers=headers
    )


def describe_validation_error(exc: RequestValidationError) -> str:
    """Return one sentence naming the first invalid value and what is wrong with it."""
    errors = exc.errors()
    return describe_error(errors[0]) if errors else "invalid request"


def describe_error(error: dict[str, Any]) -> str:
    kind = error.get("type")
    context = error.get("ctx") or {}
    cause = context.get("error")
    # The checks of cocopilot.validation write whole messages that name the field.
    if isinstance(cause, CocopilotError):
        return cause.message
    if kind == "json_invalid":
        position = error["loc"][-1]
        return f"request body is not valid JSON: {cause} at character {position}"
    where = value_location(error.get("loc", ()))
    if not where:
        return describe_body_error(kind, error)
    if kind == "missing":
        return f"{where} is required"
    if kind == "extra_forbidden":
        return f"unknown field {where!r}"
    return f"invalid {where}: {_message(error)}"


def describe_body_error(kind: object, error: dict[str, Any]) -> str:
    """Describe an error in the request body as a whole."""
    if kind == "missing":
        return "request body is required"
    # FastAPI passes the raw bytes on when the Content-Type is not JSON.
    if isinstance(error.get("input"), bytes):
        return "request body must be JSON, sent with Content-Type: application/json"
    if kind in _NOT_AN_OBJECT:
        return "request body must be a JSON object"
    return _message(error)


def value_location(location: Sequence[object]) -> str:
    """Return ``repoName``, ``events.0`` or ``query parameter limit`` for an error location."""
    if not location:
        return ""
    source, *path = location
    name = ".".join(str(part) for part in path)
    if source in _PARAMETER_KINDS and name:
        return f"{_PARAMETER_KINDS[str(source)]} {name}"
    return name


def _message(error: dict[str, Any]) -> str:
    # Pydantic prefixes the messages of validators that raised ValueError.
    return str(error.get("msg", "invalid value")).removeprefix("Value error, ")


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
        if exc.status_code == 405:
            return method_not_allowed(request, exc)
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return error_response(500, "internal error")

    app.openapi = document_errors(app.openapi)  # type: ignore[method-assign]


def method_not_allowed(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Return 405 with an Allow header that lists every method of the path.

    The router's own header lists only the methods of the first route that matched the path,
    while a path such as /api/v1/config has one route per method. Paths left out of the
    OpenAPI document (/docs) keep the router's header.
    """
    path = request.url.path
    allow = ", ".join(allowed_methods(request.app.openapi(), path))
    allow = allow or (exc.headers or {}).get("Allow", "")
    message = f"method {request.method} is not allowed on {path}; use {allow}"
    return error_response(405, message, {"Allow": allow})


def allowed_methods(document: dict[str, Any], path: str) -> list[str]:
    """Return the methods that the OpenAPI ``document`` lists for ``path``."""
    methods = set()
    for template, operations in document.get("paths", {}).items():
        if compile_path(template)[0].match(path):
            methods |= {method.upper() for method in operations}
    return sorted(methods)


class ErrorDetail(BaseModel):
    status: int = Field(examples=[404])
    message: str = Field(examples=['Worker "Snickers" not found'])


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


_STATUS_DESCRIPTIONS = {
    400: "Invalid request: the message names the field and the problem",
    401: "Missing or invalid bearer token (only when COCOPILOT_API_TOKEN is set)",
    404: "Not found",
    409: "Conflict with the current state",
    413: "Request body over 1 MiB",
    503: "A service is not running",
    504: "A service did not reply in time",
}
_ERROR_BODY_REF = {"$ref": "#/components/schemas/ErrorBody"}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can return."""
    return {
        status: {"model": ErrorBody, "description": _STATUS_DESCRIPTIONS[status]}
        for status in statuses
    }


def document_errors(build: Callable[[], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
    """Wrap FastAPI's OpenAPI builder so the document shows the errors the api really returns.

    FastAPI documents a 422 with its own error shape for every route that takes input; this api
    returns 400 in its own format instead. The errors that come from layers around the routes are
    added here: 400 (invalid JSON) and 413 (body size limit) where a route takes a body, and 401
    where the bearer token applies.
    """
    done: list[dict[str, Any]] = []

    def build_once() -> dict[str, Any]:
        if not done:
            document = build()  # FastAPI keeps it in app.openapi_schema, which we edit in place
            _replace_validation_errors(document)
            done.append(document)
        return done[0]

    return build_once


def _replace_validation_errors(document: dict[str, Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for model in (ErrorBody, ErrorDetail):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schema.pop("$defs", None)
        schemas.setdefault(model.__name__, schema)
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            _document_operation_errors(operation)


def _document_operation_errors(operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)
    added = []
    if "requestBody" in operation:
        added += [400, 413]
    if operation.get("security"):
        added.append(401)
    for status in added:
        responses.setdefault(str(status), {"description": _STATUS_DESCRIPTIONS[status]})
    for status, response in responses.items():
        # Errors are JSON whatever the route returns when it succeeds (an event stream, say).
        if status >= "400" and _is_error_body(response):
            response["content"] = {"application/json": {"schema": _ERROR_BODY_REF}}
    operation["responses"] = dict(sorted(responses.items()))


def _is_error_body(response: dict[str, Any]) -> bool:
    contents = response.get("content")
    if not contents:
        return True  # an error entry added above, or one declared without a body
    return any(entry.get("schema") == _ERROR_BODY_REF for entry in contents.values())
