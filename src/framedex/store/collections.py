"""Named collections of videos (``indexes``, ``index_members``) and uploaded files (``assets``).

A collection ("index", as Twelve Labs calls it) is a name over videos of the one library: a
video can be in several, and removing a collection, or a video from it, never touches the
video. Membership counts only for committed videos (a ``videos`` row exists): a member whose
video was never committed, or was deleted, is invisible, exactly as its frames are; deleting a
video also deletes its membership rows (``LanceStore.delete_video``).

These are small tables, read whole. :class:`LanceCollections` implements the
``StoreCollections`` part of the store seam on them; ``LanceStore`` inherits it.

Example::

    store.save_index(IndexRecord("ix1", "my index"))
    store.add_members("ix1", [video_id])
    store.list_members("ix1")          # [MemberRecord("ix1", video_id, ...)], committed only
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import pyarrow as pa

from framedex.store.location import store_io
from framedex.store.schema import (
    ASSETS_SCHEMA,
    INDEX_MEMBERS_SCHEMA,
    INDEXES_SCHEMA,
    AssetRecord,
    IndexRecord,
    MemberRecord,
    now_utc,
    sql_str,
    sql_timestamp,
)

if TYPE_CHECKING:
    from framedex.store.location import StoreLocation
    from framedex.store.schema import VideoRecord
    from framedex.store.tables import LanceTables


class LanceCollections:
    """Collections and assets on the store's small tables (the ``StoreCollections`` part of
    the store seam), mixed into ``LanceStore``."""

    tables: LanceTables
    location: StoreLocation

    if TYPE_CHECKING:  # the store's own: membership counts committed videos only
        def list_videos(self, limit: int | None = None,
                        offset: int = 0) -> list[VideoRecord]: ...

    def list_indexes(self) -> list[IndexRecord]:
        """Every collection, oldest first."""
        rows = self.tables.read("indexes", schema=INDEXES_SCHEMA).to_pylist()
        rows.sort(key=lambda r: (r["created_at"], r["index_id"]))
        return [IndexRecord.from_row(r) for r in rows]


    def get_index(self, index_id: str) -> IndexRecord | None:
        """The collection with this id, or None."""
        rows = self.tables.read("indexes", where=f"index_id = {sql_str(index_id)}",
                                 schema=INDEXES_SCHEMA).to_pylist()
        return IndexRecord.from_row(rows[0]) if rows else None


    def save_index(self, record: IndexRecord) -> None:
        """Insert or replace a collection's row (its members are untouched)."""
        table = pa.Table.from_pylist([record.to_row()], schema=INDEXES_SCHEMA)
        self.tables.upsert("indexes", "index_id", table, INDEXES_SCHEMA)


    def delete_index(self, index_id: str) -> None:
        """Remove a collection and its membership rows; the videos stay in the library."""
        where = f"index_id = {sql_str(index_id)}"
        self.tables.delete("indexes", where)
        self.tables.delete("index_members", where)


    def add_members(self, index_id: str, video_ids: Sequence[str]) -> None:
        """Put videos in a collection (a video already in it stays once)."""
        if not video_ids:
            return
        now = now_utc()
        rows = [{"index_id": index_id, "video_id": v, "added_at": now}
                for v in dict.fromkeys(video_ids)]
        table = pa.Table.from_pylist(rows, schema=INDEX_MEMBERS_SCHEMA)
        # Insert only: a re-added video keeps its first added_at.
        self.tables.insert_missing("index_members", ["index_id", "video_id"], table,
                                    INDEX_MEMBERS_SCHEMA)


    def remove_member(self, index_id: str, video_id: str) -> None:
        """Take a video out of a collection (the video stays in the library)."""
        self.tables.delete("index_members",
                            f"index_id = {sql_str(index_id)} AND video_id = {sql_str(video_id)}")


    def list_members(self, index_id: str | None = None) -> list[MemberRecord]:
        """Members of one collection (or of all), oldest first: committed videos only."""
        where = f"index_id = {sql_str(index_id)}" if index_id is not None else None
        rows = self.tables.read("index_members", where=where,
                                 schema=INDEX_MEMBERS_SCHEMA).to_pylist()
        committed = {v.video_id for v in self.list_videos()}
        rows = [r for r in rows if r["video_id"] in committed]
        rows.sort(key=lambda r: (r["added_at"], r["video_id"]))
        return [MemberRecord(r["index_id"], r["video_id"], r["added_at"]) for r in rows]


    def save_asset(self, record: AssetRecord) -> None:
        """Insert or replace an asset's row."""
        table = pa.Table.from_pylist([record.to_row()], schema=ASSETS_SCHEMA)
        self.tables.upsert("assets", "asset_id", table, ASSETS_SCHEMA)


    def get_asset(self, asset_id: str) -> AssetRecord | None:
        """The asset with this id, or None."""
        rows = self.tables.read("assets", where=f"asset_id = {sql_str(asset_id)}",
                                 schema=ASSETS_SCHEMA).to_pylist()
        return AssetRecord.from_row(rows[0]) if rows else None


    def list_assets(self, created_before: datetime | None = None
                    ) -> list[AssetRecord]:
        """Every asset (or those created before ``created_before``), oldest first."""
        where = None
        if created_before is not None:
            where = f"created_at < {sql_timestamp(created_before)}"
        rows = self.tables.read("assets", where=where, schema=ASSETS_SCHEMA).to_pylist()
        rows.sort(key=lambda r: (r["created_at"], r["asset_id"]))
        return [AssetRecord.from_row(r) for r in rows]


    def page_assets(self, limit: int, offset: int = 0
                    ) -> tuple[list[AssetRecord], int]:
        """One page of assets, newest first, and how many there are. Lance sorts by
        ``created_at`` and returns the page's rows only (a top-k of ``offset + limit``), where
        reading every row into Python grew with the table on every list request."""
        from lance.dataset import ColumnOrdering

        ds = self.tables.snapshot("assets")
        if ds is None:
            return [], 0
        with store_io(self.location, "read"):
            total = ds.count_rows()
            rows = ds.to_table(order_by=[ColumnOrdering("created_at", ascending=False),
                                         ColumnOrdering("asset_id", ascending=False)],
                               limit=limit, offset=offset).to_pylist() if offset < total else []
        return [AssetRecord.from_row(r) for r in rows], total


    def delete_asset(self, asset_id: str) -> None:
        """Remove an asset's row (the caller removes its file)."""
        self.tables.delete("assets", f"asset_id = {sql_str(asset_id)}")
