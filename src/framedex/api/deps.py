"""Dependencies: typed access to what the lifespan put on ``app.state``, and the API key check.

Routes declare ``library: LibraryDep`` and get the one :class:`~framedex.library.Library` of the
process; nothing is a module global, so tests can run several apps side by side.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from framedex.api.jobs import JobManager
from framedex.api.settings import Settings
from framedex.errors import AuthenticationError

# auto_error=False: a missing key is our 401 in our envelope, not FastAPI's 403.
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer KEY")
_header_key = APIKeyHeader(name="x-api-key", auto_error=False, description="x-api-key: KEY")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_library(request: Request) -> Any:
    return request.app.state.library


def get_jobs(request: Request) -> JobManager:
    return request.app.state.jobs


SettingsDep = Annotated[Settings, Depends(get_settings)]
LibraryDep = Annotated[Any, Depends(get_library)]
JobsDep = Annotated[JobManager, Depends(get_jobs)]


def require_api_key(
    settings: SettingsDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header_key: Annotated[str | None, Depends(_header_key)],
) -> None:
    """Accept ``Authorization: Bearer KEY`` or ``x-api-key: KEY`` when a key is configured.

    Raises:
        AuthenticationError: no key, or a wrong one (401).
    """
    expected = settings.api_key
    if not expected:
        return
    given = (bearer.credentials if bearer is not None else None) or header_key
    if not given:
        raise AuthenticationError("this server needs an API key: send 'Authorization: Bearer "
                                  "KEY' or 'x-api-key: KEY'")
    # compare_digest: the time taken does not reveal how much of the key was right.
    if not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        raise AuthenticationError("wrong API key")
