"""AKS: Adaptive Keyframe Sampling (Tang et al., CVPR 2025), judge-and-split.

What it optimises: relevance and coverage together. The video is split breadth-first into
halves; a segment whose top-K relevance stands far above its mean (``mean_diff > t1`` and
``std > t2``) stops splitting and takes its best frames ("TOP" mode); otherwise it splits down to
``all_depth``. A leaf at depth d takes its top ``int(K / 2**d)`` frames.

Official source read (reimplemented, not copied): github.com/ncTimTang/AKS ``frame_select.py``
at commit 46675011a0ad67ad65559ac98235f2ce82102a2e (functions ``meanstd`` and ``main``).
Semantics kept exactly: min-max normalisation over the whole video; the top count is K at every
depth (not K/2^d); a segment of <= K frames has mean_diff 0; split ``[:len//2]``/``[len//2:]``;
leaf quota ``int(K / 2**depth)``; ties to the earlier frame (``heapq.nlargest`` is stable).

Deviations from official (all in the default; ``official=True`` turns them off):
- Depth is capped at ``min(all_depth, floor(log2 K))`` so every leaf quota is >= 1, AND any
  frames still missing are filled by relevance (highest normalised score among the unchosen,
  earlier on ties). Official returns fewer than K when K is not a multiple of 2**all_depth
  (K=48 -> 32, K=8 -> 0). For K in {32, 64} with all_depth=5 and N >= K, the cap is 5 and the
  leaves already give exactly K, so the output equals the official one.
- Constant scores: official divides 0/0 (NaN) and ends with the first frames of each depth-5
  bin; ours returns uniform frames. ``official=True`` reproduces the NaN outcome.
- Extreme finite scores whose range overflows float64 are first scaled by max|s| (AKS is
  invariant to positive affine transforms, so this changes nothing else).
- The official scorer is BLIP ITM probability; ours is the cached cosine (affine-invariant).
- ``t1``/``t2`` are parsed with ``type=int`` in the official argparse but only ever used as
  defaults (0.8, -100); we take floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from framedex.errors import check
from framedex.query.samplers._common import minmax, top_indices, uniform_indices
from framedex.query.samplers.base import Sampler, SelectContext, Selection, register_sampler
from framedex.values import Array


def aks_leaves(x: Array, k: int, t1: float, t2: float,
               max_depth: int) -> list[tuple[int, int, int]]:
    """Judge-and-split breadth-first; returns leaves as (start, end, depth)."""
    leaves: list[tuple[int, int, int]] = []
    level = [(0, len(x), 0)]
    while level:
        nxt: list[tuple[int, int, int]] = []
        for start, end, depth in level:
            seg = x[start:end]
            size = end - start
            if size == 0:
                continue  # official: NaN mean, no frames either way
            if size > k:
                mean_diff = float(np.partition(seg, size - k)[size - k:].mean() - seg.mean())
            else:
                mean_diff = 0.0  # the top-K of a short segment is the whole segment
            if mean_diff > t1 and float(seg.std()) > t2:
                leaves.append((start, end, depth))  # "TOP" mode
            elif depth < max_depth:
                mid = start + size // 2
                nxt += [(start, mid, depth + 1), (mid, end, depth + 1)]
            else:
                leaves.append((start, end, depth))
        level = nxt
    return leaves


def _leaf_picks(x: Array, k: int, leaves: list[tuple[int, int, int]]) -> Array:
    picks = [start + top_indices(x[start:end], int(k / 2**depth)) for start, end, depth in leaves]
    return np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)


@register_sampler("aks")
@dataclass
class AksSampler(Sampler):
    """Adaptive Keyframe Sampling.

    Args:
        t1: threshold on mean(top-K) - mean of a segment for "TOP" mode (official 0.8).
        t2: threshold on the segment's std (official -100, i.e. off).
        all_depth: deepest split level (official 5), >= 0.
        official: reproduce the official output count too (may return fewer than K frames,
            even 0; constant scores give the first frames of each bin).
    """

    t1: float = 0.8
    t2: float = -100.0
    all_depth: int = 5
    official: bool = False

    def __post_init__(self) -> None:
        for name in ("t1", "t2"):
            v = getattr(self, name)
            check(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
                  name, v, "must be a finite number")
        check(isinstance(self.all_depth, int) and not isinstance(self.all_depth, bool)
              and 0 <= self.all_depth <= 30, "all_depth", self.all_depth,
              "must be an integer in [0, 30]")
        check(isinstance(self.official, bool), "official", self.official, "must be True or False")

    def _select(self, ctx: SelectContext) -> Selection:
        assert ctx.scores is not None
        k = ctx.k
        x = minmax(ctx.scores)
        if x is None:
            if self.official:
                # 0/0 -> NaN: nothing is TOP, everything splits to all_depth, and each leaf's
                # heapq.nlargest over NaN keys yields its first int(K / 2**depth) frames.
                leaves = aks_leaves(np.zeros(ctx.n), k, math.inf, self.t2, self.all_depth)
                idx = _leaf_picks(-np.arange(ctx.n, dtype=np.float64), k, leaves)
                return Selection(np.sort(idx).tolist(), extras={"constant_scores": True})
            return Selection(uniform_indices(ctx.n, k).tolist(), extras={"constant_scores": True})
        depth = self.all_depth if self.official else min(self.all_depth, k.bit_length() - 1)
        leaves = aks_leaves(x, k, float(self.t1), float(self.t2), depth)
        idx = _leaf_picks(x, k, leaves)
        filled = 0
        if not self.official and len(idx) < k:
            masked = x.copy()
            masked[idx] = -np.inf
            extra = top_indices(masked, k - len(idx))
            filled = len(extra)
            idx = np.concatenate([idx, extra])
        return Selection(np.sort(idx).tolist(),
                         extras={"leaves": len(leaves), "depth": depth, "filled": filled})
