"""Keeping a store's disk bounded: retention, sweeping dead rows, compaction, old versions.

Every Lance commit (an append, a job update, a flush of the query log) adds a version; a
version's manifest lists all fragments, and nothing is ever removed on its own. Without upkeep
a busy server's ``query_log`` grew to 1.1 GB of manifests after 4,600 queries. ``optimize``:

1. deletes query-log rows older than the retention (default 30 days), answers and their
   ratings older than it or of video generations that are no longer live
   (``store.answers``), and finished ingest jobs older than their retention (30 days);
2. deletes the rows a writer that died left: the generation its expired claim recorded, unless
   that one is live (``deep``: also every generation no ``videos`` row names, found by a scan
   of the frames table, for rows older stores left without such a record), each under the
   video's claim, so never the rows of a writer that is alive; and writes the
   ``video_vectors`` rows committed videos lack (stores indexed before that table existed),
   and the multi-part search's codes of the videos indexed since its codebook was built;
3. compacts small fragments, folds new rows into the indexes, and removes versions older than
   ``keep_versions`` (default 10 minutes: readers hold a version for milliseconds);
4. with ``sweep_orphans`` and no writer active, also deletes data files no version refers to
   (what a writer killed between writing and committing leaves behind), and the partial
   ``.tmp*`` files of a writer killed in the middle of writing one.

It runs after every index run, on a timer in the server, and as ``framedex optimize``.
One runs at a time per store (the ``maintenance`` lease): an optimize that finds another one
running anywhere is a no-op (``skipped``), and compaction that loses a commit race to a
writer retries (``store/tables.py``).

Example::

    report = store.optimize()            # {"bytes_before": ..., "bytes_after": ..., ...}
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from framedex.errors import check
from framedex.store.jobs import DEFAULT_JOB_RETENTION, expire_jobs
from framedex.store.location import store_io
from framedex.store.schema import GENERATION_TABLES, now_utc, sql_str, sql_timestamp

if TYPE_CHECKING:
    from framedex.store.base import LanceParts

log = logging.getLogger(__name__)

#: Query-log rows older than this are deleted.
DEFAULT_LOG_RETENTION = timedelta(days=30)
#: Table versions older than this are removed.
DEFAULT_KEEP_VERSIONS = timedelta(minutes=10)

_TABLES = ("videos", "frames", "segments", "video_paths", "jobs", "query_log",
           "video_vectors", "video_codes", "indexes", "index_members", "assets", "answers",
           "answer_feedback", "entity_collections", "entities")


def optimize(store: LanceParts, *, log_retention: timedelta | None = None,
             keep_versions: timedelta | None = None, sweep_orphans: bool = True,
             tables: tuple[str, ...] = _TABLES, deep: bool = True,
             job_retention: timedelta | None = None) -> dict[str, Any]:
    """Bound the store's disk use (see the module docstring).

    Args:
        store: the store.
        log_retention: keep query-log rows this long (None: 30 days).
        keep_versions: keep table versions this long (None: 10 minutes).
        sweep_orphans: also delete unreferenced data files when no writer is active.
        tables: the tables to compact.
        deep: also scan the frames table for dead generations nobody's claim recorded.
        job_retention: keep finished ingest jobs this long (None: 30 days).

    Returns:
        ``bytes_before``, ``bytes_after``, ``log_rows_deleted``, ``answers_deleted``,
        ``jobs_expired``, ``dead_videos_swept``, ``orphans_swept`` (whether unreferenced
        files were deleted), ``video_vectors_backfilled``, ``videos_coded`` and ``seconds``;
        or ``skipped``
        (why) when another optimize is running.
    """
    import time

    log_retention = DEFAULT_LOG_RETENTION if log_retention is None else log_retention
    keep_versions = DEFAULT_KEEP_VERSIONS if keep_versions is None else keep_versions
    check(log_retention >= timedelta(0), "log_retention", log_retention, "must be >= 0")
    check(keep_versions >= timedelta(0), "keep_versions", keep_versions, "must be >= 0")
    job_retention = DEFAULT_JOB_RETENTION if job_retention is None else job_retention
    check(job_retention >= timedelta(0), "job_retention", job_retention, "must be >= 0")
    t0 = time.perf_counter()
    with store.locks.maintenance(wait=False) as held:
        if not held:
            return {"skipped": "another process is optimizing this store",
                    "seconds": round(time.perf_counter() - t0, 3)}
        return _optimize(store, log_retention, keep_versions, job_retention, sweep_orphans,
                         tables, deep, t0)


def _optimize(store: LanceParts, log_retention: timedelta, keep_versions: timedelta,
              job_retention: timedelta, sweep_orphans: bool, tables: tuple[str, ...],
              deep: bool, t0: float) -> dict[str, Any]:
    import time

    before = sum(store.disk_usage().values())
    deleted = _expire_log(store, log_retention)
    from framedex.store.answers import expire_answers

    with store_io(store.location, "clean up"):
        answers_deleted = expire_answers(store, log_retention)
    expired = expire_jobs(store, job_retention) if "jobs" in tables else 0
    swept = sweep_dead_generations(store, deep=deep)
    backfilled = store.backfill_video_vectors()
    from framedex.store.multivector import extend_codes

    coded = extend_codes(store)
    # Compaction and version cleanup are safe beside writers (a lost commit race is retried);
    # deleting unreferenced files is not, so it needs the sweeper lease and no live writer.
    with store.locks.sweeper() as no_writer:
        orphans = sweep_orphans and no_writer
        for name in tables:
            store.tables.compact(name, keep_versions, delete_unverified=orphans)
            if orphans:
                _sweep_partial_files(store, name)
    return {"bytes_before": before, "bytes_after": sum(store.disk_usage().values()),
            "log_rows_deleted": deleted, "answers_deleted": answers_deleted,
            "jobs_expired": expired,
            "dead_videos_swept": swept, "orphans_swept": orphans,
            "video_vectors_backfilled": backfilled, "videos_coded": coded,
            "seconds": round(time.perf_counter() - t0, 3)}


def _sweep_partial_files(store: LanceParts, name: str) -> int:
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


def _expire_log(store: LanceParts, retention: timedelta) -> int:
    return store.tables.delete("query_log", f"ts < {sql_timestamp(now_utc() - retention)}")


def sweep_dead_generations(store: LanceParts, *, deep: bool = False) -> int:
    """Delete rows of generations no ``videos`` row names, for videos nobody is writing.

    The generations come from the claims dead writers left (each records the generation its
    holder wrote); ``deep`` also scans the frames, segments and multivector tables for
    (video, generation) pairs no ``videos`` row names. Each video is swept under its claim,
    taken without waiting: a video a live writer holds is left alone.

    Returns:
        the number of videos whose dead rows were deleted.
    """
    dead: dict[str, set[int] | None] = {}  # None: every generation but the live one
    for vid, gen in store.locks.dead_claims():
        dead.setdefault(vid, set())
        if gen is not None and dead[vid] is not None:
            dead[vid].add(gen)  # type: ignore[union-attr]
    if deep:
        live = {v.video_id: v.generation for v in store.list_videos()}
        for vid in _unnamed_generations(store, live):
            dead[vid] = None
    swept = 0
    for vid in sorted(dead):
        claim = store.claim(vid, wait=False)
        if claim is None:  # being indexed right now: its new rows are not dead
            continue
        with claim, store.writing():
            record = store.get_video(vid)
            live_gen = None if record is None else int(record.generation)
            gens = dead[vid]
            if claim.dead_generation is not None and gens is not None:
                gens.add(claim.dead_generation)
            if gens is None:
                keep = "" if live_gen is None else f" AND generation != {live_gen}"
                where = f"video_id = {sql_str(vid)}{keep}"
                n = sum(store.tables.delete(name, where) for name in GENERATION_TABLES)
            else:
                n = 0
                for gen in sorted(g for g in gens if g != live_gen):
                    where = f"video_id = {sql_str(vid)} AND generation = {int(gen)}"
                    n += sum(store.tables.delete(name, where) for name in GENERATION_TABLES)
        swept += bool(n)
    if swept:
        log.info("swept the dead rows of %d video(s)", swept)
    return swept


def _unnamed_generations(store: LanceParts, live: dict[str, int]) -> set[str]:
    """Videos with rows of a generation no ``videos`` row names (a full scan of the
    generation columns: millions of rows, a handful of distinct pairs)."""
    import numpy as np

    out: set[str] = set()
    for name in GENERATION_TABLES:
        data = store.tables.read(name, ["video_id", "generation"])
        if data.num_rows == 0:
            continue
        pairs = data.group_by(["video_id", "generation"]).aggregate([])
        vids = pairs.column("video_id").to_pylist()
        gens = np.asarray(pairs.column("generation").to_numpy(zero_copy_only=False))
        out.update(v for v, g in zip(vids, gens.tolist(), strict=True) if live.get(v) != g)
    return out


