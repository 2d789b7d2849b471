"""``POST /v1/videos/{video_id}/select``: the frames of one video a VLM should see, and
``GET /v1/samplers``: what ``sampler`` accepts."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from framedex.api.deps import LibraryDep, PathsDep
from framedex.api.schemas import ErrorResponse, SamplersPublic, SelectRequest, SelectResponse
from framedex.library import DEFAULT_QUALITY, Library, sampler_infos

router = APIRouter(tags=["select"])


@router.get("/v1/samplers", response_model=SamplersPublic)
def samplers(library: LibraryDep) -> SamplersPublic:
    """Registered samplers with their parameters, and the default a request without
    ``sampler`` gets."""
    infos = sampler_infos()
    return SamplersPublic(data=[i.name for i in infos], default=library.default_sampler,
                          samplers=[i.to_json() for i in infos])


def _select(library: Library, video_id: str, req: SelectRequest) -> dict[str, Any]:
    result = library.select(video_id, req.question, sampler=req.sampler, budget=req.budget,
                            tokens=req.tokens, params=req.params)
    delivery = library.deliver(result, include=req.include, max_side=req.frame_max_side,
                               payload_format=req.payload_format, quality=DEFAULT_QUALITY)
    return delivery.to_json(req.include)


@router.post("/v1/videos/{video_id}/select", response_model=SelectResponse,
             responses={c: {"model": ErrorResponse} for c in (404, 409, 422)})
async def select(video_id: str, req: SelectRequest, library: LibraryDep,
                 paths: PathsDep) -> dict[str, Any]:
    """Choose frames of one indexed video for a question, with ``budget`` frames or a
    ``tokens`` budget (not both); ``include`` adds the frames (JPEG data-URLs, each at its
    resolution tier, capped by ``frame_max_side``), a chat ``payload`` (``payload_format``
    openai or gemini) or the ``plot`` (PNG data-URL). ``cost`` compares the selection's tokens
    with sending the whole video."""
    out = await run_in_threadpool(_select, library, video_id, req)
    out["path"] = paths.public(out["path"])
    return out
