"""Q-Frame: query-aware frame ranking with multi-resolution tiers (ICCV 2025).

What it optimises: which frames a VLM sees, and at what resolution. Frames are ranked by
sampling without replacement from ``p = softmax(rel / tau)`` (the Gumbel-top-k trick); the
first ``high`` ranks get the ``high`` tier, the next ``mid`` ranks ``mid`` and the next ``low``
ranks ``low``. Frames are emitted in time order with one tier per frame.

Official source read: github xiaomi-research/q-frame at commit
1b08494c1d91237d3bfdddaff561ff3fd77da2a6 (``lmms_eval/models/qwen2_vl_w_qframe.py``,
``TextImageMatching`` and ``generate_until``; ``experiments/*/qwen2vl/qframe.sh``). There,
``probs = softmax(text_feat @ image_feat.T / 0.8)`` on *unnormalised* Long-CLIP features, keys
``log(probs) - log(-log(rand + 1e-10) + 1e-10)``, ``argsort(-keys)``; ranks 0..high-1 are
resized to 1/2 of the frame side, the next ``mid`` to 1/4, the next ``low`` to 1/8
(scripts: high_frames=4, mid_frames=8, low_frames=32 of 128 candidate frames).

Deviations (all documented, none changes the algorithm's shape):
- ``tau`` defaults to 0.01 instead of 0.8: our relevance is the cosine of L2-normalised CLIP
  features, and CLIP's own softmax temperature is ``1/logit_scale = 1/100``. 0.8 on cosines in
  [-1, 1] would make ``p`` almost uniform (a random ranking).
- The Gumbel noise comes from a seeded ``numpy`` generator (``seed``, default 0), not the
  unseeded ``torch.rand``; the ``+1e-10`` guards are replaced by clipping U into (0, 1).
- Candidates are every cached frame (1 fps grid), not 128 uniformly decoded frames.
- An int budget K splits K in the ``high:mid:low`` proportions (official 4:8:32) with at least
  one ``high`` frame. A :class:`TokenBudget` picks the largest frame count whose split costs at
  most ``budget.tokens`` (see :func:`tier_split`, :func:`split_for_tokens`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from framedex.errors import check
from framedex.query.samplers.base import (
    Sampler,
    SelectContext,
    Selection,
    TokenBudget,
    register_sampler,
)
from framedex.rules import TIERS
from framedex.values import Array


def tier_split(total: int, high: int, mid: int, low: int) -> tuple[int, int, int]:
    """Split ``total`` frames into (high, mid, low) counts in the ``high:mid:low`` proportions.

    At least one ``high`` frame whenever ``total >= 1``; counts are non-decreasing in ``total``.

    Args:
        total: number of frames (>= 0).
        high, mid, low: the reference counts (official 4, 8, 32).

    Returns:
        (n_high, n_mid, n_low) summing to ``total``.
    """
    if total <= 0:
        return 0, 0, 0
    ref = high + mid + low
    n_high = min(total, max(1, int(np.floor(total * high / ref + 0.5))))
    n_mid = min(total - n_high, int(np.floor(total * mid / ref + 0.5)))
    return n_high, n_mid, total - n_high - n_mid


def split_cost(counts: tuple[int, int, int], budget: TokenBudget) -> int:
    """Tokens that ``counts`` = (n_high, n_mid, n_low) frames cost under ``budget``."""
    return sum(c * budget.cost(t) for c, t in zip(counts, TIERS, strict=True))


def split_for_tokens(
    budget: TokenBudget, n: int, high: int, mid: int, low: int
) -> tuple[int, int, int]:
    """The (high, mid, low) split of the most frames (<= ``n``) that fits in ``budget.tokens``.

    The split keeps the ``high:mid:low`` proportions (a few high frames, more low ones), so more
    tokens never give fewer frames or worse tiers. When not even one frame fits at ``high``,
    a single frame at the best tier that fits is returned (the budget always affords one frame
    at the cheapest tier; ``build_context`` checks that).

    Returns:
        (n_high, n_mid, n_low) with ``split_cost(...) <= budget.tokens`` and a sum >= 1.
    """
    cheapest = min(budget.cost(t) for t in TIERS)
    lo, hi = 0, max(0, min(n, budget.tokens // cheapest))
    while lo < hi:  # largest total whose split fits; the cost is monotone in the total
        mid_t = (lo + hi + 1) // 2
        if split_cost(tier_split(mid_t, high, mid, low), budget) <= budget.tokens:
            lo = mid_t
        else:
            hi = mid_t - 1
    if lo >= 1:
        return tier_split(lo, high, mid, low)
    for i, tier in enumerate(TIERS):
        if budget.cost(tier) <= budget.tokens:
            return tuple(1 if j == i else 0 for j in range(3))  # type: ignore[return-value]
    return 0, 0, 1  # unreachable after build_context's check; keeps >= 1 frame


def gumbel_rank(rel: Array, tau: float, seed: int) -> Array:
    """Rank frames by sampling without replacement from ``softmax(rel / tau)``.

    Gumbel-top-k: ``argsort(-(log p + G))`` with ``G = -log(-log U)`` is a draw of a ranking
    without replacement from ``p``. Computed in float64 from ``rel - max(rel)``, so extreme
    finite scores give ``-inf`` log-probabilities (never rank first) instead of NaN.

    Returns:
        All N positions, best first; ties go to the earlier position.
    """
    rng = np.random.default_rng(seed)
    u = np.clip(rng.random(len(rel)), 1e-300, 1.0 - 1e-16)
    with np.errstate(over="ignore", invalid="ignore"):
        z = (rel - rel.max()) / tau
        logp = z - np.log(np.exp(z).sum())
    keys = logp - np.log(-np.log(u))
    return np.argsort(-keys, kind="stable")


@register_sampler("qframe")
@dataclass
class QFrameSampler(Sampler):
    """Q-Frame: Gumbel-top-k ranking of ``softmax(rel / tau)`` with high/mid/low tiers.

    Args:
        tau: softmax temperature on the relevance (0.01 = CLIP's ``1/logit_scale`` for
            normalised cosines; official 0.8 is for unnormalised Long-CLIP logits).
        high, mid, low: reference tier counts (official 4/8/32); their proportions split an
            int budget and shape the token-budget split.
        seed: seed of the Gumbel noise.
    """

    tau: float = 0.01
    high: int = 4
    mid: int = 8
    low: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        check(float(self.tau) > 0 and np.isfinite(self.tau), "tau", self.tau, "must be > 0")
        for name in TIERS:
            v = getattr(self, name)
            check(isinstance(v, (int, np.integer)) and v >= 0, name, v, "must be an int >= 0")
        check(self.high >= 1, "high", self.high, "must be >= 1 (the top rank is high tier)")
        check(isinstance(self.seed, (int, np.integer)), "seed", self.seed, "must be an int")

    def _select(self, ctx: SelectContext) -> Selection:
        assert ctx.scores is not None
        if ctx.token_budget is None:
            counts = tier_split(ctx.k, self.high, self.mid, self.low)
        else:
            counts = split_for_tokens(ctx.token_budget, ctx.n, self.high, self.mid, self.low)
        ranking = gumbel_rank(ctx.scores, float(self.tau), int(self.seed))[: sum(counts)]
        tier_of_rank = ["high"] * counts[0] + ["mid"] * counts[1] + ["low"] * counts[2]
        order = np.argsort(ranking, kind="stable")  # time order
        indices = ranking[order].tolist()
        tiers = [tier_of_rank[r] for r in order]
        tokens = None
        if ctx.token_budget is not None:
            tokens = sum(ctx.token_budget.cost(t) for t in tiers)
        return Selection(
            indices, tiers=tiers, tokens_used=tokens,
            extras={"tier_counts": dict(zip(TIERS, counts, strict=True))},
        )
