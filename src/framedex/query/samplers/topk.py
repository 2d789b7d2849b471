"""Top-k relevance: the K frames with the highest query relevance, returned in time order.

What it optimises: the sum of relevance of the chosen frames (no diversity). Ties go to the
earlier frame. Also hosts :func:`top_indices`, reused by AKS (leaf picks, fill) and shots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from framedex.query.samplers._common import top_indices
from framedex.query.samplers.base import Sampler, SelectContext, Selection, register_sampler


@register_sampler("topk")
@dataclass
class TopKSampler(Sampler):
    """The K most query-relevant frames, sorted by time."""

    def _select(self, ctx: SelectContext) -> Selection:
        assert ctx.scores is not None
        return Selection(np.sort(top_indices(ctx.scores, ctx.k)).tolist())
