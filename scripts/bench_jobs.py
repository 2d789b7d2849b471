"""Benchmark the ingest jobs table: listing at 100k jobs, and the disk a burst of jobs leaves.

1. **A burst.** ``--burst`` path ingests of one short clip submitted to a fresh server (the
   first is indexed, the rest are ``unchanged``), all waited for: the seconds it took and
   the size of ``jobs.lance`` on disk right after (before any upkeep).
2. **Listing.** Then ``--jobs`` finished jobs are appended to its ``jobs`` table (in batches,
   as a long-running server would have left them; a tenth are Twelve Labs tasks): the
   latency of ``GET /v1/jobs?limit=50``, ``GET /v1/jobs/{id}`` and
   ``GET /v1.3/tasks?page_limit=10`` (median of ``--reps``).

The server is a subprocess and the table is written with pylance, so the same script measures
another checkout (``--src OTHER/src``) for a before/after table.

Usage::

    .venv/bin/python scripts/bench_jobs.py --jobs 100000 --burst 600
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def _serve(db: Path, src: Path, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(src), FRAMEDEX_API_KEY="")
    proc = subprocess.Popen([sys.executable, "-m", "framedex", "serve", "--db", str(db),
                             "--model", "synthetic-shapes", "--port", str(port), "--device",
                             "cpu", "--create", *extra], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the server did not start: {proc.stderr.read().decode()[-500:]}"
                             if proc.stderr else "the server did not start")
        time.sleep(0.2)


def _clip(folder: Path) -> Path:
    out = folder / "clip.mp4"
    code = ("from framedex.synth import random_spec, render\n"
            f"render(random_spec(6, seed=5, fps=10, size=[64, 48]), {str(out)!r})\n")
    subprocess.run([sys.executable, "-c", code], check=True,
                   env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    return out


def write_jobs(db: Path, n: int, clip: Path) -> list[str]:
    """``n`` finished jobs in the store's ``jobs`` table (the schema both versions share)."""
    import lance
    import pyarrow as pa

    schema = pa.schema([("job_id", pa.string()), ("status", pa.string()),
                        ("source", pa.string()), ("path", pa.string()),
                        ("progress", pa.float64()), ("video_id", pa.string()),
                        ("error", pa.string()), ("params", pa.string()),
                        ("attempts", pa.int32()), ("created_at", pa.timestamp("us", tz="UTC")),
                        ("updated_at", pa.timestamp("us", tz="UTC"))])
    now = datetime.now(timezone.utc)
    ids = []
    batch = 10_000
    for start in range(0, n, batch):
        rows = []
        for i in range(start, min(n, start + batch)):
            job_id = uuid.uuid4().hex[:16]
            ids.append(job_id)
            params = {"fps": 1.0, **({"tl": "task", "content_id": "0" * 20} if i % 10 == 0
                                     else {})}
            t = now - timedelta(seconds=n - i)
            rows.append({"job_id": job_id, "status": "done", "source": "path",
                         "path": str(clip), "progress": 1.0, "video_id": "0" * 20,
                         "error": None, "params": json.dumps(params, sort_keys=True),
                         "attempts": 1, "created_at": t, "updated_at": t})
        lance.write_dataset(pa.Table.from_pylist(rows, schema=schema), str(db / "jobs.lance"),
                            mode="append")
    return ids


def _median_ms(client: httpx.Client, url: str, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        r = client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, r.text[:300]
    return statistics.median(times)


def measure(src: Path, n: int, burst: int, reps: int, tmp: Path) -> dict[str, float]:
    """One server on a fresh store: the burst first (its jobs index one clip), then ``n``
    finished jobs appended to the table under the running server, then the listings."""
    db = tmp / "jobs.db"
    media = tmp / "media"
    media.mkdir(exist_ok=True)
    clip = _clip(media)
    proc, base = _serve(db, src, "--allow-root", str(media), "--workers", "2")
    try:
        with httpx.Client(base_url=base, timeout=120) as c:
            t0 = time.perf_counter()
            ids = [c.post("/v1/videos", json={"path": str(clip)}).json()["job_id"]
                   for _ in range(burst)]
            pending = set(ids)
            while pending:
                page = c.get(f"/v1/jobs?limit={burst}").json()["data"]
                pending = {j["job_id"] for j in page if j["status"] not in ("done", "failed")}
                time.sleep(0.2)
            out = {"burst_s": time.perf_counter() - t0}
            size = sum(f.stat().st_size for f in (db / "jobs.lance").rglob("*") if f.is_file())
            out["jobs_mb"] = size / (1 << 20)
            listed = write_jobs(db, n, clip)
            c.get("/v1/jobs?limit=50")  # warm-up
            out.update(list_ms=_median_ms(c, "/v1/jobs?limit=50", reps),
                       get_ms=_median_ms(c, f"/v1/jobs/{listed[n // 2]}", reps),
                       tasks_ms=_median_ms(c, "/v1.3/tasks?page_limit=10", reps))
            return out
    finally:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--burst", type=int, default=600)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--src", type=Path, default=ROOT / "src")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = measure(args.src.resolve(), args.jobs, args.burst, args.reps, Path(tmp))
    print(f"src {args.src}: {args.jobs:,} jobs, burst of {args.burst}")
    print("| GET /v1/jobs?limit=50 | GET /v1/jobs/{id} | GET /v1.3/tasks | burst "
          "| jobs.lance after |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {out['list_ms']:.0f} ms | {out['get_ms']:.0f} ms | {out['tasks_ms']:.0f} ms "
          f"| {out['burst_s']:.1f} s | {out['jobs_mb']:.1f} MB |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
