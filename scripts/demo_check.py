"""Print what the demo expected next to what framedex found, from the videos' ground truth.

Every synthetic video has a ``.truth.json`` beside it (scenes with their objects), so a search
hit or a chosen frame can be checked: does the scene at that time show the object asked for?
A miss is printed as a miss, never hidden.

Usage (the demo pipes ``--json`` output in)::

    framedex search "a purple star" --json | python scripts/demo_check.py search star purple
    framedex select V "when ...?" --json | python scripts/demo_check.py select star purple
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def truth_of(video: str) -> dict | None:
    """The truth JSON beside a rendered video, or None."""
    path = Path(video).with_suffix(".truth.json")
    return json.loads(path.read_text()) if path.is_file() else None


def scenes_at(truth: dict, start: float, end: float) -> list[dict]:
    """Scenes overlapping [start, end)."""
    return [s for s in truth["scenes"] if s["start"] < max(end, start + 1e-6) and s["end"] > start]


def shows(scene: dict, shape: str, color: str) -> bool:
    """True when the scene has a ``color`` ``shape``."""
    return any(_obj(o) == (shape, color) for o in scene["objects"])


def _obj(o: object) -> tuple[str, str]:
    return (o["shape"], o["color"]) if isinstance(o, dict) else (o[0], o[1])  # type: ignore[index]


def describe(scene: dict) -> str:
    objs = [" ".join(reversed(_obj(o))) for o in scene["objects"]]
    return f"{' + '.join(objs) or 'nothing'} on {scene['background']}"


def expected(paths: list[str], shape: str, color: str) -> dict[str, list[tuple[float, float]]]:
    """Where each video really shows the object: {path: [(start, end), ...]}."""
    out: dict[str, list[tuple[float, float]]] = {}
    for p in paths:
        truth = truth_of(p)
        if truth:
            spans = [(s["start"], s["end"]) for s in truth["scenes"] if shows(s, shape, color)]
            if spans:
                out[p] = spans
    return out


def check_search(hits: list[dict], shape: str, color: str) -> int:
    videos = sorted({h["path"] for h in hits} | {str(p) for p in _library(hits)})
    want = expected(videos, shape, color)
    spans = ", ".join(f"{Path(p).name} {a:.0f}-{b:.0f} s" for p, ss in want.items()
                      for a, b in ss)
    article = "an" if color[0] in "aeiou" else "a"
    print(f"  expected: {article} {color} {shape} at {spans or 'nowhere'}")
    found: set[tuple[str, float]] = set()
    for rank, h in enumerate(hits, 1):
        truth = truth_of(h["path"]) or {"scenes": []}
        scenes = scenes_at(truth, h["start"], h["end"])
        hit = any(shows(s, shape, color) for s in scenes)
        for p, ss in want.items():
            found |= {(p, a) for a, b in ss if p == h["path"] and a < h["end"] and b > h["start"]}
        print(f"  found #{rank}: {Path(h['path']).name} {h['start']:.1f}-{h['end']:.1f} s, "
              f"score {h['score']:.3f}: {'; '.join(describe(s) for s in scenes) or '?'}"
              f"  {'HIT' if hit else 'MISS'}")
    total = sum(len(ss) for ss in want.values())
    others = sum(1 for h in hits if not any(
        shows(s, shape, color)
        for s in scenes_at(truth_of(h["path"]) or {"scenes": []}, h["start"], h["end"])))
    print(f"  => {len(found)} of the {total} expected moments are in the top {len(hits)}"
          + (f" ({others} other result{'s' if others != 1 else ''} without one: a MISS above)"
             if others else ""))
    return 0


def check_select(sel: dict, shape: str, color: str) -> int:
    truth = truth_of(sel["path"]) or {"scenes": []}
    want = expected([sel["path"]], shape, color).get(sel["path"], [])
    good = [t for t in sel["timestamps"]
            if any(shows(s, shape, color) for s in scenes_at(truth, t, t))]
    covered = [(a, b) for a, b in want if any(a <= t < b for t in good)]
    article = "an" if color[0] in "aeiou" else "a"
    print(f"  {len(good)} of {len(sel['timestamps'])} frames show {article} {color} {shape} "
          f"({', '.join(f'{t:.0f} s' for t in good) or 'none'}); needles covered: "
          + ", ".join(f"{a:.0f}-{b:.0f} s {'yes' if (a, b) in covered else 'NO'}"
                      for a, b in want))
    return 0


def _library(hits: list[dict]) -> list[Path]:
    """Every rendered video beside the hits' videos (so a needle in an unlisted video counts)."""
    out = []
    for folder in {Path(h["path"]).parent for h in hits}:
        for truth in folder.glob("*.truth.json"):
            video = truth.with_name(truth.name[: -len(".truth.json")] + ".mp4")
            if video.exists():
                out.append(video)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("search", "select"):
        print(__doc__, file=sys.stderr)
        return 2
    data = json.load(sys.stdin)
    kind, shape, color = argv
    return check_search(data, shape, color) if kind == "search" else \
        check_select(data, shape, color)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
