"""What writers of one store coordinate on: per-video claims, the writer and sweeper leases,
and the maintenance lease, all built on the store's own leases (``store/leases.py``), so the
same guarantees hold on a local disk and on object storage.

- **Claims.** A writer claims the content id it is about to index (``video-<id>``). A second
  writer that finds the claim taken skips the video for now and comes back to it when the
  first one is done, finding it indexed (``unchanged``). The claim records the generation the
  holder writes (:meth:`Claim.begin`), so whoever takes a dead writer's claim over knows
  exactly which rows it left, and the generation a re-index replaces.
- **Writers and the sweeper.** Deleting data files no version refers to (a killed writer's
  leftovers) must never run while a writer has written files it has not committed yet. Every
  writer holds a ``writer-<owner>`` lease while it may have such files; the sweeper holds the
  ``sweeper`` lease. Each announces itself first and then looks at the other (writers wait
  while a sweep runs; a sweep is skipped while any writer is live), so at least one of two
  racing parties sees the other.
- **Maintenance.** One index build or compaction at a time (``maintenance``): two processes
  that both build the same index would have Lance refuse the second commit.

Example::

    locks = StoreLocks(location, storage_options)
    claim = locks.claim(video_id, wait=False)   # None: another writer holds it
    with claim:
        generation = claim.begin(new_generation(), replaces=live_generation)
        ...
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from framedex.store.leases import POLL_S, Lease, Leases

if TYPE_CHECKING:
    from framedex.store.location import StoreLocation

log = logging.getLogger(__name__)

#: Folder inside a local store holding framedex's own state (leases, locks, spooled files).
STATE_DIR = ".framedex"


class Claim:
    """The right to write one video; release it with :meth:`release` or ``with``.

    Attributes:
        video_id: the content id.
        dead_generation: the generation a writer that died holding this claim was writing
            (its rows are garbage unless that generation is live), else None.
    """

    def __init__(self, lease: Lease, video_id: str):
        self.lease, self.video_id = lease, video_id
        previous = lease.previous.data if lease.previous is not None else {}
        gen = previous.get("generation")
        self.dead_generation: int | None = int(gen) if gen is not None else None
        self.generation: int | None = None
        self.replaces: int | None = None

    def begin(self, generation: int, replaces: int | None) -> int:
        """Record in the store that this holder writes ``generation`` (replacing the live
        ``replaces``, if any). Returns ``generation``."""
        self.generation, self.replaces = generation, replaces
        self.lease.update(generation=generation)
        return generation

    def check(self) -> None:
        """Raise :class:`~framedex.errors.LeaseLostError` unless the claim is still held."""
        self.lease.check()

    def release(self) -> None:
        """Give the claim up (idempotent)."""
        self.lease.release()

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class StoreLocks:
    """The coordination of one store's writers.

    Args:
        location: the store.
        storage_options: object-store settings (Lance's keys).
        ttl: lease lifetime in seconds (None: ``leases.DEFAULT_TTL_S``).
    """

    def __init__(self, location: StoreLocation, storage_options: Mapping[str, str] | None,
                 *, ttl: float | None = None):
        self.leases = Leases(location, storage_options, ttl=ttl)
        self._writers = 0
        self._writer_lease: Lease | None = None
        self._writer_mutex = threading.Lock()

    def claim(self, video_id: str, *, wait: bool, timeout: float | None = None
              ) -> Claim | None:
        """Claim ``video_id`` for writing.

        Args:
            video_id: the content id.
            wait: block until the claim is free (or ``timeout`` passes); else return None at
                once when it is taken.
            timeout: with ``wait``, give up after this many seconds (None: never).

        Returns:
            the :class:`Claim`, or None when another writer holds it.
        """
        lease = self.leases.acquire(f"video-{video_id}", wait=wait, timeout=timeout)
        return None if lease is None else Claim(lease, video_id)

    def claim_job(self, job_id: str) -> Lease | None:
        """The right to run ingest job ``job_id`` (None: another worker or replica runs it)."""
        return self.leases.acquire(f"job-{job_id}")

    def job_running(self, job_id: str) -> bool:
        """True while some worker (of any replica) holds ``job_id``'s lease."""
        return self.leases.holder(f"job-{job_id}") is not None

    def dead_claims(self) -> list[tuple[str, int | None]]:
        """Videos whose claim was left by a writer that died (expired, or its process gone):
        ``(video_id, generation it was writing)``."""
        out = []
        for record in self.leases.records("video"):
            if record.state == "held" and not self.leases.alive(record):
                gen = record.data.get("generation")
                out.append((record.name[len("video-"):], None if gen is None else int(gen)))
        return out

    @contextlib.contextmanager
    def maintenance(self, *, wait: bool = True) -> Iterator[bool]:
        """The maintenance lease: yields True when held; with ``wait=False`` yields False at
        once when another process is building or compacting (the caller skips its work)."""
        lease = self.leases.acquire("maintenance", wait=wait)
        try:
            yield lease is not None
        finally:
            if lease is not None:
                lease.release()

    @contextlib.contextmanager
    def writer(self) -> Iterator[None]:
        """Held by every writer while it may have uncommitted data files (the threads of one
        process share one ``writer-<owner>`` lease)."""
        self._enter_writer()
        try:
            yield
        finally:
            self._exit_writer()

    def _enter_writer(self) -> None:
        with self._writer_mutex:
            self._writers += 1
            if self._writers > 1:
                return
            try:
                while True:
                    lease = self.leases.acquire(f"writer-{self.leases.owner}", unique=True)
                    if lease is None:  # our own name: only a stale record of ours
                        time.sleep(POLL_S)
                        continue
                    if self.leases.holder("sweeper") is None:
                        self._writer_lease = lease
                        return
                    lease.release()  # a sweep is deleting unreferenced files: let it finish
                    time.sleep(POLL_S)
            except BaseException:
                self._writers -= 1
                raise

    def _exit_writer(self) -> None:
        with self._writer_mutex:
            self._writers -= 1
            if self._writers == 0 and self._writer_lease is not None:
                self._writer_lease.release()
                self._writer_lease = None

    @contextlib.contextmanager
    def sweeper(self) -> Iterator[bool]:
        """The sweeper lease, without waiting: yields True when no writer (of any process) is
        active, so unreferenced files may be deleted; False otherwise."""
        lease = self.leases.acquire("sweeper")
        if lease is None:
            yield False
            return
        try:
            live = []
            for record in self.leases.records("writer"):
                if self.leases.alive(record):
                    live.append(record)
                elif record.state == "held":  # a writer that died: its record is garbage
                    self.leases.forget(record)
            with self._writer_mutex:
                own = self._writers > 0
            yield not live and not own
        finally:
            lease.release()

    def close(self) -> None:
        """Release every lease held through this object."""
        self.leases.close()
