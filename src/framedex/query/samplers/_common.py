"""Helpers shared by several samplers: normalisation, top-k, even spacing, tiers, peakedness.

One definition each (there were two ``minmax`` with different overflow handling); the sampler
modules import from here, never from each other.
"""

from __future__ import annotations

import math

import numpy as np

from framedex.query.samplers.base import SelectContext
from framedex.values import Array

#: Gaussian consistency constant: 1.4826 * MAD estimates the standard deviation.
_MAD_TO_SIGMA = 1.4826


def minmax(scores: Array) -> Array | None:
    """``(s - min) / (max - min)`` in float64; None for constant scores.

    A range that overflows float64 is handled by scaling by max|s| first (affine invariance).
    """
    s = np.asarray(scores, dtype=np.float64)
    lo, hi = float(s.min()), float(s.max())
    if hi == lo:
        return None
    if not math.isfinite(hi - lo):
        s = s / max(abs(lo), abs(hi))
        lo, hi = float(s.min()), float(s.max())
    return (s - lo) / (hi - lo)


def top_indices(values: Array, k: int) -> Array:
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


def uniform_indices(n: int, k: int) -> Array:
    """``linspace(0, n-1, k)`` rounded half up; distinct and ascending for 1 <= k <= n.

    Args:
        n: number of frames.
        k: number of picks (clipped to n).

    Returns:
        int64 array of min(k, n) ascending positions.
    """
    k = min(k, n)
    if k == 1:
        return np.zeros(1, dtype=np.int64)
    # floor(x + 0.5) is monotone and a step >= 1 keeps neighbours apart (np.round is not:
    # banker's rounding maps 0.5 and 1.5 to 0 and 2, fine, but 2.5 and 3.5 to 2 and 4).
    return np.floor(np.linspace(0.0, n - 1.0, k) + 0.5).astype(np.int64)


def fill_evenly(chosen: Array, r: int) -> Array:
    """Pick ``r`` more positions spread evenly over the positions not in ``chosen``.

    Args:
        chosen: boolean mask (N,) of positions already taken.
        r: how many to add (clipped to the number of free positions).

    Returns:
        the added positions (int64, ascending).
    """
    free = np.flatnonzero(~chosen)
    r = min(r, len(free))
    if r <= 0:
        return np.zeros(0, dtype=np.int64)
    return free[uniform_indices(len(free), r)]


def uniform_tier_fields(ctx: SelectContext, count: int, tier: str) -> tuple[list[str], int | None]:
    """Tiers and tokens used when every one of ``count`` frames is at ``tier``."""
    tokens = None if ctx.token_budget is None else count * ctx.token_budget.cost(tier)
    return [tier] * count, tokens


def peakedness(scores: Array) -> float:
    """Robust, N-normalised peak statistic of a relevance curve (the router's flat/peaked
    statistic; its module docstring derives it).

    Args:
        scores: (N,) finite relevance scores.

    Returns:
        rho >= 0; ~0.8-0.95 for noise, > 1 when some frames clearly stand out, 0 if constant,
        +inf for a lone spike on an otherwise constant floor.
    """
    s = np.asarray(scores, dtype=np.float64)
    med = float(np.median(s))
    with np.errstate(over="ignore", invalid="ignore"):
        top = float(s.max()) - med
        mad = float(np.median(np.abs(s - med)))
    if not top > 0:  # constant (or NaN-free degenerate) curve
        return 0.0
    if not mad > 0 or not math.isfinite(top):
        return math.inf
    z = top / (_MAD_TO_SIGMA * mad)
    return z / math.sqrt(2.0 * math.log(_effective_n(s)))


def _effective_n(s: Array) -> float:
    """Effective number of independent scores, N (1 - r1) / (1 + r1), at least 3.

    The extreme-value scale sqrt(2 ln N) assumes N independent scores. Cached relevance is
    scene-structured (neighbouring frames nearly equal), so it holds about one independent value
    per scene; normalising by the raw N made real needles look flat. White noise has r1 ~ 0, so
    its statistic (and the flat-curve -> coverage rule) is unchanged.
    """
    n = len(s)
    if n < 3:
        return 3.0
    scale = float(np.max(np.abs(s)))
    x = s / scale if 0 < scale < math.inf else s  # r1 is scale-free; this avoids overflow
    d = x - x.mean()
    denom = float(d @ d)
    r1 = float(d[:-1] @ d[1:]) / denom if denom > 0 else 0.0
    r1 = min(max(r1, 0.0), 0.999) if math.isfinite(r1) else 0.0
    return max(3.0, n * (1.0 - r1) / (1.0 + r1))


def minmax_or_zeros(scores: Array) -> Array:
    """:func:`minmax`, with zeros for constant scores (for samplers that add it to a term)."""
    x = minmax(scores)
    return np.zeros(np.shape(scores), dtype=np.float64) if x is None else x
