"""The relevance curve as SVG geometry: numbers in, coordinates and labels out.

Pure and import-light (numpy only). The arrays come from ``SelectResult.curve``, computed once
by the select: nothing is read or encoded again to draw it. The templates draw the shapes
(``_curve.html``). A long video is reduced to at most :data:`MAX_POINTS` points by keeping each
bucket's minimum and maximum, so a one-frame needle in a ten-hour video still shows as a spike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: Most points drawn on the polyline (the minimum and maximum of each bucket beyond that).
MAX_POINTS = 1600
#: Colours of the samplers in the compare view (Okabe-Ito: colour-blind safe).
SERIES_COLORS = ("#d55e00", "#0072b2", "#009e73", "#cc79a7")
_LEFT, _TOP, _RIGHT, _AXIS, _LANE = 52.0, 12.0, 14.0, 26.0, 18.0


@dataclass
class Mark:
    """One chosen frame on the curve."""

    x: float
    y: float
    t: float
    score: float
    tier: str | None = None


@dataclass
class Lane:
    """One sampler's picks as ticks in a row under the curve (compare view)."""

    name: str
    color: str
    y: float
    marks: list[Mark] = field(default_factory=list)


def clock(sec: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) for an axis label or a frame time, as a player's clock
    shows it: whole seconds elapsed (2.5 s is 0:02; rounding sent 0.5 to 0:00 and 1.5 to
    0:02, banker's rounding)."""
    s = math.floor(max(float(sec), 0.0) + 1e-6)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _nice_step(span: float, target: int) -> float:
    raw = span / max(target, 1)
    if raw <= 0:
        return 1.0
    mag = float(10 ** np.floor(np.log10(raw)))
    return next(m * mag for m in (1, 2, 5, 10) if raw <= m * mag)


class CurveSvg:
    """Axes, polyline, marks and bands of one relevance curve over ``[0, duration]``.

    Args:
        pts_sec: frame times, ascending.
        scores: cosine relevance per frame.
        duration: the video's length (the x axis spans the whole video).
        width: SVG width in user units (the SVG scales to its box).
        plot_h: height of the plot area.
        lanes: rows of ticks reserved under the plot (one per compared sampler).
    """

    def __init__(self, pts_sec: Sequence[float] | np.ndarray,
                 scores: Sequence[float] | np.ndarray, duration: float, *, width: int = 960,
                 plot_h: int = 170, lanes: int = 0):
        self.t = np.asarray(pts_sec, dtype=np.float64)
        self.s = np.asarray(scores, dtype=np.float64)
        self.width = width
        self.left, self.top, self.plot_h = _LEFT, _TOP, float(plot_h)
        self.plot_w = width - _LEFT - _RIGHT
        self.lane_top = _TOP + plot_h + _AXIS + 4
        self.lane_h = _LANE
        self.height = int(self.lane_top + lanes * _LANE + 4) if lanes else int(
            _TOP + plot_h + _AXIS)
        last = float(self.t[-1]) if len(self.t) else 0.0
        self.duration = max(float(duration), last, 1e-3)
        lo, hi = (float(self.s.min()), float(self.s.max())) if len(self.s) else (0.0, 1.0)
        pad = max((hi - lo) * 0.08, 1e-3)
        self.lo, self.hi = lo - pad, hi + pad
        self.marks: list[Mark] = []
        self.lanes: list[Lane] = []
        self.band: tuple[float, float] | None = None  # the moment the page was opened at
        self.best: tuple[float, float] | None = None  # the query's best moment (x0, x1)
        self.best_times: tuple[float, float] | None = None  # the same in seconds

    @property
    def bottom(self) -> float:
        """y of the time axis."""
        return self.top + self.plot_h

    def x(self, sec: float) -> float:
        """x of a time in seconds (clamped to the plot)."""
        return self.left + self.plot_w * min(max(sec / self.duration, 0.0), 1.0)

    def y(self, score: float) -> float:
        """y of a relevance score."""
        return self.top + self.plot_h * (1.0 - (score - self.lo) / (self.hi - self.lo))

    def score_at(self, sec: float) -> float:
        """The curve's value at the indexed frame nearest to ``sec``."""
        if not len(self.t):
            return self.lo
        return float(self.s[int(np.argmin(np.abs(self.t - sec)))])

    @property
    def points(self) -> str:
        """The polyline's ``points`` attribute."""
        t, s = self.t, self.s
        if len(t) > MAX_POINTS:
            keep: list[int] = []
            for b in np.array_split(np.arange(len(t)), MAX_POINTS // 2):
                keep.extend(sorted({int(b[np.argmin(s[b])]), int(b[np.argmax(s[b])])}))
            t, s = t[keep], s[keep]
        return " ".join(f"{self.x(a):.1f},{self.y(b):.1f}" for a, b in zip(t, s, strict=True))

    @property
    def x_ticks(self) -> list[tuple[float, str]]:
        step = _nice_step(self.duration, 8)
        return [(self.x(v), clock(v)) for v in np.arange(0.0, self.duration + 1e-9, step)]

    @property
    def y_ticks(self) -> list[tuple[float, str]]:
        step = _nice_step(self.hi - self.lo, 4)
        first = np.ceil(self.lo / step) * step
        # + 0.0 turns -0.0 into 0.0 (no "-0.00" label)
        return [(self.y(v), f"{round(float(v), 6) + 0.0:.2f}")
                for v in np.arange(first, self.hi, step)]

    def _marks(self, times: Sequence[float], scores: Sequence[float] | None,
               tiers: Sequence[str | None] | None) -> list[Mark]:
        out = []
        for i, t in enumerate(times):
            score = scores[i] if scores is not None else self.score_at(t)
            tier = tiers[i] if tiers is not None else None
            out.append(Mark(x=self.x(t), y=self.y(score), t=float(t), score=float(score),
                            tier=tier))
        return out

    def mark(self, times: Sequence[float], scores: Sequence[float] | None = None,
             tiers: Sequence[str | None] | None = None) -> None:
        """Mark chosen frames on the curve itself."""
        self.marks = self._marks(times, scores, tiers)

    def lane(self, name: str, times: Sequence[float], scores: Sequence[float] | None = None,
             tiers: Sequence[str | None] | None = None) -> Lane:
        """Add a row of ticks under the plot for one sampler's picks."""
        lane = Lane(name=name, color=SERIES_COLORS[len(self.lanes) % len(SERIES_COLORS)],
                    y=self.lane_top + len(self.lanes) * self.lane_h,
                    marks=self._marks(times, scores, tiers))
        self.lanes.append(lane)
        return lane

    def set_best(self, start: float, end: float) -> None:
        """Shade the query's best moment."""
        self.best_times = (start, end)
        self.best = self.span(start, end)

    def span(self, start: float, end: float) -> tuple[float, float]:
        """x0, x1 of a time span (at least one pixel wide)."""
        x0, x1 = self.x(start), self.x(end)
        return x0, max(x1, x0 + 1.0)
