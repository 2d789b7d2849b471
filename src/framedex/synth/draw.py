"""Drawing the synthetic world: shape masks, object motion and frame composition (numpy only).

Speed matters because an hour of video is 36,000 frames: each shape is rasterised once per
(shape, diameter) with 4x supersampling for anti-aliased edges and cached; a frame is then a
background fill plus up to three small alpha blends, a few tens of microseconds at 128x128.

Every object's position is a closed-form function of time (a bounce between walls written as a
triangle wave), so any frame can be drawn without simulating the ones before it. Training uses
that to draw random moments of random scenes with exactly the code that renders videos.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from framedex.synth.spec import BACKGROUNDS, COLORS, SceneSpec, Spec

#: Default diameter range, as a fraction of min(width, height), when an object gives no size.
SIZE_RANGE = (0.16, 0.32)
_SUPERSAMPLE = 4


def _polygon_inside(x: np.ndarray, y: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test, vectorised over points."""
    inside = np.zeros(x.shape, dtype=bool)
    n = len(verts)
    for i in range(n):
        x1, y1 = verts[i]
        x2, y2 = verts[(i + 1) % n]
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < xint)
    return inside


def _star_vertices(points: int = 5, inner: float = 0.45) -> np.ndarray:
    angles = -math.pi / 2 + np.arange(2 * points) * math.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), radii * np.sin(angles) + 0.08], axis=1)


# Unit-square shapes in image coordinates (y grows downwards), centred on (0, 0).
_TRIANGLE = np.array([[0.0, -0.95], [1.0, 0.8], [-1.0, 0.8]])
_STAR = _star_vertices()


@lru_cache(maxsize=512)
def shape_mask(shape: str, diameter: int) -> np.ndarray:
    """Anti-aliased alpha mask of ``shape`` as uint16 in [0, 255], shape (diameter, diameter)."""
    n = diameter * _SUPERSAMPLE
    c = (np.arange(n) + 0.5) / n * 2.0 - 1.0
    x, y = np.meshgrid(c, c)
    if shape == "circle":
        m = x * x + y * y <= 1.0
    elif shape == "square":
        m = (np.abs(x) <= 0.84) & (np.abs(y) <= 0.84)
    elif shape == "triangle":
        m = _polygon_inside(x, y, _TRIANGLE)
    elif shape == "star":
        m = _polygon_inside(x, y, _STAR)
    else:  # parse_spec rejects unknown shapes before we get here
        raise ValueError(shape)
    alpha = m.reshape(diameter, _SUPERSAMPLE, diameter, _SUPERSAMPLE).mean(axis=(1, 3))
    out = np.rint(alpha * 255).astype(np.uint16)
    out.setflags(write=False)
    return out


def _bounce(p: float, lo: float, hi: float) -> float:
    """Position of a point moving freely from ``p`` reflected between walls ``lo`` and ``hi``."""
    span = hi - lo
    if span <= 0:
        return (lo + hi) / 2
    q = (p - lo) % (2 * span)
    return lo + (q if q <= span else 2 * span - q)


@dataclass(frozen=True)
class ObjectTrack:
    """Closed-form motion of one object: bounce along its lane, wobble across, pulse in size."""

    shape: str
    color: str
    diameter: float  # mean diameter in pixels
    horizontal: bool  # moves along x (lanes are horizontal bands) or along y
    lane: tuple[float, float]  # cross-axis band in pixels
    start: float  # along-axis start position in pixels (unreflected)
    speed: float  # pixels per second, signed
    wobble_phase: float
    wobble_freq: float  # Hz
    pulse_phase: float
    pulse_freq: float  # Hz
    pulse_amp: float  # relative size change

    def at(self, t: float, size: tuple[int, int]) -> tuple[float, float, int]:
        """Centre (x, y) in pixels and integer diameter at scene-local time ``t`` seconds."""
        w, h = size
        d = max(4, round(self.diameter * (1 + self.pulse_amp * math.sin(
            2 * math.pi * self.pulse_freq * t + self.pulse_phase))))
        along_len = w if self.horizontal else h
        r = self.diameter * (1 + self.pulse_amp) / 2
        along = _bounce(self.start + self.speed * t, r, along_len - r)
        lo, hi = self.lane
        mid, slack = (lo + hi) / 2, max(0.0, (hi - lo) / 2 - r)
        cross = mid + slack * math.sin(2 * math.pi * self.wobble_freq * t + self.wobble_phase)
        return (along, cross, d) if self.horizontal else (cross, along, d)


@dataclass(frozen=True)
class ScenePlan:
    """A scene placed on the frame grid, with its objects' tracks."""

    index: int
    start_frame: int
    end_frame: int  # exclusive
    scene: SceneSpec
    tracks: tuple[ObjectTrack, ...]


def plan_scene(scene: SceneSpec, size: tuple[int, int], seed: int | list[int],
               motion: float = 1.0) -> tuple[ObjectTrack, ...]:
    """Draw the seeded layout and motion of a scene's objects (one lane per object)."""
    rng = np.random.default_rng(seed)
    w, h = size
    n = len(scene.objects)
    horizontal = bool(rng.random() < 0.5)
    cross_len, along_len = (h, w) if horizontal else (w, h)
    lanes: Sequence[int] = rng.permutation(n).tolist() if n else []
    tracks = []
    for obj, lane_idx in zip(scene.objects, lanes, strict=True):
        frac = obj.size if obj.size is not None else rng.uniform(*SIZE_RANGE)
        pulse_amp = rng.uniform(0.03, 0.10)
        lane_w = cross_len / n
        # The object (at its largest) must fit in its lane and along the frame.
        d = min(frac * min(w, h), 0.92 * lane_w / (1 + pulse_amp),
                0.9 * along_len / (1 + pulse_amp))
        tracks.append(ObjectTrack(
            shape=obj.shape, color=obj.color, diameter=float(d), horizontal=horizontal,
            lane=(lane_idx * lane_w, (lane_idx + 1) * lane_w),
            start=float(rng.uniform(0, 2 * along_len)),
            speed=float(motion * rng.uniform(0.06, 0.22) * along_len * rng.choice([-1, 1])),
            wobble_phase=float(rng.uniform(0, 2 * math.pi)),
            wobble_freq=float(rng.uniform(0.05, 0.2)),
            pulse_phase=float(rng.uniform(0, 2 * math.pi)),
            pulse_freq=float(rng.uniform(0.1, 0.4)), pulse_amp=float(pulse_amp)))
    return tuple(tracks)


def draw_frame(background: str, tracks: tuple[ObjectTrack, ...], t: float,
               size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """Compose one RGB uint8 frame (height, width, 3) at scene-local time ``t``.

    Args:
        background: background colour name.
        tracks: the scene's object tracks from :func:`plan_scene`.
        t: seconds since the scene started.
        size: (width, height).
        out: optional preallocated array to draw into (reused by the video loop).

    Returns:
        The frame (``out`` when given).
    """
    w, h = size
    frame = np.empty((h, w, 3), np.uint8) if out is None else out
    frame[:] = BACKGROUNDS[background]
    for tr in tracks:
        cx, cy, d = tr.at(t, size)
        x0, y0 = round(cx - d / 2), round(cy - d / 2)
        xa, ya, xb, yb = max(0, x0), max(0, y0), min(w, x0 + d), min(h, y0 + d)
        if xa >= xb or ya >= yb:
            continue
        a = shape_mask(tr.shape, d)[ya - y0:yb - y0, xa - x0:xb - x0, None]
        patch = frame[ya:yb, xa:xb].astype(np.uint16)
        col = np.asarray(COLORS[tr.color], np.uint16)
        frame[ya:yb, xa:xb] = (patch * (255 - a) + col * a + 127) // 255
    return frame


def scene_frames(spec: Spec) -> list[tuple[int, int]]:
    """Frame range [start, end) of each scene; boundaries snap to the frame grid."""
    bounds, acc = [], 0.0
    start = 0
    for s in spec.scenes:
        acc += s.duration
        end = round(acc * spec.fps)
        bounds.append((start, max(start, end)))
        start = max(start, end)
    return bounds


def plan(spec: Spec) -> list[ScenePlan]:
    """Place every scene of ``spec`` on the frame grid and plan its objects' motion."""
    return [ScenePlan(index=i, start_frame=a, end_frame=b, scene=s,
                      tracks=plan_scene(s, spec.size, [spec.seed, i], spec.motion))
            for i, (s, (a, b)) in enumerate(zip(spec.scenes, scene_frames(spec), strict=True))]


def iter_frames(spec: Spec) -> Iterator[np.ndarray]:
    """Yield every frame of ``spec`` in order as RGB uint8 arrays (one buffer is reused:
    copy a frame if you keep it past the next iteration)."""
    buf = np.empty((spec.size[1], spec.size[0], 3), np.uint8)
    for sp in plan(spec):
        for i in range(sp.start_frame, sp.end_frame):
            yield draw_frame(sp.scene.background, sp.tracks,
                             (i - sp.start_frame) / spec.fps, spec.size, out=buf)
