"""Running a benchmark script on tiny sizes and reading its markdown tables (the benchmark
smoke tests: tests/test_bench_*.py).

The README's numbers come from the scripts; a script that no longer runs against the code (a
changed signature, a renamed field) cannot reproduce them. Each smoke test runs one script at
the smallest sizes that still exercise every path of it and checks what its table must show
(every row it promises, no lost video, no error, exact search equal to itself): never a
timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
def run_script(script: str, tmp_path: Path, *args: str, timeout: float = 300) -> str:
    """``python scripts/SCRIPT.py ARGS`` in ``tmp_path``; its stdout (exit 0 asserted)."""
    env = {**os.environ, "TMPDIR": str(tmp_path), "OPENBLAS_NUM_THREADS": "1",
           "HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, str(SCRIPTS / f"{script}.py"), *args],
                         capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def tables(text: str) -> list[list[dict[str, str]]]:
    """Every markdown table in ``text``, as rows keyed by the header's cells."""
    found: list[list[dict[str, str]]] = []
    block: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        if len(block) >= 2:
            head = block[0]
            found.append([dict(zip(head, row, strict=False)) for row in block[2:]])
        block = []
    return found


def number(cell: str) -> float:
    """The number a cell shows (``1,000``, ``7.3 ms``, ``0.95 **``, ``12.5 s``)."""
    return float(cell.replace(",", "").replace("*", "").split()[0].rstrip("%x"))


