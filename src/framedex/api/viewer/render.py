"""Templates, the page response, and the error page every viewer failure becomes.

Pages are Jinja2 templates shipped in this package, with one CSS and one JavaScript file
(``static/``): no build step, no CDN. A Content-Security-Policy of ``'self'`` (plus ``data:``
images, the delivered frames) makes "nothing fetched from the internet" a rule the browser
enforces, not a habit.

Errors: a page route never answers a stack trace or a blank page. A framedex error becomes a
page with its status, its reason and links back; anything else is logged and becomes a
500 page that says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from functools import lru_cache
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

import framedex
from framedex.api.viewer.auth import LoginRequired, is_signed_in, login_url
from framedex.api.viewer.curve import clock
from framedex.errors import (
    ConfigError,
    EmptyLibraryError,
    FramedexError,
    NotFoundError,
    UnknownNameError,
    VideoNotFoundError,
    VideoOpenError,
)

log = logging.getLogger("framedex.api.viewer")

#: Headers of every viewer response: only this server's own files, frames as data: URLs.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; "
        "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@lru_cache(maxsize=1)
def templates() -> Any:
    """The Jinja2 environment (built on first use; templates come from the package)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("framedex.api.viewer", "templates"),
                      autoescape=select_autoescape(["html"]), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["clock"] = clock
    env.globals["version"] = framedex.__version__
    return env


def page(request: Request, template: str, *, status: int = 200, title: str = "",
         **context: Any) -> HTMLResponse:
    """Render a page template."""
    settings = request.app.state.settings
    html = templates().get_template(template).render(
        request=request, title=title, nav=request.url.path,
        auth_on=bool(settings.api_key), signed_in=is_signed_in(request), **context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _describe(exc: Exception) -> tuple[int, str, str]:
    """(status, heading, reason) of an error."""
    if isinstance(exc, FramedexError):
        heading = {
            VideoNotFoundError: "No such video",
            EmptyLibraryError: "The library is empty",
            UnknownNameError: "Unknown name",
            VideoOpenError: "The video file cannot be read",
            ConfigError: "Invalid request",
            NotFoundError: "Not found",
        }
        title = next((h for cls, h in heading.items() if isinstance(exc, cls)), "Cannot do that")
        return exc.http_status, title, str(exc)
    if isinstance(exc, RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return 422, "Invalid request", f"{where}: {first.get('msg', 'invalid value')}"
    if isinstance(exc, StarletteHTTPException):
        return exc.status_code, "Cannot do that", str(exc.detail)
    return 500, "Something went wrong", "internal server error (the server log has the details)"


def _public(request: Request, message: str) -> str:
    """An error message with the server's store location replaced by its name."""
    library = getattr(request.app.state, "library", None)
    uri = getattr(library, "uri", "") if library is not None else ""
    if uri and "://" not in uri:
        message = message.replace(uri, uri.rstrip("/").rsplit("/", 1)[-1])
    return message


def error_page(request: Request, exc: Exception) -> HTMLResponse:
    """The readable page of a failed request: status, reason, and a way back."""
    status, heading, reason = _describe(exc)
    if status >= 500 and not isinstance(exc, FramedexError):
        log.error("viewer error on %s %s", request.method, request.url.path, exc_info=exc)
    video_id = request.path_params.get("video_id")
    back = None
    if video_id and not isinstance(exc, (VideoNotFoundError, EmptyLibraryError)):
        back = f"/videos/{video_id}"
    hint = None
    if isinstance(exc, EmptyLibraryError):
        hint = ("Index videos first: `framedex index PATH --db DB` on the server, or "
                "POST /v1/videos with the API key; then reload this page.")
    return page(request, "error.html", status=status, title=heading, heading=heading,
                reason=_public(request, reason), status_code=status, back=back, hint=hint)


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class PageRoute(APIRoute):
    """A viewer page: sign-in redirects to ``/login``, every failure is an error page."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired:
                return RedirectResponse(login_url(request), status_code=303)
            except Exception as exc:
                return error_page(request, exc)

        return route


class AssetRoute(APIRoute):
    """A viewer image, video or JSON file: failures answer their status and reason as text
    (an ``<img>`` shows its alt text; no stack trace either)."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                status, _, reason = _describe(exc)
                if status >= 500 and not isinstance(exc, FramedexError):
                    log.error("viewer error on %s %s", request.method, request.url.path,
                              exc_info=exc)
                headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
                return PlainTextResponse(_public(request, reason) + "\n", status_code=status,
                                         headers=headers)

        return route
