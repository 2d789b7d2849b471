"""ViLAMP differential keyframe selection (Cheng et al., ICML 2025).

What it optimises: query relevance without near-duplicates, then temporal coverage. Frames are
walked in descending frame-to-query cosine (f2t) until K are selected or f2t drops below
``f2t_thrd``; a selected frame marks every frame whose cosine to it exceeds ``f2f_thrd``
(embedding similarity anywhere in the video, not time proximity), and marked frames are skipped.
The remaining budget is spread over the gaps between selected frames: the smallest spacing D in
[1, N] with ``sum(ceil(len/D) - 1) <= B``, ``ceil(len/D) - 1`` frames per gap at step
``ceil(len / (k+1))``, and any remainder on the last free frames of the video.

Official source read (reimplemented, not copied): github.com/steven-ccq/ViLAMP
``llava/model/multimodal_resampler/frame_selector.py`` (``SeqFrameSelector.forward`` and
``distribute_frames``) at commit 0bc8a1716989d4242527bc991c2ee3d10600fcdf. Defaults
``f2f_thrd=0.85``, ``f2t_thrd=0.2``, ``max_frame_num=32`` come from ``llava_qwen.py``'s config
(the selector class itself falls back to ``f2t_thrd=-1``).

Deviations from official:
- Ties in f2t go to the earlier frame (official ``torch.sort`` order on ties is unspecified).
- Cosines are dot products of the cached L2-normalised embeddings (official re-normalises CLIP
  ViT-B/32 features with ``util.cos_sim``): equal up to rounding; thresholds are on raw cosine.
- Only the frames the walk reaches get their similarities computed (one small Gram matrix over
  a growing prefix of the f2t order): marks on frames the walk never reaches cannot change the
  result, and the gap filling uses only the selected set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from framedex.errors import check
from framedex.query.samplers._common import top_indices
from framedex.query.samplers.base import Sampler, SelectContext, Selection, register_sampler
from framedex.values import Array


def differential_walk(emb: Array, f2t: Array, k: int, f2f_thrd: float,
                      f2t_thrd: float) -> list[int]:
    """Step 1: the relevance walk with similarity suppression; returns picks in walk order.

    The walk runs over chunks of the descending-f2t order: a chunk's frames are first marked
    against the frames already picked (one chunk x picks product), then each new pick marks the
    rest of the chunk with one matvec; memory stays O(chunk * (D + K)) however deep it goes.
    """
    passing = int(np.count_nonzero(f2t >= f2t_thrd))
    chunk = max(4 * k, 64)
    order = top_indices(f2t, min(passing, chunk))  # descending f2t, earlier frame on ties
    picks: list[int] = []
    pos = 0
    while pos < passing and len(picks) < k:
        if pos + chunk > len(order) and len(order) < passing:
            order = top_indices(f2t, passing)
        part = order[pos:pos + chunk]
        block = emb[part]
        visited = np.zeros(len(part), dtype=bool)
        if picks:
            visited |= (np.asarray(block @ emb[picks].T) > f2f_thrd).any(axis=1)
        while len(picks) < k:
            free = np.flatnonzero(~visited)
            if len(free) == 0:
                break
            i = int(free[0])  # the next unmarked frame in f2t order
            visited[i] = True
            picks.append(int(part[i]))
            visited |= np.asarray(block @ block[i]) > f2f_thrd  # one matvec per pick
        pos += len(part)
        chunk = min(2 * chunk, 4096)
    return picks


def distribute(selected: Array, budget: int) -> Array:
    """Step 2: spread ``budget`` more frames over the gaps of boolean mask ``selected``."""
    n = len(selected)
    free = ~selected
    edges = np.diff(np.concatenate([[0], free.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    lengths = ends - starts + 1
    lo, hi = 1, n
    while lo < hi:  # smallest D with sum(ceil(len/D) - 1) <= budget
        mid = (lo + hi) // 2
        if int(((lengths + mid - 1) // mid - 1).sum()) <= budget:
            hi = mid
        else:
            lo = mid + 1
    per_gap = (lengths + lo - 1) // lo - 1
    step = -(-lengths // (per_gap + 1))
    gap = np.repeat(np.arange(len(lengths)), per_gap)
    rank = np.arange(len(gap)) - np.repeat(np.cumsum(per_gap) - per_gap, per_gap) + 1
    out = selected.copy()
    out[np.minimum(starts[gap] + step[gap] * rank, ends[gap])] = True
    remaining = budget - int(per_gap.sum())
    if remaining > 0:  # official: from the end of the video backwards
        out[np.flatnonzero(~out)[-remaining:]] = True
    return out


@register_sampler("vilamp")
@dataclass
class VilampSampler(Sampler):
    """ViLAMP differential keyframe selection.

    Args:
        f2f_thrd: frame-to-frame cosine above which a frame counts as a duplicate (official
            0.85, CLIP ViT-B/32), in [-1, 1].
        f2t_thrd: frame-to-query cosine below which the relevance walk stops (official 0.2).
    """

    f2f_thrd: float = 0.85
    f2t_thrd: float = 0.2
    needs_embeddings = True

    def __post_init__(self) -> None:
        for name in ("f2f_thrd", "f2t_thrd"):
            v = getattr(self, name)
            check(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
                  name, v, "must be a finite number")
        check(-1.0 <= self.f2f_thrd <= 1.0, "f2f_thrd", self.f2f_thrd, "must be in [-1, 1]")

    def _select(self, ctx: SelectContext) -> Selection:
        assert ctx.scores is not None and ctx.embeddings is not None
        picks = differential_walk(ctx.embeddings, ctx.scores, ctx.k, float(self.f2f_thrd),
                                  float(self.f2t_thrd))
        mask = np.zeros(ctx.n, dtype=bool)
        mask[picks] = True
        final = distribute(mask, ctx.k - len(picks))
        return Selection(np.flatnonzero(final).tolist(),
                         extras={"keyframes": sorted(picks), "filled": ctx.k - len(picks)})
