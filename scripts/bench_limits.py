"""Measure the worst requests of issue 27 against a real server: time and peak memory.

The attacks that exhausted the server, each sent to a ``framedex serve`` subprocess:

- ``POST /v1/videos/{id}/select`` with ``include: ["plot"]`` at large budgets, on a video of
  ``--plot-frames`` indexed frames (generated at 100 fps and indexed at 100 fps);
- ``POST /v1.3/search`` with ``--pngs`` images of ``--png-side`` squared pixels (small PNGs
  that decode to ~40 MP each), alone and ``--concurrent`` at once;
- JSON text nested ``--depth`` levels in every field that takes JSON text.

For each, the wall time the client saw, the status, and how much the server's peak RSS rose
above its RSS before the request (``VmHWM`` after resetting it through
``/proc/PID/clear_refs``; Linux only). Prints a markdown table.

Usage::

    .venv/bin/python scripts/bench_limits.py                        # the issue's sizes
    .venv/bin/python scripts/bench_limits.py --plot-frames 300 --budgets 250 --png-side 1000
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

KEY = "bench-limits-key-0123"
HEADERS = {"x-api-key": KEY, "Authorization": f"Bearer {KEY}"}


def big_png(side: int) -> bytes:
    """A PNG of ``side`` x ``side`` pixels that compresses to a few hundred KB (blocks and
    discs on a flat colour): small to send, ~``side``² x 4 bytes to decode."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (side, side), (200, 30, 60))
    draw = ImageDraw.Draw(im)
    step = max(8, side // 21)
    for i in range(0, side, step):
        draw.rectangle([i, i, i + step // 2, i + step // 2], fill=(20, 200, 90))
        draw.ellipse([side - i - step, i, side - i, i + step], fill=(30, 60, 220))
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=9)
    return buf.getvalue()


def _status_mb(pid: int, key: str) -> float:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(ln.split()[1]) for ln in fh if ln.startswith(key)) / 1024


def measured(pid: int, send) -> tuple[list[int | str], float, float]:
    """Run ``send()`` (returns status codes); (statuses, seconds, MB the server's peak RSS
    rose above its RSS before). A request the server dropped counts as its error's name."""
    with open(f"/proc/{pid}/clear_refs", "w") as fh:
        fh.write("5")  # VmHWM := VmRSS
    before = _status_mb(pid, "VmRSS")
    t0 = time.perf_counter()
    try:
        statuses: list[int | str] = list(send())
    except httpx.HTTPError as ex:
        statuses = [type(ex).__name__]
    seconds = time.perf_counter() - t0
    try:
        added = _status_mb(pid, "VmHWM") - before
    except (OSError, StopIteration):  # the server is gone
        added = float("nan")
    return statuses, seconds, added


def build(tmp: Path, args: argparse.Namespace) -> tuple[Path, str, str]:
    """A store with one video of ``--plot-frames`` indexed frames in a Twelve Labs index."""
    from videos import cfr

    from framedex import Library

    video = tmp / "long.mp4"
    cfr(video, Fraction(100), args.plot_frames / 100)
    db = tmp / "lib.db"
    lib = Library(db, model=args.model, device=args.device, log_queries=False)
    t0 = time.perf_counter()
    report = lib.index([video], fps=100)
    (outcome,) = report.by_status("indexed")
    print(f"indexed {outcome.num_indexed} frames in {time.perf_counter() - t0:.1f}s",
          file=sys.stderr)
    index = lib.create_collection("limits")
    lib.add_to_collection(index.collection.index_id, outcome.video_id)
    return db, outcome.video_id, index.collection.index_id


def run(args: argparse.Namespace, db: Path, vid: str, index_id: str) -> list[tuple]:
    from api_server import free_port, kill9, wait_ready

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "framedex", "serve", "--db", str(db), "--model", args.model,
         "--device", args.device, "--port", str(port), "--api-key", KEY, "--create"],
        stderr=subprocess.PIPE, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    rows: list[tuple] = []
    png = big_png(args.png_side)
    deep = '{"a":' * args.depth + "1" + "}" * args.depth
    try:
        wait_ready(base, timeout=180, proc=proc)
        with httpx.Client(base_url=base, headers=HEADERS, timeout=600) as client:
            def select(budget: int):
                return lambda: [client.post(f"/v1/videos/{vid}/select", json={
                    "question": "a red circle", "sampler": "uniform", "budget": budget,
                    "include": ["plot"]}).status_code]

            def search(n: int):
                files = [("query_media_file", (f"q{i}.png", png, "image/png"))
                         for i in range(n)]
                data = {"index_id": index_id, "search_options": "visual",
                        "query_media_type": "image"}
                return lambda: client.post("/v1.3/search", data=data, files=files).status_code

            select(8)()  # warm-up: the first select and plot import what they need
            for budget in args.budgets:
                rows.append((f"select, include plot, budget {budget:,} of "
                             f"{args.plot_frames:,} frames", *measured(proc.pid,
                                                                       select(budget))))
            mp = args.png_side ** 2 / 1e6
            for n in sorted({args.pngs, 3}):
                send = search(n)
                rows.append((f"/v1.3/search, {n} PNGs of {args.png_side}² ({mp:.1f} MP, "
                             f"{len(png) // 1024} KB each)",
                             *measured(proc.pid, lambda s=send: [s()])))
            with ThreadPoolExecutor(args.concurrent) as pool:
                many = search(3)
                rows.append((f"/v1.3/search, {args.concurrent} requests of 3 such PNGs at "
                             "once", *measured(proc.pid, lambda: list(pool.map(
                                 lambda _: many(), range(args.concurrent))))))
            nested = [
                ("/v1/videos metadata", lambda: client.post(
                    "/v1/videos", files={"file": ("v.mp4", b"\0" * 64)},
                    data={"metadata": deep}).status_code),
                ("/v1/search filters (JSON body)", lambda: client.post(
                    "/v1/search", content=('{"text": "x", "filters": ' + deep + "}").encode(),
                    headers={"content-type": "application/json"}).status_code),
                ("/v1.3/assets user_metadata", lambda: client.post(
                    "/v1.3/assets", files=[(k, (None, v)) for k, v in (
                        ("method", "url"), ("url", "http://x/v.mp4"),
                        ("user_metadata", deep))]).status_code),
                ("/v1.3/search filter", lambda: client.post(
                    "/v1.3/search", files=[(k, (None, v)) for k, v in (
                        ("index_id", index_id), ("query_text", "x"),
                        ("search_options", "visual"), ("filter", deep))]).status_code),
            ]
            for name, send in nested:
                if proc.poll() is not None:
                    rows.append((f"{name}, JSON nested {args.depth:,} deep",
                                 ["server exited"], 0.0, float("nan")))
                    continue
                rows.append((f"{name}, JSON nested {args.depth:,} deep",
                             *measured(proc.pid, lambda s=send: [s()])))
    finally:
        kill9(proc)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="synthetic-shapes", help="encoder spec")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--plot-frames", type=int, default=12_000)
    ap.add_argument("--budgets", type=lambda s: [int(b) for b in s.split(",")],
                    default=[250, 1000, 10_000])
    ap.add_argument("--png-side", type=int, default=6300)
    ap.add_argument("--pngs", type=int, default=10)
    ap.add_argument("--concurrent", type=int, default=4)
    ap.add_argument("--depth", type=int, default=10_000)
    args = ap.parse_args()
    if not Path("/proc/self/clear_refs").exists():
        sys.exit("bench_limits.py reads the server's peak RSS from /proc (Linux only)")

    tmp = Path(tempfile.mkdtemp(prefix="framedex-bench-limits-"))
    try:
        db, vid, index_id = build(tmp, args)
        rows = run(args, db, vid, index_id)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nworst requests (issue 27), model {Path(args.model).name}, device {args.device}\n")
    print("| request | status | seconds | server peak RSS added |")
    print("|---|---|---:|---:|")
    for name, statuses, seconds, mb in rows:
        shown = ", ".join(f"{s} x{statuses.count(s)}" if statuses.count(s) > 1 else str(s)
                          for s in dict.fromkeys(statuses))
        print(f"| {name} | {shown} | {seconds:.2f} | {mb:.0f} MB |")
    print(json.dumps({"rows": len(rows)}), file=sys.stderr)


if __name__ == "__main__":
    main()
