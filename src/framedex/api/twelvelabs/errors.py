"""The Twelve Labs error shape, registered once on the ``/v1.3`` app.

Every error answers ``{"code", "message", "error": {"code", "message"}}``: the SDK reads the
flat pair on most paths and the nested one on others (``embed.v_2.create``'s 413 parses an
``ErrorResponse``, which requires ``error.code`` and ``error.message``). Codes follow Twelve
Labs': ``parameter_invalid`` (400, also for what FastAPI would answer 422),
``api_key_invalid`` (401), ``resource_not_exists`` (404), ``unsupported`` (400: a feature
this server does not offer, named in the message).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from framedex.api.errors import field_message
from framedex.errors import (
    AuthenticationError,
    ConfigError,
    FramedexError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    UnsupportedError,
    VideoOpenError,
)

log = logging.getLogger("framedex.api.twelvelabs")

_HTTP_CODES = {400: "parameter_invalid", 401: "api_key_invalid", 403: "access_forbidden",
               404: "resource_not_exists", 405: "method_not_allowed",
               406: "not_acceptable", 413: "file_too_large", 415: "parameter_invalid"}


def tl_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The error body: the flat and the nested shape."""
    nested: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        nested["details"] = {"fields": details}
    return {"code": code, "message": message, "error": nested}


def tl_error(status: int, code: str, message: str, details: Any = None,
             headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON error response in the Twelve Labs shape."""
    return JSONResponse(tl_body(code, message, details), status_code=status, headers=headers)


def status_and_code(exc: FramedexError) -> tuple[int, str]:
    """The HTTP status and Twelve Labs code of a framedex error (422s become 400s)."""
    if isinstance(exc, AuthenticationError):
        return 401, "api_key_invalid"
    if isinstance(exc, UnsupportedError):
        return 400, "unsupported"
    if isinstance(exc, PermissionDeniedError):
        return 403, "access_forbidden"
    if isinstance(exc, NotFoundError) and exc.http_status == 404:
        return 404, "resource_not_exists"
    if isinstance(exc, PayloadTooLargeError):
        return 413, "file_too_large"
    if isinstance(exc, (ConfigError, VideoOpenError)) or exc.http_status in (400, 422):
        return 400, "parameter_invalid"
    return exc.http_status, exc.code


async def _framedex_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FramedexError)
    status, code = status_and_code(exc)
    headers = {"WWW-Authenticate": "x-api-key"} if status == 401 else None
    return tl_error(status, code, str(exc), headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = []
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path", "form")]
        fields.append({"field": ".".join(loc), "message": field_message(e),
                       "type": e.get("type")})
    fields = jsonable_encoder(fields)
    if any(f["type"] == "json_invalid" for f in fields):
        return tl_error(400, "parameter_invalid", "the request body is not valid JSON", fields)
    first = fields[0] if fields else {"field": "", "message": "invalid request"}
    where = f"{first['field']}: " if first["field"] else ""
    return tl_error(400, "parameter_invalid", f"{where}{first['message']}", fields)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    status = 400 if exc.status_code == 415 else exc.status_code
    message = str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = (f"{request.method} {request.url.path} does not exist on this server "
                   "(docs/twelvelabs.md lists what framedex's Twelve Labs API offers)")
    return tl_error(status, code, message, headers=getattr(exc, "headers", None))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return tl_error(500, "internal_error",
                    "internal server error (the server log has the details)")


def install_tl_error_handlers(app: FastAPI) -> None:
    """Register the handlers on the ``/v1.3`` app (once, when it is built)."""
    app.add_exception_handler(FramedexError, _framedex_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
