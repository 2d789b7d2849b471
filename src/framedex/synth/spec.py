"""The synthetic world's vocabulary and the spec format, with validation.

A *spec* is a plain dict (JSON-friendly) describing a video as a list of scenes separated by
hard cuts. Each scene has a background and 0-3 coloured shapes that drift around. Validation
turns every mistake into a :class:`~framedex.errors.ConfigError` that names the field path, e.g.
``scenes[1].objects[0].shape='hexagon' is invalid: must be one of circle, square, star, triangle``.

Spec fields (``*`` = required)::

    fps      int|float > 0, <= 120         frames per second (default 10)
    size     [width, height], even, 16..4096  frame size in pixels (default [128, 128])
    seed     int >= 0                      seeds object sizes, positions, motion (default 0)
    codec    "libx264" | "libx265" | "mpeg4"  encoder (default "libx264")
    crf      int 0..51                     x264/x265 constant rate factor (default 23)
    gop      int >= 1                      max keyframe interval in frames (default 2*fps)
    preset   x264 preset name              speed/size trade-off (default "veryfast")
    motion   float >= 0                    speed multiplier for object drift (default 1.0)
    scenes*  list of scenes, >= 1:
        duration*    float > 0 seconds
        background   "black" | "gray" | "white" (default "black")
        objects      list (<= 3) of {"shape"*: ..., "color"*: ..., "size": fraction 0.05..0.6}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from framedex.errors import ConfigError, check

SHAPES: tuple[str, ...] = ("circle", "square", "star", "triangle")
#: RGB of each object colour; picked far apart so they survive 4:2:0 chroma subsampling.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 25, 25),
    "green": (20, 170, 40),
    "blue": (25, 70, 235),
    "yellow": (250, 230, 20),
    "purple": (150, 40, 200),
    "orange": (255, 140, 0),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
    "white": (255, 255, 255),
}
CODECS: tuple[str, ...] = ("libx264", "libx265", "mpeg4")
PRESETS: tuple[str, ...] = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"
)
MAX_OBJECTS = 3
DEFAULT_FPS = 10
DEFAULT_SIZE = (128, 128)


@dataclass(frozen=True)
class ObjectSpec:
    """One shape in a scene; ``size`` is an optional diameter as a fraction of min(w, h)."""

    shape: str
    color: str
    size: float | None = None


@dataclass(frozen=True)
class SceneSpec:
    """One shot: a background and up to three moving shapes."""

    duration: float
    background: str = "black"
    objects: tuple[ObjectSpec, ...] = ()


@dataclass(frozen=True)
class Spec:
    """A validated video spec (see the module docstring for the fields)."""

    scenes: tuple[SceneSpec, ...]
    fps: float = DEFAULT_FPS
    size: tuple[int, int] = DEFAULT_SIZE
    seed: int = 0
    codec: str = "libx264"
    crf: int = 23
    gop: int | None = None
    preset: str = "veryfast"
    motion: float = 1.0

    @property
    def duration(self) -> float:
        """Total duration in seconds (sum of the scene durations)."""
        return float(sum(s.duration for s in self.scenes))

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON-friendly dict that :func:`parse_spec` accepts back."""
        scenes = []
        for s in self.scenes:
            objs = []
            for o in s.objects:
                d: dict[str, Any] = {"shape": o.shape, "color": o.color}
                if o.size is not None:
                    d["size"] = o.size
                objs.append(d)
            scenes.append({"duration": s.duration, "background": s.background, "objects": objs})
        out: dict[str, Any] = {
            "fps": self.fps, "size": list(self.size), "seed": self.seed, "codec": self.codec,
            "crf": self.crf, "preset": self.preset, "motion": self.motion, "scenes": scenes,
        }
        if self.gop is not None:
            out["gop"] = self.gop
        return out


_TOP_KEYS = {"fps", "size", "seed", "codec", "crf", "gop", "preset", "motion", "scenes"}
_SCENE_KEYS = {"duration", "background", "objects"}
_OBJECT_KEYS = {"shape", "color", "size"}


def _is_num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _one_of(names) -> str:
    return "must be one of " + ", ".join(sorted(names))


def _no_unknown_keys(d: dict, known: set[str], where: str) -> None:
    for k in d:
        check(k in known, f"{where}{k}", d[k], _one_of(known) + " (known keys)")


def _parse_object(o: Any, path: str) -> ObjectSpec:
    check(isinstance(o, dict), path, o, "must be an object like {'shape': ..., 'color': ...}")
    _no_unknown_keys(o, _OBJECT_KEYS, path + ".")
    shape, color = o.get("shape"), o.get("color")
    check(shape in SHAPES, f"{path}.shape", shape, _one_of(SHAPES))
    check(color in COLORS, f"{path}.color", color, _one_of(COLORS))
    size = o.get("size")
    if size is not None:
        check(_is_num(size) and 0.05 <= size <= 0.6, f"{path}.size", size,
              "must be a number in [0.05, 0.6] (fraction of the smaller frame side)")
        size = float(size)
    return ObjectSpec(shape=shape, color=color, size=size)


def _parse_scene(s: Any, path: str) -> SceneSpec:
    check(isinstance(s, dict), path, s, "must be an object like {'duration': 5.0, ...}")
    _no_unknown_keys(s, _SCENE_KEYS, path + ".")
    dur = s.get("duration")
    check(_is_num(dur) and dur > 0 and dur == dur and dur < 1e7, f"{path}.duration", dur,
          "must be a number of seconds > 0")
    bg = s.get("background", "black")
    check(bg in BACKGROUNDS, f"{path}.background", bg, _one_of(BACKGROUNDS))
    objs = s.get("objects", [])
    check(isinstance(objs, (list, tuple)), f"{path}.objects", objs, "must be a list")
    check(len(objs) <= MAX_OBJECTS, f"{path}.objects", f"<{len(objs)} objects>",
          f"at most {MAX_OBJECTS} objects per scene")
    parsed = tuple(_parse_object(o, f"{path}.objects[{j}]") for j, o in enumerate(objs))
    return SceneSpec(duration=float(dur), background=bg, objects=parsed)


def _parse_encoding(d: dict) -> dict[str, Any]:
    codec = d.get("codec", "libx264")
    check(codec in CODECS, "codec", codec, _one_of(CODECS))
    crf = d.get("crf", 23)
    check(_is_int(crf) and 0 <= crf <= 51, "crf", crf, "must be an integer in [0, 51]")
    gop = d.get("gop")
    if gop is not None:
        check(_is_int(gop) and gop >= 1, "gop", gop, "must be an integer >= 1 (frames)")
    preset = d.get("preset", "veryfast")
    check(preset in PRESETS, "preset", preset, _one_of(PRESETS))
    motion = d.get("motion", 1.0)
    check(_is_num(motion) and 0 <= motion <= 20, "motion", motion, "must be a number in [0, 20]")
    return {"codec": codec, "crf": crf, "gop": gop, "preset": preset, "motion": float(motion)}


def parse_spec(spec: dict[str, Any] | Spec) -> Spec:
    """Validate a spec dict and return a frozen :class:`Spec`.

    Args:
        spec: the dict (e.g. loaded from JSON) or an already parsed :class:`Spec`.

    Returns:
        The validated spec with defaults filled in.

    Raises:
        ConfigError: naming the bad field path, its value and the rule.
    """
    if isinstance(spec, Spec):
        return spec
    check(isinstance(spec, dict), "spec", type(spec).__name__, "must be a dict (JSON object)")
    _no_unknown_keys(spec, _TOP_KEYS, "")
    fps = spec.get("fps", DEFAULT_FPS)
    check(_is_num(fps) and 0 < fps <= 120, "fps", fps, "must be a number in (0, 120]")
    size = spec.get("size", list(DEFAULT_SIZE))
    ok = isinstance(size, (list, tuple)) and len(size) == 2 and all(_is_int(v) for v in size)
    check(ok and all(16 <= v <= 4096 and v % 2 == 0 for v in size), "size", size,
          "must be [width, height] with even integers in [16, 4096] (yuv420p needs even sizes)")
    seed = spec.get("seed", 0)
    check(_is_int(seed) and seed >= 0, "seed", seed, "must be an integer >= 0")
    scenes: Any = spec.get("scenes")
    check(isinstance(scenes, (list, tuple)) and len(scenes) >= 1, "scenes", scenes,
          "must be a non-empty list of scenes")
    parsed = tuple(_parse_scene(s, f"scenes[{i}]") for i, s in enumerate(scenes))
    total_frames = round(sum(s.duration for s in parsed) * fps)
    if total_frames < 1:
        raise ConfigError(f"scenes total {sum(s.duration for s in parsed)!r} s at fps={fps!r} "
                          "is invalid: the video must last at least one frame")
    return Spec(scenes=parsed, fps=fps, size=(size[0], size[1]), seed=seed,
                **_parse_encoding(spec))
