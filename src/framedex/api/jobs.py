"""Ingest jobs: a queue, worker threads, and rows in the store's ``jobs`` table.

A job is persisted on every state change (queued -> running -> done | failed) and, every
:data:`PROGRESS_EVERY_S` seconds, as progress moves, so ``GET /v1/jobs/{id}`` answers after a
restart too. The video itself only becomes visible when the indexer commits its ``videos``
row, so a job killed mid-way never shows a partial video.

Recovery: when the server starts, jobs left ``queued`` or ``running`` by a previous process
(crash, kill -9, shutdown during an ingest) are queued again; ``attempts`` counts the runs
started, and a job that was interrupted :data:`MAX_ATTEMPTS` times is marked failed with the
reason instead of being retried forever. Upload files no video or live job refers to (a crash
mid-upload, a rejected request, a superseded re-index) are swept at start-up.

Safe ingest: the allow-root check at submission records the file's device and inode; the
worker opens the file once, without following a final symlink, checks that it is still that
file and still under an allowed root, and indexes from that open descriptor. Swapping the path
for a symlink between submission and ingest therefore fails the job instead of indexing the
file the link points to. The path recorded for the video is the open descriptor's own real
path, taken at the open, never the submitted name resolved again later: a folder on the way
swapped for a link after the open (issue 27) cannot make the store name a file outside the
roots. Every later open of the source checks it is still that file (``Library.open_source``).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from framedex.errors import FramedexError, NotFoundError, PermissionDeniedError

if TYPE_CHECKING:
    from framedex.library import Library

log = logging.getLogger("framedex.api.jobs")

#: Runs a job may start before an interrupted job is given up.
MAX_ATTEMPTS = 3
#: Seconds between two progress writes of the same job (each write is a Lance commit).
PROGRESS_EVERY_S = 2.0
#: Upload files younger than this are never swept (another server process may be writing).
SWEEP_MIN_AGE_S = 600.0

_STOP = object()


def now_utc() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


@dataclass
class Job:
    """One ingest job, as the ``jobs`` table stores it."""

    job_id: str
    source: str  # "upload" | "path"
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    status: str = "queued"  # queued | running | done | failed
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


def file_identity(path: str | os.PathLike) -> dict[str, int]:
    """``{"dev", "ino"}`` of a file, recorded at submission and checked at ingest."""
    st = os.stat(path)
    return {"dev": int(st.st_dev), "ino": int(st.st_ino)}


class JobManager:
    """Runs ingest jobs on ``workers`` threads against one library.

    Args:
        library: the :class:`~framedex.library.Library`.
        workers: threads (jobs running at once).
        upload_dir: where uploaded files live; files of failed, rejected or superseded uploads
            are removed.
        roots: the allowed roots, re-checked when a path job's file is opened.
        public_path: how a server path is shown to clients (job errors mention the file).
    """

    def __init__(self, library: Library, workers: int = 1, upload_dir: Path | None = None,
                 roots: tuple[Path, ...] = (),
                 public_path: Callable[[str], str] = lambda p: Path(p).name):
        self.library = library
        self.upload_dir = upload_dir
        self.roots = roots
        self.public_path = public_path
        self._queue: queue.Queue[Any] = queue.Queue()
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, name=f"framedex-job-{i}",
                                          daemon=True) for i in range(workers)]

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Recover unfinished jobs, sweep orphan uploads, then start the workers."""
        self.recover()
        self.sweep_uploads()
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the workers to exit. A job still running stays ``running`` in the store and is
        recovered on the next start (an index run cannot be interrupted half-way)."""
        for _ in self._threads:
            self._queue.put(_STOP)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def _rows(self) -> list[dict[str, Any]]:
        return self.library.job_rows()

    def recover(self) -> list[Job]:
        """Re-queue (or give up) the jobs left ``queued``/``running``. Returns them."""
        rows = sorted(self._rows(), key=lambda r: r["created_at"])
        recovered = []
        for row in rows:
            job = Job.from_row(row)
            if job.status not in ("queued", "running"):
                continue
            if job.attempts >= MAX_ATTEMPTS:
                job.status = "failed"
                job.error = (f"interrupted {job.attempts} times (the server stopped while this "
                             "job was running); giving up: submit it again")
                self._save(job)
                self._cleanup_upload(job)
            else:
                job.status, job.progress = "queued", 0.0
                self._save(job)
                self._queue.put(job.job_id)
            recovered.append(job)
        if recovered:
            log.warning("recovered %d unfinished ingest job(s)", len(recovered))
        return recovered

    def sweep_uploads(self) -> list[Path]:
        """Delete upload files no video and no unfinished job refers to (older than
        :data:`SWEEP_MIN_AGE_S`). Returns what was deleted."""
        if self.upload_dir is None or not self.upload_dir.is_dir():
            return []
        keep = {str(Path(v.path)) for v in self.library.videos()}
        keep |= {r["path"] for r in self._rows() if r["status"] in ("queued", "running")}
        cutoff = time.time() - SWEEP_MIN_AGE_S
        swept = []
        for f in self.upload_dir.iterdir():
            try:
                if f.is_file() and str(f.resolve()) not in keep and f.stat().st_mtime < cutoff:
                    f.unlink()
                    swept.append(f)
            except OSError:
                continue
        if swept:
            log.warning("removed %d orphan upload file(s)", len(swept))
        return swept

    # -- API --------------------------------------------------------------------------------

    def submit(self, source: str, path: str, params: dict[str, Any],
               job_id: str | None = None) -> Job:
        """Persist a new queued job and hand it to a worker."""
        job = Job(job_id=job_id or new_job_id(), source=source, path=path,
                  params={**params, **file_identity(path)})
        self._save(job)
        self._queue.put(job.job_id)
        return job

    def get(self, job_id: str) -> Job:
        """The job with this id (from memory, else from the store).

        Raises:
            NotFoundError: no such job.
        """
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None:
            return job
        for row in self._rows():
            if row["job_id"] == job_id:
                return Job.from_row(row)
        raise NotFoundError(f"no job {job_id[:64]!r}: job ids are returned by POST /v1/videos")

    def list(self, limit: int = 50, offset: int = 0) -> tuple[list[Job], int]:
        """Jobs, newest first, and the total count."""
        rows = sorted(self._rows(), key=lambda r: r["created_at"], reverse=True)
        with self._lock:
            jobs = [self._jobs.get(r["job_id"]) or Job.from_row(r) for r in rows]
        return jobs[offset: offset + limit], len(jobs)

    # -- workers ----------------------------------------------------------------------------

    def _save(self, job: Job) -> None:
        job.updated_at = now_utc()
        with self._lock:
            self._jobs[job.job_id] = job
        self.library.save_job_rows([job.to_row()])

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                self._run(self._jobs[item])
            except Exception:  # a worker must survive anything a job does
                log.exception("ingest job %s crashed", item)

    def _run(self, job: Job) -> None:
        job.status, job.attempts, job.progress, job.error = "running", job.attempts + 1, 0.0, None
        self._save(job)
        last = [time.monotonic()]

        def progress(path: str, done: int, expected: int) -> None:
            # Never report 1.0 before the video row is committed.
            job.progress = min(0.99, done / max(1, expected))
            if time.monotonic() - last[0] >= PROGRESS_EVERY_S:
                last[0] = time.monotonic()
                self._save(job)

        outcome = None
        try:
            with self._open_verified(job) as verified:
                outcome = self.library.index_file(
                    verified.path, fps=float(job.params.get("fps", 1.0)),
                    metadata=job.params.get("metadata") or None, progress=progress,
                    read_from=verified.read_from)
        except FramedexError as ex:
            job.error = self._public_error(job, str(ex))
        except Exception as ex:
            log.exception("ingest job %s failed", job.job_id)
            job.error = f"internal error while indexing ({type(ex).__name__})"
        if outcome is not None and outcome.status in ("indexed", "unchanged"):
            self._join_collection(job, outcome.video_id)  # before anyone can see "done"
            job.status, job.progress, job.video_id = "done", 1.0, outcome.video_id
        else:
            job.status = "failed"
            if outcome is not None:
                job.error = self._public_error(job, outcome.error or "indexing failed")
        self._save(job)
        self._cleanup_upload(job)

    def _join_collection(self, job: Job, video_id: str | None) -> None:
        """Put the indexed video in the collection the job names (``params["collection"]``,
        a Twelve Labs index) before the job is marked done (the in-memory job is what readers
        see), so a client that sees the job done sees the membership too; a crash in between
        re-runs the job, which then finds the video unchanged and adds it."""
        collection = job.params.get("collection")
        if not collection or not video_id:
            return
        try:
            self.library.add_to_collection(collection, video_id)
        except FramedexError as ex:  # the collection was deleted while the job ran
            log.warning("job %s: video %s not added to collection %s: %s", job.job_id,
                        video_id, collection, ex)

    def _public_error(self, job: Job, message: str) -> str:
        """A job error as clients see it: the server path replaced by its public form."""
        return message.replace(job.path, self.public_path(job.path))

    def _open_verified(self, job: Job) -> _VerifiedFile:
        return _VerifiedFile(job, self.roots if job.source == "path" else ())

    def _cleanup_upload(self, job: Job) -> None:
        """Remove an uploaded file no video refers to (failed, or a duplicate of an indexed
        video stored under another path)."""
        if job.source != "upload" or self.upload_dir is None:
            return
        path = Path(job.path)
        if job.status == "done" and job.video_id:
            try:
                if Path(self.library.video(job.video_id).path) == path.resolve():
                    return
            except FramedexError:
                return
        elif job.status != "failed":
            return
        if path.parent.resolve() == self.upload_dir.resolve():
            path.unlink(missing_ok=True)


class _VerifiedFile:
    """Open a job's file once and hand out a path to that open file (``/proc/self/fd/N``).

    Attributes (after enter):
        read_from: ``/proc/self/fd/N`` to read the bytes from, or None (no ``/proc``, or the
            file could not be opened: the indexer then reports it in its own words).
        path: the path to record for the video: the descriptor's real path, taken at the open
            (the submitted path where there is no ``/proc``).

    Raises (on enter):
        PermissionDeniedError: the file was replaced (another inode, a symlink now), moved
            while it was opened, or now lies outside the allowed roots.
    """

    def __init__(self, job: Job, roots: tuple[Path, ...]):
        self.job, self.roots = job, roots
        self.fd: int | None = None
        self.read_from: str | None = None
        self.path: str = job.path

    def __enter__(self) -> _VerifiedFile:
        job = self.job
        try:
            fd = os.open(job.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as ex:
            if ex.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink: the name was swapped
                raise PermissionDeniedError(f"{Path(job.path).name} was replaced by a link "
                                            "after it was submitted; submit it again") from None
            return self  # missing/unreadable: the indexer reports it in its own words
        self.fd = fd
        try:
            self._check(fd)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _check(self, fd: int) -> None:
        job = self.job
        st = os.fstat(fd)
        want = (job.params.get("dev"), job.params.get("ino"))
        if want != (None, None) and (st.st_dev, st.st_ino) != want:
            raise PermissionDeniedError(f"{Path(job.path).name} was replaced after it was "
                                        "submitted; submit it again")
        proc = f"/proc/self/fd/{fd}"
        if not os.path.exists(proc):  # no /proc (macOS): the checks above still held
            return
        real = os.path.realpath(proc)
        try:  # the real path must name this very file now (not "... (deleted)", not moved)
            here = os.stat(real)
        except OSError:
            here = None
        if here is None or (here.st_dev, here.st_ino) != (st.st_dev, st.st_ino):
            raise PermissionDeniedError(f"{Path(job.path).name} was moved or replaced while "
                                        "it was opened; submit it again")
        if self.roots and not any(Path(real) == r or Path(real).is_relative_to(r)
                                  for r in self.roots):
            raise PermissionDeniedError(f"{Path(job.path).name} now lies outside the "
                                        "folders this server may read")
        self.read_from, self.path = proc, real

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def new_job_id() -> str:
    """A fresh job id."""
    return uuid.uuid4().hex[:16]
