"""Benchmark smoke tests: the HTTP server (throughput under an ingest, request limits).

See tests/benchmarks.py for what these check and why.
"""

from __future__ import annotations

import pytest
from benchmarks import number, run_script, tables

pytestmark = pytest.mark.heavy  # benchmark processes: not in make test-fast


def test_bench_api(tmp_path):
    out = run_script("bench_api", tmp_path, "--requests", "8", "--frames", "300", "--samplers",
                     "aks", "--ingest-seconds", "2", "--rss-requests", "8")
    rows, memory = tables(out)[:2]
    assert rows and all(number(r["errors"]) == 0 for r in rows)
    assert any("ingest" in r["scenario"] for r in rows)
    idle, loaded, ingested = (number(r["RSS MB"]) for r in memory)
    assert "(0 errors)" in memory[1]["server memory"]
    assert 0 < idle <= loaded < ingested  # torch arrives with the first ingest, not before


@pytest.mark.slow
def test_bench_limits(tmp_path):
    out = run_script("bench_limits", tmp_path, "--plot-frames", "200", "--budgets", "50",
                     "--png-side", "1200", "--pngs", "2", "--concurrent", "2", "--depth",
                     "2000")
    rows = tables(out)[0]
    assert rows
    for r in rows:  # nested JSON is a 400, everything else is answered: never a 5xx
        assert not r["status"].startswith("5"), r
