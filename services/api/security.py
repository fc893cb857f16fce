"""Bearer-token auth when COCOPILOT_API_TOKEN is set.

``BearerTokenAuth``, a middleware, guards every ``/api/v1`` path. It runs before routing and
before the body is read, so a caller without the token learns nothing: not whether its JSON is
valid, nor which paths exist. Routes outside ``/api/v1`` that need the token too (``/metrics``)
depend on ``require_token``. Both declare ``bearer_scheme`` in the OpenAPI document.
"""

import hmac

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from services.api.errors import error_response
from services.api.state import ApiState, get_state

PROTECTED_PREFIX = "/api/v1"
CHALLENGE = {"WWW-Authenticate": "Bearer"}

bearer_scheme = HTTPBearer(
    auto_error=False, description="The value of COCOPILOT_API_TOKEN; needed only when it is set"
)


def token_problem(header: bytes | None, expected: bytes) -> str | None:
    """Return why an Authorization header does not carry ``expected``, or None when it does."""
    if header is None:
        return "missing Authorization header: send 'Authorization: Bearer <token>'"
    scheme, _, credentials = header.partition(b" ")
    if scheme.lower() != b"bearer":
        return "the Authorization header must use the Bearer scheme: 'Bearer <token>'"
    # compare_digest takes the same time wherever the two values differ.
    if not hmac.compare_digest(credentials.strip(), expected):
        return "invalid API token"
    return None


def authorization_header(scope: Scope) -> bytes | None:
    # The raw bytes, so a token outside Latin-1 compares the way the client sent it.
    for name, value in scope["headers"]:
        if name == b"authorization":
            return bytes(value)
    return None


def is_protected(path: str) -> bool:
    return path == PROTECTED_PREFIX or path.startswith(f"{PROTECTED_PREFIX}/")


class BearerTokenAuth:
    """Return 401 to an ``/api/v1`` request without the bearer ``token``; with no token set,
    let every request through."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.expected = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.expected and is_protected(scope["path"]):
            problem = token_problem(authorization_header(scope), self.expected)
            if problem:
                await error_response(401, problem, CHALLENGE)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def require_token(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),  # noqa: B008
    state: ApiState = Depends(get_state),  # noqa: B008
) -> None:
    """Raise 401 unless the request carries the bearer token; ``credentials`` only declares
    the scheme in the OpenAPI document."""
    expected = state.settings.api_token
    if not expected:
        return
    problem = token_problem(authorization_header(request.scope), expected.encode())
    if problem:
        raise HTTPException(401, problem, CHALLENGE)
