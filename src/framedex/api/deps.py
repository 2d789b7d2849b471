"""Dependencies: typed access to what the lifespan put on ``app.state``, and the API key check.

Routes declare ``library: LibraryDep`` and get the one :class:`~framedex.library.Library` of the
process; nothing is a module global, so tests can run several apps side by side.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from framedex.api.jobs import JobManager
from framedex.api.paths import PathView
from framedex.api.settings import Settings
from framedex.errors import AuthenticationError
from framedex.library import Library

# auto_error=False: a missing key is our 401 in our envelope, not FastAPI's 403.
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer KEY")
_header_key = APIKeyHeader(name="x-api-key", auto_error=False, description="x-api-key: KEY")


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_library(request: Request) -> Library:
    return request.app.state.library


def get_jobs(request: Request) -> JobManager:
    return request.app.state.jobs


def get_paths(request: Request) -> PathView:
    return request.app.state.paths


SettingsDep = Annotated[Settings, Depends(get_settings)]
LibraryDep = Annotated[Library, Depends(get_library)]
JobsDep = Annotated[JobManager, Depends(get_jobs)]
PathsDep = Annotated[PathView, Depends(get_paths)]


def given_key(bearer: HTTPAuthorizationCredentials | None, header_key: str | None) -> str | None:
    """The key a request carries in ``Authorization: Bearer`` or ``x-api-key``."""
    return (bearer.credentials if bearer is not None else None) or header_key


def key_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison: the time taken does not reveal how much of the key was right."""
    return given is not None and hmac.compare_digest(given.encode("utf-8"),
                                                     expected.encode("utf-8"))


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
    given = given_key(bearer, header_key)
    if not given:
        raise AuthenticationError("this server needs an API key: send 'Authorization: Bearer "
                                  "KEY' or 'x-api-key: KEY'")
    if not key_matches(given, expected):
        raise AuthenticationError("wrong API key")
