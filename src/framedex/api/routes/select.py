"""``POST /v1/videos/{video_id}/select``: the frames of one video a VLM should see, and
``GET /v1/samplers``: what ``sampler`` accepts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from framedex.api.deps import LibraryDep, PathsDep
from framedex.api.errors import body_fields
from framedex.api.schemas import (
    ErrorResponse,
    SamplersPublic,
    SelectRequest,
    SelectResponse,
    body_schema,
)
from framedex.api.uploads import read_json_body
from framedex.library import DeliveryOptions, Library, sampler_infos

router = APIRouter(tags=["select"])

_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": body_schema(SelectRequest)}}}}


@router.get("/v1/samplers", response_model=SamplersPublic)
def samplers(library: LibraryDep) -> SamplersPublic:
    """Registered samplers with their parameters, and the default a request without
    ``sampler`` gets."""
    infos = sampler_infos()
    return SamplersPublic(data=[i.name for i in infos], default=library.default_sampler,
                          samplers=[i.to_json() for i in infos])


def _select(library: Library, video_id: str, req: SelectRequest) -> dict[str, Any]:
    # The library checks each rule once: the delivery options before any selection runs.
    with body_fields(SelectRequest, {"max_side": "frame_max_side"}):
        options = DeliveryOptions(include=req.include, payload_format=req.payload_format,
                                  max_side=req.frame_max_side, payload_options=(
                                      {} if req.vlm_model is None else {"model": req.vlm_model}))
        result = library.select(video_id, req.question, sampler=req.sampler,
                                budget=req.budget, tokens=req.tokens, params=req.params)
    return library.deliver(result, options).to_json(req.include)


@router.post("/v1/videos/{video_id}/select", response_model=SelectResponse,
             openapi_extra=_BODY,
             responses={c: {"model": ErrorResponse} for c in (400, 404, 409, 413, 422)})
async def select(video_id: str, request: Request, library: LibraryDep,
                 paths: PathsDep) -> dict[str, Any]:
    """Choose frames of one indexed video for a question, with ``budget`` frames or a
    ``tokens`` budget (not both); ``include`` adds the frames (JPEG data-URLs, each at its
    resolution tier, capped by ``frame_max_side``), a chat ``payload`` (``payload_format``
    openai or gemini) or the ``plot`` (PNG data-URL). ``cost`` compares the selection's tokens
    with sending the whole video."""
    # The body is read like every other JSON route (size-capped, parsed by pydantic with its
    # nesting limit): FastAPI's own parse turned a body nested 10,000 deep into a bare 400.
    try:
        req = SelectRequest.model_validate_json(await read_json_body(request))
    except ValidationError as ex:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in ex.errors()]) from None
    out = await run_in_threadpool(_select, library, video_id, req)
    out["path"] = paths.public(out["path"])
    return out
