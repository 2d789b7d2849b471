"""Render a spec to an H.264 MP4 plus its ground truth (``x.mp4`` -> ``x.truth.json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framedex.errors import VideoOpenError
from framedex.synth.draw import iter_frames, scene_frames
from framedex.synth.spec import Spec, parse_spec
from framedex.synth.writer import write_video


@dataclass(frozen=True)
class TruthScene:
    """One scene's ground truth: [start, end) in seconds, background and objects."""

    start: float
    end: float
    background: str
    objects: tuple[tuple[str, str], ...]  # (shape, color)

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "background": self.background,
                "objects": [{"shape": s, "color": c} for s, c in self.objects]}


@dataclass(frozen=True)
class Truth:
    """Ground truth of a rendered video.

    Scene boundaries are snapped to the frame grid, so frame ``frame_idx`` (at
    ``pts_sec = frame_idx / fps``) belongs to the scene with ``start <= pts_sec < end``.
    """

    duration: float
    fps: float
    scenes: tuple[TruthScene, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"duration": self.duration, "fps": self.fps,
                "scenes": [s.to_dict() for s in self.scenes]}

    def scene_at(self, pts_sec: float) -> TruthScene:
        """The scene shown at ``pts_sec`` (the last scene for times past the end)."""
        for s in self.scenes:
            if pts_sec < s.end:
                return s
        return self.scenes[-1]

    def spans_with(self, shape: str | None = None, color: str | None = None,
                   background: str | None = None) -> list[tuple[float, float]]:
        """[start, end) spans of scenes that show a matching object (and background)."""
        out = []
        for s in self.scenes:
            if background is not None and s.background != background:
                continue
            if (shape is None and color is None) or any(
                    (shape is None or sh == shape) and (color is None or c == color)
                    for sh, c in s.objects):
                out.append((s.start, s.end))
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Truth:
        scenes = tuple(TruthScene(s["start"], s["end"], s["background"],
                                  tuple((o["shape"], o["color"]) for o in s["objects"]))
                       for s in d["scenes"])
        return cls(duration=d["duration"], fps=d["fps"], scenes=scenes)

    @classmethod
    def load(cls, path: str | Path) -> Truth:
        """Read a ``.truth.json`` file."""
        return cls.from_dict(json.loads(Path(path).read_text()))


def truth_of(spec: dict[str, Any] | Spec) -> Truth:
    """The ground truth ``render`` would write for ``spec``, without rendering anything."""
    spec = parse_spec(spec)
    fps = spec.fps
    scenes = tuple(
        TruthScene(start=round(a / fps, 6), end=round(b / fps, 6), background=s.background,
                   objects=tuple((o.shape, o.color) for o in s.objects))
        for s, (a, b) in zip(spec.scenes, scene_frames(spec), strict=True) if b > a)
    total = scene_frames(spec)[-1][1]
    return Truth(duration=round(total / fps, 6), fps=float(fps), scenes=scenes)


def truth_path(out_path: str | Path) -> Path:
    """``x.mp4`` -> ``x.truth.json`` (same folder)."""
    p = Path(out_path)
    return p.with_name(p.stem + ".truth.json")


def render(spec: dict[str, Any] | Spec, out_path: str | Path) -> Truth:
    """Render ``spec`` to a video file and write its ground truth next to it.

    The same spec always gives the same frames (object layout and motion are seeded by
    ``spec["seed"]`` and the scene index) and the same truth bytes.

    Args:
        spec: a spec dict (see :mod:`framedex.synth.spec`) or a parsed :class:`Spec`.
        out_path: output video path, e.g. ``"x.mp4"``; truth goes to ``"x.truth.json"``.

    Returns:
        The ground truth that was written.

    Raises:
        ConfigError: the spec is invalid (the message names the field path).
        VideoOpenError: the output file cannot be written.
    """
    spec = parse_spec(spec)
    out_path = Path(out_path)
    truth = truth_of(spec)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        write_video(out_path, iter_frames(spec), spec.fps, codec=spec.codec, crf=spec.crf,
                    gop=spec.gop, preset=spec.preset)
        truth_path(out_path).write_text(json.dumps(truth.to_dict(), indent=2) + "\n")
    except VideoOpenError:
        raise
    except OSError as ex:  # FFmpeg opens the output only at the first frame: a name too long
        shown = str(out_path) if len(str(out_path)) <= 120 else str(out_path)[:117] + "..."
        raise VideoOpenError(f"cannot write {shown!r}: {ex.strerror or ex}") from None
    return truth
