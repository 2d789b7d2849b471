"""Quality and cost of one selection against a question's truth spans.

A chosen frame *hits* a span ``[start, end)`` when its ``pts_sec`` lies inside it (the index
grid is 1 fps, so a 3 s needle offers three grid frames). A question's evidence is a list of
*groups* (each a list of spans); a group is hit when any chosen frame lies in any of its spans.

- ``hit``: at least one chosen frame is in some truth span (evidence found at all).
- ``coverage``: fraction of groups hit (multi-needle scenes, both events of an order question,
  the shapes/colours of a weak question).
- ``full``: every group hit (``coverage == 1``).
- ``precision``: fraction of chosen frames inside some truth span.

Cost: ``tokens`` is what the VLM would pay for the frames. For a frame-count budget every frame
costs Gemini's default-resolution tokens (``framedex.rules.GEMINI_FRAME_TOKENS``); for a
:class:`TokenBudget` it is the Selection's ``tokens_used``, else the sum of its tiers' costs,
else every frame at ``low``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from framedex.rules import GEMINI_FRAME_TOKENS

Span = tuple[float, float]


@dataclass(frozen=True)
class Score:
    """Metrics of one selection."""

    hit: bool
    coverage: float
    full: bool
    precision: float
    groups_hit: int
    groups: int


def in_spans(pts_sec: np.ndarray, spans: Sequence[Span]) -> np.ndarray:
    """Boolean mask: which of ``pts_sec`` lie in any ``[start, end)`` span."""
    t = np.asarray(pts_sec, dtype=np.float64).reshape(-1)
    mask = np.zeros(t.shape, dtype=bool)
    for a, b in spans:
        mask |= (t >= a) & (t < b)
    return mask


def score_selection(pts_sec: Sequence[float] | np.ndarray,
                    groups: Sequence[Sequence[Span]]) -> Score:
    """Score chosen frames (their timestamps) against evidence groups.

    Args:
        pts_sec: timestamps of the chosen frames, in seconds.
        groups: evidence groups, each a list of [start, end) spans.

    Returns:
        The :class:`Score`. A question with no groups scores coverage 1 and hit False.
    """
    t = np.asarray(pts_sec, dtype=np.float64).reshape(-1)
    hits = [bool(in_spans(t, g).any()) for g in groups]
    all_spans = [s for g in groups for s in g]
    inside = in_spans(t, all_spans)
    n_hit = sum(hits)
    coverage = n_hit / len(groups) if groups else 1.0
    return Score(hit=bool(inside.any()), coverage=float(coverage), full=n_hit == len(groups),
                 precision=float(inside.mean()) if len(t) else 0.0, groups_hit=n_hit,
                 groups=len(groups))


def selection_tokens(num_frames: int, budget: object, tokens_used: int | None,
                     tiers: Sequence[str] | None) -> int:
    """Token cost of a selection (see the module docstring for the rule)."""
    from framedex.library import TokenBudget

    if not isinstance(budget, TokenBudget):
        return int(num_frames) * GEMINI_FRAME_TOKENS
    if tokens_used is not None:
        return int(tokens_used)
    if tiers:
        return int(sum(budget.cost(t) for t in tiers))
    return int(num_frames) * budget.cost("low")


__all__ = ["Score", "in_spans", "score_selection", "selection_tokens"]
