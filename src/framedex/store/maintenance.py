"""Keeping a store's disk bounded: retention, sweeping dead rows, compaction, old versions.

Every Lance commit (an append, a job update, a flush of the query log) adds a version; a
version's manifest lists all fragments, and nothing is ever removed on its own. Without upkeep
a busy server's ``query_log`` grew to 1.1 GB of manifests after 4,600 queries. ``optimize``:

1. deletes query-log rows older than the retention (default 30 days), and answers and their
   ratings older than it or of video generations that are no longer live (``store.answers``);
2. deletes rows of generations no ``videos`` row names (a killed or superseded index run),
   but only for videos nobody is indexing right now (their claim is free), and writes the
   ``video_vectors`` rows committed videos lack (stores indexed before that table existed);
3. compacts small fragments, folds new rows into the indexes, and removes versions older than
   ``keep_versions`` (default 10 minutes: readers hold a version for milliseconds);
4. with ``sweep_orphans`` and no writer active, also deletes data files no version refers to
   (what a writer killed between writing and committing leaves behind), and the partial
   ``.tmp*`` files of a writer killed in the middle of writing one.

It runs after every index run, on a timer in the server, and as ``framedex optimize``.

Example::

    report = store.optimize()            # {"bytes_before": ..., "bytes_after": ..., ...}
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from framedex.errors import check
from framedex.store.location import store_io
from framedex.store.schema import now_utc

if TYPE_CHECKING:
    from framedex.store.lance_store import LanceStore

log = logging.getLogger(__name__)

#: Query-log rows older than this are deleted.
DEFAULT_LOG_RETENTION = timedelta(days=30)
#: Table versions older than this are removed.
DEFAULT_KEEP_VERSIONS = timedelta(minutes=10)

_TABLES = ("videos", "frames", "segments", "video_paths", "jobs", "query_log",
           "video_vectors", "indexes", "index_members", "assets", "answers", "answer_feedback")


def optimize(store: LanceStore, *, log_retention: timedelta | None = None,
             keep_versions: timedelta | None = None, sweep_orphans: bool = True,
             tables: tuple[str, ...] = _TABLES) -> dict[str, Any]:
    """Bound the store's disk use (see the module docstring).

    Args:
        store: the store.
        log_retention: keep query-log rows this long (None: 30 days).
        keep_versions: keep table versions this long (None: 10 minutes).
        sweep_orphans: also delete unreferenced data files when no writer is active.
        tables: the tables to compact.

    Returns:
        ``bytes_before``, ``bytes_after``, ``log_rows_deleted``, ``answers_deleted``,
        ``dead_videos_swept``, ``orphans_swept`` (whether unreferenced files were deleted),
        ``video_vectors_backfilled`` and ``seconds``.
    """
    import time

    log_retention = DEFAULT_LOG_RETENTION if log_retention is None else log_retention
    keep_versions = DEFAULT_KEEP_VERSIONS if keep_versions is None else keep_versions
    check(log_retention >= timedelta(0), "log_retention", log_retention, "must be >= 0")
    check(keep_versions >= timedelta(0), "keep_versions", keep_versions, "must be >= 0")
    t0 = time.perf_counter()
    with store.locks.maintenance():
        return _optimize(store, log_retention, keep_versions, sweep_orphans, tables, t0)


def _optimize(store: LanceStore, log_retention: timedelta, keep_versions: timedelta,
              sweep_orphans: bool, tables: tuple[str, ...], t0: float) -> dict[str, Any]:
    import time

    before = sum(store.disk_usage().values())
    deleted = _expire_log(store, log_retention)
    from framedex.store.answers import expire_answers

    with store_io(store.location, "clean up"):
        answers_deleted = expire_answers(store, log_retention)
    swept = sweep_dead_generations(store)
    backfilled = store.backfill_video_vectors()
    # Compaction and version cleanup are safe beside writers (Lance resolves the conflicts);
    # deleting unreferenced files is not, so it needs the writer lock exclusively.
    with store.locks.sweeper() as no_writer:
        orphans = sweep_orphans and no_writer
        for name in tables:
            _compact(store, name, keep_versions, delete_unverified=orphans)
            if orphans:
                _sweep_partial_files(store, name)
    return {"bytes_before": before, "bytes_after": sum(store.disk_usage().values()),
            "log_rows_deleted": deleted, "answers_deleted": answers_deleted,
            "dead_videos_swept": swept, "orphans_swept": orphans,
            "video_vectors_backfilled": backfilled,
            "seconds": round(time.perf_counter() - t0, 3)}


def _sweep_partial_files(store: LanceStore, name: str) -> int:
    """Delete the ``.tmp*`` files a writer killed in the middle of a write left in a table's
    ``data`` folder (Lance writes a data file under a temporary name, then renames it; its
    cleanup only knows finished data files). Called only while no writer is active."""
    if store.location.path is None:
        return 0
    data = store.location.path / f"{name}.lance" / "data"
    removed = 0
    if data.is_dir():
        for f in data.glob(".tmp*"):
            try:
                f.unlink()
                removed += 1
            except OSError:
                continue
    if removed:
        log.info("removed %d partial data file(s) of %s", removed, name)
    return removed


def _expire_log(store: LanceStore, retention: timedelta) -> int:
    ds = store.tables.writable("query_log")
    if ds is None:
        return 0
    cutoff = (now_utc() - retention).strftime("%Y-%m-%d %H:%M:%S.%f")
    where = f"ts < TIMESTAMP '{cutoff}'"
    with store_io(store.location, "clean up"):
        n = ds.count_rows(where)
        if n:
            ds.delete(where)
    return int(n)


def sweep_dead_generations(store: LanceStore) -> int:
    """Delete rows of generations no ``videos`` row names, for videos nobody is writing.

    Returns:
        the number of videos whose dead rows were deleted.
    """
    import numpy as np

    live = {v.video_id: v.generation for v in store.list_videos()}
    from framedex.store.lance_store import GENERATION_TABLES

    dead: set[str] = set()
    for name in GENERATION_TABLES:
        data = store.tables.read(name, ["video_id", "generation"])
        if data.num_rows == 0:
            continue
        # One row per (video, generation) first: millions of rows, a handful of pairs.
        pairs = data.group_by(["video_id", "generation"]).aggregate([])
        vids = pairs.column("video_id").to_pylist()
        gens = np.asarray(pairs.column("generation").to_numpy(zero_copy_only=False))
        dead.update(v for v, g in zip(vids, gens.tolist(), strict=True) if live.get(v) != g)
    swept = 0
    for vid in sorted(dead):
        claim = store.claim(vid, wait=False)
        if claim is None:  # being indexed right now: its new rows are not dead
            continue
        with claim, store.writing():
            record = store.get_video(vid)
            if record is None:
                from framedex.store.lance_store import sql_str

                where = f"video_id = {sql_str(vid)}"
                for name in GENERATION_TABLES:
                    store.tables.delete(name, where)
            else:
                store.retire_generations(vid, keep=record.generation)
        swept += 1
    if swept:
        log.info("swept the dead rows of %d video(s)", swept)
    return swept


def _compact(store: LanceStore, name: str, keep_versions: timedelta,
             delete_unverified: bool) -> None:
    table = store.tables.table(name)
    if table is None:
        return
    with store_io(store.location, "optimize"):
        table.optimize(cleanup_older_than=keep_versions, delete_unverified=delete_unverified)
