"""Viewer sign-in: the API key asked for once, then an HttpOnly, SameSite cookie.

The cookie does not hold the key. It holds a session: a random id, its expiry and
``HMAC-SHA256(key, id|expiry)`` (:class:`ViewerSessions`), so a leaked cookie cannot be
replayed as an API key, changing ``--api-key`` signs every browser out, and ``/logout`` ends
the session on the server: the same cookie sent again is refused. (The first version's cookie
was a MAC of a constant: logging out only asked the browser to forget it, and a copy kept
working for good.) Live sessions are kept in the server process's memory, shared by its
threads: a restart, or another replica behind a load balancer, signs everyone out. It is
accepted only by the viewer's GET pages, thumbnails, frames and the source
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
import secrets
import threading
import time
from urllib.parse import quote

from fastapi import Request

from framedex.api.deps import given_key, key_matches
from framedex.errors import AuthenticationError

#: Name of the viewer's session cookie.
COOKIE = "framedex_viewer"
#: How long a browser stays signed in (seconds).
COOKIE_MAX_AGE = 7 * 24 * 3600
#: Most sessions kept at once; past it the one closest to its expiry is ended (each sign-in
#: needs the key, so only the key's holders can fill it).
MAX_SESSIONS = 10_000


class LoginRequired(AuthenticationError):
    """A viewer request without a valid session cookie (pages redirect to ``/login``)."""


def _mac(api_key: str, sid: str, expires: int) -> str:
    return hmac.new(api_key.encode("utf-8"), f"framedex viewer session v2|{sid}|{expires}"
                    .encode("ascii"), hashlib.sha256).hexdigest()


class ViewerSessions:
    """The viewer's signed-in sessions in this server process (``app.state.viewer_sessions``).

    A session cookie is ``<id>.<expiry>.<mac>``; it is accepted while its MAC matches the
    server's key, its expiry is ahead and its id is live here. :meth:`end` (``/logout``)
    removes the id, for every thread at once.

    Args:
        max_age_s: seconds a session lasts.
        limit: most live sessions.
    """

    def __init__(self, max_age_s: int = COOKIE_MAX_AGE, limit: int = MAX_SESSIONS):
        self.max_age_s, self.limit = max_age_s, limit
        self._live: dict[str, int] = {}  # id -> expiry (unix seconds)
        self._lock = threading.Lock()

    def start(self, api_key: str) -> str:
        """A new session for a browser that gave the key: its cookie value."""
        sid, expires = secrets.token_urlsafe(18), int(time.time()) + self.max_age_s
        with self._lock:
            if len(self._live) >= self.limit:
                now = time.time()
                for old in [k for k, e in self._live.items() if e <= now]:
                    del self._live[old]
                while len(self._live) >= self.limit:
                    del self._live[min(self._live, key=self._live.__getitem__)]
            self._live[sid] = expires
        return f"{sid}.{expires}.{_mac(api_key, sid, expires)}"

    def _parse(self, token: str) -> tuple[str, int, str] | None:
        parts = token.split(".")
        if len(parts) != 3 or not parts[1].isdigit() or len(parts[1]) > 12:
            return None
        return parts[0], int(parts[1]), parts[2]

    def valid(self, token: str | None, api_key: str) -> bool:
        """True when ``token`` is a live, unexpired session signed with ``api_key``."""
        parsed = self._parse(token or "")
        if parsed is None:
            return False
        sid, expires, mac = parsed
        if not hmac.compare_digest(mac.encode("ascii", "replace"),
                                   _mac(api_key, sid, expires).encode("ascii")):
            return False
        with self._lock:
            return self._live.get(sid) == expires and expires > time.time()

    def end(self, token: str | None) -> None:
        """End the session ``token`` names (nothing when it names none)."""
        parsed = self._parse(token or "")
        if parsed is not None:
            with self._lock:
                self._live.pop(parsed[0], None)


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
    sessions: ViewerSessions = request.app.state.viewer_sessions
    if sessions.valid(request.cookies.get(COOKIE), expected):
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
