"""Killing a real indexing process mid-run, as a crash or the OOM killer would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from framedex.store import LanceStore as Store


def kill_after_rows(script: str, db: Path, *args: str, rows: int, timeout: float = 120) -> None:
    """Run ``python -c script db *args`` and SIGKILL it once its store's ``frames`` table holds
    ``rows`` rows (written, maybe not committed).

    Raises:
        AssertionError: the child never wrote that many rows.
    """
    proc = subprocess.Popen([sys.executable, "-c", script, str(db), *args])
    try:
        deadline = time.monotonic() + timeout
        written = 0
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            if (db / "frames.lance").exists():
                ds = Store(db).tables.snapshot("frames")
                written = ds.count_rows() if ds is not None else 0
                if written >= rows:
                    break
        assert written >= rows, "the child never wrote rows"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
