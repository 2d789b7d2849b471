"""Entity collections and their entities (``entity_collections``, ``entities``).

An entity (a person, a product, a logo) is the embeddings of its reference images, kept in its
row with the identity of the encoder that made them: a search for ``<@entity_id>`` reads one
row and needs neither the image files nor the image tower. Both are small tables, read whole
(lists leave the vectors out). :class:`LanceEntities` implements the entity part of the
``StoreCollections`` seam on them; ``LanceStore`` inherits it.

Example::

    store.save_entity_collection(EntityCollectionRecord("ec1", "players"))
    store.save_entity(EntityRecord("e1", "ec1", "no. 10", ["asset1"], vectors, identity))
    store.get_entity("e1").vectors        # (1, D) float32
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from framedex.store.schema import (
    ENTITIES_SCHEMA,
    ENTITY_COLLECTIONS_SCHEMA,
    EntityCollectionRecord,
    EntityRecord,
    sql_str,
)

if TYPE_CHECKING:
    from framedex.store.tables import LanceTables

#: The entities table's columns without the vectors (what lists read).
_LIST_COLUMNS = [f.name for f in ENTITIES_SCHEMA if f.name != "vectors"]


class LanceEntities:
    """Entity collections and entities on the store's small tables, mixed into ``LanceStore``."""

    tables: LanceTables

    def list_entity_collections(self) -> list[EntityCollectionRecord]:
        """Every entity collection, oldest first."""
        rows = self.tables.read("entity_collections",
                                schema=ENTITY_COLLECTIONS_SCHEMA).to_pylist()
        rows.sort(key=lambda r: (r["created_at"], r["entity_collection_id"]))
        return [EntityCollectionRecord.from_row(r) for r in rows]

    def get_entity_collection(self, entity_collection_id: str) -> EntityCollectionRecord | None:
        """The entity collection with this id, or None."""
        rows = self.tables.read(
            "entity_collections", schema=ENTITY_COLLECTIONS_SCHEMA,
            where=f"entity_collection_id = {sql_str(entity_collection_id)}").to_pylist()
        return EntityCollectionRecord.from_row(rows[0]) if rows else None

    def save_entity_collection(self, record: EntityCollectionRecord) -> None:
        """Insert or replace an entity collection's row (its entities are untouched)."""
        table = pa.Table.from_pylist([record.to_row()], schema=ENTITY_COLLECTIONS_SCHEMA)
        self.tables.upsert("entity_collections", "entity_collection_id", table,
                           ENTITY_COLLECTIONS_SCHEMA)

    def delete_entity_collection(self, entity_collection_id: str) -> None:
        """Remove an entity collection and its entities (their assets stay)."""
        where = f"entity_collection_id = {sql_str(entity_collection_id)}"
        self.tables.delete("entity_collections", where)
        self.tables.delete("entities", where)

    def list_entities(self, entity_collection_id: str | None = None) -> list[EntityRecord]:
        """The entities of one collection (or of all), oldest first, without their vectors
        (``vectors`` is empty: :meth:`get_entity` reads them)."""
        where = (f"entity_collection_id = {sql_str(entity_collection_id)}"
                 if entity_collection_id is not None else None)
        rows = self.tables.read("entities", _LIST_COLUMNS, where=where,
                                schema=ENTITIES_SCHEMA).to_pylist()
        rows.sort(key=lambda r: (r["created_at"], r["entity_id"]))
        return [EntityRecord.from_row(r) for r in rows]

    def get_entity(self, entity_id: str) -> EntityRecord | None:
        """The entity with this id (entity ids are unique across collections), with its
        vectors, or None."""
        rows = self.tables.read("entities", where=f"entity_id = {sql_str(entity_id)}",
                                schema=ENTITIES_SCHEMA).to_pylist()
        return EntityRecord.from_row(rows[0]) if rows else None

    def save_entity(self, record: EntityRecord) -> None:
        """Insert or replace an entity's row."""
        table = pa.Table.from_pylist([record.to_row()], schema=ENTITIES_SCHEMA)
        self.tables.upsert("entities", "entity_id", table, ENTITIES_SCHEMA)

    def delete_entity(self, entity_id: str) -> None:
        """Remove an entity (its assets stay)."""
        self.tables.delete("entities", f"entity_id = {sql_str(entity_id)}")
