"""Fixed-rate sampling: one frame every ``1/target_fps`` seconds, capped at K (query-free).

What it optimises: nothing but a constant temporal rate, the way hosted VLMs sample video
(Gemini: 1 fps; Qwen2-VL: 2 fps). Target times are ``t0, t0 + 1/fps, ...`` up to the last
timestamp; each snaps to the cached frame nearest in time (earlier frame on a tie).

Deviations / choices (ours, no official code):
- More grid frames than K: keep K of them evenly spaced (uniform over the grid list), as a
  VLM frontend does when a video is longer than its frame cap.
- Fewer grid frames than K (short video, low rate): by default (``fill=True``) the remainder is
  spread evenly over the unchosen frames so that the contract's exactly-min(K, N) holds;
  ``fill=False`` returns only the fixed-rate frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from framedex.errors import check
from framedex.query.samplers._common import fill_evenly, uniform_indices
from framedex.query.samplers.base import Sampler, SelectContext, Selection, register_sampler
from framedex.values import Array


def rate_grid(ts: Array, target_fps: float) -> Array:
    """Distinct positions of the frames nearest to ``t0 + i / target_fps`` (ascending)."""
    span = float(ts[-1] - ts[0])
    count = int(np.floor(span * target_fps + 1e-9)) + 1
    targets = ts[0] + np.arange(count, dtype=np.float64) / target_fps
    right = np.clip(np.searchsorted(ts, targets, side="left"), 1, len(ts) - 1)
    left = right - 1
    if len(ts) == 1:
        return np.zeros(1, dtype=np.int64)
    # nearest neighbour; a tie in time goes to the earlier frame
    take_right = (ts[right] - targets) < (targets - ts[left])
    return np.unique(np.where(take_right, right, left))


@register_sampler("fps")
@dataclass
class FpsSampler(Sampler):
    """Every frame at ``target_fps`` frames per second of video time, capped at K.

    Args:
        target_fps: sampling rate in frames per second (> 0); 1.0 is Gemini's default.
        fill: top up to exactly min(K, N) frames when the rate yields fewer.
    """

    target_fps: float = 1.0
    fill: bool = True
    query_aware = False

    def __post_init__(self) -> None:
        check(isinstance(self.target_fps, (int, float)) and not isinstance(self.target_fps, bool)
              and np.isfinite(self.target_fps) and self.target_fps > 0,
              "target_fps", self.target_fps, "must be a finite number > 0")
        check(isinstance(self.fill, bool), "fill", self.fill, "must be True or False")

    def _select(self, ctx: SelectContext) -> Selection:
        ts = ctx.timestamps
        check(bool(np.isfinite(ts).all()) and bool((np.diff(ts) >= 0).all()), "timestamps",
              "...", "must be finite and non-decreasing for the fps sampler")
        grid = rate_grid(ts, float(self.target_fps))
        if len(grid) > ctx.k:
            grid = grid[uniform_indices(len(grid), ctx.k)]
        elif len(grid) < ctx.k and self.fill:
            chosen = np.zeros(ctx.n, dtype=bool)
            chosen[grid] = True
            grid = np.sort(np.concatenate([grid, fill_evenly(chosen, ctx.k - len(grid))]))
        return Selection(grid.tolist(), extras={"target_fps": float(self.target_fps)})
