"""``POST /v1/search``: find moments (or videos) matching a text, images, entities, or several
parts; or one composed query of them (``compose``)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from framedex.api.deps import LibraryDep, PathsDep, SettingsDep
from framedex.api.errors import body_fields
from framedex.api.jobs import new_job_id
from framedex.api.paths import PathView
from framedex.api.schemas import ErrorResponse, SearchRequest, SearchResponse, body_schema
from framedex.api.uploads import json_field, read_json_body, receive_upload
from framedex.errors import ConfigError
from framedex.library import SearchFilters
from framedex.rules import (
    GROUP_BY,
    LIMITS,
    MAX_IMAGE_BYTES,
    MAX_QUERY_IMAGES,
    OPERATORS,
    THRESHOLDS,
)

router = APIRouter(prefix="/v1/search", tags=["search"])

_FORM = {"type": "object", "required": ["image"], "properties": {
    "image": {"type": "string", "format": "binary",
              "description": f"Repeat for several images (at most {MAX_QUERY_IMAGES})."},
    "text": {"type": "string", "description": "Optional text part(s); repeat the field for "
                                              "several."},
    "entity": {"type": "string", "description": "An entity id to find; repeat for several."},
    "compose": {"type": "boolean", "description": "Fuse everything into one query vector."},
    "operator": {"type": "string", "enum": list(OPERATORS)},
    "limit": {"type": "integer", **LIMITS["limit"].json_schema()},
    "group_by": {"type": "string", "enum": list(GROUP_BY)},
    "threshold": {"type": "string", "enum": list(THRESHOLDS)},
    "filters": {"type": "string", "description": "A JSON object (as in the JSON body)."},
}}
_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": body_schema(SearchRequest)},
    "multipart/form-data": {"schema": _FORM},
}}}


def public_hit(hit: dict[str, Any], paths: PathView) -> dict[str, Any]:
    """A search hit with its path (and its moments' paths) in public form."""
    out = {**hit, "path": paths.public(hit["path"])}
    if "moments" in out:
        out["moments"] = [{**m, "path": paths.public(m["path"])} for m in out["moments"]]
    return out


def _validation_error(ex: ValidationError) -> RequestValidationError:
    return RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in ex.errors()])


def _decode_base64(data: str) -> bytes:
    raw = data.split(",", 1)[1] if data.startswith("data:") and "," in data else data
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("image_base64 is invalid: not base64 data") from None


@router.post("", response_model=SearchResponse, openapi_extra=_BODY,
             responses={c: {"model": ErrorResponse} for c in (400, 404, 409, 413, 415, 422)})
async def search(request: Request, library: LibraryDep, paths: PathsDep,
                 settings: SettingsDep) -> SearchResponse:
    """Best-matching moments (``group_by=moment``) or videos (``group_by=video``).

    JSON ``{"text": ..., "image_base64"?: ..., "entity"?: ..., "operator"?: "and"|"or",
    "compose"?: bool, ...}``, or multipart/form-data with ``image`` file parts (and optional
    ``text``, ``entity``, ``compose``, ``operator``, ``limit``, ``group_by``, ``threshold``,
    ``filters`` fields). One part (a text, an image, or a text with the entities it names)
    searches every indexed frame; several parts rank videos (``and``: the sum of each part's
    best segment, ``or``: the best part) and each hit's moments name their ``part``;
    ``compose`` fuses everything into one part. Each result has a ``confidence`` (``high``,
    ``medium``, ``low``); results below ``threshold`` (default ``low``) are left out.
    """
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    images: list[Any] = []
    if ctype == "multipart/form-data":
        dest = settings.resolved_upload_dir_for(library.uri) / f"search-{new_job_id()}"
        upload = None
        try:
            upload = await receive_upload(
                request, file_field="image", dest=dest, max_files=MAX_QUERY_IMAGES,
                max_bytes=min(MAX_QUERY_IMAGES * MAX_IMAGE_BYTES, settings.max_upload_bytes))
            files = [p for _, p in upload.files]
            names = [f"image[{i}]" if len(files) > 1 else "image" for i in range(len(files))]
            images = await run_in_threadpool(library.load_images, files, names)
        finally:
            for _, p in (upload.files if upload is not None else [("", dest)]):
                p.unlink(missing_ok=True)
        form: dict[str, Any] = {k: v for k, v in upload.fields.items()
                                if k in ("operator", "limit", "group_by", "compose", "threshold")}
        texts, entities = upload.lists.get("text", []), upload.lists.get("entity", [])
        try:
            req = SearchRequest.model_validate(
                {**form, "text": texts or None, "entity": entities or None,
                 "filters": json_field(upload, "filters")},
                context={"image_uploaded": True})
        except ValidationError as ex:
            raise _validation_error(ex) from None
    elif ctype == "application/json" or ctype.endswith("+json"):
        try:
            req = SearchRequest.model_validate_json(await read_json_body(request))
        except ValidationError as ex:
            raise _validation_error(ex) from None
        given = req.images_base64
        if given:
            names = [f"image_base64[{i}]" if len(given) > 1 else "image_base64"
                     for i in range(len(given))]
            images = await run_in_threadpool(library.load_images,
                                             [_decode_base64(g) for g in given], names)
    else:
        from starlette.exceptions import HTTPException

        raise HTTPException(415, 'send application/json ({"text": ...}) or multipart/form-data '
                                 "with an image part")
    filters = SearchFilters(**req.filters.model_dump()) if req.filters else None
    texts = req.texts
    with body_fields(SearchRequest):
        hits = await run_in_threadpool(lambda: library.search(
            texts, image=images, entity=req.entities, operator=req.operator,
            compose=req.compose, limit=req.limit, group_by=req.group_by, filters=filters,
            threshold=req.threshold))
    parts = library.query_parts(texts, images=len(images), entity=req.entities,
                                compose=req.compose)
    notes = [line for t in texts for line in library.query_notes(t)]
    return SearchResponse(query=f" {req.operator.upper()} ".join(parts), group_by=req.group_by,
                          threshold=req.threshold,
                          results=[public_hit(h.to_json(), paths) for h in hits], notes=notes)
