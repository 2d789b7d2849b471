"""Calibrate search's confidence levels (``framedex.rules.CONFIDENCE_TABLE``) on the synthetic
world, and print the table docs/search.md shows.

Held-out renders (seeds >= 10^9, never used to train the shipped model): random filler scenes
of coloured shapes, 0-3 objects each, whose truth names every object in every scene. Each of
the 24 object queries ("a {colour} {shape}") is searched with ``threshold="none"`` and the
largest limit; a moment is *true* when its best frame lies in a scene showing that object.
Its *margin* is its score minus the query's background (the query's cosine with the library's
mean frame, the reference search's moments already use).

The videos are split by seed: the cut points are chosen on the *tune* half with three rules,
then measured on the *test* half:

- ``low``: the largest margin that keeps >= 99 % of the true moments (a floor for noise);
- ``medium``: the least margin where >= 50 % of the moments kept are true;
- ``high``: the least margin where >= 90 % of the moments kept are true.

Usage::

    OPENBLAS_NUM_THREADS=1 python scripts/calibrate_confidence.py --videos 16 --minutes 3
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from framedex.library import Library, internals
from framedex.rules import CONFIDENCE_TABLE
from framedex.synth import haystack_spec, render
from framedex.synth.spec import COLORS, SHAPES

#: Margins the table lists (the chosen cut points are rounded to this grid).
GRID = np.round(np.arange(0.0, 0.2201, 0.01), 2)
RULES = {"low": ("recall", 0.99), "medium": ("precision", 0.50), "high": ("precision", 0.90)}


def render_world(folder: Path, videos: int, minutes: float) -> list[Path]:
    """Filler-only videos (every scene random) at held-out seeds."""
    out = []
    for i in range(videos):
        path = folder / f"world{i:02d}.mp4"
        if not path.exists():
            render(haystack_spec(60.0 * minutes, [], seed=10**9 + 7 * i, fps=5,
                                 size=[128, 96]), path)
        out.append(path)
    return out


def moments(lib: Library, paths: list[Path]) -> dict[str, list[tuple[float, bool]]]:
    """``{video path: [(margin, true?), ...]}`` over the 24 object queries."""
    truth = {str(p): json.loads(p.with_suffix(".truth.json").read_text())["scenes"]
             for p in paths}
    mean = internals(lib).store.search_snapshot().mean
    found: dict[str, list[tuple[float, bool]]] = {str(p): [] for p in paths}
    for shape in SHAPES:
        for color in COLORS:
            query = f"a {color} {shape}"
            background = float(lib.embed_text(query)[0] @ mean)
            for m in lib.search(query, limit=1000, threshold="none"):
                shown = any(s["start"] <= m.best_pts_sec < s["end"]
                            and any(o["shape"] == shape and o["color"] == color
                                    for o in s["objects"]) for s in truth[m.path])
                found[m.path].append((m.score - background, shown))
    return found


def rates(pairs: list[tuple[float, bool]], cut: float, queries: int) -> dict[str, float]:
    margin = np.array([p[0] for p in pairs])
    true = np.array([p[1] for p in pairs])
    kept = margin >= cut - 1e-12
    hits = int((kept & true).sum())
    return {"recall": hits / max(1, int(true.sum())),
            "precision": hits / max(1, int(kept.sum())),
            "false": float((kept & ~true).sum()) / queries,
            "kept": float(kept.sum()) / queries}


def choose(pairs: list[tuple[float, bool]], queries: int) -> dict[str, float]:
    """The cut points the rules give on ``pairs`` (the module docstring)."""
    table = {float(c): rates(pairs, float(c), queries) for c in GRID}
    out = {}
    for name, (what, level) in RULES.items():
        ok = [c for c, r in table.items() if r[what] >= level]
        out[name] = max(ok) if what == "recall" else min(ok)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=16)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--work", type=Path, default=None, help="keep videos and store here")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="framedex-confidence-"))
    work.mkdir(parents=True, exist_ok=True)
    paths = render_world(work / "videos", args.videos, args.minutes)
    with Library(work / "db", model="synthetic-shapes", log_queries=False) as lib:
        lib.index([work / "videos"])
        found = moments(lib, paths)
    half = len(paths) // 2
    tune = [x for p in paths[:half] for x in found[str(p)]]
    test = [x for p in paths[half:] for x in found[str(p)]]
    queries = len(SHAPES) * len(COLORS)
    chosen = choose(tune, queries)
    print(f"{len(paths)} videos of {args.minutes:g} min, {queries} queries; tune: "
          f"{len(tune)} moments ({sum(t for _, t in tune)} true), test: {len(test)} moments "
          f"({sum(t for _, t in test)} true)\n")
    print("| margin | tune recall | tune precision | test recall | test precision | "
          "false moments / query (test) | level |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    names = {v: k for k, v in chosen.items()}
    for c in GRID:
        a, b = rates(tune, float(c), queries), rates(test, float(c), queries)
        print(f"| {c:.2f} | {100 * a['recall']:.1f} % | {100 * a['precision']:.1f} % | "
              f"{100 * b['recall']:.1f} % | {100 * b['precision']:.1f} % | "
              f"{b['false']:.1f} | {names.get(float(c), '')} |")
    shipped = {c.name: c.margin for c in CONFIDENCE_TABLE}
    print(f"\nchosen on tune: {chosen}; framedex.rules.CONFIDENCE_TABLE: {shipped}")


if __name__ == "__main__":
    main()
