"""MMR: Maximal Marginal Relevance (Carbonell & Goldstein, 1998), standard greedy form (ours).

What it optimises, greedily: ``argmax_i theta * rel(i) - (1 - theta) * max_{j in S} cos(i, j)``
over the unchosen frames, K times. ``rel`` is the min-max-normalised cosine (so that both terms
live on comparable scales: raw CLIP cosines span ~0.1, frame-to-frame cosines ~0.5); the first
pick is ``argmax rel``; ties go to the earlier frame; constant relevance means pure diversity.

No official code (standard algorithm). The result equals the plain greedy loop exactly; it is
only computed lazily: the max-similarity vector ``m`` only grows as S grows, so a stale ``m``
gives an upper bound on every frame's score. Each step refreshes the few frames with the best
bounds (one small matrix product against S) and accepts the best refreshed frame once it beats
every remaining bound, instead of one (N, D) matvec per pick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from framedex.errors import check
from framedex.query.samplers._common import minmax, top_indices
from framedex.query.samplers.base import Sampler, SelectContext, Selection, register_sampler
from framedex.values import Array


def mmr_greedy(emb: Array, rel: Array, k: int, theta: float,
               block: int = 16) -> list[int]:
    """Greedy MMR with lazy (upper-bound) refreshes; exact w.r.t. the eager greedy loop.

    Args:
        emb: (N, D) L2-normalised embeddings.
        rel: (N,) relevance in float64.
        k: number of picks (<= N).
        theta: relevance weight in [0, 1].
        block: how many best-bound frames to refresh first.

    Returns:
        the picks in pick order.
    """
    n = len(rel)
    first = int(top_indices(rel, 1)[0])
    picks = [first]
    # exact for S = {first}: one full matvec; afterwards m is a (stale) lower bound of the
    # true max-similarity, so ub = theta * rel - (1 - theta) * m bounds every score from above
    m = np.asarray(emb @ emb[first], dtype=np.float64)
    ub = theta * rel - (1.0 - theta) * m
    ub[first] = -np.inf
    pool, outside = _pool(ub, min(n, 4 * k + 64))
    for _ in range(1, k):
        sel = emb[picks]
        b = block
        while True:
            sub = ub[pool]
            live = int(np.count_nonzero(sub > -np.inf))
            bb = min(b, live)
            if bb < len(sub):  # the bb best bounds of the pool; the best one left out at [bb]
                part = np.argpartition(-sub, bb)
                cand, rest = pool[part[:bb]], max(float(sub[part[bb]]), outside)
            else:
                cand, rest = pool, outside
            cand = cand[ub[cand] > -np.inf]
            m[cand] = np.max(np.asarray(emb[cand] @ sel.T, dtype=np.float64), axis=1)
            exact = theta * rel[cand] - (1.0 - theta) * m[cand]
            ub[cand] = exact
            order = np.lexsort((cand, -exact))  # best score, then the earlier frame
            best, best_score = int(cand[order[0]]), float(exact[order[0]])
            # exact once it beats every bound not refreshed (a tie: look wider)
            if best_score > rest or (bb >= live and outside == -np.inf):
                break
            if bb < live:
                b *= 4
            else:  # the pool is spent: rebuild a 4x larger one from the current bounds
                pool, outside = _pool(ub, min(n, 4 * len(pool)))
        picks.append(best)
        ub[best] = -np.inf
    return picks


def _pool(ub: Array, size: int) -> tuple[Array, float]:
    """The ``size`` best bounds (positions) and the best bound left outside (-inf if none)."""
    if size >= len(ub):
        return np.arange(len(ub)), -np.inf
    part = np.argpartition(-ub, size)
    return part[:size], float(ub[part[size]])


@register_sampler("mmr")
@dataclass
class MmrSampler(Sampler):
    """Maximal Marginal Relevance over relevance and frame-to-frame cosine.

    Args:
        theta: weight of relevance vs. redundancy, in [0, 1] (1 = top-k, 0 = pure diversity).
            0.5 is our choice (the common MMR middle ground), not tuned.
    """

    theta: float = 0.5
    needs_embeddings = True

    def __post_init__(self) -> None:
        check(isinstance(self.theta, (int, float)) and not isinstance(self.theta, bool)
              and math.isfinite(self.theta) and 0.0 <= self.theta <= 1.0,
              "theta", self.theta, "must be a number in [0, 1]")

    def _select(self, ctx: SelectContext) -> Selection:
        assert ctx.scores is not None and ctx.embeddings is not None
        rel = minmax(ctx.scores)
        if rel is None:
            rel = np.zeros(ctx.n)
        picks = mmr_greedy(ctx.embeddings, rel, ctx.k, float(self.theta))
        return Selection(sorted(picks), extras={"pick_order": picks})
