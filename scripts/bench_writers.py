"""Benchmark concurrent writers on one store: 1, 2 and 4 ``framedex index`` processes over the
same library, on a local folder and on S3 (moto on loopback, tests/s3_loopback.py).

For each configuration, N processes run ``framedex index LIB --db STORE --json`` at once on a
fresh store; the row reports:

- **wall** and **videos/s**: from the first start to the last exit (interpreter start, model
  load, indexing, the post-run upkeep), and the library's videos over that time;
- **commits / video**: Lance commits of every table per video in the library: those of the
  write path (appends, merge-inserts, deletes) and, after the ``+``, the post-run upkeep's
  (compaction, index builds);
- **S3 requests / video**: requests the S3 stand-in answered, per video (S3 rows only);
- **lost** and **doubled rows**: videos listed without exactly their frames (or missing), and
  a live video's frame rows beyond its own. Both must be 0.

Nothing here imports framedex: the store is read with pylance and the CLI is a subprocess, so
the same script measures another checkout (``--src OTHER/src``), e.g. the code before the
store's leases, for the before/after table.

Usage::

    .venv/bin/python scripts/bench_writers.py                      # 12 generated clips
    .venv/bin/python scripts/bench_writers.py --src /tmp/old/src --writers 1 2 --json old.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import s3_loopback  # noqa: E402

TABLES = ("videos", "frames", "segments", "video_paths", "video_vectors")
#: Operations of the write path (the rest is upkeep: compaction, index builds and their
#: bookkeeping).
WRITES = {"Append", "Update", "Delete", "Merge", "Overwrite"}


def _operation(uri: str, version: int, options: dict[str, str] | None) -> str:
    """The Lance operation that made ``version`` (``?`` when pylance cannot decode it: its
    bindings lack some index operations, which are upkeep)."""
    import lance

    try:
        (txn,) = lance.dataset(uri, version=version,
                               storage_options=options).get_transactions(1)
    except (TypeError, ValueError, OSError):
        return "?"
    return type(txn.operation).__name__ if txn is not None else "?"


def make_library(folder: Path, videos: int, seconds: float) -> Path:
    """``videos`` distinct generated clips (coloured shapes, 64x48, 10 fps)."""
    folder.mkdir(parents=True, exist_ok=True)
    code = ("import sys\nfrom framedex.synth import random_spec, render\n"
            f"for i in range({videos}):\n"
            f"    out = {str(folder)!r} + f'/clip{{i:02d}}.mp4'\n"
            "    import os\n"
            "    if not os.path.exists(out):\n"
            f"        render(random_spec({seconds}, seed=1000 + i, fps=10, size=[64, 48]), out)\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    return folder


def store_counts(uri: str, options: dict[str, str] | None) -> dict[str, Any]:
    """Commits per table, and the live/lost/doubled check, read with pylance."""
    import lance

    def ds(name: str) -> Any:
        try:
            return lance.dataset(f"{uri}/{name}.lance", storage_options=options)
        except (ValueError, OSError):
            return None

    commits: dict[str, int] = {}
    upkeep = 0
    for name in TABLES:
        d = ds(name)
        commits[name] = 0 if d is None else int(d.version) - 1  # version 1 is the creation
        for v in range(2, 0 if d is None else int(d.version) + 1):
            if _operation(f"{uri}/{name}.lance", v, options) not in WRITES:
                upkeep += 1
    videos = ds("videos").to_table(columns=["video_id", "generation", "num_indexed"]).to_pylist()
    frames = ds("frames").to_table(columns=["video_id", "generation"])
    counts: dict[tuple[str, int], int] = {}
    for vid, gen in zip(frames.column("video_id").to_pylist(),
                        frames.column("generation").to_pylist(), strict=True):
        counts[(vid, gen)] = counts.get((vid, gen), 0) + 1
    held = [counts.get((v["video_id"], v["generation"]), 0) - v["num_indexed"] for v in videos]
    return {"commits": commits, "upkeep_commits": upkeep, "videos": len(videos),
            "lost": sum(h != 0 for h in held),  # listed without exactly its frames
            "doubled_rows": sum(h for h in held if h > 0)}  # a live video's rows beyond its own


def run(lib: Path, writers: int, where: str, model: str, src: Path,
        endpoint: str | None) -> dict[str, Any]:
    """N writers on a fresh store; the row of the table."""
    env = dict(os.environ, PYTHONPATH=str(src))
    options = None
    with tempfile.TemporaryDirectory() as tmp:
        if where == "s3":
            assert endpoint is not None
            bucket = f"bench-{uuid.uuid4().hex[:10]}"
            s3_loopback.make_bucket(endpoint, bucket)
            uri = f"s3://{bucket}/lib"
            env.update(s3_loopback.environment(endpoint))
            options = s3_loopback.storage_options(endpoint)
            s3_loopback.request_counts(endpoint, reset=True)
        else:
            uri = str(Path(tmp) / "lib.db")
        cmd = [sys.executable, "-m", "framedex", "index", str(lib), "--db", uri, "--model",
               model, "--device", "cpu", "--json"]
        t0 = time.perf_counter()
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=env) for _ in range(writers)]
        outs = [p.communicate() for p in procs]
        wall = time.perf_counter() - t0
        requests = sum(s3_loopback.request_counts(endpoint).values()) if where == "s3" \
            and endpoint else None
        failed_runs = [err.strip().splitlines()[-1] if err.strip() else f"exit {p.returncode}"
                       for p, (_o, err) in zip(procs, outs, strict=True) if p.returncode != 0]
        counts = store_counts(uri, options)
    videos = len(list(lib.glob("*.mp4")))
    indexed = sum(len(json.loads(o)["indexed"]) for o, _ in outs if o.strip())
    return {"where": where, "writers": writers, "wall_s": round(wall, 2),
            "videos_per_s": round(videos / wall, 3),
            "commits_per_video": round(sum(counts["commits"].values()) / videos, 2),
            "write_commits_per_video": round((sum(counts["commits"].values())
                                              - counts["upkeep_commits"]) / videos, 2),
            "commits": counts["commits"],
            "s3_requests_per_video": None if requests is None else round(requests / videos, 1),
            "indexed_by_runs": indexed, "listed": counts["videos"],
            "lost": counts["lost"] + (videos - counts["videos"]),
            "doubled_rows": counts["doubled_rows"], "failed_runs": failed_runs}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each clip")
    ap.add_argument("--writers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--where", nargs="+", default=["local", "s3"], choices=["local", "s3"])
    ap.add_argument("--model", default="synthetic-shapes")
    ap.add_argument("--src", type=Path, default=ROOT / "src",
                    help="the framedex checkout to measure (its src folder)")
    ap.add_argument("--json", type=Path, help="write the rows here too")
    args = ap.parse_args(argv)

    cache = Path(tempfile.gettempdir()) / "framedex-bench"
    lib = make_library(cache / f"writers_{args.videos}x{args.seconds:g}s", args.videos,
                       args.seconds)
    proc, endpoint = s3_loopback.start() if "s3" in args.where else (None, None)
    rows = []
    try:
        for where in args.where:
            for n in args.writers:
                row = run(lib, n, where, args.model, args.src.resolve(), endpoint)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait()
    print(f"{args.videos} clips of {args.seconds:g} s, model {args.model}, "
          f"src {args.src}")
    print("| store | writers | wall | videos/s | commits / video | S3 requests / video "
          "| lost | doubled rows | failed runs |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        s3 = "" if r["s3_requests_per_video"] is None else f"{r['s3_requests_per_video']:g}"
        upkeep = r["commits_per_video"] - r["write_commits_per_video"]
        print(f"| {r['where']} | {r['writers']} | {r['wall_s']:.1f} s | {r['videos_per_s']:.2f} "
              f"| {r['write_commits_per_video']:g} + {upkeep:.2g} | {s3} | {r['lost']} "
              f"| {r['doubled_rows']} "
              f"| {'; '.join(r['failed_runs'])[:120]} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
