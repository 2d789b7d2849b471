"""Build specs programmatically: random scenes, random videos, needle-in-a-haystack videos."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from framedex.errors import check
from framedex.synth.spec import BACKGROUNDS, COLORS, DEFAULT_FPS, DEFAULT_SIZE, SHAPES, parse_spec


def random_scene(rng: np.random.Generator, duration: float,
                 exclude: set[tuple[str, str]] | None = None,
                 n_objects: int | None = None) -> dict[str, Any]:
    """A random scene dict: background and 0-3 objects, none of them in ``exclude``.

    Args:
        rng: random generator.
        duration: scene length in seconds.
        exclude: (shape, color) pairs that must not appear (e.g. a needle's objects).
        n_objects: fixed object count, or None for uniform 0..3.

    Returns:
        A scene dict for a spec's ``scenes`` list.
    """
    exclude = exclude or set()
    allowed = [(s, c) for s in SHAPES for c in COLORS if (s, c) not in exclude]
    n = int(rng.integers(0, 4)) if n_objects is None else n_objects
    picks = [allowed[i] for i in rng.integers(0, len(allowed), size=n)] if allowed else []
    return {"duration": float(duration),
            "background": list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))],
            "objects": [{"shape": s, "color": c} for s, c in picks]}


def random_spec(duration: float, *, seed: int = 0, fps: float = DEFAULT_FPS,
                size: Sequence[int] = DEFAULT_SIZE,
                scene_duration: tuple[float, float] = (3.0, 12.0),
                **encoding: Any) -> dict[str, Any]:
    """A video of random scenes with random lengths in ``scene_duration`` (seconds).

    Args:
        duration: total length in seconds.
        seed: seeds scene choice and the render.
        fps: frame rate.
        size: [width, height].
        scene_duration: (min, max) scene length.
        **encoding: optional spec fields (codec, crf, gop, preset, motion).

    Returns:
        A spec dict (validated).
    """
    return haystack_spec(duration, [], seed=seed, fps=fps, size=size,
                         filler_duration=scene_duration, **encoding)


def haystack_spec(duration: float, needles: Sequence[dict[str, Any]], *, seed: int = 0,
                  fps: float = DEFAULT_FPS, size: Sequence[int] = DEFAULT_SIZE,
                  filler_duration: tuple[float, float] = (4.0, 12.0),
                  unique_needles: bool = True,
                  exclude: Sequence[tuple[str, str]] = (), **encoding: Any) -> dict[str, Any]:
    """A long video of random filler scenes with a few "needle" scenes at given times.

    Each needle is a scene dict plus ``"time"`` (its start in seconds), e.g.
    ``{"time": 1800.0, "duration": 3.0, "background": "white",
    "objects": [{"shape": "star", "color": "purple"}]}``. With ``unique_needles`` the
    filler never shows a (shape, color) pair that any needle shows, so a query for a needle's
    object has exactly the needle spans as ground truth.

    Args:
        duration: total length in seconds.
        needles: needle scenes with "time"; they must not overlap or pass ``duration``.
        seed: seeds the filler and the render.
        fps: frame rate.
        size: [width, height].
        filler_duration: (min, max) filler scene length in seconds.
        unique_needles: keep needle objects out of the filler.
        exclude: more (shape, color) pairs to keep out of the filler (e.g. every colour of a
            shape, so that "what colour is the star?" has one answer).
        **encoding: optional spec fields (codec, crf, gop, preset, motion).

    Returns:
        A validated spec dict for :func:`framedex.synth.render`.

    Raises:
        ConfigError: overlapping or out-of-range needles, bad durations.
    """
    check(duration > 0, "duration", duration, "must be > 0 seconds")
    lo, hi = filler_duration
    check(0 < lo <= hi, "filler_duration", filler_duration,
          "must be (min, max) with 0 < min <= max")
    rng = np.random.default_rng([seed, 7919])
    ordered = sorted(needles, key=lambda n: n.get("time", -1))
    banned = {(str(s), str(c)) for s, c in exclude}
    if unique_needles:
        banned |= {(o["shape"], o["color"]) for n in ordered for o in n.get("objects", [])
                   if isinstance(o, dict) and "shape" in o and "color" in o}
    scenes: list[dict[str, Any]] = []
    t = 0.0
    for i, nd in enumerate(ordered):
        start: Any = nd.get("time")
        dur: Any = nd.get("duration")
        check(isinstance(start, (int, float)) and start >= t - 1e-9, f"needles[{i}].time", start,
              f"must be a number >= {t:g} (needles must not overlap)")
        check(isinstance(dur, (int, float)) and dur > 0 and start + dur <= duration + 1e-9,
              f"needles[{i}].duration", dur, f"must be > 0 and end by duration={duration:g}")
        t = _fill(scenes, rng, t, float(start), lo, hi, banned)
        scenes.append({k: v for k, v in nd.items() if k != "time"})
        t += float(dur)
    _fill(scenes, rng, t, float(duration), lo, hi, banned)
    spec = {"fps": fps, "size": list(size), "seed": seed, "scenes": scenes, **encoding}
    parse_spec(spec)
    return spec


def _fill(scenes: list[dict[str, Any]], rng: np.random.Generator, t: float, until: float,
          lo: float, hi: float, exclude: set[tuple[str, str]]) -> float:
    """Append filler scenes covering [t, until); the last one is stretched or cut to fit."""
    while until - t > 1e-6:
        d = float(np.round(rng.uniform(lo, hi), 1))
        if until - t - d < lo:  # no sliver scenes: the last filler absorbs the rest
            d = until - t
        scenes.append(random_scene(rng, round(d, 6), exclude))
        t += d
    return until
