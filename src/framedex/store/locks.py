"""Cross-process locks of a local store: the writer lock and per-video claims.

Two processes (two ``framedex index`` runs, or API workers) may write one store at once. Lance
detects conflicting commits by itself, but it cannot stop two writers from indexing the *same*
content side by side, which doubled every frame. So a writer first **claims** the content id it
is about to index; a second writer that finds the claim taken skips the video for now and comes
back to it when the first one is done, finding it indexed (``unchanged``).

Locks are ``flock(2)`` locks on small files under ``<db>/.framedex/locks``. The kernel releases
them when the holder exits, also on ``kill -9``, so a crash never leaves a stale claim. flock
locks belong to an open file description, so two threads of one process that open the file
separately exclude each other exactly as two processes do.

The **writer lock** is shared by every writer and taken exclusively by maintenance that deletes
unreferenced data files (the leftovers of a killed writer): such a sweep must never run while a
writer has written files it has not committed yet.

Object-store URIs (``s3://``...) have no shared file system to lock on: there the locks are
per process only, and concurrent writer *processes* on one object-store library are not
supported (the Ray engine has a single committing driver).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

#: Folder inside a local store holding framedex's own state (locks, spooled files).
STATE_DIR = ".framedex"


class _FileLock:
    """One flock on one file, or an in-process lock when there is no file system."""

    _process_locks: ClassVar[dict[str, threading.Lock]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: Path | None, key: str):
        self.path, self.key = path, key
        self._fd: int | None = None
        self._thread_lock: threading.Lock | None = None

    def acquire(self, *, exclusive: bool = True, blocking: bool = True) -> bool:
        if self.path is None:
            with self._registry_lock:
                lock = self._process_locks.setdefault(self.key, threading.Lock())
            if not lock.acquire(blocking):
                return False
            self._thread_lock = lock
            return True
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        flags = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if blocking else fcntl.LOCK_NB)
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._thread_lock is not None:
            self._thread_lock.release()
            self._thread_lock = None
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


class Claim:
    """The right to write one video; release it with :meth:`release` or ``with``."""

    def __init__(self, lock: _FileLock, video_id: str):
        self._lock, self.video_id = lock, video_id

    def release(self) -> None:
        """Give the claim up (idempotent)."""
        self._lock.release()

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class StoreLocks:
    """The locks of one store.

    Args:
        root: the store's local folder, or None for an object-store URI (per-process locks).
        key: a name for the per-process locks (the store's URI).
    """

    def __init__(self, root: Path | None, key: str):
        self.root, self.key = root, key

    def _lock(self, name: str) -> _FileLock:
        path = None if self.root is None else self.root / STATE_DIR / "locks" / name
        return _FileLock(path, f"{self.key}::{name}")

    def claim(self, video_id: str, *, wait: bool) -> Claim | None:
        """Claim ``video_id`` for writing.

        Args:
            video_id: the content id.
            wait: block until the claim is free; else return None at once when it is taken.

        Returns:
            the :class:`Claim`, or None (``wait=False`` and another writer holds it).
        """
        lock = self._lock(f"video-{video_id}.lock")
        if not lock.acquire(exclusive=True, blocking=wait):
            return None
        return Claim(lock, video_id)

    @contextlib.contextmanager
    def maintenance(self) -> Iterator[None]:
        """Exclusive, waiting: one index build or compaction at a time. Two processes that
        both finish an index run would otherwise both build the same index, and Lance
        refuses the second commit ("CreateIndex transaction was preempted")."""
        lock = self._lock("maintenance.lock")
        lock.acquire(exclusive=True, blocking=True)
        try:
            yield
        finally:
            lock.release()

    @contextlib.contextmanager
    def writer(self) -> Iterator[None]:
        """Held (shared) by every writer while it may have uncommitted data files."""
        if self.root is None:
            with _ACTIVE_LOCK:
                _ACTIVE[self.key] = _ACTIVE.get(self.key, 0) + 1
            try:
                yield
            finally:
                with _ACTIVE_LOCK:
                    _ACTIVE[self.key] -= 1
            return
        lock = self._lock("writer.lock")
        lock.acquire(exclusive=False, blocking=True)
        try:
            yield
        finally:
            lock.release()

    @contextlib.contextmanager
    def sweeper(self) -> Iterator[bool]:
        """Exclusive writer lock, without waiting: yields True when no writer is active."""
        if self.root is None:
            with _ACTIVE_LOCK:
                idle = _ACTIVE.get(self.key, 0) == 0
            yield idle
            return
        lock = self._lock("writer.lock")
        got = lock.acquire(exclusive=True, blocking=False)
        try:
            yield got
        finally:
            if got:
                lock.release()


#: Active writers per object-store URI in this process (no file system to flock there).
_ACTIVE: dict[str, int] = {}
_ACTIVE_LOCK = threading.Lock()
