"""Killing a real indexing process mid-run, as a crash or the OOM killer would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from framedex.store import LanceStore as Store

#: A child that indexes ``argv[3]`` into the store ``argv[1]`` with the model ``argv[2]``, its
#: encoder slowed to 0.3 s a batch, one frame per batch and per store write: it is mid-run for
#: seconds, with rows written and nothing committed. ``{options}``: more IndexOptions.
_SLOW_INDEX = """
import sys, time
from framedex.indexer.encoder import load_encoder
from framedex.indexer.pipeline import IndexOptions, Indexer
from framedex.store import LanceStore as Store
enc = load_encoder(sys.argv[2], device="cpu")
class Slow:
    identity, image_size = enc.identity, enc.image_size
    def encode_images(self, frames):
        time.sleep(0.3)
        return enc.encode_images(frames)
Indexer(Store(sys.argv[1]), Slow(), IndexOptions(batch_size=1, write_chunk=1{options})
        ).index_paths([sys.argv[3]])
"""


def slow_index_script(**options: object) -> str:
    """The slowed indexing child (:data:`_SLOW_INDEX`) with these extra ``IndexOptions``."""
    return _SLOW_INDEX.replace("{options}", "".join(f", {k}={v!r}" for k, v in options.items()))


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
