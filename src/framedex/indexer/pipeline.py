"""The indexing pipeline: files -> parallel decode at the index rate -> encode -> Lance store.

One way through the data::

    paths --discover--> files --hash, scan once--> skip unchanged
          --claim, begin_video--> GOP-aligned work units --decode workers (processes,
          NVDEC sessions)--> frame pieces --encoder thread: batches across videos-->
          vectors --back in time order, chunked appends--> frames + segments
          --> commit the videos row (visible)

``indexer/planner.py`` hashes and scans files ahead, ``indexer/workers.py`` holds the work
units and the decode pool, ``indexer/batching.py`` the encoder loop and the per-video
reassembly, ``indexer/run.py`` the run that ties them together; the options, outcomes and
reports they pass around are ``indexer/records.py``, below all of them.
Memory is bounded by ``workers * prefetch`` units' worth of frame pieces plus one chunk of
embeddings per video in flight, whatever the video length or library size. The result does
not depend on the number of workers: same grid, timestamps, native frame indices and (within
float rounding of different batch compositions) vectors.

Example::

    indexer = Indexer(Store("framedex.db"), load_encoder("synthetic-shapes"))
    report = indexer.index_paths(["videos/"])
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from framedex.errors import FramedexError
from framedex.indexer.encoder import ImageEncoder
from framedex.indexer.records import (
    VIDEO_EXTENSIONS,
    IndexOptions,
    IndexOutcome,
    IndexReport,
    ProgressFn,
    check_decode_workers,
    content_id,
    discover,
)
from framedex.indexer.run import IndexRun
from framedex.rules import INDEXED
from framedex.store.base import Store
from framedex.values import JsonObject

log = logging.getLogger(__name__)

class Indexer:
    """Indexes files into a store with one encoder.

    Args:
        store: the target store; its encoder identity is checked (or set) on construction.
        encoder: a loaded :class:`~framedex.indexer.encoder.Encoder`.
        options: :class:`IndexOptions`.

    Raises:
        EncoderMismatchError: the store was built with another encoder.
    """

    def __init__(self, store: Store, encoder: ImageEncoder,
                 options: IndexOptions | None = None):
        self.store = store
        self.encoder = encoder
        self.options = options or IndexOptions()
        #: How the last run was set up: decode workers, NVDEC sessions, torch threads, ...
        self.last_run: JsonObject = {}
        store.ensure_encoder(encoder.identity)

    def index_paths(self, paths: Iterable[str | os.PathLike[str]], *,
                    metadata: JsonObject | None = None,
                    progress: ProgressFn | None = None,
                    on_file: Callable[[IndexOutcome], None] | None = None) -> IndexReport:
        """Index every video under ``paths``; bad files are reported and skipped.

        Files are decoded by a pool of workers and encoded in batches that span videos; each
        video still becomes visible in one commit, once all its frames are written. A file
        whose content another writer is indexing right now is put aside and revisited once
        everything else is done; by then it is normally indexed (``unchanged``), so two runs
        over one folder share the work and never index a video twice.

        Args:
            paths: files and folders.
            metadata: user metadata (JSON-able) stored with every video of this run.
            progress: called as frames are embedded.
            on_file: called after each file with its outcome.
        """
        files, missing = discover(paths)
        report = IndexReport(list(missing))
        for outcome in missing:
            if on_file:
                on_file(outcome)
        report.outcomes.extend(self._run(files, metadata, progress, on_file))
        report.warnings.extend(settle(self.store, report.outcomes))
        return report

    def index_file(self, path: str | os.PathLike[str], *, metadata: JsonObject | None = None,
                   progress: ProgressFn | None = None,
                   read_from: str | os.PathLike[str] | None = None) -> IndexOutcome:
        """Index one file. Never raises for a bad file: the outcome says ``failed`` and why.

        Args:
            path: the video file (recorded in the store, resolved; with ``read_from``,
                recorded as given, made absolute: the caller's verified real path).
            metadata: user metadata stored with the video.
            progress: called as frames are embedded.
            read_from: read the bytes from here instead (e.g. ``/proc/self/fd/N`` of a file
                the caller opened and verified), still recording ``path``.
        """
        f = Path(path).expanduser()
        sources = None
        if read_from is not None:  # never resolved again: see planner.prepare
            f = Path(os.path.abspath(f))
            sources = {str(f): str(read_from)}
        (outcome,) = self._run([f], metadata, progress, None, sources)
        return outcome

    def _run(self, files: list[Path], metadata: JsonObject | None,
             progress: ProgressFn | None, on_file: Callable[[IndexOutcome], None] | None,
             read_from: dict[str, str] | None = None) -> list[IndexOutcome]:
        if not files:
            return []
        run = IndexRun(self.store, self.encoder, self.options, metadata or {}, progress,
                       on_file, read_from)
        with self.store.writing():
            outcomes = run.run(files)
        self.last_run = run.stats
        return outcomes


def settle(store: Store, outcomes: list[IndexOutcome]) -> list[str]:
    """After a run that indexed something (its writer lease released): build the scalar
    indexes once, compact what the run appended, sweep what dead writers left, and delete the
    files nobody committed (when no other writer is active).

    The videos are committed and live by now, so a failure here (a full disk, an unreachable
    object store) is a warning, never a failed run: the upkeep runs again after the next run,
    on the server's timer, or with ``framedex optimize``.

    Returns:
        the warnings (one line each).
    """
    if not any(o.status == INDEXED for o in outcomes):
        return []
    try:
        store.ensure_scalar_indexes()
        store.optimize(tables=("videos", "frames", "segments", "video_paths", "video_vectors"),
                       deep=False)
    except (FramedexError, OSError) as ex:
        log.warning("store upkeep after indexing failed: %s", ex)
        return [f"the videos are indexed, but the store's upkeep failed ({ex}); it runs "
                "again after the next index run, or run `framedex optimize`"]
    return []


__all__ = ["VIDEO_EXTENSIONS", "IndexOptions", "IndexOutcome", "IndexReport", "Indexer",
           "ProgressFn", "check_decode_workers", "content_id", "discover", "settle"]
