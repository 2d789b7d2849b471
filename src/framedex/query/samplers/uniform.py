"""Uniform sampling: K frames evenly spaced over the video (query-free baseline).

What it optimises: temporal coverage only. Positions are ``linspace(0, N-1, K)`` rounded half
up, the LLaVA-OneVision convention (LLaVA-OV truncates with ``dtype=int``; rounding centres the
picks, and both are distinct whenever K <= N because the step is >= 1).

Also hosts two small helpers the other built-in samplers reuse: :func:`uniform_indices` and
:func:`fill_evenly` (spread extra picks over the frames not yet chosen).
"""

from __future__ import annotations

from dataclasses import dataclass

from framedex.query.samplers._common import uniform_indices
from framedex.query.samplers.base import Sampler, SelectContext, Selection, register_sampler


@register_sampler("uniform")
@dataclass
class UniformSampler(Sampler):
    """K evenly spaced frames; ignores the query."""

    query_aware = False

    def _select(self, ctx: SelectContext) -> Selection:
        return Selection(uniform_indices(ctx.n, ctx.k).tolist())
