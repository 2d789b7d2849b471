"""The server's upkeep timer: what keeps its disk bounded while it runs.

Every ``optimize_every_s`` seconds (``Settings``), one thread:

1. deletes the records of Twelve Labs assets older than ``asset_retention_days``;
2. sweeps the upload folder (``JobManager.sweep_uploads``): files no video or unfinished job
   refers to, older than :data:`~framedex.api.jobs.SWEEP_MIN_AGE_S`. The partial upload of a
   server that was killed mid-request is one of them: it goes within two periods, without
   waiting for a restart (it stayed 40 minutes in one run of the attack, issue 27);
3. sweeps the media folder (:func:`~framedex.api.jobs.sweep_folder`): asset files no asset
   record, video or unfinished job refers to (expired and deleted assets, partial asset
   uploads), with the same age rule, so a file being written (its mtime moves) or just
   renamed is never taken;
4. runs ``Library.optimize`` (compaction, query-log and job retention, old versions); with
   several replicas on one store, one of them does that work each time (the others' runs
   are no-ops).

The age rule is what makes this safe beside a request in flight in this process or in another
server process sharing the folder: an upload in progress writes its file every few
milliseconds.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

from framedex.api.jobs import SWEEP_MIN_AGE_S, JobManager, sweep_folder
from framedex.library import Library

log = logging.getLogger("framedex.api")


class Upkeep:
    """The upkeep timer of one server (see the module docstring).

    Args:
        library: the served library.
        jobs: its ingest jobs (the upload folder's sweep).
        media_dir: where assets are kept.
        every_s: seconds between two runs; 0 turns the timer off (:meth:`run_once` works).
        asset_retention: how long assets are kept; None keeps them.
    """

    def __init__(self, library: Library, jobs: JobManager, media_dir: Path, every_s: float,
                 asset_retention: timedelta | None, job_retention: timedelta | None = None):
        self.library, self.jobs, self.media_dir = library, jobs, media_dir
        self.every_s, self.asset_retention = every_s, asset_retention
        self.job_retention = job_retention
        #: Files younger than this are never swept from the media folder.
        self.min_age_s = SWEEP_MIN_AGE_S
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="framedex-upkeep", daemon=True)

    def start(self) -> None:
        if self.every_s > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def run_once(self, *, optimize: bool = True) -> dict[str, Any]:
        """One upkeep run. Returns what it removed."""
        busy = self.jobs.live_paths()
        expired = []
        if self.asset_retention is not None:
            expired = self.library.expire_assets(self.asset_retention, in_use=busy)
        uploads = self.jobs.sweep_uploads()
        keep = {a.path for a in self.library.assets()} | self.library.source_paths() | busy
        media = sweep_folder(self.media_dir, keep, self.min_age_s, "media")
        out: dict[str, Any] = {"assets_expired": len(expired), "uploads_swept": len(uploads),
                               "media_swept": len(media)}
        if optimize:
            out["optimize"] = self.library.optimize(job_retention=self.job_retention)
        return out

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.run_once()
            except Exception:  # upkeep must never take the server down
                log.exception("store upkeep failed")
