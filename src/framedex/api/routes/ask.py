"""``POST /v1/videos/{video_id}/ask``: the answer of the server's video LLM, shown the frames a
sampler picks; ``/v1/answers/{answer_id}`` (and its ``/feedback``): a stored answer and its
rating; ``GET /v1/stats/arms``: the rollout's arms compared.

The server calls the endpoint it was started with (``framedex serve --vlm-url URL
--vlm-model NAME``, its key in ``$FRAMEDEX_VLM_API_KEY``); a request may name another model
there, never another URL. A failure of the model is a 502 naming the endpoint.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from framedex.api.deps import LibraryDep
from framedex.api.errors import body_fields
from framedex.api.schemas import (
    AskRequest,
    AskResponse,
    ErrorResponse,
    FeedbackRequest,
    FeedbackResponse,
)
from framedex.library import Library

router = APIRouter(tags=["ask"])


def _ask(library: Library, video_id: str, req: AskRequest) -> dict[str, Any]:
    with body_fields(AskRequest, {"max_side": "frame_max_side", "vlm_model": "model"}):
        result = library.ask(video_id, req.question, model=req.model, sampler=req.sampler,
                             budget=req.budget, tokens=req.tokens, params=req.params,
                             max_tokens=req.max_tokens, temperature=req.temperature,
                             response_format=req.response_format, system=req.system,
                             max_side=req.frame_max_side, start=req.start, end=req.end,
                             rollout_key=req.rollout_key, cache=req.cache)
    return result.to_json()


@router.post("/v1/videos/{video_id}/ask", response_model=AskResponse,
             responses={c: {"model": ErrorResponse} for c in (400, 404, 422, 502)})
async def ask(video_id: str, req: AskRequest, library: LibraryDep) -> dict[str, Any]:
    """Ask the server's video LLM about one video: frames selected as in ``select`` are sent
    to it, and its answer comes back with the frames' timestamps, the token usage it reported
    and the latency split. The same ask (question, video generation, sampler, budget, model,
    options) returns the stored answer without calling the model (``cached: true``)."""
    return await run_in_threadpool(_ask, library, video_id, req)


@router.get("/v1/answers/{answer_id}", responses={404: {"model": ErrorResponse}})
def get_answer(answer_id: str, library: LibraryDep) -> dict[str, Any]:
    """A stored answer (the ``answers`` row: the frames, usage, latency and options)."""
    row = library.answer(answer_id)
    return {**row, "options": json.loads(row.get("options") or "{}")}


@router.post("/v1/answers/{answer_id}/feedback", response_model=FeedbackResponse,
             responses={c: {"model": ErrorResponse} for c in (404, 422)})
def feedback(answer_id: str, req: FeedbackRequest, library: LibraryDep) -> dict[str, Any]:
    """Rate an answer ``good`` or ``bad``; ``framedex stats --by arm`` (and
    ``GET /v1/stats/arms``) compare the arms' share of good answers."""
    with body_fields(FeedbackRequest):
        row = library.feedback(answer_id, req.rating, req.comment)
    return {"answer_id": row["answer_id"], "rating": row["rating"], "comment": row["comment"]}


@router.get("/v1/stats/arms")
def arm_stats(library: LibraryDep) -> dict[str, Any]:
    """The rollout's arms compared: asks, cache hits, model and total latency (median, with
    its 95 % interval), tokens per model call (mean, bootstrap interval) and the share of good
    ratings (Wilson interval, and the difference to the reference arm)."""
    return library.arm_stats()
