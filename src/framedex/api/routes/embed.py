"""``POST /v1/embed``: the library's encoder on a text (JSON) or an image (multipart)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from framedex.api.deps import LibraryDep, SettingsDep
from framedex.api.errors import body_fields
from framedex.api.jobs import new_job_id
from framedex.api.schemas import EmbedRequest, EmbedResponse, ErrorResponse, body_schema
from framedex.api.uploads import read_json_body, receive_upload
from framedex.rules import MAX_IMAGE_BYTES

router = APIRouter(prefix="/v1/embed", tags=["embed"])

_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": body_schema(EmbedRequest)},
    "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
        "image": {"type": "string", "format": "binary"}}}},
}}}


@router.post("", response_model=EmbedResponse, openapi_extra=_BODY,
             responses={c: {"model": ErrorResponse} for c in (400, 413, 415, 422)})
async def embed(request: Request, library: LibraryDep, settings: SettingsDep) -> EmbedResponse:
    """Embed ``{"text": str | [str]}`` or an uploaded ``image``; returns the L2-normalised
    vectors and the encoder identity (the same space the store's frames live in)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    kind: Literal["text", "image"]
    if ctype == "multipart/form-data":
        dest = settings.resolved_upload_dir_for(library.uri) / f"embed-{new_job_id()}"
        try:
            await receive_upload(request, file_field="image", dest=dest,
                                 max_bytes=min(MAX_IMAGE_BYTES, settings.max_upload_bytes))
            # from the bytes: an error must not name the server's upload path
            image = await run_in_threadpool(library.load_image, dest.read_bytes(), "image")
        finally:
            dest.unlink(missing_ok=True)
        vectors = await run_in_threadpool(library.embed_images, [image])
        kind = "image"
    elif ctype == "application/json" or ctype.endswith("+json"):
        try:
            req = EmbedRequest.model_validate_json(await read_json_body(request))
        except ValidationError as ex:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in ex.errors()]) from None
        texts = [req.text] if isinstance(req.text, str) else list(req.text)
        with body_fields(EmbedRequest):
            vectors = await run_in_threadpool(library.embed_text, texts)
        kind = "text"
    else:
        from starlette.exceptions import HTTPException

        raise HTTPException(415, 'send application/json ({"text": ...}) or multipart/form-data '
                                 "with an image part")
    return EmbedResponse(kind=kind, dim=int(vectors.shape[1]), vectors=vectors.tolist(),
                         encoder=library.encoder_info())
