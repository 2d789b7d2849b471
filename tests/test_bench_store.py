"""Benchmark smoke tests: the store (concurrent writers on S3, the jobs table).

See tests/benchmarks.py for what these check and why.
"""

from __future__ import annotations

import pytest
from benchmarks import number, run_script, tables

pytestmark = pytest.mark.heavy  # benchmark processes: not in make test-fast


@pytest.mark.slow
def test_bench_writers(tmp_path):
    out = run_script("bench_writers", tmp_path, "--videos", "2", "--seconds", "3",
                     "--writers", "2", "--where", "s3")
    rows = tables(out)[0]
    assert [(r["store"], r["writers"]) for r in rows] == [("s3", "2")]
    for r in rows:
        assert r["lost"] == "0" and r["doubled rows"] == "0" and not r["failed runs"], r
    assert all(number(r["S3 requests / video"]) > 0 for r in rows if r["store"] == "s3")


def test_bench_jobs(tmp_path):
    out = run_script("bench_jobs", tmp_path, "--jobs", "200", "--burst", "3", "--reps", "1")
    (row,) = tables(out)[0]
    assert all(number(v) >= 0 for v in row.values())
    assert number(row["GET /v1/jobs?limit=50"]) > 0
