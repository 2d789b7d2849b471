"""The :class:`~framedex.library.Library`'s entity collections and entities (entity search).

An *entity* (a person, a product, a logo) is built from reference images uploaded as assets:
each is decoded and embedded once, when it is added, and the entity keeps the vectors (and
the encoder that made them). A search finds it with ``<@ENTITY_ID>`` in a query text, or
``entity=``: its query vector is the normalised mean of the references
(``framedex.query.compose``, where the choice is measured), fused with the rest of the text.
Entities live in *entity collections*; ids are unique across them. Deleting an entity or a
collection never touches the assets; deleting an asset leaves the entities made from it
whole (they keep their vectors).

Like the rest of the facade, these methods validate their arguments once, here.

Example::

    ec = lib.create_entity_collection("products")
    e = lib.create_entity(ec.entity_collection_id, "our mug", [asset_a, asset_b, asset_c])
    lib.search(f"<@{e.entity_id}> on a desk")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from framedex.errors import ConfigError, EncoderMismatchError, NotFoundError, check
from framedex.library_collections import CollectionsMixin, check_id, check_name, new_id
from framedex.query.compose import entity_vector
from framedex.rules import LIMITS, MAX_QUERY_ENTITIES
from framedex.store import EntityCollectionRecord, EntityRecord
from framedex.store.lance_store import IDENTITY_FIELDS
from framedex.store.schema import now_utc
from framedex.validate import check_metadata
from framedex.values import Array, Json

if TYPE_CHECKING:
    import os

    from framedex.indexer.encoder import ImageEncoder


def _check_description(description: object) -> str | None:
    if description is None:
        return None
    limit = LIMITS["description"]
    check(isinstance(description, str) and limit.holds(len(description)), "description",
          description, limit.rule())
    assert isinstance(description, str)
    return description


class EntitiesMixin(CollectionsMixin):
    """Entity collections and entities (mixed into ``Library``)."""

    if TYPE_CHECKING:  # the Library's own methods, used here
        def load_images(self, sources: Sequence[bytes | str | os.PathLike[str]],
                        name: str | Sequence[str] = "image") -> list[Array]: ...

        def _image_encoder(self) -> ImageEncoder: ...

    # -- entity collections -----------------------------------------------------------------

    def create_entity_collection(self, name: str, *,
                                 description: str | None = None) -> EntityCollectionRecord:
        """Create an empty entity collection.

        Raises:
            ConfigError: an empty or too long name or description.
        """
        record = EntityCollectionRecord(new_id(), check_name(name),
                                        _check_description(description))
        self._store.save_entity_collection(record)
        return record

    def entity_collections(self) -> list[EntityCollectionRecord]:
        """Every entity collection, oldest first."""
        return self._store.list_entity_collections()

    def entity_collection(self, entity_collection_id: str) -> EntityCollectionRecord:
        """One entity collection.

        Raises:
            NotFoundError: no such collection. ConfigError: a malformed id.
        """
        check_id("entity_collection_id", entity_collection_id)
        record = self._store.get_entity_collection(entity_collection_id)
        if record is None:
            raise NotFoundError(f"no entity collection {entity_collection_id!r}: list them "
                                "with GET /v1.3/entity-collections")
        return record

    def update_entity_collection(self, entity_collection_id: str, *, name: str | None = None,
                                 description: str | None = None) -> EntityCollectionRecord:
        """Rename an entity collection or change its description (None: keep it).

        Raises:
            NotFoundError / ConfigError: no such collection; a bad name or description.
        """
        record = self.entity_collection(entity_collection_id)
        if name is not None:
            record.name = check_name(name)
        if description is not None:
            record.description = _check_description(description)
        record.updated_at = now_utc()
        self._store.save_entity_collection(record)
        return record

    def delete_entity_collection(self, entity_collection_id: str) -> None:
        """Delete an entity collection and its entities (their assets stay).

        Raises:
            NotFoundError: no such collection.
        """
        self._store.delete_entity_collection(
            self.entity_collection(entity_collection_id).entity_collection_id)

    # -- entities ---------------------------------------------------------------------------

    def create_entity(self, entity_collection_id: str, name: str, asset_ids: Sequence[str], *,
                      description: str | None = None,
                      metadata: Mapping[str, Json] | None = None) -> EntityRecord:
        """Create an entity from reference images uploaded as assets (each is decoded and
        embedded now, once).

        Args:
            entity_collection_id: the collection it joins.
            name: its name.
            asset_ids: the assets holding its reference images
                (``framedex.rules.LIMITS["asset_ids"]``).
            description: free text.
            metadata: string keys, scalar values.

        Raises:
            NotFoundError: no such collection or asset. ConfigError: a bad name, description,
            metadata or asset list, or an asset that is not a usable image (too small,
            unreadable). PayloadTooLargeError: an image over the size limit.
            EncoderMismatchError: the store was built with another encoder.
        """
        collection = self.entity_collection(entity_collection_id)
        name = check_name(name)
        description = _check_description(description)
        meta = check_metadata(metadata)
        ids = self._check_asset_ids(asset_ids, "asset_ids")
        vectors, identity = self._embed_assets(ids, "asset_ids")
        record = EntityRecord(new_id(), collection.entity_collection_id, name, ids, vectors,
                              identity, description, meta)
        self._store.save_entity(record)
        return record

    def entities(self, entity_collection_id: str) -> list[EntityRecord]:
        """The entities of a collection, oldest first (without their vectors).

        Raises:
            NotFoundError: no such collection.
        """
        collection = self.entity_collection(entity_collection_id)
        return self._store.list_entities(collection.entity_collection_id)

    def entities_with_asset(self, asset_id: str) -> list[EntityRecord]:
        """The entities, in every collection, that have this asset among their references
        (without their vectors).

        Raises:
            ConfigError: a malformed id.
        """
        check_id("asset_id", asset_id)
        return [e for e in self._store.list_entities() if asset_id in e.asset_ids]

    def entity(self, entity_collection_id: str, entity_id: str) -> EntityRecord:
        """One entity of a collection, with its vectors.

        Raises:
            NotFoundError: no such collection, or no such entity in it.
        """
        collection = self.entity_collection(entity_collection_id)
        record = self._entity_record(entity_id)
        if record.entity_collection_id != collection.entity_collection_id:
            raise NotFoundError(f"no entity {entity_id!r} in entity collection "
                                f"{entity_collection_id!r}")
        return record

    def update_entity(self, entity_collection_id: str, entity_id: str, *,
                      name: str | None = None, description: str | None = None,
                      metadata: Mapping[str, Json] | None = None) -> EntityRecord:
        """Change an entity's name, description or metadata (None: keep it; metadata given
        replaces it whole, as on Twelve Labs). Its reference images stay.

        Raises:
            NotFoundError / ConfigError: as :meth:`entity`; a bad value.
        """
        record = self.entity(entity_collection_id, entity_id)
        if name is not None:
            record.name = check_name(name)
        if description is not None:
            record.description = _check_description(description)
        if metadata is not None:
            record.metadata = check_metadata(metadata)
        record.updated_at = now_utc()
        self._store.save_entity(record)
        return record

    def delete_entity(self, entity_collection_id: str, entity_id: str) -> None:
        """Delete an entity (its assets stay).

        Raises:
            NotFoundError: as :meth:`entity`.
        """
        self._store.delete_entity(self.entity(entity_collection_id, entity_id).entity_id)

    def add_entity_assets(self, entity_collection_id: str, entity_id: str,
                          asset_ids: Sequence[str]) -> EntityRecord:
        """Add reference images to an entity (assets it already has are skipped).

        Raises:
            as :meth:`create_entity`, and ConfigError past the limit of reference images.
        """
        record = self.entity(entity_collection_id, entity_id)
        new = [a for a in self._check_asset_ids(asset_ids, "asset_ids")
               if a not in record.asset_ids]
        self._check_asset_ids([*record.asset_ids, *new], "asset_ids")  # the total's limit
        if not new:
            return record
        vectors, identity = self._embed_assets(new, "asset_ids")
        self._require_same_encoder(record, identity)
        record = replace(record, asset_ids=[*record.asset_ids, *new],
                         vectors=np.concatenate([record.vectors, vectors]), updated_at=now_utc())
        self._store.save_entity(record)
        return record

    def remove_entity_assets(self, entity_collection_id: str, entity_id: str,
                             asset_ids: Sequence[str]) -> EntityRecord:
        """Take reference images out of an entity (the assets stay); an entity keeps at
        least one.

        Raises:
            NotFoundError: as :meth:`entity`, or an asset the entity does not have.
            ConfigError: removing every reference image.
        """
        record = self.entity(entity_collection_id, entity_id)
        gone = self._check_asset_ids(asset_ids, "asset_ids")
        missing = [a for a in gone if a not in record.asset_ids]
        if missing:
            raise NotFoundError(f"entity {entity_id!r} has no asset {missing[0]!r}")
        keep = [i for i, a in enumerate(record.asset_ids) if a not in gone]
        if not keep:
            raise ConfigError("asset_ids is invalid: an entity keeps at least one reference "
                              "image; delete the entity instead")
        record = replace(record, asset_ids=[record.asset_ids[i] for i in keep],
                         vectors=record.vectors[keep], updated_at=now_utc())
        self._store.save_entity(record)
        return record

    # -- what a search uses -----------------------------------------------------------------

    def entity_vectors(self, entity_ids: Sequence[str]) -> Array:
        """(E, D) query vectors of entities (:func:`framedex.query.compose.entity_vector`),
        in order.

        Raises:
            ConfigError: a malformed id, or more than ``framedex.rules.MAX_QUERY_ENTITIES``.
            NotFoundError: no such entity. EncoderMismatchError: an entity embedded with
            another encoder than the store's.
        """
        limit = LIMITS["entities"]
        check(len(entity_ids) <= MAX_QUERY_ENTITIES, "entity", f"<{len(entity_ids)} entities>",
              limit.rule())
        stored = self._store.encoder_identity()
        out = []
        for entity_id in entity_ids:
            record = self._entity_record(entity_id)
            if stored is not None:
                self._require_same_encoder(record, stored)
            out.append(entity_vector(record.vectors))
        return np.stack(out).astype(np.float32)

    def _entity_record(self, entity_id: str) -> EntityRecord:
        check_id("entity_id", entity_id)
        record = self._store.get_entity(entity_id)
        if record is None:
            raise NotFoundError(f"no entity {entity_id!r}: create one with POST "
                                "/v1.3/entity-collections/{id}/entities")
        return record

    @staticmethod
    def _require_same_encoder(record: EntityRecord, identity: Mapping[str, Json]) -> None:
        if any(record.encoder.get(f) != identity.get(f) for f in IDENTITY_FIELDS):
            raise EncoderMismatchError(
                f"entity {record.entity_id!r} was embedded with {record.encoder.get('model')} "
                f"(dim {record.encoder.get('dim')}), but this store uses "
                f"{identity.get('model')} (dim {identity.get('dim')}): create the entity again "
                "from its reference images")

    def _check_asset_ids(self, asset_ids: object, name: str) -> list[str]:
        limit = LIMITS["asset_ids"]
        check(isinstance(asset_ids, Sequence) and not isinstance(asset_ids, str), name,
              asset_ids, "must be a list of asset ids")
        assert isinstance(asset_ids, Sequence)
        ids = list(dict.fromkeys(check_id(f"{name}[{i}]", a) for i, a in enumerate(asset_ids)))
        check(limit.holds(len(ids)), name, f"<{len(ids)} assets>", limit.rule())
        return ids

    def _embed_assets(self, asset_ids: Sequence[str], name: str
                      ) -> tuple[Array, dict[str, Json]]:
        """Decode the assets' images (the limits every query image has) and embed them."""
        records = [self.asset(a) for a in asset_ids]
        labels = [f"{name}[{i}]" for i in range(len(records))]
        for label, record in zip(labels, records, strict=True):
            if not Path(record.path).is_file():  # swept, or lost: say so without its path
                raise ConfigError(f"{label}={record.asset_id!r} is invalid: the asset's file "
                                  "is gone; upload the image again")
        images = self.load_images([r.path for r in records], labels)
        encoder = self._image_encoder()
        vectors = np.asarray(encoder.encode_images(images), np.float32)
        return vectors, dict(encoder.identity)
