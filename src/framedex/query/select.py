"""Select: one video + a question + a sampler + a budget -> the frames a video LLM should see.

The whole query runs on cached embeddings: one ``Store.read_frames`` (all of the video's frame
vectors and timestamps), one text encode, one sampler call. Nothing is decoded here; the chosen
``frame_idx`` values are what a caller decodes (``Library.frames``) if it wants pixels.

Example::

    result = select_frames(store, encoder.encode_text, "clip.mp4", "when does the dog jump?",
                           sampler="bolt", budget=8)
    result.timestamps   # [12.0, 13.0, ...] seconds, ascending
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from framedex.errors import check
from framedex.store.schema import VideoRecord

if TYPE_CHECKING:
    from framedex.query.samplers import Sampler

#: The sampler used when neither the request nor the configuration names one.
BUILTIN_DEFAULT_SAMPLER = "router"
#: Environment variable that switches the default sampler (a feature flag).
SAMPLER_ENV = "FRAMEDEX_SAMPLER"


def default_sampler(configured: str | None = None) -> str:
    """The sampler to use when a request names none: configured, else $FRAMEDEX_SAMPLER,
    else :data:`BUILTIN_DEFAULT_SAMPLER`."""
    return configured or os.environ.get(SAMPLER_ENV) or BUILTIN_DEFAULT_SAMPLER


@dataclass
class SelectResult:
    """The frames chosen for one (video, question) request.

    ``indices`` are positions in the video's index grid (ascending); ``timestamps`` their
    ``pts_sec``; ``frame_idx`` their native frame numbers; ``scores`` the cosine relevance of
    each chosen frame. ``tiers``/``tokens_used`` are set under a token budget (and by tiered
    samplers); ``decision``/``reason`` by routing samplers.
    """

    video_id: str
    path: str
    sampler: str
    budget: int
    tokens: int | None
    indices: list[int]
    timestamps: list[float]
    frame_idx: list[int]
    scores: list[float] | None
    tiers: list[str] | None = None
    tokens_used: int | None = None
    decision: str | None = None
    reason: str | None = None
    latency_ms: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)
    num_frames: int = 0
    extras: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field (times rounded to the microsecond)."""
        return {
            "video_id": self.video_id, "path": self.path, "sampler": self.sampler,
            "budget": self.budget, "tokens": self.tokens, "indices": self.indices,
            "timestamps": [round(t, 6) for t in self.timestamps], "frame_idx": self.frame_idx,
            "scores": None if self.scores is None else [round(s, 6) for s in self.scores],
            "tiers": self.tiers, "tokens_used": self.tokens_used, "decision": self.decision,
            "reason": self.reason, "latency_ms": round(self.latency_ms, 3),
            "params": self.params, "num_frames": self.num_frames,
            "extras": _jsonable(self.extras),
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def check_request(question: str, budget: int, tokens: int | None) -> None:
    """Validate the cheap inputs before any store read or model load.

    Raises:
        ConfigError: empty question, budget < 1 or not an int, tokens < 1.
    """
    check(isinstance(question, str) and question.strip() != "", "question", question,
          "must be non-empty text")
    check(isinstance(budget, (int, np.integer)) and not isinstance(budget, bool) and budget >= 1,
          "budget", budget, "must be an integer >= 1 (frames)")
    check(tokens is None or (isinstance(tokens, (int, np.integer)) and not isinstance(tokens, bool)
                             and tokens >= 1),
          "tokens", tokens, "must be an integer >= 1")


def select_frames(store: Any, encode_text: Callable[[list[str]], np.ndarray],
                  video: str | VideoRecord,
                  question: str, *, sampler: str | Sampler, budget: int = 8,
                  tokens: int | None = None,
                  params: dict[str, Any] | None = None) -> SelectResult:
    """Pick frames of one indexed video for a question.

    Args:
        store: a :class:`~framedex.store.Store`.
        encode_text: the store's encoder's ``encode_text`` (only called after validation).
        video: a video id, id prefix or indexed path (or its resolved VideoRecord).
        question: the question (non-empty).
        sampler: a registered sampler name (``list_samplers()``), or a sampler already built
            with ``params`` (``create_sampler`` passes it through).
        budget: frames to choose (K >= 1); unused when ``tokens`` is given.
        tokens: a token budget (``TokenBudget(tokens)``, Gemini per-tier costs by default).
        params: sampler parameters (``create_sampler(sampler, **params)``).

    Returns:
        The :class:`SelectResult` (``latency_ms`` covers read + encode + sampler).

    Raises:
        ConfigError: bad question, budget, tokens or sampler parameter.
        UnknownNameError: unknown sampler.
        VideoNotFoundError / EmptyLibraryError: no such indexed video.
    """
    from framedex.query.samplers import TokenBudget, create_sampler

    check_request(question, budget, tokens)
    params = dict(params or {})
    chosen = create_sampler(sampler, **params)
    t0 = time.perf_counter()
    record = video if isinstance(video, VideoRecord) else store.find_video(video)
    frames = store.read_frames(record.video_id)
    query = np.asarray(encode_text([question]), dtype=np.float32)[0]
    spend = TokenBudget(tokens=int(tokens)) if tokens is not None else int(budget)
    sel = chosen.select_result(frames.vectors, query, spend, frames.pts_sec)
    latency_ms = (time.perf_counter() - t0) * 1000.0
    idx = np.asarray(sel.indices, dtype=np.int64)
    return SelectResult(
        video_id=record.video_id, path=record.path, sampler=chosen.name, budget=int(budget),
        tokens=None if tokens is None else int(tokens),
        indices=[int(p) for p in frames.pos[idx]],
        timestamps=[float(t) for t in frames.pts_sec[idx]],
        frame_idx=[int(f) for f in frames.frame_idx[idx]],
        scores=None if sel.scores is None else [float(s) for s in sel.scores],
        tiers=sel.tiers, tokens_used=sel.tokens_used, decision=sel.decision, reason=sel.reason,
        latency_ms=latency_ms, params=params, num_frames=len(frames.pos), extras=sel.extras,
    )
