"""Ingest jobs: worker threads that run the jobs of the store's ``jobs`` table.

A job is a record in the store (``store/jobs.py``: written in batches, read by an index,
expired), so every replica of the API on one store lists and answers for every job. Running
one takes its ``job-<id>`` lease, so exactly one worker of one replica runs it, whichever
replica accepted it. A job is run on a replica of the machine that accepted it (its file, an
upload or a path under ``--allow-root``, is on that machine, and its identity was recorded
there); other machines' replicas show it but do not run it.

The video itself only becomes visible when the indexer commits its ``videos`` row, so a job
killed mid-way never shows a partial video.

Recovery: a job whose runner died (its lease expired, or its process on this machine is gone)
is run again by the next worker that looks; ``attempts`` counts the runs started, and a job
that was interrupted :data:`MAX_ATTEMPTS` times is marked failed with the reason instead of
being retried forever. Workers look for such jobs (and for jobs other replicas of this machine
accepted) every :data:`POLL_S` seconds. Upload files no video or unfinished job refers to (a
crash mid-upload, a rejected request, a superseded re-index) are swept at start-up.

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
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from framedex.errors import FramedexError, NotFoundError, PermissionDeniedError
from framedex.library import Job, JobFilter
from framedex.rules import INDEXED, JOB_DONE, JOB_FAILED, JOB_RUNNING, UNCHANGED, UNFINISHED

if TYPE_CHECKING:
    from framedex.library import Library

log = logging.getLogger("framedex.api.jobs")

#: Runs a job may start before an interrupted job is given up.
MAX_ATTEMPTS = 3
#: Seconds between two progress reports of the same job (written in the next batch).
PROGRESS_EVERY_S = 2.0
#: Seconds between two looks for jobs this replica did not accept (or whose runner died).
POLL_S = 1.0
#: Upload files younger than this are never swept (another server process may be writing).
SWEEP_MIN_AGE_S = 600.0
#: This machine: jobs are run where their file is.
HOST = socket.gethostname()

_STOP = object()

__all__ = ["HOST", "MAX_ATTEMPTS", "Job", "JobFilter", "JobManager", "file_identity",
           "new_job_id"]


def sweep_folder(folder: Path, keep: Collection[str], min_age_s: float, what: str
                 ) -> list[Path]:
    """Delete the files of ``folder`` (not its subfolders) whose real path is not in ``keep``
    and that were last written more than ``min_age_s`` seconds ago (a file being written, or
    just renamed into place, is never taken).

    Returns:
        the files deleted.
    """
    if not folder.is_dir():
        return []
    cutoff = time.time() - min_age_s
    swept = []
    for f in folder.iterdir():
        try:
            if f.is_file() and str(f.resolve()) not in keep and f.stat().st_mtime < cutoff:
                f.unlink()
                swept.append(f)
        except OSError:
            continue
    if swept:
        log.warning("removed %d %s file(s) no video, asset or unfinished job uses",
                    len(swept), what)
    return swept


def file_identity(path: str | os.PathLike) -> dict[str, int]:
    """``{"dev", "ino"}`` of a file, recorded at submission and checked at ingest."""
    st = os.stat(path)
    return {"dev": int(st.st_dev), "ino": int(st.st_ino)}


class JobManager:
    """Runs ingest jobs on ``workers`` threads against one library.

    Args:
        library: the :class:`~framedex.library.Library` (its ``jobs`` hold the records).
        workers: threads (jobs running at once in this process).
        upload_dir: where uploaded files live; files of failed, rejected or superseded uploads
            are removed.
        roots: the allowed roots, re-checked when a path job's file is opened.
        public_path: how a server path is shown to clients (job errors mention the file).
        poll_s: seconds between two looks for jobs accepted elsewhere or left by a dead runner.
    """

    def __init__(self, library: Library, workers: int = 1, upload_dir: Path | None = None,
                 roots: tuple[Path, ...] = (),
                 public_path: Callable[[str], str] = lambda p: Path(p).name,
                 poll_s: float = POLL_S):
        self.library = library
        self.jobs = library.jobs
        self.upload_dir = upload_dir
        self.roots = roots
        self.public_path = public_path
        self.poll_s = poll_s
        self._queue: queue.Queue[Any] = queue.Queue()
        self._waiting: set[str] = set()  # in this process's queue
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._work, name=f"framedex-job-{i}",
                                          daemon=True) for i in range(workers)]
        self._poller = threading.Thread(target=self._poll, name="framedex-job-poll",
                                        daemon=True)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Fail jobs interrupted too often, sweep orphan uploads, then start the workers and
        the poller."""
        self.recover()
        self.sweep_uploads()
        for t in self._threads:
            t.start()
        self._poller.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the workers to exit. A job still running stays ``running`` in the store and is
        run again by the next worker that finds its lease expired (an index run cannot be
        interrupted half-way)."""
        self._stop.set()
        for _ in self._threads:
            self._queue.put(_STOP)
        deadline = time.monotonic() + timeout
        for t in (*self._threads, self._poller):
            if t.is_alive():
                t.join(max(0.0, deadline - time.monotonic()))
        self.jobs.flush()

    def recover(self) -> list[Job]:
        """Queue the unfinished jobs this machine may run (a worker runs each one nobody holds);
        fail those interrupted :data:`MAX_ATTEMPTS` times. Returns them."""
        found = []
        for job in self.jobs.unfinished():
            with self._lock:
                waiting = job.job_id in self._waiting
            if waiting or not self._ours(job):
                continue
            if job.status == JOB_RUNNING and job.attempts >= MAX_ATTEMPTS:
                lease = self.jobs.claim(job.job_id)
                if lease is None:
                    continue
                with lease:
                    job.status = JOB_FAILED
                    job.error = (f"interrupted {job.attempts} times (the server stopped while "
                                 "this job was running); giving up: submit it again")
                    self.jobs.save(job, durable=True)
                    self._cleanup_upload(job)
            else:
                self._enqueue(job.job_id)
            found.append(job)
        return found

    def live_paths(self) -> set[str]:
        """The files unfinished ingest jobs (of every replica) will read: a delete or a sweep
        must keep them."""
        return {j.path for j in self.jobs.unfinished()}

    def sweep_uploads(self) -> list[Path]:
        """Delete upload files no video and no unfinished job refers to (older than
        :data:`SWEEP_MIN_AGE_S`). Returns what was deleted."""
        if self.upload_dir is None or not self.upload_dir.is_dir():
            return []
        keep = {str(Path(v.path)) for v in self.library.videos()}
        keep |= self.live_paths()
        return sweep_folder(self.upload_dir, keep, SWEEP_MIN_AGE_S, "upload")

    # -- API --------------------------------------------------------------------------------

    def submit(self, source: str, path: str, params: dict[str, Any],
               job_id: str | None = None) -> Job:
        """Persist a new queued job (before answering) and hand it to a worker."""
        job = Job(job_id=job_id or new_job_id(), source=source, path=path,
                  params={**params, **file_identity(path), "host": HOST})
        self.jobs.save(job, durable=True)
        self._enqueue(job.job_id)
        return job

    def get(self, job_id: str) -> Job:
        """The job with this id, as this replica knows it newest.

        Raises:
            NotFoundError: no such job.
        """
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id[:64]!r}: job ids are returned by "
                                "POST /v1/videos")
        return job

    def list(self, limit: int = 50, offset: int = 0, where: JobFilter | None = None
             ) -> tuple[list[Job], int]:
        """Jobs, newest first, and the total count (of those matching ``where``)."""
        return self.jobs.page(limit, offset, where)

    # -- workers ----------------------------------------------------------------------------

    def _ours(self, job: Job) -> bool:
        """A job this machine can run: accepted here (or by a version that did not record
        where)."""
        return job.params.get("host", HOST) == HOST

    def _enqueue(self, job_id: str) -> None:
        with self._lock:
            if job_id in self._waiting:
                return
            self._waiting.add(job_id)
        self._queue.put(job_id)

    def _poll(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.recover()
            except Exception:  # the store may be away for a moment; look again later
                log.warning("could not look for ingest jobs", exc_info=True)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            with self._lock:
                self._waiting.discard(item)
            try:
                self._claim_and_run(item)
            except Exception:  # a worker must survive anything a job does
                log.exception("ingest job %s crashed", item)

    def _claim_and_run(self, job_id: str) -> None:
        lease = self.jobs.claim(job_id)
        if lease is None:  # another worker (of some replica) runs it
            return
        with lease:
            job = self.jobs.get(job_id)
            if job is None or job.status not in UNFINISHED:
                return  # done meanwhile, or expired
            if job.status == JOB_RUNNING and job.attempts >= MAX_ATTEMPTS:
                job.status = JOB_FAILED
                job.error = (f"interrupted {job.attempts} times (the server stopped while "
                             "this job was running); giving up: submit it again")
                self.jobs.save(job, durable=True)
                self._cleanup_upload(job)
                return
            self._run(job)

    def _run(self, job: Job) -> None:
        job.status, job.attempts, job.progress, job.error = JOB_RUNNING, job.attempts + 1, 0.0, None
        self.jobs.save(job, durable=True)
        last = [time.monotonic()]

        def progress(path: str, done: int, expected: int) -> None:
            # Never report 1.0 before the video row is committed.
            job.progress = min(0.99, done / max(1, expected))
            if time.monotonic() - last[0] >= PROGRESS_EVERY_S:
                last[0] = time.monotonic()
                self.jobs.save(job)

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
        if outcome is not None and outcome.status in (INDEXED, UNCHANGED):
            self._join_collection(job, outcome.video_id)  # before anyone can see "done"
            job.status, job.progress, job.video_id = JOB_DONE, 1.0, outcome.video_id
        else:
            job.status = JOB_FAILED
            if outcome is not None:
                job.error = self._public_error(job, outcome.error or "indexing failed")
        self.jobs.save(job, durable=True)
        self._cleanup_upload(job)

    def _join_collection(self, job: Job, video_id: str | None) -> None:
        """Put the indexed video in the collection the job names (``params["collection"]``,
        a Twelve Labs index) before the job is marked done, so a client that sees the job done
        sees the membership too; a crash in between re-runs the job, which then finds the
        video unchanged and adds it."""
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
        if job.status == JOB_DONE and job.video_id:
            try:
                if Path(self.library.video(job.video_id).path) == path.resolve():
                    return
            except FramedexError:
                return
        elif job.status != JOB_FAILED:
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
