"""The benchmark scripts still run: each one, on tiny sizes, to its table (or JSON).

The README's numbers come from these scripts; a script that no longer runs against the code
(a changed signature, a renamed field) cannot reproduce them. The sizes here check that a run
goes through and prints its table, not the numbers (timings are never asserted in tests).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"

RUNS = {
    "bench_samplers": ["--sizes", "600", "--dim", "64", "--k", "8", "--repeats", "1"],
    "bench_select": ["--reps", "3", "--samplers", "aks,bolt", "--skip-baseline"],
    "bench_querylog": ["--rows", "3000", "--flush-rows", "512", "--per-query", "20"],
    "bench_search": ["--n", "20000", "--queries", "5", "--methods", "today,segments-hnsw,exact",
                     "--passes", "1", "--cache", "{tmp}/search"],
    "bench_multivector": ["latency", "--videos", "200", "--segments", "4", "--dim", "32",
                          "--parts", "1", "2", "--queries", "2"],
    "bench_index": ["--model", "synthetic-shapes", "--videos", "2", "--minutes", "0.1",
                    "--workers", "1", "--repeats", "1"],
    "bench_decode": ["--minutes", "0.1", "--random", "4", "--decoders", "pyav", "--repeats", "1"],
    "bench_cli_startup": ["--runs", "1"],
    "bench_ray": ["--model", "synthetic-shapes", "--videos", "1", "--minutes", "0.1",
                  "--repeats", "1"],
    "bench_api": ["--requests", "8", "--frames", "300", "--samplers", "aks",
                  "--ingest-seconds", "4"],
    "bench_limits": ["--plot-frames", "120", "--budgets", "100", "--png-side", "600",
                     "--pngs", "3", "--concurrent", "2", "--depth", "100"],
}


@pytest.mark.parametrize("script", sorted(RUNS))
def test_the_benchmark_runs_to_its_table(script, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in RUNS[script]]
    env = {**os.environ, "TMPDIR": str(tmp_path), "OPENBLAS_NUM_THREADS": "1",
           "HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, str(SCRIPTS / f"{script}.py"), *args],
                         capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    if script == "bench_multivector":  # prints its numbers as JSON
        assert '"p50_ms"' in run.stdout, run.stdout[-3000:]
        return
    table_rows = [ln for ln in run.stdout.splitlines() if ln.startswith("|")]
    assert len(table_rows) >= 3, run.stdout[-3000:]
