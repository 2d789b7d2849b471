"""Median selection time of every registered sampler, against the cost of scoring the frames.

For N in {3,600, 14,400} (one hour / four hours at 1 fps) and D=512, draws seeded random unit
vectors (float32, as the index stores them) and a query, then times
``sampler.select(frames, query, K)`` (the full public path, including input validation and the
float64 relevance) and the bare relevance product ``frames @ query`` (N x D, float32). Prints a
markdown table; ``--json PATH`` also writes the numbers.

Usage::

    .venv/bin/python scripts/bench_samplers.py [--k 32] [--repeats 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from framedex.query.samplers import create_sampler, list_samplers


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` runs (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """``n`` random L2-normalised rows of dimension ``d``, float32."""
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def run(sizes: list[int], dim: int, k: int, repeats: int, seed: int) -> list[dict]:
    """Benchmark every registered sampler at every N; one row per (sampler, N)."""
    rows = []
    for n in sizes:
        rng = np.random.default_rng(seed)
        frames = unit_rows(rng, n, dim)
        query = unit_rows(rng, 1, dim)[0]
        score_ms = median_ms(lambda f=frames, q=query: f @ q, repeats)
        for name in list_samplers():
            sampler = create_sampler(name)
            ms = median_ms(lambda s=sampler, f=frames, q=query: s.select(f, q, k), repeats)
            rows.append({"sampler": name, "n": n, "dim": dim, "k": k, "select_ms": ms,
                         "score_ms": score_ms, "ratio": ms / score_ms if score_ms else None})
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows as a markdown table: one line per sampler, one column pair per N."""
    sizes = sorted({r["n"] for r in rows})
    head = "| sampler | " + " | ".join(f"N={n:,} ms | x score" for n in sizes) + " |"
    sep = "|---|" + "---|---|" * len(sizes)
    lines = [head, sep]
    by = {(r["sampler"], r["n"]): r for r in rows}
    for name in sorted({r["sampler"] for r in rows}):
        cells = [f"{by[name, n]['select_ms']:.2f} | {by[name, n]['ratio']:.1f}" for n in sizes]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    scores = ", ".join(f"N={n:,}: {by[rows[0]['sampler'], n]['score_ms']:.3f} ms" for n in sizes)
    lines.append(f"\nRelevance scoring (frames @ query, float32): {scores}")
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, run the benchmark, print the table, optionally write JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[3600, 14400])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args()
    rows = run(args.sizes, args.dim, args.k, args.repeats, args.seed)
    print(f"K={args.k}, D={args.dim}, median of {args.repeats} runs\n")
    print(markdown(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
