"""Select: one video's cached frames + a query vector + a sampler + a budget -> the frames a
video LLM should see.

A pure worker: :class:`~framedex.library.Library` validates the request, reads the frames
(through its cache) and encodes the question once; :func:`select_frames` computes the relevance
curve once, runs the sampler once, and returns a :class:`SelectResult` that carries everything
later steps need (the curve for the plot, the tiers for delivery, the video record for
decoding), so nothing is read or encoded a second time.

Example::

    result = select_frames(frames, record, query_vec, create_sampler("bolt"), 8,
                           question="when does the dog jump?")
    result.timestamps   # [12.0, 13.0, ...] seconds, ascending
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from framedex.errors import ConfigError
from framedex.query.samplers import Budget, Sampler, TokenBudget
from framedex.store.base import FrameArrays
from framedex.store.schema import VideoRecord
from framedex.values import Array, Json, JsonObject


@dataclass(frozen=True)
class RelevanceCurve:
    """Cosine relevance of every indexed frame of a video to the question, in time order."""

    pts_sec: Array  # (N,) float64
    scores: Array  # (N,) float64

    def to_json(self) -> dict[str, list[float]]:
        """``{"pts_sec": [...], "scores": [...]}`` (rounded)."""
        return {"pts_sec": [round(float(t), 3) for t in self.pts_sec],
                "scores": [round(float(s), 5) for s in self.scores]}

    def best_moment(self) -> tuple[float, float] | None:
        """``(start, end)`` seconds of the query's best moment: the run of frames around the
        peak that score at least halfway between the median frame and the peak (the same
        relative rule library search uses to tell a matching scene from its surroundings);
        ``end`` is the last such frame plus one grid step. None for an empty curve."""
        n = len(self.scores)
        if n == 0:
            return None
        peak = int(np.argmax(self.scores))
        med = float(np.median(self.scores))
        strong = self.scores >= med + 0.5 * (float(self.scores[peak]) - med)
        first = last = peak
        while first > 0 and strong[first - 1]:
            first -= 1
        while last < n - 1 and strong[last + 1]:
            last += 1
        step = float(np.median(np.diff(self.pts_sec))) if n > 1 else 1.0
        return float(self.pts_sec[first]), float(self.pts_sec[last]) + step


@dataclass
class SelectResult:
    """The frames chosen for one (video, question) request.

    ``indices`` are positions in the video's index grid (ascending); ``timestamps`` their
    ``pts_sec``; ``frame_idx`` their native frame numbers; ``scores`` the cosine relevance of
    each chosen frame. ``tiers``/``tokens_used`` are set under a token budget (and by tiered
    samplers); ``decision``/``reason`` by routing samplers. ``budget`` is the frame count asked
    for, or None when the request gave ``tokens`` instead. ``curve`` and ``record`` are for the
    delivery step and are not part of :meth:`to_json`.
    """

    video_id: str
    path: str
    question: str
    sampler: str
    budget: int | None
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
    params: JsonObject = field(default_factory=dict)
    num_frames: int = 0
    extras: dict[str, object] = field(default_factory=dict)
    #: The rollout arm that chose the sampler (None: the request named it, or no rollout).
    arm: str | None = None
    #: What the caller should know about the selection (e.g. a budget that takes every frame).
    notes: list[str] = field(default_factory=list)
    curve: RelevanceCurve | None = field(default=None, repr=False)
    record: VideoRecord | None = field(default=None, repr=False)

    def to_json(self) -> JsonObject:
        """A JSON-serialisable dict of the selection (times rounded to the microsecond)."""
        return {
            "video_id": self.video_id, "path": self.path, "question": self.question,
            "sampler": self.sampler, "budget": self.budget, "tokens": self.tokens,
            "indices": self.indices, "timestamps": [round(t, 6) for t in self.timestamps],
            "frame_idx": self.frame_idx,
            "scores": None if self.scores is None else [round(s, 6) for s in self.scores],
            "tiers": self.tiers, "tokens_used": self.tokens_used, "decision": self.decision,
            "reason": self.reason, "latency_ms": round(self.latency_ms, 3),
            "params": self.params, "num_frames": self.num_frames,
            "extras": _jsonable(self.extras), "arm": self.arm, "notes": self.notes,
        }


def _jsonable(value: object) -> Json:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def frames_in_span(frames: FrameArrays, record: VideoRecord, start: float | None,
                   end: float | None) -> FrameArrays:
    """The indexed frames with ``start <= pts_sec < end``.

    Raises:
        ConfigError: no indexed frame lies in the span.
    """
    lo = -np.inf if start is None else float(start)
    hi = np.inf if end is None else float(end)
    keep = (frames.pts_sec >= lo) & (frames.pts_sec < hi)
    if not keep.any():
        raise ConfigError(f"start={start!r}, end={end!r} is invalid: no indexed frame of video "
                          f"{record.video_id} lies in that span (it is {record.duration:.1f} s "
                          f"long, indexed at {record.index_fps:g} fps)")
    return FrameArrays(frames.video_id, frames.pos[keep], frames.frame_idx[keep],
                       frames.pts_sec[keep], frames.vectors[keep])


def relevance(frames: FrameArrays, query: Array) -> Array:
    """Cosine of every frame with ``query``: the product in the storage precision (float32,
    ~1 ms for an hour at 1 fps), then float64 for every normalisation and CDF after it."""
    vectors = frames.vectors
    return np.asarray(vectors @ np.asarray(query, dtype=vectors.dtype), dtype=np.float64)


def select_frames(frames: FrameArrays, record: VideoRecord, query: Array,
                  sampler: Sampler, spend: Budget, *, question: str,
                  params: JsonObject | None = None,
                  started: float | None = None) -> SelectResult:
    """Run one sampler on one video's cached frames (inputs already validated).

    Args:
        frames: the video's frames, in time order.
        record: the video's record.
        query: (D,) L2-normalised query embedding.
        sampler: the sampler, built with its parameters.
        spend: a frame count K or a :class:`TokenBudget`.
        question: the question (kept for the payload and the plot).
        params: the parameters the sampler was built with (echoed in the result and the log).
        started: ``time.perf_counter()`` when the request started (for ``latency_ms``).

    Returns:
        The :class:`SelectResult`, with the relevance curve.
    """
    t0 = time.perf_counter() if started is None else started
    scores = relevance(frames, query)
    sel = sampler.select_result(frames.vectors, None, spend, frames.pts_sec, scores=scores)
    idx = np.asarray(sel.indices, dtype=np.int64)
    tokens = spend.tokens if isinstance(spend, TokenBudget) else None
    return SelectResult(
        notes=_budget_notes(spend, len(frames.pos), len(idx), record),
        video_id=record.video_id, path=record.path, question=question, sampler=sampler.name,
        budget=None if tokens is not None else int(spend),  # type: ignore[arg-type]
        tokens=tokens,
        indices=[int(p) for p in frames.pos[idx]],
        timestamps=[float(t) for t in frames.pts_sec[idx]],
        frame_idx=[int(f) for f in frames.frame_idx[idx]],
        scores=None if sel.scores is None else [float(s) for s in sel.scores],
        tiers=sel.tiers, tokens_used=sel.tokens_used, decision=sel.decision, reason=sel.reason,
        latency_ms=(time.perf_counter() - t0) * 1000.0, params=dict(params or {}),
        num_frames=len(frames.pos), extras=sel.extras,
        curve=RelevanceCurve(frames.pts_sec, scores), record=record,
    )


def _budget_notes(spend: Budget, available: int, chosen: int, record: VideoRecord) -> list[str]:
    """A note when the budget leaves nothing to choose: K at or above the frames indexed (the
    sampler returns them all), or a token budget that bought every frame."""
    more = (f"index it at a higher fps for more to choose from (it is indexed at "
            f"{record.index_fps:g} fps)")
    if not isinstance(spend, TokenBudget) and int(spend) >= available:
        return [f"budget {int(spend)} >= the {available} frames indexed of video "
                f"{record.video_id}: all {available} frames are returned, none was selected; "
                f"{more}"]
    if isinstance(spend, TokenBudget) and chosen >= available:
        return [f"tokens {spend.tokens} buy every one of the {available} frames indexed of "
                f"video {record.video_id}: all are returned, none was selected; {more}"]
    return []
