"""Viewer sign-in: the API key asked for once, then an HttpOnly, SameSite cookie.

The cookie does not hold the key. It holds ``HMAC-SHA256(key, "framedex viewer session v1")``,
so a leaked cookie cannot be replayed as an API key, and changing ``--api-key`` signs every
browser out. It is accepted only by the viewer's GET pages, thumbnails, frames and the source
player (:func:`viewer_access`); the API's own dependency (``deps.require_api_key``) reads only
the ``Authorization``/``x-api-key`` headers, so a cookie can never start an ingest or delete a
video, and the viewer needs no CSRF token because nothing it accepts a cookie for changes state.

``SameSite=Lax`` rather than ``Strict``: a link to a viewer page from a chat or a ticket should
open the page, not the sign-in form; Lax still keeps the cookie off cross-site subresource
loads and cross-site POSTs, and the cookie unlocks only read-only GETs anyway.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote

from fastapi import Request

from framedex.api.deps import given_key, key_matches
from framedex.errors import AuthenticationError

#: Name of the viewer's session cookie.
COOKIE = "framedex_viewer"
#: How long a browser stays signed in (seconds).
COOKIE_MAX_AGE = 7 * 24 * 3600


class LoginRequired(AuthenticationError):
    """A viewer request without a valid session cookie (pages redirect to ``/login``)."""


def session_token(api_key: str) -> str:
    """The cookie value for a server key (a MAC of a constant, never the key itself)."""
    return hmac.new(api_key.encode("utf-8"), b"framedex viewer session v1",
                    hashlib.sha256).hexdigest()


def _header_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else None
    return bearer or request.headers.get("x-api-key")


def is_signed_in(request: Request) -> bool:
    """True when no key is configured, or the request carries the session cookie or the key
    itself in a header."""
    expected = request.app.state.settings.api_key
    if not expected:
        return True
    cookie = request.cookies.get(COOKIE)
    if cookie and hmac.compare_digest(cookie.encode("utf-8"),
                                      session_token(expected).encode("utf-8")):
        return True
    return key_matches(given_key(None, _header_key(request)), expected)


def viewer_access(request: Request) -> None:
    """Dependency of every viewer GET route.

    Raises:
        LoginRequired: a key is configured and the request has neither the cookie nor the key.
    """
    if not is_signed_in(request):
        raise LoginRequired("this server needs its API key: sign in at /login")


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this server only (no open redirect).

    Browsers drop tabs and newlines from URLs, so ``/<TAB>/evil.example`` would become
    ``//evil.example``: any whitespace or control character is refused too."""
    if (not target or not target.startswith("/") or target.startswith("//") or "\\" in target
            or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in target)):
        return "/"
    return target


def login_url(request: Request) -> str:
    """``/login?next=<the page asked for>``."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/login?next=" + quote(here, safe="")
