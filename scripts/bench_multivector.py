"""Multi-part search on the ``video_vectors`` multivector table: does it find the video with
both needles, and how fast is LanceDB's MaxSim at 10k videos?

Two measurements:

``needles``: generated videos with known needles (the shipped ``synthetic-shapes`` model). For
each of ``--pairs`` random pairs of objects, three videos: one shows both objects (in two
separate scenes), one only the first, one only the second; plus fillers. The query is the two
object phrases. We report how often the video with both ranks first (hit@1) and its mean
reciprocal rank, for ``and`` (MaxSim: the sum of each part's best segment), ``or`` (the best
part), and, as a baseline, one text with both phrases joined by "and" through the one-part
frame search grouped by video.

With ``--index`` (the default) the library is indexed (``build_index``) before the queries,
so ``and`` takes the codebook path; ``--no-index`` measures the exact scan.

``latency``: for each of ``--videos`` (one table row each), a store with that many videos of
``--segments`` segment vectors of ``--dim`` dimensions (clustered random unit vectors, written
straight to the tables), then ``search_parts`` (the library's multi-part path) for
``--parts``-part queries; we report p50/p95 and check the top 10 against an exact numpy
MaxSim. With ``--index`` (the default) the codebook is built first (``build_codebook``, what
``build_index`` runs after the segment index): ``and`` scores every video approximately and
only the best exactly. ``or`` needs the segment index, which this store (no frames, no
segments table) lacks: it scans exactly, as ``--no-index`` does for both. Below
``PARTS_CODES_MIN_VIDEOS`` videos ``and`` scans too; ``--always-codebook`` takes the codebook
at any size (to measure the crossover), and ``--centroids`` overrides the codebook's size.

``layout``: the approximate step alone, per-video maxima of code scores over ``--segments``
segment codes (``--per-video`` each): ``CodeColumns.best`` (codes by segment position, the
store's layout) against a gather and ``numpy.maximum.reduceat`` over the codes row by row.

Usage::

    python scripts/bench_multivector.py needles --pairs 12
    python scripts/bench_multivector.py latency --videos 10000 30000 100000 --segments 10 \
        --dim 512 --parts 2 3
    python scripts/bench_multivector.py layout --segments 1000000 --parts 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def needles(args: argparse.Namespace) -> dict:
    from framedex import Library
    from framedex.synth import COLORS, SHAPES, render
    from framedex.synth.captions import object_phrase

    rng = np.random.default_rng(args.seed)
    objects = [(s, c) for s in SHAPES for c in COLORS if c != "orange"]
    root = Path(tempfile.mkdtemp(prefix="bench_mv_"))
    lib = Library(root / "db", model="synthetic-shapes", device="cpu", log_queries=False)

    def filler() -> dict:
        objs = ([{"shape": str(rng.choice(["circle", "square", "triangle"])),
                  "color": "orange"}] if rng.random() < 0.5 else [])
        return {"duration": 6.0, "background": str(rng.choice(["gray", "white"])),
                "objects": objs}

    def scene(obj: tuple[str, str]) -> dict:
        return {"duration": 6.0, "background": str(rng.choice(list(("black", "gray")))),
                "objects": [{"shape": obj[0], "color": obj[1]}]}

    pairs, t0 = [], time.perf_counter()
    for p in range(args.pairs):
        a, b = (objects[i] for i in rng.choice(len(objects), 2, replace=False))
        ids = {}
        for kind in ("both", "a", "b"):
            scenes = [filler(), scene(a) if kind in ("both", "a") else filler(), filler(),
                      scene(b) if kind in ("both", "b") else filler()]
            if kind != "both":  # the one-needle videos show their needle twice: a strong
                scenes[2] = scene(a if kind == "a" else b)  # single part, a hard case
            path = root / f"p{p}_{kind}.mp4"
            render({"fps": 5, "size": [64, 64], "seed": int(rng.integers(1 << 30)),
                    "scenes": scenes}, path)
            ids[kind] = lib.index_file(path).video_id
        pairs.append((object_phrase(*a), object_phrase(*b), ids))
    indexed_s = time.perf_counter() - t0
    if args.index:
        lib.build_index(force=True)
        # 36 videos would take the exact scan (the codebook serves libraries of
        # PARTS_CODES_MIN_VIDEOS and more): make `and` take the codebook, as at scale
        from framedex.query import search
        search.PARTS_CODES_MIN_VIDEOS = 0
    results: dict[str, list[int]] = {"and": [], "or": [], "one text": []}
    for text_a, text_b, ids in pairs:
        for name in results:
            if name == "one text":
                hits = lib.search(f"{text_a} and {text_b}", group_by="video", limit=100,
                                  threshold="none")  # the rank of "both" among all videos
            else:
                hits = lib.search([text_a, text_b], operator=name, group_by="video", limit=100,
                                  threshold="none")
            order = [h.video_id for h in hits]
            results[name].append(order.index(ids["both"]) + 1 if ids["both"] in order else 999)
    out = {"videos": lib.count_videos(), "pairs": len(pairs), "index_s": round(indexed_s, 1),
           "codebook": bool(args.index)}
    for name, ranks in results.items():
        r = np.asarray(ranks, float)
        out[name] = {"hit@1": round(float((r == 1).mean()), 3),
                     "mrr": round(float((1 / r).mean()), 3)}
    return out


def latency(args: argparse.Namespace) -> dict:
    import os

    out: dict = {"load_at_start": round(os.getloadavg()[0], 1)}
    if args.always_codebook:
        from framedex.query import search
        search.PARTS_CODES_MIN_VIDEOS = 0
    for n in args.videos:
        out[f"{n} videos"] = latency_one(args, n)
        out[f"{n} videos"]["load"] = round(os.getloadavg()[0], 1)
    return out


def latency_one(args: argparse.Namespace, n: int) -> dict:
    import shutil

    import pyarrow as pa

    from framedex.query.search import search_parts
    from framedex.store import LanceStore
    from framedex.store.multivector import build_codebook, ensure_table
    from framedex.store.schema import VIDEOS_SCHEMA, VideoRecord

    rng = np.random.default_rng(args.seed)
    s, d = args.segments, args.dim
    centres = rng.normal(size=(256, d)).astype(np.float32)
    flat = centres[rng.integers(0, 256, n * s)] + 0.6 * rng.normal(size=(n * s, d)).astype(
        np.float32)
    flat /= np.linalg.norm(flat, axis=1, keepdims=True)
    root = Path(tempfile.mkdtemp(prefix="bench_mv_lat_"))
    store = LanceStore(root / "db")
    store.ensure_encoder({"model": "bench", "pretrained": None, "weights_digest": "x",
                          "dim": d, "spec": "bench"})
    ids = [f"{i:020x}" for i in range(n)]
    t0 = time.perf_counter()
    records = [VideoRecord(video_id=v, path=f"/bench/{v}.mp4", duration=6.0 * s,
                           frame_rate=30.0, num_frames=180 * s, width=640, height=360,
                           start_sec=0.0, is_vfr=False, index_fps=1.0, num_indexed=6 * s,
                           decoder="pyav", encoder="bench", generation=1).to_row()
               for v in ids]
    store.tables.append("videos", pa.Table.from_pylist(records, schema=VIDEOS_SCHEMA),
                        VIDEOS_SCHEMA)
    schema = ensure_table(store, d)
    inner = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), d)
    offsets = pa.array(np.arange(0, n * s + 1, s, dtype=np.int32))
    starts = np.tile(np.arange(s) * 6.0, n)
    table = pa.table({
        "video_id": pa.array(ids, pa.string()),
        "generation": pa.array(np.ones(n, np.int64)),
        "start_sec": pa.ListArray.from_arrays(offsets, pa.array(starts)),
        "end_sec": pa.ListArray.from_arrays(offsets, pa.array(starts + 6.0)),
        "vectors": pa.ListArray.from_arrays(offsets, inner).cast(schema.field("vectors").type),
    }, schema=schema)
    store.tables.append("video_vectors", table, schema)
    store.optimize(tables=("videos", "video_vectors"))
    write_s = time.perf_counter() - t0
    out: dict = {"videos": n, "segments_per_video": s, "dim": d, "write_s": round(write_s, 1)}
    if args.index:
        with store.locks.maintenance():
            out["codebook"] = build_codebook(store, centroids=args.centroids)
    cube = flat.reshape(n, s, d)
    del flat
    for parts in args.parts:
        for operator in args.operators:
            times, agree = [], []
            for _ in range(args.queries + 2):
                q = rng.normal(size=(parts, d)).astype(np.float32) + 2 * centres[
                    rng.integers(0, 256, parts)]
                q /= np.linalg.norm(q, axis=1, keepdims=True)
                t = time.perf_counter()
                hits = search_parts(store, q, operator=operator, limit=10, group_by="video")
                times.append(time.perf_counter() - t)
                best = np.einsum("nsd,pd->nsp", cube, q).max(axis=1)
                exact = best.sum(1) if operator == "and" else best.max(1)
                top = {ids[i] for i in np.argsort(-exact)[:10]}
                agree.append(len(top & {h.video_id for h in hits}) / 10)
            ms = np.asarray(times[2:]) * 1000  # the first two warm the caches
            agree = agree[2:]
            out[f"{operator} {parts} parts"] = {
                "p50_ms": round(float(np.percentile(ms, 50)), 1),
                "p95_ms": round(float(np.percentile(ms, 95)), 1),
                "top10_vs_exact": round(float(np.mean(agree)), 3),
                "top10_equal_share": round(float(np.mean(np.asarray(agree) == 1.0)), 3)}
    shutil.rmtree(root, ignore_errors=True)
    return out


def layout(args: argparse.Namespace) -> dict:
    import os

    from framedex.store.code_columns import CodeColumns

    rng = np.random.default_rng(args.seed)
    lengths = np.full(args.segments // args.per_video, args.per_video)
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    codes = rng.integers(0, 1024, int(starts[-1])).astype(np.uint16)
    table = rng.normal(size=(args.parts, 1024)).astype(np.float32)
    columns = CodeColumns.from_rows(codes, starts)

    def by_rows() -> np.ndarray:
        return np.stack([np.maximum.reduceat(table[p][codes], starts[:-1])
                         for p in range(len(table))], axis=1)

    out: dict = {"segments": int(starts[-1]), "videos": len(lengths), "parts": args.parts,
                 "load_at_start": round(os.getloadavg()[0], 1)}
    assert np.array_equal(columns.best(table), by_rows())
    for name, run in (("by position (CodeColumns.best)", lambda: columns.best(table)),
                      ("row by row (reduceat)", by_rows)):
        times = []
        for _ in range(args.repeats + 2):
            t = time.perf_counter()
            run()
            times.append(time.perf_counter() - t)
        out[name] = {"p50_ms": round(float(np.median(times[2:])) * 1000, 2)}
    out["load"] = round(os.getloadavg()[0], 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    n = sub.add_parser("needles")
    n.add_argument("--pairs", type=int, default=12)
    n.add_argument("--seed", type=int, default=0)
    n.add_argument("--index", action=argparse.BooleanOptionalAction, default=True,
                   help="build_index before the queries (the codebook path for and)")
    lat = sub.add_parser("latency")
    lat.add_argument("--videos", type=int, nargs="+", default=[10_000])
    lat.add_argument("--segments", type=int, default=10)
    lat.add_argument("--dim", type=int, default=512)
    lat.add_argument("--parts", type=int, nargs="+", default=[1, 2, 3])
    lat.add_argument("--queries", type=int, default=20)
    lat.add_argument("--seed", type=int, default=0)
    lat.add_argument("--index", action=argparse.BooleanOptionalAction, default=True,
                     help="build the codebook first (the and path of an indexed library)")
    lat.add_argument("--operators", nargs="+", default=["and", "or"], choices=["and", "or"])
    lat.add_argument("--centroids", type=int, default=None,
                     help="codebook size (default: the store's rule)")
    lat.add_argument("--always-codebook", action="store_true",
                     help="and takes the codebook at any library size")
    lay = sub.add_parser("layout")
    lay.add_argument("--segments", type=int, default=1_000_000)
    lay.add_argument("--per-video", type=int, default=10)
    lay.add_argument("--parts", type=int, default=2)
    lay.add_argument("--repeats", type=int, default=20)
    lay.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = {"needles": needles, "latency": latency, "layout": layout}[args.what](args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
