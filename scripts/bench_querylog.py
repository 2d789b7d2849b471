"""Benchmark the query log: disk use after many logged queries, and ``stats``/``sql`` time.

Rows go through the real :class:`~framedex.store.QueryLog` (buffered, one commit per
``flush_rows`` rows), as a busy server writes them; then ``framedex optimize`` runs once, and
``Library.stats()`` and one ``Library.sql()`` query are timed. For contrast, ``--per-query N``
writes N rows the old way (one Lance commit per query) and reports that table's size.

Usage::

    python scripts/bench_querylog.py                       # 100,000 and 1,000,000 rows
    python scripts/bench_querylog.py --rows 100000 --per-query 4600
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path


def mb(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB"


def fill(db: Path, rows: int, flush_rows: int) -> float:
    """Log ``rows`` selects through the buffered log; returns the seconds it took."""
    from framedex.store import QueryLog, open_store

    store = open_store(db)
    qlog = QueryLog(store, flush_rows=flush_rows, flush_seconds=3600)
    t0 = time.perf_counter()
    for i in range(rows):
        qlog.record(kind="select", query=f"question {i % 997}", latency_ms=2.0 + (i % 50) / 10,
                    result_size=8, sampler=("aks", "bolt", "topk")[i % 3], budget=8,
                    video_id=f"{i % 40:020x}", params={}, cache_hit=i % 10 != 0)
        if qlog.pending >= flush_rows:
            qlog.flush()
    qlog.close()
    return time.perf_counter() - t0


def per_query(db: Path, rows: int) -> int:
    """The old way: one commit per logged query. Returns the table's bytes."""
    from framedex.store import open_store

    store = open_store(db)
    for _ in range(rows):
        store.append("query_log", [{"ts": None, "kind": "select", "sampler": "bolt",
                                    "budget": 8, "tokens": None, "video_id": "v", "query": "q",
                                    "latency_ms": 2.0, "result_size": 8, "params": "{}",
                                    "cache_hit": True}])
    return store.disk_usage()["query_log"]


def measure(rows: int, flush_rows: int) -> dict:
    from framedex import Library

    with tempfile.TemporaryDirectory(prefix="bench_qlog_") as tmp:
        db = Path(tmp) / "db"
        write_s = fill(db, rows, flush_rows)
        lib = Library(db, log_queries=False)
        before = lib.disk_usage()["query_log"]
        t0 = time.perf_counter()
        lib.optimize(keep_versions=timedelta(0))
        opt_s = time.perf_counter() - t0
        after = lib.disk_usage()["query_log"]
        lib.sql("SELECT 1")  # DuckDB's import and first connection are not the query's cost
        t0 = time.perf_counter()
        stats = lib.stats()
        stats_ms = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        lib.sql("SELECT sampler, count(*), median(latency_ms) FROM query_log "
                "WHERE cache_hit GROUP BY 1")
        sql_ms = (time.perf_counter() - t0) * 1000
        assert sum(r["count"] for r in stats) == rows
    return {"rows": rows, "write_s": write_s, "before": before, "after": after,
            "optimize_s": opt_s, "stats_ms": stats_ms, "sql_ms": sql_ms}


def main() -> None:
    import warnings

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", default="100000,1000000")
    ap.add_argument("--flush-rows", type=int, default=512)
    ap.add_argument("--per-query", type=int, default=0,
                    help="also write this many rows with one commit each (the old way)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", message=".*removes every version.*")
    print(f"\nquery log, buffered ({args.flush_rows} rows per commit), then one optimize\n")
    print("| logged queries | write s | on disk before optimize | after | optimize s "
          "| `stats` ms | `sql` ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for rows in (int(r) for r in args.rows.split(",")):
        r = measure(rows, args.flush_rows)
        print(f"| {rows:,} | {r['write_s']:.1f} | {mb(r['before'])} | {mb(r['after'])} "
              f"| {r['optimize_s']:.1f} | {r['stats_ms']:.0f} | {r['sql_ms']:.0f} |",
              flush=True)
    if args.per_query:
        with tempfile.TemporaryDirectory(prefix="bench_qlog_old_") as tmp:
            t0 = time.perf_counter()
            size = per_query(Path(tmp) / "db", args.per_query)
            print(f"\none commit per query (before), {args.per_query:,} queries: {mb(size)} "
                  f"in {time.perf_counter() - t0:.0f} s", file=sys.stdout)


if __name__ == "__main__":
    main()
