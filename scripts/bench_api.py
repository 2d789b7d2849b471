"""Benchmark the HTTP API: select latency over loopback, idle and during an ingest.

A store is filled with one cached 1-hour video (3,600 frames at 1 fps, 600 six-second segments)
of scene-like unit vectors written through the store's write protocol (no 1-hour render: select
latency does not depend on what the vectors mean), with the identity of the served model
(default: the shipped ``synthetic-shapes``). A real ``framedex serve`` subprocess serves it;
httpx clients send ``POST /v1/videos/{id}/select`` at concurrency 1 and 8, then again while an
ingest job of a generated video runs. Prints a markdown table; errors must be zero.

Memory: the server's RSS (``VmRSS`` of the server and any child process) right after start-up
(idle), after ``--rss-requests`` (1,000) mixed requests (searches of one and two parts, group
by clip and video, and selects of two samplers, new texts every time), and after the ingest
job (the first request that needs torch); with the cache bytes ``/health`` reports.

Usage::

    .venv/bin/python scripts/bench_api.py                      # synthetic-shapes, CPU
    .venv/bin/python scripts/bench_api.py --requests 400 --samplers bolt,aks
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "scripts"))


def build_store(db: Path, model: str, frames: int, video: Path) -> str:
    """Write one ``frames``-second cached video of scene-like vectors; returns its id."""
    from bench_common import scene_vectors, write_video

    from framedex.indexer.encoder import load_text_encoder
    from framedex.store import open_store

    encoder = load_text_encoder(model)
    vid = "bench1hour00000000000"
    write_video(open_store(db), encoder.identity, vid, scene_vectors(frames, encoder.dim),
                path=str(video))
    return vid


def run_load(client: httpx.Client, url: str, body_of, n: int, concurrency: int,
             keep_going=None) -> dict:
    """``n`` requests at ``concurrency``; latencies in ms, errors counted (never raised)."""
    lat: list[float] = []
    server: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        if keep_going is not None and not keep_going():
            return
        t0 = time.perf_counter()
        try:
            r = client.post(url, json=body_of(i))
            ok = r.status_code == 200
            detail = f"{r.status_code} {r.text[:120]}"
        except httpx.HTTPError as ex:
            ok, detail = False, repr(ex)
        ms = (time.perf_counter() - t0) * 1000
        with lock:
            if ok:
                lat.append(ms)
                server.append(r.json()["latency_ms"])
            else:
                errors.append(detail)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(n)))
    wall = time.perf_counter() - t0
    q = statistics.quantiles(lat, n=20) if len(lat) >= 2 else [float("nan")] * 19
    return {"n": len(lat) + len(errors), "errors": len(errors), "p50": statistics.median(lat),
            "p95": q[18], "rps": (len(lat) + len(errors)) / wall,
            "server_p50": statistics.median(server), "first_error": errors[:1]}


QUESTIONS = ["a red circle on black", "when does the scene change?", "a blue star",
             "the white background"]


def measure_idle(client: httpx.Client, url: str, args: argparse.Namespace) -> list[tuple]:
    """Each sampler at concurrency 1 and 8 on an idle server."""
    rows = []
    for sampler in args.samplers.split(","):
        def body(i: int, s: str = sampler) -> dict:
            return {"question": QUESTIONS[i % 4], "sampler": s, "budget": args.budget}

        run_load(client, url, body, 10, 1)  # warm-up
        for conc in (1, 8):
            rows.append(("idle", sampler, conc, run_load(client, url, body, args.requests, conc)))
    return rows


def measure_during_ingest(client: httpx.Client, url: str, args: argparse.Namespace,
                          ingest_video: Path) -> tuple:
    """The first sampler at concurrency 8 while an ingest job runs (stops when it ends)."""
    sampler = args.samplers.split(",")[0]
    job_url = "/v1/jobs/" + client.post(
        "/v1/videos", json={"path": str(ingest_video), "fps": 10}).json()["job_id"]
    while client.get(job_url).json()["status"] == "queued":
        time.sleep(0.05)
    state = {"t": 0.0, "running": True}

    def running() -> bool:  # polled at most every 0.2 s, not once per request
        if time.monotonic() - state["t"] > 0.2:
            state["t"] = time.monotonic()
            state["running"] = client.get(job_url).json()["status"] == "running"
        return state["running"]

    def body(i: int) -> dict:
        return {"question": QUESTIONS[i % 4], "sampler": sampler, "budget": args.budget}

    res = run_load(client, url, body, args.requests, 8, keep_going=running)
    final = client.get(job_url).json()
    return (f"during ingest (job {final['status']})", sampler, 8, res)


def rss_mb(pid: int) -> float:
    """RSS (MB) of ``pid`` and its children (``/proc``; 0 for a process that has ended)."""
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        total += next(int(line.split()[1]) for line in status.splitlines()
                      if line.startswith("VmRSS"))
        pids.extend(int(c) for c in children)
    return total / 1024


def mixed_load(client: httpx.Client, vid: str, n: int, samplers: list[str]) -> int:
    """``n`` searches and selects, each with a text never sent before; returns the errors."""
    errors = 0
    for i in range(n):
        kind = i % 4
        if kind == 0:
            r = client.post("/v1/search", json={"text": f"{QUESTIONS[i % 4]} {i}", "limit": 10})
        elif kind == 1:
            r = client.post("/v1/search", json={
                "text": [f"a red circle {i}", f"a blue star {i}"], "operator": "and",
                "group_by": "video"})
        else:
            r = client.post(f"/v1/videos/{vid}/select", json={
                "question": f"{QUESTIONS[i % 4]} ({i})", "sampler": samplers[i % len(samplers)],
                "budget": 8})
        errors += r.status_code != 200
    return errors


def serve_and_measure(args: argparse.Namespace, db: Path, model: str, media: Path, vid: str,
                      ingest_video: Path, memory: list[tuple]) -> list[tuple]:
    """Start ``framedex serve``, run the idle and during-ingest loads, stop the server."""
    from api_server import free_port, kill9, wait_ready

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "framedex", "serve", "--db", str(db), "--model", model,
         "--device", args.device, "--port", str(port), "--allow-root", str(media),
         "--create"],
        stderr=subprocess.PIPE, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, timeout=180, proc=proc)
        time.sleep(1.0)  # start-up work after the first answer (the upkeep timer's first run)
        limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
        with httpx.Client(base_url=base, timeout=60, limits=limits) as client:
            def note(stage: str) -> None:
                cache = client.get("/health").json().get("cache", {})
                sizes = {name: v.get("bytes") for name, v in cache.items()
                         if isinstance(v, dict) and v.get("bytes") is not None}
                memory.append((stage, rss_mb(proc.pid), sizes))

            note("idle, after start-up")
            errors = mixed_load(client, vid, args.rss_requests, args.samplers.split(","))
            note(f"after {args.rss_requests} mixed searches and selects ({errors} errors)")
            url = f"/v1/videos/{vid}/select"
            rows = measure_idle(client, url, args)
            rows.append(measure_during_ingest(client, url, args, ingest_video))
            note("after the ingest job (torch loaded)")
    finally:
        kill9(proc)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="synthetic-shapes", help="encoder spec")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--frames", type=int, default=3600)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--samplers", default="bolt,uniform")
    ap.add_argument("--budget", type=int, default=8)
    ap.add_argument("--rss-requests", type=int, default=1000,
                    help="mixed searches and selects between the two RSS readings")
    ap.add_argument("--ingest-seconds", type=float, default=300.0,
                    help="length of the video ingested during the second phase")
    args = ap.parse_args()

    from framedex.synth import random_spec, render

    tmp = Path(tempfile.mkdtemp(prefix="framedex-bench-api-"))
    model = args.model
    media = tmp / "media"
    media.mkdir()
    dummy = media / "cached-1h.mp4"
    dummy.write_bytes(b"")  # selects never decode; the path only has to exist on record
    db = tmp / "lib.db"
    t0 = time.perf_counter()
    vid = build_store(db, model, args.frames, dummy)
    print(f"store with {args.frames} frames built in {time.perf_counter() - t0:.1f}s",
          file=sys.stderr)
    ingest_video = media / "ingest.mp4"
    render(random_spec(args.ingest_seconds, seed=7, fps=10, size=[160, 120]), ingest_video)

    memory: list[tuple] = []
    try:
        rows = serve_and_measure(args, db, model, media, vid, ingest_video, memory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nselect over HTTP, 1-hour cached video ({args.frames} frames), budget "
          f"{args.budget}, model {Path(model).name}, device {args.device}\n")
    print("| scenario | sampler | concurrency | requests | errors | p50 ms | p95 ms | req/s "
          "| server p50 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for scenario, sampler, conc, r in rows:
        print(f"| {scenario} | {sampler} | {conc} | {r['n']} | {r['errors']} | {r['p50']:.1f} "
              f"| {r['p95']:.1f} | {r['rps']:.1f} | {r['server_p50']:.1f} |")
    print("\n| server memory | RSS MB | caches in /health (bytes) |")
    print("|---|---:|---|")
    for stage, mb, caches in memory:
        print(f"| {stage} | {mb:.0f} | {json.dumps(caches, sort_keys=True)} |")
    errors = [r["first_error"] for *_, r in rows if r["errors"]]
    if errors:
        print(f"\nERRORS: {errors}")
        sys.exit(1)


if __name__ == "__main__":
    main()
