"""Benchmark smoke tests: the query side (samplers, select, the query log, search, and
multi-part search).

See tests/benchmarks.py for what these check and why.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from benchmarks import number, run_script, tables

pytestmark = pytest.mark.heavy  # benchmark processes: not in make test-fast


def test_bench_samplers(tmp_path):
    from framedex.query.samplers import list_samplers

    out = run_script("bench_samplers", tmp_path, "--sizes", "300", "--dim", "32", "--k", "8",
                     "--repeats", "1")
    (rows,) = tables(out)
    assert {r["sampler"] for r in rows} == set(list_samplers())
    assert all(number(r["N=300 ms"]) > 0 and number(r["x score"]) > 0 for r in rows)


def test_bench_select(tmp_path):
    out = run_script("bench_select", tmp_path, "--reps", "2", "--samplers", "aks,bolt",
                     "--skip-baseline")
    rows = tables(out)[0]
    assert [r["sampler"] for r in rows] == ["aks", "bolt"]
    assert all(number(r["warm p50 ms"]) > 0 and number(r["cold p50 ms"]) > 0 for r in rows)


def test_bench_select_wider_vectors(tmp_path):
    out = run_script("bench_select", tmp_path, "--reps", "2", "--samplers", "bolt",
                     "--skip-baseline", "--dim", "512")
    assert "D=512" in out
    (row,) = tables(out)[0]
    assert row["sampler"] == "bolt" and number(row["warm p50 ms"]) > 0


def test_bench_querylog(tmp_path):
    out = run_script("bench_querylog", tmp_path, "--rows", "2000", "--flush-rows", "512",
                     "--per-query", "10")
    (row,) = tables(out)[0]
    assert number(row["logged queries"]) == 2000
    assert number(row["after"]) <= number(row["on disk before optimize"])


@pytest.mark.slow  # 20-36 s of `make test`: runs with the slow ones in CI
def test_bench_search(tmp_path):
    out = run_script("bench_search", tmp_path, "--n", "2000", "3000", "--queries", "3",
                     "--methods", "today,segments-hnsw,exact", "--passes", "1", "--cache",
                     str(tmp_path / "search"), "--no-api")
    rows = tables(out)[0]
    assert [(r["frames"], r["method"].split()[0]) for r in rows] == [
        (n, m) for n in ("2,000", "3,000") for m in ("today", "segments-hnsw", "exact")]
    for r in rows:  # on 3,000 vectors every method finds the exact top 10 and its moments
        assert number(r["recall@10"]) >= 0.9, r
        if not r["method"].startswith("today"):  # a fresh query process's peak RSS
            assert number(r["query RSS MB"]) > 50, r
    exact = rows[-1]
    assert exact["moments = exact"] == "3/3" and number(exact["recall@10"]) == 1.0
    # the vectors are written to disk as float16, streamed (what lets 10M fit in memory)
    (vectors,) = (tmp_path / "search").glob("*-n3000-*-f16.npy")
    assert np.load(vectors, mmap_mode="r").dtype == np.float16


def test_bench_multivector(tmp_path):
    out = run_script("bench_multivector", tmp_path, "latency", "--videos", "100", "200",
                     "--segments", "4", "--dim", "32", "--parts", "1", "2", "--queries", "2",
                     "--always-codebook")  # and by the codebook, as at 5,000 videos and more
    result = json.loads(out[out.index("{"):])
    assert {k for k in result if k.endswith("videos")} == {"100 videos", "200 videos"}
    for size in ("100 videos", "200 videos"):
        assert result[size]["codebook"]["videos"] == int(size.split()[0])
        runs = {k: v for k, v in result[size].items() if k.endswith("parts")}
        assert set(runs) == {"and 1 parts", "or 1 parts", "and 2 parts", "or 2 parts"}
        for run in runs.values():  # every top 10 equals numpy's exact MaxSim
            assert run["p50_ms"] > 0 and run["top10_vs_exact"] == 1.0


def test_bench_multivector_layout(tmp_path):
    out = run_script("bench_multivector", tmp_path, "layout", "--segments", "5000",
                     "--repeats", "2")
    result = json.loads(out[out.index("{"):])
    assert result["segments"] == 5000 and result["videos"] == 500
    assert result["by position (CodeColumns.best)"]["p50_ms"] > 0
    assert result["row by row (reduceat)"]["p50_ms"] > 0


@pytest.mark.slow  # 25 s of `make test`'s 4 min: runs with the slow ones in CI
def test_bench_entities(tmp_path):
    out = run_script("bench_entities", tmp_path, "--trials", "2")
    vectors, queries = tables(out)
    by_row = {(r["entity vector"], r["references"]): r for r in vectors}
    assert set(by_row) == {(v, k) for v in ("mean", "MaxSim", "mean, `lib.search`")
                           for k in ("clean", "cluttered")}
    for r in [*vectors, *queries]:
        assert 0 <= number(r["hit@1"]) <= number(r["MRR"]) <= 1, r
    # the entity of clean references is found first, by the library's own search too
    assert number(by_row[("mean, `lib.search`", "clean")]["hit@1"]) == 1.0
    hit = {r["query"].split(" (")[0]: number(r["hit@1"]) for r in queries}
    assert hit["composed"] > hit["`or` parts"]  # one fused vector, not the best single part
    assert sum(r["query"].startswith("fused frames, w=") for r in queries) == 6
