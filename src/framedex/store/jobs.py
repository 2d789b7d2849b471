"""Ingest jobs in the store: typed records, written in batches, read by an index, expired.

The HTTP API's ingest jobs (``/v1/jobs``, Twelve Labs' tasks and indexed assets) live in the
store's ``jobs`` table, so every API replica on one store sees every job, and a job survives
the process that accepted it.

- **Batched writes.** A job changes state a few times and reports progress every couple of
  seconds; each was one Lance commit (a merge-insert), and a manifest lists every fragment, so
  600 jobs took 76 MB of manifests within one 10-minute version window. Now :meth:`save`
  only records the job's newest state; a thread writes all waiting jobs in one merge-insert
  every :data:`FLUSH_S` seconds (``durable=True`` writes at once: a new job before the
  ``202``, a final state before its upload is removed). Every :data:`COMPACT_EVERY` of its
  commits a store compacts the table and drops its versions older than
  :data:`KEEP_VERSIONS` (under the maintenance lease, skipped while another process holds
  it), so a burst's manifests stay small: the manifests of a burst of 600 jobs took 60 MB
  with batching alone.
- **Reads by an index.** One job is a filtered read on a BTREE of ``job_id``; a page of the
  newest jobs reads two narrow columns (``job_id``, ``created_at``), sorts them and fetches
  just that page's rows, instead of the whole table.
- **Claims.** A job runs under the ``job-<id>`` lease (``store/locks.py``), so of all the
  workers of all the replicas exactly one runs it; a job whose runner died (its lease expired)
  is picked up again.
- **Retention.** Finished jobs older than the retention (default 30 days, like the query
  log) are deleted by ``optimize``.

Example::

    jobs = JobStore(store)
    jobs.save(Job(job_id="ab12", source="path", path="/data/a.mp4"), durable=True)
    page, total = jobs.page(limit=50)
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

from framedex.errors import FramedexError
from framedex.rules import FINISHED, JOB_QUEUED, UNFINISHED
from framedex.store.flusher import Flusher
from framedex.store.schema import JOBS_SCHEMA, now_utc, sql_str, sql_strs, sql_timestamp

if TYPE_CHECKING:
    from framedex.store.leases import Lease
    from framedex.store.locks import StoreLocks
    from framedex.store.tables import LanceTables

log = logging.getLogger(__name__)

#: Seconds between two batched writes of job states (what another replica may lag behind).
FLUSH_S = 0.5
#: Finished jobs older than this are deleted by ``optimize``.
DEFAULT_JOB_RETENTION = timedelta(days=30)
#: Commits of the jobs table between two compactions of it by the process that made them.
COMPACT_EVERY = 64
#: The jobs table's versions kept by that compaction (readers re-read within a second).
KEEP_VERSIONS = timedelta(minutes=1)


@dataclass
class Job:
    """One ingest job, as the ``jobs`` table stores it."""

    job_id: str
    source: str  # "upload" | "path"
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    status: str = JOB_QUEUED  # one of framedex.rules.JOB_STATUSES
    progress: float = 0.0
    video_id: str | None = None
    error: str | None = None
    attempts: int = 0
    created_at: datetime = field(default_factory=now_utc)
    updated_at: datetime = field(default_factory=now_utc)

    def to_row(self) -> dict[str, Any]:
        """The Arrow row."""
        return {"job_id": self.job_id, "status": self.status, "source": self.source,
                "path": self.path, "progress": float(self.progress), "video_id": self.video_id,
                "error": self.error, "params": json.dumps(self.params, sort_keys=True),
                "attempts": int(self.attempts), "created_at": self.created_at,
                "updated_at": self.updated_at}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        """Build from a row of the ``jobs`` table."""
        return cls(job_id=row["job_id"], source=row["source"] or "path", path=row["path"] or "",
                   params=json.loads(row["params"] or "{}"), status=row["status"],
                   progress=float(row["progress"] or 0.0), video_id=row["video_id"],
                   error=row["error"], attempts=int(row["attempts"] or 0),
                   created_at=row["created_at"] or now_utc(),
                   updated_at=row["updated_at"] or now_utc())


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a listing wants (empty: any).

    Attributes:
        params: ``(key, values)`` pairs: the job's ``params[key]`` must be one of ``values``
            (e.g. the Twelve Labs route that made it, ``("tl", ("task", "indexed_asset"))``,
            or its collection).
        statuses: the statuses to keep.
    """

    params: tuple[tuple[str, tuple[str, ...]], ...] = ()
    statuses: tuple[str, ...] = ()

    @classmethod
    def of(cls, statuses: tuple[str, ...] = (), **params: str | tuple[str, ...] | None
           ) -> JobFilter:
        """``JobFilter.of(tl=("task", "indexed_asset"), collection=index_id)`` (None: any)."""
        pairs = tuple((k, (v,) if isinstance(v, str) else tuple(v))
                      for k, v in params.items() if v is not None)
        return cls(pairs, tuple(statuses))

    def where(self) -> str | None:
        """The SQL filter (params are stored as sorted-key JSON, so a pair is a substring)."""
        parts = []
        for key, values in self.params:
            alts = [f"params LIKE {sql_str('%' + _like(json.dumps({key: v})[1:-1]) + '%')}"
                    for v in values]
            parts.append("(" + " OR ".join(alts) + ")" if alts else "false")
        if self.statuses:
            parts.append(f"status IN {sql_strs(self.statuses)}")
        return " AND ".join(parts) or None


def _like(text: str) -> str:
    """``text`` as a literal inside a LIKE pattern."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class JobTables(Protocol):
    """What the jobs need of their store: its tables, its leases and the ``job_id`` index."""

    tables: LanceTables
    locks: StoreLocks

    def ensure_scalar_indexes(self, tables: Sequence[str] = ...) -> None: ...


class JobStore:
    """The ``jobs`` table of one store (see the module docstring).

    Args:
        store: the store.
        flush_s: seconds between batched writes.
    """

    def __init__(self, store: JobTables, *, flush_s: float = FLUSH_S):
        self.store, self.flush_s = store, flush_s
        self._pending: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._flusher = Flusher(self.flush, flush_s, "framedex-jobs")
        self._indexed = False
        self._commits = 0  # since this process last compacted the table
        self._compacting = threading.Lock()

    # -- writes -----------------------------------------------------------------------------

    def save(self, job: Job, *, durable: bool = False) -> None:
        """Record ``job``'s newest state; ``durable`` writes it (and whatever waits) now.

        Raises:
            StoreError: ``durable`` and the store cannot be written.
        """
        job.updated_at = now_utc()
        with self._lock:
            self._pending[job.job_id] = replace(job, params=dict(job.params))
        if durable:
            self.flush(raise_errors=True)
        else:
            self._flusher.start()

    def flush(self, *, raise_errors: bool = False) -> int:
        """Write every waiting job state in one commit. Returns how many were written."""
        with self._write_lock:
            with self._lock:
                jobs, self._pending = self._pending, {}
            if not jobs:
                return 0
            try:
                rows = pa.Table.from_pylist([j.to_row() for j in jobs.values()],
                                            schema=JOBS_SCHEMA)
                self.store.tables.upsert("jobs", "job_id", rows, JOBS_SCHEMA)
            except (FramedexError, OSError) as ex:
                with self._lock:  # keep them (newer states win) for the next flush
                    self._pending = {**jobs, **self._pending}
                if raise_errors:
                    raise
                log.warning("could not write %d job state(s): %s", len(jobs), ex)
                return 0
        self._ensure_index()
        self._commits += 1
        if self._commits >= COMPACT_EVERY and self._compacting.acquire(blocking=False):
            self._commits = 0  # on a thread of its own: a request that flushed never waits
            threading.Thread(target=self._compact, name="framedex-jobs-compact",
                             daemon=True).start()
        return len(jobs)

    def _compact(self) -> None:
        """Compact the table and drop its old versions, unless another process maintains the
        store now (then its optimize does it)."""
        try:
            with self.store.locks.maintenance(wait=False) as held, self._write_lock:
                if held:  # and no flush of this process races it (another's is retried)
                    t0 = time.perf_counter()
                    self.store.tables.compact("jobs", KEEP_VERSIONS)
                    log.debug("compacted the jobs table in %.3f s", time.perf_counter() - t0)
        except (FramedexError, OSError) as ex:  # upkeep: the next one will try again
            log.warning("could not compact the jobs table: %s", ex)
        finally:
            self._compacting.release()

    def _ensure_index(self) -> None:
        if not self._indexed:
            self._indexed = True
            try:
                self.store.ensure_scalar_indexes(("jobs",))
            except FramedexError as ex:  # a read-only moment: lookups scan instead
                log.debug("no job_id index yet: %s", ex)

    def close(self) -> None:
        """Write what waits and stop the writer thread (idempotent)."""
        self._flusher.close()

    # -- reads ------------------------------------------------------------------------------

    def _read(self, where: str | None, columns: list[str] | None = None) -> pa.Table:
        return self.store.tables.read("jobs", columns, where, JOBS_SCHEMA)

    def get(self, job_id: str) -> Job | None:
        """The job's newest state (this process's unwritten one first), or None."""
        with self._lock:
            job = self._pending.get(job_id)
        if job is not None:
            return replace(job, params=dict(job.params))
        rows = self._read(f"job_id = {sql_str(job_id)}").to_pylist()
        return Job.from_row(rows[-1]) if rows else None

    def page(self, limit: int = 50, offset: int = 0, where: JobFilter | None = None
             ) -> tuple[list[Job], int]:
        """Jobs newest first (ties by id): one page, and how many match in all."""
        import pyarrow.compute as pc

        keys = self._read(where.where() if where else None, ["job_id", "created_at"])
        with self._lock:
            pending = dict(self._pending)
        known: set[str] = set()
        if pending:
            ids = keys.column("job_id")
            known = set(ids.filter(pc.is_in(ids, value_set=pa.array(list(pending)))).to_pylist())
        extra = [j for j in pending.values() if j.job_id not in known and _matches(j, where)]
        if extra:  # submitted here, not yet written
            keys = pa.concat_tables([keys, pa.table(
                {"job_id": [j.job_id for j in extra], "created_at": [j.created_at for j in extra]},
                schema=keys.schema)])
        order = pc.sort_indices(keys, sort_keys=[("created_at", "descending"),
                                                 ("job_id", "ascending")])
        chosen = keys.column("job_id").take(order[offset: offset + limit]).to_pylist()
        return self._many(chosen, pending), keys.num_rows

    def _many(self, ids: list[str], pending: dict[str, Job]) -> list[Job]:
        if not ids:
            return []
        stored = {r["job_id"]: Job.from_row(r) for r in self._read(
            f"job_id IN {sql_strs(ids)}").to_pylist()}
        return [pending.get(i) or stored[i] for i in ids if i in pending or i in stored]

    def unfinished(self) -> list[Job]:
        """Jobs still ``queued`` or ``running`` (by any replica), oldest first."""
        jobs, _ = self.page(limit=1 << 30, where=JobFilter.of(statuses=UNFINISHED))
        return jobs[::-1]

    # -- claims and retention ------------------------------------------------------------------

    def claim(self, job_id: str) -> Lease | None:
        """The right to run ``job_id`` (None: a worker of some replica runs it)."""
        lease = self.store.locks.claim_job(job_id)
        if lease is not None:
            self.store.tables.refresh()  # see what its previous runner wrote
        return lease

    def running(self, job_id: str) -> bool:
        """True while a worker (of any replica) holds the job."""
        return self.store.locks.job_running(job_id)

def expire_jobs(store: JobTables, retention: timedelta = DEFAULT_JOB_RETENTION) -> int:
    """Delete finished jobs last updated longer ago than ``retention``, and their leases'
    last records (no worker claims a job that is gone: the workers look for unfinished jobs
    in the table). Returns how many jobs."""
    cutoff = sql_timestamp(now_utc() - retention)
    where = f"status IN {sql_strs(FINISHED)} AND updated_at < {cutoff}"
    expired = store.tables.read("jobs", ["job_id"], where, JOBS_SCHEMA)
    if expired.num_rows == 0:
        return 0
    store.tables.delete("jobs", where)
    for job_id in expired.column("job_id").to_pylist():
        store.locks.leases.purge(f"job-{job_id}")
    return int(expired.num_rows)


def _matches(job: Job, where: JobFilter | None) -> bool:
    if where is None:
        return True
    if where.statuses and job.status not in where.statuses:
        return False
    return all(str(job.params.get(k)) in vs for k, vs in where.params)
