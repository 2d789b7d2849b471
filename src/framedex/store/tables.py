"""Low-level table access of a LanceDB store: snapshots to read, primitives to write.

A framedex store is a LanceDB database (a folder of ``<table>.lance`` datasets). Two libraries
touch it, each for what it is best at:

- **reads and row writes go through pylance** (``lance.dataset``), LanceDB's own format library.
  ``import lance`` costs 0.36 s here against 1.8 s for ``import lancedb`` (most of it LanceDB's
  REST-namespace client, which a local store never uses), and a CLI query has 2 s in all.
- **LanceDB** creates the tables and builds and maintains the indexes (``create_index``,
  ``optimize``); it is imported only by commands that do that.

Both read and write the same files; LanceDB 0.40 embeds Lance 13, pinned to pylance 13.

Reads use a snapshot per table, refreshed when the table's newest version moved (a version
check costs ~10 µs locally), so one process sees another's commits on its next call. Opening
goes through one ``lance.Session`` per store, so ANN index pages stay cached across snapshots.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from framedex.errors import StoreError
from framedex.store.location import StoreLocation, store_io

if TYPE_CHECKING:
    import lance


class LanceTables:
    """The datasets of one store.

    Args:
        location: where the store is.
        storage_options: object-store credentials and settings, passed to Lance and LanceDB.
    """

    def __init__(self, location: StoreLocation,
                 storage_options: Mapping[str, str] | None = None):
        self.location = location
        self.storage_options = dict(storage_options or {}) or None
        self._snapshots: dict[str, lance.LanceDataset] = {}
        self._session: Any = None
        self._db: Any = None
        self._lock = threading.RLock()

    def uri(self, name: str) -> str:
        """The dataset URI of table ``name``."""
        return f"{self.location.uri}/{name}.lance"

    # -- reads ------------------------------------------------------------------------------

    def _open(self, name: str) -> lance.LanceDataset | None:
        import lance

        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = lance.Session()
        try:
            return lance.dataset(self.uri(name), session=self._session,
                                 storage_options=self.storage_options)
        except ValueError as ex:  # "Dataset at path ... was not found"
            if "not found" in str(ex).lower():
                return None
            raise

    def snapshot(self, name: str) -> lance.LanceDataset | None:
        """Table ``name`` at its newest version, or None when it does not exist."""
        ds = self._snapshots.get(name)
        with store_io(self.location, "read"):
            if ds is not None:
                latest = ds.latest_version
                if latest == ds.version:
                    return ds
                # Move the kept handle forward rather than open anew: it keeps its caches
                # (reopening reloaded a 1M-row HNSW index, ~370 ms, per new version).
                ds = ds.checkout_version(latest)
                self._snapshots[name] = ds
                return ds
            if self.location.path is not None and not (self.location.path / f"{name}.lance"
                                                       ).is_dir():
                return None
            ds = self._open(name)
        if ds is not None:
            self._snapshots[name] = ds
        return ds

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

    def append(self, name: str, data: pa.Table, schema: pa.Schema) -> None:
        """Append rows (creating the table on first use). Concurrent appends all land: Lance
        retries a commit that raced another append."""
        ds = self.writable(name, schema)
        assert ds is not None
        missing = [f for f in data.schema if f.name not in ds.schema.names]
        if missing:
            # A table written by an older framedex lacks a newer nullable column (query_log's
            # ``arm``): add it, all null, in one metadata-only commit, then append.
            with store_io(self.location, "write to"):
                ds.add_columns(missing)
            ds = self.writable(name)
            assert ds is not None
        with store_io(self.location, "write to"):
            ds.insert(data.cast(ds.schema) if data.schema != ds.schema else data)

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
            frags = write_fragments(data.cast(ds.schema) if data.schema != ds.schema else data,
                                    self.uri(name), schema=ds.schema,
                                    storage_options=self.storage_options)
        return [json.dumps(f.to_json()) for f in frags]

    def commit_staged(self, name: str, fragments: Sequence[str]) -> None:
        """Append fragments written by :meth:`stage` (anywhere) to ``name`` in one commit.

        Appends never conflict with each other: Lance rebases the commit onto whatever
        another writer committed meanwhile (``max_retries`` times).
        """
        if not fragments:
            return
        import lance
        from lance.fragment import FragmentMetadata

        frags = [FragmentMetadata.from_json(f) for f in fragments]
        ds = self.snapshot(name)
        if ds is None:
            raise StoreError(f"the store {self.location.uri} has no {name} table yet")
        with store_io(self.location, "write to"):
            lance.LanceDataset.commit(self.uri(name), lance.LanceOperation.Append(frags),
                                      read_version=ds.latest_version,
                                      storage_options=self.storage_options)

    def upsert(self, name: str, key: str | list[str], data: pa.Table,
               schema: pa.Schema) -> None:
        """Insert rows, or replace the rows with the same ``key``, in one commit."""
        ds = self.writable(name, schema)
        assert ds is not None
        with store_io(self.location, "write to"):
            ds.merge_insert(key).when_matched_update_all().when_not_matched_insert_all() \
                .execute(data.cast(ds.schema) if data.schema != ds.schema else data)

    def insert_missing(self, name: str, key: str | list[str], data: pa.Table,
                       schema: pa.Schema) -> None:
        """Insert the rows whose ``key`` is not in the table yet; existing rows stay as they
        are (one commit)."""
        ds = self.writable(name, schema)
        assert ds is not None
        with store_io(self.location, "write to"):
            ds.merge_insert(key).when_not_matched_insert_all() \
                .execute(data.cast(ds.schema) if data.schema != ds.schema else data)

    def delete(self, name: str, where: str) -> None:
        """Delete the rows matching ``where`` (no-op when the table does not exist)."""
        ds = self.writable(name)
        if ds is None:
            return
        with store_io(self.location, "write to"):
            ds.delete(where)

    def table(self, name: str) -> Any:
        """The LanceDB table (for index building and maintenance), or None."""
        if self.snapshot(name) is None:
            return None
        with store_io(self.location, "open"):
            return self.lancedb().open_table(name)
