"""Uniform sampling: K frames evenly spaced over the video (query-free baseline).

What it optimises: temporal coverage only. Positions are ``linspace(0, N-1, K)`` rounded half
up, the LLaVA-OneVision convention (LLaVA-OV truncates with ``dtype=int``; rounding centres the
picks, and both are distinct whenever K <= N because the step is >= 1).

Also hosts two small helpers the other built-in samplers reuse: :func:`uniform_indices` and
:func:`fill_evenly` (spread extra picks over the frames not yet chosen).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from framedex.query.samplers.base import Sampler, SelectContext, Selection, register_sampler


def uniform_indices(n: int, k: int) -> np.ndarray:
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


def fill_evenly(chosen: np.ndarray, r: int) -> np.ndarray:
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


@register_sampler("uniform")
@dataclass
class UniformSampler(Sampler):
    """K evenly spaced frames; ignores the query."""

    query_aware = False

    def _select(self, ctx: SelectContext) -> Selection:
        return Selection(uniform_indices(ctx.n, ctx.k).tolist())
