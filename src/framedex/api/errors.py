"""One JSON error envelope for every failure, registered once on the app.

Every error answer has the shape ``{"error": {"code": str, "message": str, "detail": ...}}``
(``detail`` only when there is something structured to add, e.g. the invalid fields).
Status and code of a domain error come from the error class itself
(:attr:`FramedexError.http_status` / :attr:`FramedexError.code`), so routes never map
errors by hand.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from framedex.errors import AuthenticationError, ConfigError, FramedexError

log = logging.getLogger("framedex.api")

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 406: "not_acceptable", 413: "payload_too_large",
               415: "unsupported_media_type", 422: "invalid_parameter"}


def error_body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    """The envelope as a dict."""
    err: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        err["detail"] = detail
    return {"error": err}


def error_response(status: int, code: str, message: str, detail: Any = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """A JSON error response in the envelope."""
    return JSONResponse(error_body(code, message, detail), status_code=status, headers=headers)


@contextlib.contextmanager
def body_fields(model: type[BaseModel] | Iterable[str], names: Mapping[str, str] | None = None,
                where: str = "body") -> Iterator[None]:
    """Report the facade's error about a value the request carried in a field of ``model`` as
    that field's error (422, ``detail[0].field == "body.budget"``), the way a field rule of the
    model would have: the rule is checked once, by the ``Library``, and the client still learns
    which field to fix.

    Args:
        model: the request model whose fields the library's parameters came from (or the
            names of the request's fields).
        names: library parameter -> field, where they differ (``max_side`` ->
            ``frame_max_side``).
        where: where the fields are (``body``, ``query``).
    """
    fields = set(model.model_fields) if isinstance(model, type) else set(model)
    try:
        yield
    except ConfigError as ex:
        param = ex.param or ""
        field = (names or {}).get(param, param)
        if type(ex) is not ConfigError or field not in fields:
            raise
        raise RequestValidationError([{"loc": (where, field), "msg": str(ex),
                                       "type": "value_error"}]) from None


async def _framedex_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FramedexError)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, AuthenticationError) else None
    return error_response(exc.http_status, exc.code, str(exc), headers=headers)


#: What pydantic puts before the message of an error a validator raised ("Value error, give
#: text, image_base64, or both"): its own wording, not the rule's, so clients never see it.
_PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")


def field_message(error: Mapping[str, Any]) -> str:
    """The message of one of pydantic's field errors, without pydantic's prefix."""
    message = str(error.get("msg", ""))
    for prefix in _PYDANTIC_PREFIXES:
        message = message.removeprefix(prefix)
    return message


def _field_errors(errors: list[Any]) -> list[dict[str, Any]]:
    out = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ())]
        out.append({"field": ".".join(loc), "message": field_message(e), "type": e.get("type")})
    return out


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    detail = jsonable_encoder(_field_errors(errors))
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(400, "malformed_json", "the request body is not valid JSON",
                              detail)
    first = detail[0] if detail else {"field": "", "message": "invalid request"}
    where = f"{first['field']}: " if first["field"] else ""
    return error_response(422, "invalid_parameter", f"{where}{first['message']}", detail)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    return error_response(exc.status_code, code, str(exc.detail),
                          headers=getattr(exc, "headers", None))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # The traceback goes to the server log, never to the client.
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error",
                          "internal server error (the server log has the details)")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers (once, at app creation)."""
    app.add_exception_handler(FramedexError, _framedex_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
