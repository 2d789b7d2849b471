"""FOCUS: Frame-Optimistic Confidence Upper-bound Selection, on a dense score cache.

What it optimises: finding the relevant time regions with few score evaluations, by treating
~16 s regions ("arms") as bandit arms. Coarse stage: score each arm's centre frame plus 2 random
frames. Each arm gets the optimistic bound ``U = mean + sqrt(2 ln N_tot var / n) + 3 ln N_tot / n``
(``N_tot``: scores seen over all arms, ``n``: in this arm, ``var`` floored at 1e-6). Fine
stage: the top 25% arms by U (at least 4) are scored densely and U is recomputed. Selection:
``round(0.2 * K)`` global top frames among the scored ones, the rest split evenly over the top
``clip(ceil(0.25 * arms), 4, 32)`` arms by U; within an arm, frames are drawn without
replacement from ``softmax(minmax(score) / 0.06)`` under a minimum time gap.

Official source read: github NUS-HPC-AI-Lab/FOCUS at commit
e28a555a8d84fe2d82b8de3e23bbcb787822e833 (``focus.py``, class ``FOCUS``; ``select_keyframe.py``
for the driver defaults: seed 42, adaptive min gap ``min(1.0, 0.25 * duration / K)`` seconds,
disabled when ``duration / K <= 0.2`` s).

Deviations (with a dense cache, "scoring" a frame is a lookup):
- Arms are built on ``ctx.timestamps`` (equal time spans, at least ``min_arms`` and at most
  N), and the last arm runs to the end of the video; the official ``total // num_regions``
  partition silently drops the tail frames.
- The fine stage scores every cached frame of a promoted arm, not a half-uniform,
  half-random 1 fps subset of a window around the arm centre.
- Within-arm sampling uses the cached score of every frame of the arm, not the official
  nearest-neighbour interpolation of the sampled scores; it draws with a Gumbel-top-k walk that
  enforces the gap among frames of the same draw too (the official single ``rng.choice`` call
  only checks the gap against earlier arms).
- Scores are min-max normalised over the video first (official BLIP ITM probabilities lie in
  [0, 1], and the UCB bonus terms assume that scale).
- Exactly min(K, N) frames: if the arms cannot supply enough (small arms, the gap), the
  remainder is filled by relevance. Randomness comes from ``seed`` (default 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from framedex.errors import check
from framedex.query.samplers._common import minmax_or_zeros, top_indices, uniform_tier_fields
from framedex.query.samplers.base import Sampler, SelectContext, Selection, register_sampler
from framedex.values import Array


def make_arms(ts: Array, arm_sec: float, min_arms: int) -> Array:
    """Arm boundaries: (A + 1,) positions; arm a is frames ``[b[a], b[a + 1])``, none empty."""
    n = len(ts)
    span = float(ts[-1] - ts[0]) if n > 1 else 0.0
    count = min(n, max(min_arms, math.ceil(span / arm_sec) if span > 0 else 1))
    edges = ts[0] + span * np.arange(1, count) / count
    cuts = np.searchsorted(ts, edges, side="left")
    return np.unique(np.concatenate([[0], cuts, [n]]))


def coarse_samples(bounds: Array, extra: int, rng: np.random.Generator) -> Array:
    """Centre + up to ``extra`` distinct random other frames of every arm (vectorised)."""
    start, length = bounds[:-1], np.diff(bounds)
    centre_off = (length - 1) // 2
    picks = [start + centre_off]
    taken = np.zeros((len(start), 0), dtype=np.int64)
    for _ in range(extra):  # draw distinct offsets among the non-centre frames
        room = length - 1 - taken.shape[1]
        r = np.floor(rng.random(len(start)) * np.maximum(room, 1)).astype(np.int64)
        for col in np.sort(taken, axis=1).T:  # shift past earlier draws (classic trick)
            r = r + (r >= col)
        taken = np.concatenate([taken, r[:, None]], axis=1)
        off = r + (r >= centre_off)
        picks.append(np.where(room > 0, start + off, -1))
    out = np.concatenate(picks)
    return np.unique(out[out >= 0])


def ucb(bounds: Array, observed: Array, x: Array, min_var: float) -> Array:
    """FOCUS upper bound per arm from the scores ``x`` of the ``observed`` frames."""
    arm_of = np.searchsorted(bounds, np.flatnonzero(observed), side="right") - 1
    vals = x[observed]
    a = len(bounds) - 1
    n = np.bincount(arm_of, minlength=a).astype(np.float64)
    s1 = np.bincount(arm_of, vals, minlength=a)
    s2 = np.bincount(arm_of, vals * vals, minlength=a)
    safe = np.maximum(n, 1)
    mean = s1 / safe
    var = np.maximum(np.where(n > 1, s2 / safe - mean**2, 0.0), min_var)
    total = n.sum()
    if total <= 1:
        return mean
    log_t = math.log(total)
    return mean + np.sqrt(2 * log_t * var / safe) + 3 * log_t / safe


@register_sampler("focus")
@dataclass
class FocusSampler(Sampler):
    """FOCUS bandit over time regions (coarse centre+random, UCB, dense fine stage, arm draws).

    Args:
        arm_sec: arm length in seconds (official ``coarse_every_sec`` 16).
        min_arms: at least this many arms (official 8).
        extra_samples: random frames per arm in the coarse stage (official 2).
        zoom_ratio: fraction of arms promoted to the fine stage / used in selection (0.25).
        min_zoom_arms: at least this many promoted arms (official 4).
        final_min_arms, final_max_arms: bounds on the arms that share the budget (4, 32).
        top_ratio: share of K taken as global top frames (0.2).
        temperature: within-arm softmax temperature on min-max scores (0.06).
        min_gap_sec: minimum time between picks; None = the official adaptive rule.
        seed: random seed.
    """

    arm_sec: float = 16.0
    min_arms: int = 8
    extra_samples: int = 2
    zoom_ratio: float = 0.25
    min_zoom_arms: int = 4
    final_min_arms: int = 4
    final_max_arms: int = 32
    top_ratio: float = 0.2
    temperature: float = 0.06
    min_gap_sec: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check(self.arm_sec > 0, "arm_sec", self.arm_sec, "must be > 0")
        for name in ("min_arms", "min_zoom_arms", "final_min_arms", "final_max_arms"):
            v = getattr(self, name)
            check(isinstance(v, (int, np.integer)) and v >= 1, name, v, "must be an int >= 1")
        check(isinstance(self.extra_samples, (int, np.integer)) and self.extra_samples >= 0,
              "extra_samples", self.extra_samples, "must be an int >= 0")
        check(self.final_min_arms <= self.final_max_arms, "final_min_arms",
              self.final_min_arms, f"must be <= final_max_arms ({self.final_max_arms})")
        check(0 < self.zoom_ratio <= 1, "zoom_ratio", self.zoom_ratio, "must be in (0, 1]")
        check(0 <= self.top_ratio <= 1, "top_ratio", self.top_ratio, "must be in [0, 1]")
        check(self.temperature > 0, "temperature", self.temperature, "must be > 0")
        check(self.min_gap_sec is None or self.min_gap_sec >= 0, "min_gap_sec",
              self.min_gap_sec, "must be None (adaptive) or >= 0")
        check(isinstance(self.seed, (int, np.integer)), "seed", self.seed, "must be an int")

    def _gap(self, ts: Array, k: int) -> float:
        if self.min_gap_sec is not None:
            return float(self.min_gap_sec)
        duration = float(ts[-1] - ts[0]) + (float(np.median(np.diff(ts))) if len(ts) > 1 else 1)
        spacing = duration / max(1, k)  # official: off below 0.2 s, else min(1 s, spacing / 4)
        return 0.0 if spacing <= 0.2 else min(1.0, 0.25 * spacing)

    def _select(self, ctx: SelectContext) -> Selection:
        assert ctx.scores is not None
        rng = np.random.default_rng(int(self.seed))
        x, ts, k = minmax_or_zeros(ctx.scores), ctx.timestamps, ctx.k
        bounds = make_arms(ts, float(self.arm_sec), int(self.min_arms))
        n_arms = len(bounds) - 1
        observed = np.zeros(ctx.n, dtype=bool)
        observed[coarse_samples(bounds, int(self.extra_samples), rng)] = True
        u = ucb(bounds, observed, x, 1e-6)
        zoom = min(n_arms, max(int(self.min_zoom_arms), math.ceil(n_arms * self.zoom_ratio)))
        for a in np.argsort(-u, kind="stable")[:zoom]:
            observed[bounds[a]:bounds[a + 1]] = True  # fine stage: a dense lookup
        u = ucb(bounds, observed, x, 1e-6)
        seen = np.flatnonzero(observed)
        k_top = round(self.top_ratio * min(k, len(seen)))
        chosen = seen[top_indices(x[seen], k_top)].tolist()
        share = min(n_arms, self.final_max_arms,
                    max(self.final_min_arms, math.ceil(n_arms * self.zoom_ratio)))
        need = [(k - k_top) // share + (1 if r < (k - k_top) % share else 0)
                for r in range(share)]
        blocked = np.zeros(ctx.n, dtype=bool)
        gap = self._gap(ts, k)
        for i in chosen:
            self._block(blocked, ts, i, gap)
        for a, want in zip(np.argsort(-u, kind="stable")[:share], need, strict=True):
            chosen += self._draw_arm(x, ts, bounds[a], bounds[a + 1], want, blocked, gap, rng)
        picked = np.unique(np.asarray(chosen, dtype=np.int64))[:k]
        if len(picked) < k:  # arms too small or the gap too wide: fill by relevance
            rest = np.setdiff1d(np.arange(ctx.n), picked)
            picked = np.union1d(picked, rest[top_indices(ctx.scores[rest], k - len(picked))])
        sel = Selection(picked.tolist(), extras={"arms": n_arms, "scored": int(observed.sum()),
                                                 "min_gap_sec": gap})
        if ctx.token_budget is not None:
            sel.tiers, sel.tokens_used = uniform_tier_fields(ctx, len(picked), "low")
        return sel

    @staticmethod
    def _block(blocked: Array, ts: Array, i: int, gap: float) -> None:
        lo = np.searchsorted(ts, ts[i] - gap, side="right") if gap > 0 else i
        hi = np.searchsorted(ts, ts[i] + gap, side="left") if gap > 0 else i + 1
        blocked[lo:max(hi, i + 1)] = True
        blocked[i] = True

    def _draw_arm(self, x: Array, ts: Array, lo: int, hi: int, want: int,
                  blocked: Array, gap: float, rng: np.random.Generator) -> list[int]:
        """Draw ``want`` frames of arm [lo, hi) without replacement, softmax-weighted, gapped."""
        if want <= 0:
            return []
        cand = np.arange(lo, hi)
        free = cand[~blocked[lo:hi]]
        if len(free) == 0:
            return []
        s = minmax_or_zeros(x[free])
        if not s.max() > 0:
            s = np.ones_like(s)  # official: constant scores -> uniform within the arm
        logits = s / self.temperature
        keys = logits - np.log(-np.log(np.clip(rng.random(len(free)), 1e-300, 1 - 1e-16)))
        out: list[int] = []
        for i in free[np.argsort(-keys, kind="stable")]:
            if len(out) == want:
                break
            if not blocked[i]:
                out.append(int(i))
                self._block(blocked, ts, int(i), gap)
        return out
