"""Benchmark smoke tests: indexing (the pipeline, decoders, Ray, CLI start-up).

Two are marked ``slow`` (CI runs them with ``make test-slow``): the Ray benchmark starts two
local clusters (~40 s; the Ray engine itself is tested in test_ray_engine.py), and the CLI
start-up benchmark times fresh processes that each import torch (~20 s; the CLI's commands
are run as processes by test_first_hour.py and others).

See tests/benchmarks.py for what these check and why.
"""

from __future__ import annotations

import pytest
from benchmarks import number, run_script, tables

pytestmark = pytest.mark.heavy  # benchmark processes: not in make test-fast


def test_bench_index(tmp_path):
    out = run_script("bench_index", tmp_path, "--model", "synthetic-shapes", "--videos", "1",
                     "--minutes", "0.1", "--workers", "1", "--repeats", "1")
    rows = tables(out)[-1]
    assert [r["--decode-workers"] for r in rows] == ["1"]
    assert number(rows[0]["decode ceiling"]) > 0 and number(rows[0]["end to end"]) > 0


def test_bench_decode(tmp_path):
    out = run_script("bench_decode", tmp_path, "--minutes", "0.05", "--random", "2",
                     "--decoders", "pyav", "--repeats", "1")
    rows = tables(out)[0]
    assert [r["decoder"] for r in rows] == ["pyav"]


@pytest.mark.slow
def test_bench_ray(tmp_path):
    out = run_script("bench_ray", tmp_path, "--model", "synthetic-shapes", "--videos", "1",
                     "--minutes", "0.1", "--repeats", "1")
    rows = tables(out)[0]
    assert [r["engine"] for r in rows] == ["local", "ray"]


@pytest.mark.slow
def test_bench_cli_startup(tmp_path):
    out = run_script("bench_cli_startup", tmp_path, "--runs", "1", "--unchanged", "0")
    rows = tables(out)[0]
    commands = " ".join(r[next(iter(r))] for r in rows)
    assert "search" in commands and "select" in commands


@pytest.mark.slow  # 25 s of `make test`'s 4 min (CLI processes): runs with the slow ones in CI
def test_bench_index_unchanged(tmp_path):
    out = run_script("bench_cli_startup", tmp_path, "--no-cli", "--runs", "1", "--unchanged",
                     "2")
    unchanged, empty = tables(out)[0]
    assert "2 unchanged files" in unchanged["command"] and "EMPTY" in empty["command"]
    for row in (unchanged, empty):  # no encoder load: far below the ~1 GB torch costs
        assert 0 < number(row["peak RSS MB"]) < 500, row
