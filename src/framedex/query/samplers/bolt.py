"""BOLT: inverse transform sampling over query relevance (Liu et al., CVPR 2025).

What it optimises: frames drawn in proportion to sharpened relevance ``x**power`` at the K
evenly spaced quantiles ``u = linspace(1/K, 1 - 1/K, K)`` of its CDF: dense where relevance is
high, never fully absent elsewhere.

Official source read (reimplemented, not copied): github.com/sming256/BOLT ``select_frames.py``
(function ``inverse_transform_sampling``) at commit 8a9ba455e8c7668ae4443b3273bbf283b700cc7f.
Kept exactly, in float64: ``x = s - min``; ``x /= max(x)``; ``x **= power`` unless power == -1;
``p = x / sum(x)``; ``cdf = cumsum(p)``; ``searchsorted(cdf, u, side="left")``. The official CLI
default is ``power=-1`` (no sharpening); the released scripts use 3 (Video-MME, MLVU) and 2.5
(LongVideoBench), so our default is 3.0.

Deviations from official:
- ``dedupe=True`` (default): the official multiset repeats frames where the CDF is steep (K=2
  always returns one frame twice). Each repeated occurrence, in ascending frame order, is
  replaced by the nearest unchosen frame (distance in frames); when the nearest free frames on
  the left and on the right are equally far, the one with the higher probability p wins, then
  the earlier one. ``dedupe=False`` keeps the official multiset (duplicates included): the one
  allowed exception to distinct indices.
- K >= N: ``dedupe=True`` returns all N frames once (the framework contract: exactly
  min(K, N) distinct). ``dedupe=False`` returns the official K draws, repeats included, as for
  K < N (official has no K >= N branch: it asserts ``len(frame_idxs) == num_frames``).
- Indices are clamped to N-1 (official K=1 can return N when ``cdf[-1]`` rounds below 1).
- Constant scores: official gives 0/0 = NaN and returns all zeros; ours returns uniform frames
  (in both modes; with ``dedupe=False`` and K > N, the K rounded ``linspace(0, N-1, K)``
  positions, repeats included).
- Extreme finite scores whose range overflows float64 are scaled by max|s| first
  (affine invariance).
- Official features: CLIP ViT-L/14 at exactly 1 fps with the question text; ours: the cached
  encoder on the cached grid (1 fps by default, which is BOLT's grid).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from framedex.errors import check
from framedex.query.samplers._common import minmax, uniform_indices
from framedex.query.samplers.base import Sampler, SelectContext, Selection, register_sampler
from framedex.values import Array


def inverse_transform_indices(x: Array, k: int, power: float) -> tuple[Array, Array]:
    """BOLT's quantile picks on min-max-normalised scores ``x``; returns (indices, p)."""
    if power != -1:
        x = x**power
    p = x / x.sum()
    cdf = np.cumsum(p)
    u = np.linspace(1.0 / k, 1.0 - 1.0 / k, k)
    idx = np.searchsorted(cdf, u, side="left")
    return np.minimum(idx, len(x) - 1), p


def dedupe_nearest(idx: Array, p: Array) -> Array:
    """Replace repeated entries of sorted ``idx`` by the nearest free frame (ties: higher p).

    Nearest-free lookups use two union-find "next free" pointers with path compression, so the
    cost stays near O(K) even when thousands of draws pile onto one frame.
    """
    n = len(p)
    uniq = np.unique(idx)
    dups = idx[1:][idx[1:] == idx[:-1]]
    if len(dups) == 0:
        return uniq
    right = list(range(n + 1))  # right[i]: candidate free frame >= i (n = none)
    left = list(range(n + 1))  # left[i + 1]: candidate free frame <= i (-1 = none), shifted by 1
    for t in uniq.tolist():
        right[t] = t + 1
        left[t + 1] = t

    def find(ptr: list[int], i: int) -> int:
        root = i
        while ptr[root] != root:
            root = ptr[root]
        while ptr[i] != root:  # path compression
            ptr[i], i = root, ptr[i]
        return root

    extra = []
    for v in dups.tolist():
        r = find(right, v)
        lft = find(left, v + 1) - 1
        if lft < 0 or (r < n and (r - v < v - lft or (r - v == v - lft and p[r] > p[lft]))):
            c = r
        else:
            c = lft
        extra.append(c)
        right[c] = c + 1
        left[c + 1] = c
    return np.sort(np.concatenate([uniq, np.asarray(extra, dtype=np.int64)]))


@register_sampler("bolt")
@dataclass
class BoltSampler(Sampler):
    """Inverse transform sampling.

    Args:
        power: sharpening exponent (> 0), or -1 for none (the official CLI default).
        dedupe: replace repeated frames by the nearest unchosen one (False: official multiset).
    """

    power: float = 3.0
    dedupe: bool = True

    def __post_init__(self) -> None:
        check(isinstance(self.power, (int, float)) and not isinstance(self.power, bool)
              and math.isfinite(self.power) and (self.power > 0 or self.power == -1),
              "power", self.power, "must be a finite number > 0, or -1 for no sharpening")
        check(isinstance(self.dedupe, bool), "dedupe", self.dedupe, "must be True or False")

    @property
    def draws_multiset(self) -> bool:
        """``dedupe=False`` returns the official K draws, even when K >= N."""
        return not self.dedupe

    def _select(self, ctx: SelectContext) -> Selection:
        assert ctx.scores is not None
        # The official multiset draws the requested K quantiles whatever N is.
        k = ctx.k if self.dedupe else ctx.requested_k
        x = minmax(ctx.scores)
        if x is None:
            if k > ctx.n:  # dedupe=False only: uniform positions, repeats included
                uniform = np.floor(np.linspace(0.0, ctx.n - 1.0, k) + 0.5).astype(np.int64)
            else:
                uniform = uniform_indices(ctx.n, k)
            return Selection(uniform.tolist(), extras={"constant_scores": True})
        idx, p = inverse_transform_indices(x, k, float(self.power))
        # without dedupe, idx is already non-decreasing: cdf and u both are
        out = dedupe_nearest(idx, p) if self.dedupe else idx
        return Selection(out.tolist(), extras={"distinct_draws": len(np.unique(idx))})
