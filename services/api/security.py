"""Bearer-token auth for every ``/api/v1`` route when COCOPILOT_API_TOKEN is set."""

import hmac

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cocopilot.errors import CocopilotError
from services.api.state import ApiState, get_state

bearer = HTTPBearer(auto_error=False, description="The value of COCOPILOT_API_TOKEN")


class Unauthorized(CocopilotError):
    status = 401


async def require_token(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    state: ApiState = Depends(get_state),  # noqa: B008
) -> None:
    expected = state.settings.api_token
    if not expected:
        return
    if credentials is None:
        raise Unauthorized("missing Authorization header: send 'Authorization: Bearer <token>'")
    # compare_digest takes the same time wherever the strings differ.
    if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise Unauthorized("invalid API token")
