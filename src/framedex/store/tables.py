"""Low-level table access of a LanceDB store: snapshots to read, primitives to write.

A framedex store is a LanceDB database (a folder of ``<table>.lance`` datasets). Two libraries
touch it, each for what it is best at:

- **reads and row writes go through pylance** (``lance.dataset``), LanceDB's own format library.
  ``import lance`` costs 0.36 s here against 1.8 s for ``import lancedb`` (most of it LanceDB's
  REST-namespace client, which a local store never uses), and a CLI query has 2 s in all.
- **LanceDB** creates the tables and builds and maintains the indexes (``create_index``,
  ``optimize``); it is imported only by commands that do that.

Both read and write the same files; LanceDB 0.40 embeds Lance 13, pinned to pylance 13.

Reads use a snapshot per table, refreshed when the table's newest version moved. The newest
version is looked up at most every ``consistency_s`` seconds: 0 on a local disk (the look-up
costs ~10 µs, so one process sees another's commits on its next call), 1 s on object storage
(where each look-up is a LIST request): that is the staleness a reader (an API replica) can
show. Opening goes through one ``lance.Session`` per store, so ANN index pages stay cached
across snapshots.

Writes retry Lance's retryable commit conflicts (another writer committed a conflicting
transaction first: two compactions, a compaction and a delete, two index builds) with
exponential backoff, so they never surface; a delete that would match nothing is skipped,
because it would still commit a version.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa

from framedex.errors import StoreError, StoreUnavailableError
from framedex.rules import LANCE_INDEX_CACHE_BYTES, LANCE_METADATA_CACHE_BYTES
from framedex.store.location import StoreLocation, store_io

if TYPE_CHECKING:
    import lance

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Attempts of a write that keeps losing commit races before its error surfaces.
COMMIT_ATTEMPTS = 8
#: Staleness of reads on object storage, in seconds (a version look-up is a LIST there).
REMOTE_CONSISTENCY_S = 1.0


def is_commit_conflict(ex: BaseException) -> bool:
    """True for Lance's retryable commit conflicts (whatever wrapper carries them)."""
    retryable = getattr(ex, "retryable", None)
    if retryable is not None:
        return bool(retryable)
    text = str(ex)
    return any(s in text for s in ("Retryable commit conflict", "was preempted by concurrent",
                                   "Commit conflict for version", "CommitConflict",
                                   "TooMuchWriteContention", "too much write contention"))


def retry_conflicts(action: Callable[[], T], what: str, attempts: int = COMMIT_ATTEMPTS) -> T:
    """Run ``action``; when it loses a commit race, back off (50 ms doubling to 2 s, with
    jitter) and run it again, up to ``attempts`` times."""
    delay = 0.05
    for attempt in range(attempts):
        try:
            return action()
        except Exception as ex:
            cause: BaseException | None = ex
            while cause is not None and not is_commit_conflict(cause):
                cause = cause.__cause__
            if cause is None or attempt == attempts - 1:
                raise
            log.debug("%s lost a commit race (attempt %d): %s", what, attempt + 1, cause)
            time.sleep(delay * (0.5 + random.random()))
            delay = min(2.0, delay * 2)
    raise AssertionError("unreachable")


def is_missing_file(ex: BaseException) -> bool:
    """True when a read failed because files of a version it knew are gone (the store was
    deleted or replaced under this process, or cleaned up behind a stale handle)."""
    text = str(ex)
    return "Not found" in text or "No such file or directory" in text or \
        "was not found" in text


class LanceTables:
    """The datasets of one store.

    Args:
        location: where the store is.
        storage_options: object-store credentials and settings, passed to Lance and LanceDB.
    """

    def __init__(self, location: StoreLocation,
                 storage_options: Mapping[str, str] | None = None, *,
                 consistency_s: float | None = None):
        self.location = location
        self.storage_options = dict(storage_options or {}) or None
        if consistency_s is None:
            consistency_s = 0.0 if location.path is not None else REMOTE_CONSISTENCY_S
        if not consistency_s >= 0:
            raise StoreError(f"consistency_s={consistency_s!r} is invalid: must be >= 0 seconds")
        self.consistency_s = float(consistency_s)
        self._snapshots: dict[str, lance.LanceDataset] = {}
        self._checked: dict[str, float] = {}  # when each table's newest version was looked up
        self._had_videos = False  # the store existed: its vanishing is an outage, not "empty"
        self._session: Any = None
        self._db: Any = None
        self._lock = threading.RLock()

    def reset(self) -> None:
        """Drop every open handle and cache (the store was replaced under this process): the
        next read opens the tables afresh."""
        with self._lock:
            self._snapshots = {}
            self._checked = {}
            self._session = None
            self._db = None

    def touched(self, name: str) -> None:
        """This process committed to ``name``: its next read looks up the newest version
        (a writer reads its own writes, whatever ``consistency_s`` is)."""
        self._checked.pop(name, None)

    def cache_bytes(self) -> int:
        """Bytes held by Lance's index and metadata caches of this store (its session)."""
        session = self._session
        return 0 if session is None else int(session.size_bytes())

    def refresh(self) -> None:
        """The next read of every table looks up its newest version (after taking a claim:
        what the previous holder committed before releasing it must be seen)."""
        self._checked = {}

    def uri(self, name: str) -> str:
        """The dataset URI of table ``name``."""
        return f"{self.location.uri}/{name}.lance"

    # -- reads ------------------------------------------------------------------------------

    def _open(self, name: str) -> lance.LanceDataset | None:
        import lance

        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = lance.Session(
                        index_cache_size_bytes=LANCE_INDEX_CACHE_BYTES,
                        metadata_cache_size_bytes=LANCE_METADATA_CACHE_BYTES)
        try:
            return lance.dataset(self.uri(name), session=self._session,
                                 storage_options=self.storage_options)
        except ValueError as ex:  # "Dataset at path ... was not found"
            if "not found" in str(ex).lower():
                return None
            raise

    def snapshot(self, name: str) -> lance.LanceDataset | None:
        """Table ``name`` at its newest version (at most ``consistency_s`` old), or None when
        it does not exist.

        Raises:
            StoreUnavailableError: the store this process was reading is gone (deleted, or
                being replaced); it answers again once the store is back.
        """
        ds = self._snapshots.get(name)
        with store_io(self.location, "read"):
            if ds is not None:
                now = time.monotonic()
                if now - self._checked.get(name, -1e9) < self.consistency_s:
                    return ds
                try:
                    latest = ds.latest_version
                except OSError as ex:
                    if not is_missing_file(ex):
                        raise
                    self._snapshots.pop(name, None)
                    self._vanished(name)
                    return None
                self._checked[name] = now
                if latest == ds.version:
                    return ds
                # Move the kept handle forward rather than open anew: it keeps its caches
                # (reopening reloaded a 1M-row HNSW index, ~370 ms, per new version).
                ds = ds.checkout_version(latest)
                self._snapshots[name] = ds
                return ds
            if self.location.path is not None and not (self.location.path / f"{name}.lance"
                                                       ).is_dir():
                self._vanished(name)
                return None
            ds = self._open(name)
        if ds is None:
            self._vanished(name)
            return None
        self._snapshots[name] = ds
        self._checked[name] = time.monotonic()
        if name == "videos":
            self._had_videos = True
        return ds

    def _vanished(self, name: str) -> None:
        """A missing table: simply absent (return), unless the whole store this process read
        went away (its ``videos`` table is gone), which is an outage until it is back."""
        if not self._had_videos:
            return
        if name != "videos" and self.snapshot("videos") is not None:
            return
        raise StoreUnavailableError(
            f"the store at {self.location.uri} is gone (deleted, or being replaced): it "
            "answers again once it is back")

    def version(self, name: str) -> int:
        """The newest version of ``name`` (0 when it does not exist)."""
        ds = self.snapshot(name)
        return 0 if ds is None else int(ds.version)

    def read(self, name: str, columns: list[str] | None = None, where: str | None = None,
             schema: pa.Schema | None = None) -> pa.Table:
        """Rows of ``name`` (all, or those matching ``where``); empty with ``schema`` when the
        table does not exist."""
        ds = self.snapshot(name)
        if ds is None:
            if schema is None:
                return pa.table({c: pa.array([], pa.null()) for c in columns or []})
            empty = schema.empty_table()
            return empty.select(columns) if columns else empty
        with store_io(self.location, "read"):
            return ds.to_table(columns=columns, filter=where)

    def names(self) -> Iterator[str]:
        """Names of the tables that exist."""
        if self.location.path is None:
            db = self.lancedb()
            listing = db.list_tables()
            yield from getattr(listing, "tables", listing)
            return
        if self.location.path.is_dir():
            for p in sorted(self.location.path.iterdir()):
                if p.suffix == ".lance" and p.is_dir():
                    yield p.stem

    # -- writes -----------------------------------------------------------------------------

    def lancedb(self) -> Any:
        """The LanceDB connection (imported and opened on first use)."""
        if self._db is None:
            with self._lock:
                if self._db is None:
                    import lancedb

                    self.location.create()
                    with store_io(self.location, "open"):
                        self._db = lancedb.connect(self.location.uri,
                                                   storage_options=self.storage_options)
        return self._db

    def create(self, name: str, schema: pa.Schema,
               storage_version: str | None = None) -> lance.LanceDataset:
        """Create table ``name`` with ``schema`` unless it exists; return its snapshot.

        Args:
            storage_version: Lance file format of a new table (None: LanceDB's default).
        """
        ds = self.snapshot(name)
        if ds is not None:
            return ds
        with self._lock, store_io(self.location, "write to"):
            if storage_version is None:
                self.lancedb().create_table(name, schema=schema, exist_ok=True)
            elif self.snapshot(name) is None:
                import lance

                self.location.create()
                try:
                    version: Any = storage_version  # one of Lance's format names
                    lance.write_dataset(schema.empty_table(), self.uri(name), mode="create",
                                        data_storage_version=version,
                                        storage_options=self.storage_options)
                except (OSError, ValueError) as ex:  # created meanwhile by another process
                    if "exist" not in str(ex).lower():
                        raise
        ds = self.snapshot(name)
        assert ds is not None
        return ds

    def writable(self, name: str, schema: pa.Schema | None = None) -> lance.LanceDataset | None:
        """A dataset object of its own for one write (created with ``schema`` if missing).

        Never the shared read snapshot: a write mutates the object it runs on, and a reader
        thread on the same object would fail ("Already mutably borrowed").
        """
        if schema is not None:
            self.create(name, schema)
        elif self.snapshot(name) is None:
            return None
        with store_io(self.location, "open"):
            return self._open(name)

    def _write(self, name: str, what: str, action: Callable[[lance.LanceDataset], object],
               schema: pa.Schema | None = None) -> bool:
        """Run one committing ``action`` on a dataset object of its own, retrying lost commit
        races on a fresh object; False when the table does not exist (and no ``schema``)."""

        def attempt() -> bool:
            ds = self.writable(name, schema)
            if ds is None:
                return False
            with store_io(self.location, "write to"):
                action(ds)
            return True

        try:
            return retry_conflicts(attempt, f"{what} {name}")
        finally:
            self.touched(name)

    def append(self, name: str, data: pa.Table, schema: pa.Schema) -> None:
        """Append rows (creating the table on first use). Concurrent appends all land: Lance
        rebases an append onto whatever committed meanwhile.

        A table written by an older framedex that lacks a newer nullable column (query_log's
        ``arm``) gets it, all null, in one metadata-only commit first."""
        ds = self.writable(name, schema)
        assert ds is not None
        missing = [f for f in data.schema if f.name not in ds.schema.names]
        if missing:
            self._write(name, "add columns to", lambda w: w.add_columns(missing))
        self._write(name, "append to", lambda ds: ds.insert(_cast(data, ds)), schema)

    def overwrite(self, name: str, data: pa.Table, schema: pa.Schema) -> None:
        """Replace every row of ``name`` (creating it) with ``data``, in one commit: readers
        see the old rows or the new ones, never a mix."""
        import lance

        def write() -> None:
            self.location.create()
            exists = self.snapshot(name) is not None
            with store_io(self.location, "write to"):
                lance.write_dataset(data.cast(schema), self.uri(name), schema=schema,
                                    mode="overwrite" if exists else "create",
                                    storage_options=self.storage_options)

        try:
            retry_conflicts(write, f"overwrite {name}")
        finally:
            self.touched(name)

    def stage(self, name: str, data: pa.Table) -> list[str]:
        """Write rows as new data files of table ``name`` (which must exist) and commit
        nothing (Lance's ``write_fragments``, for a distributed write).

        Returns:
            the fragments as JSON strings, for :meth:`commit_staged` in another process.
        """
        from lance.fragment import write_fragments

        ds = self.snapshot(name)
        if ds is None:
            raise StoreError(f"the store {self.location.uri} has no {name} table yet")
        with store_io(self.location, "write to"):
            frags = write_fragments(_cast(data, ds), self.uri(name), schema=ds.schema,
                                    storage_options=self.storage_options)
        return [json.dumps(f.to_json()) for f in frags]

    def commit_staged(self, name: str, fragments: Sequence[str]) -> None:
        """Append fragments written by :meth:`stage` (anywhere) to ``name`` in one commit.

        Appends never conflict with each other: Lance rebases the commit onto whatever
        another writer committed meanwhile.
        """
        if not fragments:
            return
        import lance
        from lance.fragment import FragmentMetadata

        frags = [FragmentMetadata.from_json(f) for f in fragments]

        def commit(ds: lance.LanceDataset) -> None:
            lance.LanceDataset.commit(self.uri(name), lance.LanceOperation.Append(frags),
                                      read_version=ds.latest_version,
                                      storage_options=self.storage_options)

        if not self._write(name, "commit to", commit):
            raise StoreError(f"the store {self.location.uri} has no {name} table yet")

    def upsert(self, name: str, key: str | list[str], data: pa.Table,
               schema: pa.Schema) -> None:
        """Insert rows, or replace the rows with the same ``key``, in one commit."""
        self._write(name, "upsert into", lambda ds: ds.merge_insert(key)
                    .when_matched_update_all().when_not_matched_insert_all()
                    .execute(_cast(data, ds)), schema)

    def insert_missing(self, name: str, key: str | list[str], data: pa.Table,
                       schema: pa.Schema) -> None:
        """Insert the rows whose ``key`` is not in the table yet; existing rows stay as they
        are (one commit)."""
        self._write(name, "insert into", lambda ds: ds.merge_insert(key)
                    .when_not_matched_insert_all().execute(_cast(data, ds)), schema)

    def delete(self, name: str, where: str) -> int:
        """Delete the rows matching ``where``; returns how many there were.

        Nothing is committed when no row matches (or the table does not exist): Lance would
        still commit a version for an empty delete, a paid write on object storage.
        """
        self.touched(name)  # count on the newest version, not a stale one
        ds = self.snapshot(name)
        if ds is None:
            return 0
        with store_io(self.location, "read"):
            n = int(ds.count_rows(where))
        if n:
            self._write(name, "delete from", lambda w: w.delete(where))
        return n

    def compact(self, name: str, keep_versions: timedelta, *,
                delete_unverified: bool = False) -> None:
        """Compact ``name``'s small fragments, fold its new rows into its indexes and remove
        its versions older than ``keep_versions`` (a lost commit race is retried)."""
        table = self.table(name)
        if table is None:
            return
        with store_io(self.location, "optimize"):
            retry_conflicts(lambda: table.optimize(cleanup_older_than=keep_versions,
                                                   delete_unverified=delete_unverified),
                            f"compact {name}")
        self.touched(name)

    def table(self, name: str) -> Any:
        """The LanceDB table (for index building and maintenance), or None."""
        if self.snapshot(name) is None:
            return None
        with store_io(self.location, "open"):
            return self.lancedb().open_table(name)


def _cast(data: pa.Table, ds: lance.LanceDataset) -> pa.Table:
    """``data`` in the dataset's schema (field metadata and nullability included)."""
    return data.cast(ds.schema) if data.schema != ds.schema else data
