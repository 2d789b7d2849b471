"""Benchmark select on cached embeddings vs the no-cache path the papers' code runs.

Cached path (what framedex does per question), for a 1-hour video at 1 fps (3,600 frames,
D=512, float32 storage), per sampler: ``Store.read_frames`` + ``encode_text`` + one sampler
call; p50/p95 of the sampler call alone and of the whole path.

No-cache path (AKS/BOLT/... official code): decode the video's frames at 1 fps and encode
them with the image tower at query time, then run the sampler. Measured for real on a rendered
1-hour synthetic video (cached on disk between runs), once per run.

The cached store is written directly (``Store.add_frames`` + ``commit_video``) with
scene-like vectors (3,600 x 512). When the encoder's dimension is not 512 (the tiny test model),
its text vector is tiled to 512 dims: the encode cost is real, only the values are synthetic.

Usage::

    python scripts/bench_select.py                          # synthetic-shapes if trained
    python scripts/bench_select.py --model PATH --reps 30 --size 64
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

D, N = 512, 3600
QUESTION = "when does the purple star appear?"


def fill_store(store, seed: int = 0) -> str:
    """One committed 1-hour video: 3,600 scene-like unit vectors (float32 in the store)."""
    from framedex.store.schema import VideoRecord

    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, 13, size=N)
    owner = np.repeat(np.arange(N), lengths)[:N]
    centres = rng.standard_normal((owner[-1] + 1, D))
    x = centres[owner] + 0.6 * rng.standard_normal((N, D))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    store.ensure_encoder({"spec": "bench", "model": "bench", "pretrained": None,
                          "weights_digest": None, "dim": D})
    pos = np.arange(N)
    store.add_frames("hour", pos, pos * 30, pos.astype(np.float64), x)
    store.commit_video(VideoRecord(
        video_id="hour", path="/bench/hour.mp4", duration=float(N), frame_rate=30.0,
        num_frames=N * 30, width=640, height=360, start_sec=0.0, is_vfr=False, index_fps=1.0,
        num_indexed=N, decoder="pyav", encoder="bench"))
    return "hour"


def to_dim(q: np.ndarray) -> np.ndarray:
    q = np.resize(np.asarray(q, dtype=np.float32), D)
    return q / np.linalg.norm(q)


def cached_latency(store, encoder, vid: str, sampler_name: str, budget: int, reps: int):
    from framedex.query.samplers import create_sampler

    sampler = create_sampler(sampler_name)
    total, alone, read = [], [], []
    for _ in range(reps + 2):
        t0 = time.perf_counter()
        frames = store.read_frames(vid)
        read.append((time.perf_counter() - t0) * 1000)
        q = to_dim(encoder.encode_text([QUESTION])[0])
        t1 = time.perf_counter()
        sampler.select_result(frames.vectors, q, budget, frames.pts_sec)
        t2 = time.perf_counter()
        total.append((t2 - t0) * 1000)
        alone.append((t2 - t1) * 1000)
    total, alone, read = total[2:], alone[2:], read[2:]  # drop warm-up
    return [float(np.percentile(a, p)) for a in (alone, total) for p in (50, 95)] + [
        float(np.percentile(read, 50))]


def hour_video(size: int, cache: Path) -> Path:
    """Render (once) a 1-hour synthetic video at 2 fps, ``size`` x ``size`` pixels."""
    from framedex.synth import haystack_spec, render

    path = cache / f"hour_{size}px_2fps.mp4"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        spec = haystack_spec(3600.0, [{"time": 1800.0, "duration": 4.0, "background": "white",
                                       "objects": [{"shape": "star", "color": "purple"}]}],
                             seed=0, fps=2, size=[size, size])
        render(spec, path)
        print(f"rendered {path} in {time.perf_counter() - t0:.1f} s")
    return path


def no_cache_seconds(path: Path, encoder, sampler_name: str, budget: int) -> tuple[float, int]:
    """Decode at 1 fps + encode every frame + encode the text + sample: one real run."""
    from framedex.indexer.decode import open_video
    from framedex.query.samplers import create_sampler

    t0 = time.perf_counter()
    vecs, ts, batch = [], [], []
    with open_video(path) as video:
        for f in video.iter_index_frames(1.0, max_side=encoder.image_size):
            batch.append(f.image)
            ts.append(f.pts_sec)
            if len(batch) == 64:
                vecs.append(encoder.encode_images(np.stack(batch)))
                batch = []
    if batch:
        vecs.append(encoder.encode_images(np.stack(batch)))
    emb = np.concatenate(vecs)
    q = encoder.encode_text([QUESTION])[0]
    create_sampler(sampler_name).select_result(emb, q, budget, np.asarray(ts))
    return time.perf_counter() - t0, len(emb)


def main() -> None:
    from framedex.indexer.encoder import BUILTIN_MODELS, load_encoder
    from framedex.query.samplers import list_samplers
    from framedex.store import Store

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shipped = BUILTIN_MODELS["synthetic-shapes"]
    ap.add_argument("--model", default="synthetic-shapes"
                    if (Path(shipped) / "open_clip_config.json").exists() else None)
    ap.add_argument("--budget", type=int, default=8)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--size", type=int, default=64, help="rendered video side in pixels")
    ap.add_argument("--baseline-sampler", default="bolt")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "framedex" / "bench"))
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args()
    if args.model is None:
        raise SystemExit("synthetic-shapes is not trained yet: pass --model PATH")
    encoder = load_encoder(args.model, device="cpu")
    tmp = tempfile.TemporaryDirectory(prefix="bench_select_")
    store = Store(Path(tmp.name) / "db")
    vid = fill_store(store)

    print(f"\nselect on cached embeddings: 1-hour video, {N} frames x {D} (float32 store), "
          f"K={args.budget}, {args.reps} reps, text encoder {args.model} "
          f"(dim {encoder.dim}), CPU\n")
    print("| sampler | sampler p50 ms | sampler p95 ms | read+encode+sampler p50 ms | p95 ms "
          "| of which store read p50 ms |")
    print("|---|---:|---:|---:|---:|---:|")
    e2e = {}
    for name in list_samplers():
        s50, s95, t50, t95, r50 = cached_latency(store, encoder, vid, name, args.budget,
                                                 args.reps)
        e2e[name] = t50
        print(f"| {name} | {s50:.2f} | {s95:.2f} | {t50:.2f} | {t95:.2f} | {r50:.2f} |",
              flush=True)
    if args.skip_baseline:
        return
    path = hour_video(args.size, Path(args.cache))
    seconds, n = no_cache_seconds(path, encoder, args.baseline_sampler, args.budget)
    cached = e2e[args.baseline_sampler]
    print(f"\n| path ({args.baseline_sampler}, K={args.budget}) | latency | frames encoded |")
    print("|---|---:|---:|")
    print(f"| no cache: decode 1 fps + encode at query time ({args.size}px video) | "
          f"{seconds * 1000:,.0f} ms | {n} |")
    print(f"| framedex cached (p50) | {cached:.2f} ms | 0 |")
    print(f"\nspeed-up (one run): {seconds * 1000 / cached:,.0f}x")


if __name__ == "__main__":
    main()
