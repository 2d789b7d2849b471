"""Benchmark the Ray engine against the local engine: the same library, the same command.

Each measurement is one ``framedex index LIB --db FRESH --json [--engine ray]`` process, timed
from its start to its exit (interpreter start, model and cluster start, indexing, the final
optimize, shutdown): what a user waits for. Engines are interleaved over ``--repeats`` so a
noisy neighbour hurts both alike; the best of each is shown.

The **fixed overhead** of Ray is the same pair of commands on a one-clip library (a 2 s
generated clip): what ``--engine ray`` adds when there is almost nothing to index (starting a
local cluster, the planning job, starting the encoder actors, which import torch and load the
model, and the shutdown). It does not shrink with more machines; the decode and encode
throughput does grow with them.

Usage::

    .venv/bin/python scripts/bench_ray.py                 # 4 generated 2-min 720p videos
    .venv/bin/python scripts/bench_ray.py --model synthetic-shapes --videos 2 --minutes 1

``--model vit-b-32-random`` (the default) is scripts/bench_index.py's: open_clip's ViT-B-32
with random weights in a local folder (the cost of the pretrained one, no download).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_decode import make_video
from bench_index import random_vit_b32

ENGINES = ("local", "ray")


def run_index(lib: Path, model: str, engine: str, extra: list[str]) -> tuple[float, dict]:
    """One ``framedex index`` process on a fresh store: (wall seconds, its --json report)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "framedex", "index", str(lib), "--db",
               str(Path(tmp) / "db"), "--model", model, "--json", "--engine", engine, *extra]
        env = dict(os.environ, RAY_AUTH_MODE=os.environ.get("RAY_AUTH_MODE", "disabled"))
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return wall, json.loads(out.stdout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--library", type=Path, help="a folder of videos (default: generate)")
    ap.add_argument("--videos", type=int, default=4, help="generated videos")
    ap.add_argument("--minutes", type=float, default=2.0, help="length of each generated video")
    ap.add_argument("--model", default="vit-b-32-random")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", type=Path, help="write the numbers here too")
    ap.add_argument("extra", nargs="*", help="more `framedex index` options, after --")
    args = ap.parse_args(argv)

    cache = Path(tempfile.gettempdir()) / "framedex-bench"
    cache.mkdir(exist_ok=True)
    model = random_vit_b32(cache / "vit-b-32-random") if args.model == "vit-b-32-random" \
        else args.model
    if args.library:
        lib = args.library
    else:
        lib = cache / f"ray_lib_{args.videos}x{args.minutes:g}min"
        lib.mkdir(exist_ok=True)
        for i in range(args.videos):
            src = make_video(cache / f"lib_{args.minutes:g}min_{i}.mp4", args.minutes,
                             seed=i + 1)
            if not (lib / src.name).exists():
                os.link(src, lib / src.name)
    clip = cache / "ray_clip"
    clip.mkdir(exist_ok=True)
    make_video(clip / "clip_2s.mp4", 2 / 60, seed=99)

    best: dict[tuple[str, str], float] = {}
    frames = 0
    for _ in range(args.repeats):
        for which, folder in (("library", lib), ("clip", clip)):
            for engine in ENGINES:
                wall, report = run_index(folder, model, engine, args.extra)
                key = (which, engine)
                best[key] = min(best.get(key, float("inf")), wall)
                if which == "library":
                    frames = sum(o["num_indexed"] for o in report["indexed"])
                print(f"{which:8s} {engine:6s} {wall:7.1f} s", file=sys.stderr)

    cores = len(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    print(f"\n{lib.name}: {frames} grid frames; model {args.model}; {cores} cores "
          f"(load average {load:.1f} at the end); best of {args.repeats}\n")
    print("| engine | library | frames/s | one 2 s clip |")
    print("|---|---:|---:|---:|")
    for engine in ENGINES:
        lib_s, clip_s = best[("library", engine)], best[("clip", engine)]
        print(f"| {engine} | {lib_s:.1f} s | {frames / lib_s:.1f} | {clip_s:.1f} s |")
    overhead = best[("clip", "ray")] - best[("clip", "local")]
    print(f"\nRay's fixed overhead (one clip, ray - local): {overhead:.1f} s")
    if args.json:
        args.json.write_text(json.dumps({"frames": frames, "cores": cores, "best": {
            f"{w}/{e}": s for (w, e), s in best.items()}, "ray_overhead_s": overhead}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
