"""The :class:`~framedex.library.Library`'s collections, assets and video embeddings.

A *collection* is a named set of videos of the library (what Twelve Labs calls an *index*): a
video can be in several, and deleting or renaming a collection never touches its videos. Only
committed videos count as members, and a deleted video leaves every collection. An *asset* is
a file kept on the server, indexed when asked. These methods are mixed into ``Library`` (kept
apart so the facade stays readable); like the rest of it, they validate their arguments once,
here, and the store below trusts them.

Example::

    lib = Library("framedex.db")
    c = lib.create_collection("traffic cams")
    lib.add_to_collection(c.collection.index_id, video_id)
    lib.search("a red car", collection=c.collection.index_id)
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from framedex.errors import ConfigError, InUseError, NotFoundError, VideoNotFoundError, check
from framedex.query.segments import VideoEmbedding, video_embeddings
from framedex.store import AssetRecord, IndexRecord, MemberRecord, VideoRecord
from framedex.store.schema import now_utc
from framedex.values import Json, JsonObject

if TYPE_CHECKING:
    from framedex.store import FrameArrays, Store

#: Longest collection name.
MAX_NAME = 200
#: Ids on the wire are URL-safe: letters, digits, ``-`` and ``_``.
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass
class CollectionInfo:
    """A collection with its statistics over committed member videos."""

    collection: IndexRecord
    video_count: int
    total_duration: float


def new_id() -> str:
    """A fresh URL-safe id (24 hex characters, the shape of Twelve Labs' ids)."""
    return uuid.uuid4().hex[:24]


def check_id(name: str, value: object) -> str:
    """Validate an id a caller gave.

    Raises:
        ConfigError: not 1-64 characters of letters, digits, ``-`` and ``_``.
    """
    check(isinstance(value, str) and bool(_ID.match(value)), name, value,
          "must be 1-64 characters of letters, digits, '-' and '_'")
    assert isinstance(value, str)
    return value


def check_name(name: object) -> str:
    """Validate a collection's (or an entity's) name; returns it stripped.

    Raises:
        ConfigError: not non-empty text of at most :data:`MAX_NAME` characters.
    """
    check(isinstance(name, str) and name.strip() != "" and len(name) <= MAX_NAME
          and "\x00" not in name, "name", name,
          f"must be non-empty text of at most {MAX_NAME} characters")
    assert isinstance(name, str)
    return name.strip()


def _check_models(models: object) -> list[JsonObject]:
    if models is None:
        return []
    check(isinstance(models, Sequence) and not isinstance(models, str), "models", models,
          "must be a list of {model_name, model_options}")
    assert isinstance(models, Sequence)
    out: list[JsonObject] = []
    for i, m in enumerate(models):
        options = m.get("model_options", []) if isinstance(m, Mapping) else None
        check(isinstance(m, Mapping) and isinstance(m.get("model_name"), str)
              and isinstance(options, Sequence) and not isinstance(options, str)
              and all(isinstance(o, str) for o in options),
              f"models[{i}]", m, "must be {model_name: str, model_options: [str]}")
        assert isinstance(m, Mapping) and isinstance(options, Sequence)
        out.append({"model_name": m["model_name"], "model_options": [str(o) for o in options]})
    return out


class CollectionsMixin:
    """Collections, assets and clip embeddings (mixed into ``Library``)."""

    _store: Store

    def _frames(self, record: VideoRecord) -> tuple[FrameArrays, bool]:  # Library's
        raise NotImplementedError

    # -- collections ------------------------------------------------------------------------

    def create_collection(self, name: str, *,
                          models: Sequence[Mapping[str, Json]] | None = None) -> CollectionInfo:
        """Create an empty collection.

        Args:
            name: its name (unique in the library).
            models: descriptors to keep with it (the Twelve Labs face stores its ``models``).

        Raises:
            ConfigError: an empty, too long or already used name; malformed models.
        """
        name = check_name(name)
        checked = _check_models(models)
        if any(c.name == name for c in self._store.list_indexes()):
            raise ConfigError(f"name={name!r} is invalid: a collection with this name exists; "
                              "pick another name")
        record = IndexRecord(new_id(), name, checked)
        self._store.save_index(record)
        return CollectionInfo(record, 0, 0.0)

    def collections(self) -> list[CollectionInfo]:
        """Every collection, oldest first, with its member count and total duration."""
        videos = {v.video_id: v for v in self._store.list_videos()}
        members: dict[str, list[str]] = {}
        for m in self._store.list_members():
            members.setdefault(m.index_id, []).append(m.video_id)
        return [self._info(r, members.get(r.index_id, []), videos)
                for r in self._store.list_indexes()]

    def collection(self, collection_id: str) -> CollectionInfo:
        """One collection.

        Raises:
            NotFoundError: no such collection. ConfigError: a malformed id.
        """
        record = self._collection_record(collection_id)
        videos = {v.video_id: v for v in self._store.list_videos()}
        ids = [m.video_id for m in self._store.list_members(record.index_id)]
        return self._info(record, ids, videos)

    def rename_collection(self, collection_id: str, name: str) -> CollectionInfo:
        """Rename a collection (its videos stay).

        Raises:
            NotFoundError / ConfigError: no such collection; a bad or already used name.
        """
        record = self._collection_record(collection_id)
        name = check_name(name)
        if any(c.name == name and c.index_id != record.index_id
               for c in self._store.list_indexes()):
            raise ConfigError(f"name={name!r} is invalid: another collection has this name")
        record.name, record.updated_at = name, now_utc()
        self._store.save_index(record)
        return self.collection(record.index_id)

    def delete_collection(self, collection_id: str) -> None:
        """Delete a collection; its videos stay in the library (and in other collections).

        Raises:
            NotFoundError: no such collection.
        """
        record = self._collection_record(collection_id)
        self._store.delete_index(record.index_id)

    def add_to_collection(self, collection_id: str, video_id: str) -> None:
        """Put an indexed video in a collection (again: no change).

        Raises:
            NotFoundError: no such collection. VideoNotFoundError: no such committed video.
        """
        record = self._collection_record(collection_id)
        check_id("video_id", video_id)
        if self._store.get_video(video_id) is None:
            raise VideoNotFoundError(f"no indexed video {video_id!r}: only indexed videos can "
                                     "join a collection")
        self._store.add_members(record.index_id, [video_id])

    def remove_from_collection(self, collection_id: str, video_id: str) -> None:
        """Take a video out of a collection (it stays in the library).

        Raises:
            NotFoundError: no such collection, or the video is not in it.
        """
        record = self._collection_record(collection_id)
        check_id("video_id", video_id)
        if self.collection_member(record.index_id, video_id) is None:
            raise NotFoundError(f"video {video_id!r} is not in collection {record.index_id!r}")
        self._store.remove_member(record.index_id, video_id)

    def collection_videos(self, collection_id: str) -> list[tuple[MemberRecord, VideoRecord]]:
        """The committed videos of a collection, in the order they joined.

        Raises:
            NotFoundError: no such collection.
        """
        record = self._collection_record(collection_id)
        videos = {v.video_id: v for v in self._store.list_videos()}
        return [(m, videos[m.video_id]) for m in self._store.list_members(record.index_id)
                if m.video_id in videos]

    def collection_member(self, collection_id: str, video_id: str
                          ) -> tuple[MemberRecord, VideoRecord] | None:
        """The membership of one video in a collection, or None (not a member, or the video
        is not committed)."""
        for member, video in self.collection_videos(collection_id):
            if member.video_id == video_id:
                return member, video
        return None

    def collection_ids(self, collection_id: str) -> frozenset[str]:
        """Ids of the committed videos of a collection (what a scoped search may return)."""
        return frozenset(m.video_id for m, _ in self.collection_videos(collection_id))

    def _collection_record(self, collection_id: str) -> IndexRecord:
        check_id("index_id", collection_id)
        record = self._store.get_index(collection_id)
        if record is None:
            raise NotFoundError(f"no collection (index) {collection_id!r}: list them with "
                                "GET /v1.3/indexes")
        return record

    @staticmethod
    def _info(record: IndexRecord, ids: Sequence[str],
              videos: Mapping[str, VideoRecord]) -> CollectionInfo:
        live = [videos[v] for v in ids if v in videos]
        return CollectionInfo(record, len(live), float(sum(v.duration for v in live)))

    # -- assets -----------------------------------------------------------------------------

    def add_asset(self, path: str | os.PathLike[str], *, filename: str, method: str = "direct",
                  metadata: Mapping[str, Json] | None = None) -> AssetRecord:
        """Record a file kept on the server as an asset (indexed later, on request).

        Raises:
            ConfigError: the file is missing, or bad metadata.
        """
        from framedex.validate import check_metadata

        p = Path(path)
        check(p.is_file(), "path", str(p.name), "must be an existing file")
        check(isinstance(filename, str) and 0 < len(filename) <= 1024, "filename", filename,
              "must be text of 1-1024 characters")
        record = AssetRecord(new_id(), filename, str(p.resolve()), p.stat().st_size, method,
                             check_metadata(metadata))
        self._store.save_asset(record)
        return record

    def asset(self, asset_id: str) -> AssetRecord:
        """One asset.

        Raises:
            NotFoundError: no such asset. ConfigError: a malformed id.
        """
        check_id("asset_id", asset_id)
        record = self._store.get_asset(asset_id)
        if record is None:
            raise NotFoundError(f"no asset {asset_id!r}: upload one with POST /v1.3/assets")
        return record

    def assets(self) -> list[AssetRecord]:
        """Every asset, oldest first."""
        return self._store.list_assets()

    def assets_page(self, limit: int, offset: int = 0) -> tuple[list[AssetRecord], int]:
        """One page of assets, newest first, and how many there are (the store returns the
        page's rows only).

        Raises:
            ConfigError: a bad ``limit`` or ``offset``.
        """
        check(isinstance(limit, int) and limit >= 1, "limit", limit, "must be an integer >= 1")
        check(isinstance(offset, int) and offset >= 0, "offset", offset,
              "must be an integer >= 0")
        return self._store.page_assets(limit, offset)

    def delete_asset(self, asset_id: str, *, force: bool = False,
                     in_use: Collection[str] = ()) -> tuple[AssetRecord, bool]:
        """Delete an asset's record. Its file is not touched here: the caller removes it when
        nothing needs it (the server's media folder; a video indexed from the asset keeps
        its source, as Twelve Labs keeps an indexed asset whose asset is deleted).

        Args:
            asset_id: the asset.
            force: delete it even when a video was indexed from it or a job is reading it.
            in_use: paths unfinished ingest jobs read (the caller knows its jobs).

        Returns:
            the deleted record, and whether its file is still needed (a video's source, or a
            job's input).

        Raises:
            NotFoundError: no such asset. InUseError: it is used and ``force`` is False.
        """
        record = self.asset(asset_id)
        videos = [v.video_id for v in self._store.list_videos() if v.path == record.path]
        busy = record.path in in_use
        if (videos or busy) and not force:
            what = (f"video {videos[0]} was indexed from it" if videos else
                    "an ingest job is reading it")
            raise InUseError(f"asset {asset_id!r} is in use: {what}; delete with force=true "
                             "to delete it anyway (the video keeps its source file)")
        self._store.delete_asset(asset_id)
        return record, bool(videos or busy)

    def expire_assets(self, older_than: timedelta, in_use: Collection[str] = ()
                      ) -> list[AssetRecord]:
        """Delete the records of assets created more than ``older_than`` ago (the server's
        asset retention); assets an unfinished job reads (``in_use``) wait for the next run.
        Files are left to the caller's sweep, which keeps a video's source.

        Returns:
            the deleted records.
        """
        check(older_than > timedelta(0), "older_than", older_than, "must be > 0")
        expired = [a for a in self._store.list_assets(created_before=now_utc() - older_than)
                   if a.path not in in_use]
        for record in expired:
            self._store.delete_asset(record.asset_id)
        return expired

    def source_paths(self) -> set[str]:
        """The source path of every indexed video (files a sweep must keep)."""
        return {v.path for v in self._store.list_videos()}

    # -- video ids and embeddings -----------------------------------------------------------

    def content_id(self, path: str | os.PathLike[str]) -> str:
        """The video id indexing this file gives (a hash of its bytes), before indexing it.

        Raises:
            ConfigError: the file cannot be read.
        """
        from framedex.indexer.pipeline import content_id

        try:
            return content_id(path)
        except OSError as ex:
            raise ConfigError(f"path={Path(path).name!r} is invalid: cannot read it "
                              f"({ex.strerror or ex})") from None

    def video_embeddings(self, video: str, *, segmentation: str = "fixed",
                         seconds: float = 6.0, scopes: Sequence[str] = ("clip",),
                         start_sec: float | None = None, end_sec: float | None = None
                         ) -> list[VideoEmbedding]:
        """Clip embeddings (fixed windows, or embedding-detected shots) and/or the whole
        video's embedding, pooled from the cached frame embeddings (nothing is decoded).
        The clips tile the video (or ``[start_sec, end_sec]``).

        Raises:
            VideoNotFoundError: no such video. ConfigError: a bad segmentation, scope or range.
        """
        record = self._store.find_video(video)
        frames, _ = self._frames(record)
        return video_embeddings(frames.pts_sec, frames.vectors, record.duration,
                                segmentation=segmentation, seconds=seconds, scopes=scopes,
                                start_sec=start_sec, end_sec=end_sec)
