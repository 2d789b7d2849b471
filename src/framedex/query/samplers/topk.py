"""Top-k relevance: the K frames with the highest query relevance, returned in time order.

What it optimises: the sum of relevance of the chosen frames (no diversity). Ties go to the
earlier frame. Also hosts :func:`top_indices`, reused by AKS (leaf picks, fill) and shots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from framedex.query.samplers.base import Sampler, SelectContext, Selection, register_sampler


def top_indices(values: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest values, ties to the earlier position, best first.

    Equivalent to ``np.argsort(-values, kind="stable")[:k]`` (and to ``heapq.nlargest`` over
    positions keyed by value) but O(N) for the partition step.

    Args:
        values: (N,) finite numbers.
        k: how many (clipped to N).

    Returns:
        int64 positions ordered by decreasing value, then increasing position.
    """
    n = len(values)
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k < n:
        kth = np.partition(values, n - k)[n - k]  # the k-th largest value
        above = np.flatnonzero(values > kth)
        ties = np.flatnonzero(values == kth)[: k - len(above)]
        cand = np.concatenate([above, ties])
    else:
        cand = np.arange(n)
    # lexsort: last key is primary -> value descending, then position ascending.
    return cand[np.lexsort((cand, -values[cand]))]


@register_sampler("topk")
@dataclass
class TopKSampler(Sampler):
    """The K most query-relevant frames, sorted by time."""

    def _select(self, ctx: SelectContext) -> Selection:
        assert ctx.scores is not None
        return Selection(np.sort(top_indices(ctx.scores, ctx.k)).tolist())
