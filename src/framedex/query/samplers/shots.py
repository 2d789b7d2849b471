"""Shot coverage: one frame per detected shot, then fill (query-free by design).

What it optimises: coverage of distinct shots. Shot boundaries come from the embeddings
(:mod:`framedex.query.samplers.scenes`): a cut sits between frames t and t+1 when their
cosine drops, i.e. when ``d_t = 1 - cos(t, t+1)`` exceeds ``threshold`` (a fixed cosine drop)
or, by default, an adaptive robust threshold ``median(d) + z * 1.4826 * MAD(d)`` that is at
least ``min_drop``.

Per shot it takes the most relevant frame when relevance is available (a query or scores was
given; ties to the earlier frame), else the middle frame. More shots than K: the K-1 strongest
cuts are kept (K shots). Fewer shots than K: the rest is filled by relevance when available,
else spread evenly over the unchosen frames. Ours; no official code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from framedex.errors import check
from framedex.query.samplers._common import fill_evenly, top_indices
from framedex.query.samplers.base import Sampler, SelectContext, Selection, register_sampler
from framedex.query.samplers.scenes import DEFAULT_MIN_DROP, DEFAULT_Z, scene_cuts
from framedex.values import Array


@register_sampler("shots")
@dataclass
class ShotsSampler(Sampler):
    """One frame per embedding-detected shot, then fill.

    Args:
        threshold: fixed cosine drop ``1 - cos`` that makes a cut (0 < t <= 2), or None for the
            adaptive threshold.
        z: robust z-score of the adaptive threshold (> 0).
        min_drop: smallest drop the adaptive threshold accepts as a cut (>= 0).
    """

    threshold: float | None = None
    z: float = DEFAULT_Z
    min_drop: float = DEFAULT_MIN_DROP
    query_aware = False
    needs_embeddings = True

    def __post_init__(self) -> None:
        if self.threshold is not None:
            check(_num(self.threshold) and 0 < self.threshold <= 2, "threshold",
                  self.threshold, "must be a number in (0, 2] (a drop of 1 - cosine) or None")
        check(_num(self.z) and self.z > 0, "z", self.z, "must be a number > 0")
        check(_num(self.min_drop) and self.min_drop >= 0, "min_drop", self.min_drop,
              "must be a number >= 0")

    def cuts(self, emb: Array, k: int) -> Array:
        """Cut positions c (a shot starts at frame c), ascending, at most k-1 of them."""
        return scene_cuts(emb, k, threshold=self.threshold, z=self.z, min_drop=self.min_drop)

    def _select(self, ctx: SelectContext) -> Selection:
        assert ctx.embeddings is not None
        starts = np.concatenate([[0], self.cuts(ctx.embeddings, ctx.k)])
        ends = np.concatenate([starts[1:], [ctx.n]])
        if ctx.scores is None:
            picks = (starts + ends - 1) // 2
        else:
            # most relevant frame per shot: maximum of each segment, earliest on ties
            s = ctx.scores
            seg_max = np.maximum.reduceat(s, starts)
            shot_of = np.repeat(np.arange(len(starts)), ends - starts)
            hit = np.flatnonzero(s == seg_max[shot_of])
            picks = hit[np.unique(shot_of[hit], return_index=True)[1]]
        chosen = np.zeros(ctx.n, dtype=bool)
        chosen[picks] = True
        rest = ctx.k - len(picks)
        if rest > 0:
            if ctx.scores is None:
                extra = fill_evenly(chosen, rest)
            else:
                masked = np.where(chosen, -np.inf, ctx.scores)
                extra = top_indices(masked, rest)
            picks = np.concatenate([picks, extra])
        return Selection(np.sort(picks).tolist(), extras={"shots": len(starts)})


def _num(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and bool(np.isfinite(x))
