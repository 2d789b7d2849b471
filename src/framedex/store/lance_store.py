"""The LanceDB store: videos, frame and segment embeddings, path aliases, jobs, query log.

Example::

    store = LanceStore("framedex.db")        # a local folder; s3://... URIs pass through
    store.ensure_encoder(encoder.identity)   # refuses a different encoder than the store's
    frames = store.read_frames(video_id)     # one read: all frames of a video, in time order

Visibility: a video's frames and segments are appended under a new *generation* first; the
``videos`` row, which names the live generation, is written last (``commit_video``). Readers
only see rows of a committed generation, so a crash mid-index leaves nothing half-visible, and
a re-index swaps the old index for the new one in one commit (``store/schema.py``).
Concurrent writers claim a content id before indexing it (``store/locks.py``).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pyarrow as pa

from framedex.errors import (
    BusyError,
    ConfigError,
    EmptyLibraryError,
    EncoderMismatchError,
    StoreError,
    VideoNotFoundError,
)
from framedex.rules import LIMITS
from framedex.store import ann, multivector
from framedex.store.base import (
    INDEX_TABLES,
    FrameArrays,
    IndexSpec,
    MaxSimSnapshot,
    SearchSnapshot,
    SegmentArrays,
    VectorRows,
)
from framedex.store.collections import LanceCollections
from framedex.store.entities import LanceEntities
from framedex.store.jobs import JobStore
from framedex.store.location import StoreLocation, store_io
from framedex.store.locks import STATE_DIR, Claim, StoreLocks
from framedex.store.schema import (
    ANSWER_FEEDBACK_SCHEMA,
    ANSWERS_SCHEMA,
    ASSETS_SCHEMA,
    ENCODER_KEY,
    ENTITIES_SCHEMA,
    ENTITY_COLLECTIONS_SCHEMA,
    GENERATION_TABLES,
    INDEX_MEMBERS_SCHEMA,
    INDEXES_SCHEMA,
    JOBS_SCHEMA,
    QUERY_LOG_SCHEMA,
    SCHEMA_VERSION,
    SCHEMA_VERSION_KEY,
    VIDEO_PATHS_SCHEMA,
    VIDEOS_SCHEMA,
    VideoRecord,
    column_vectors,
    frame_rows,
    frames_schema,
    now_utc,
    segment_rows,
    segments_schema,
    sql_str,
)
from framedex.store.tables import LanceTables, retry_conflicts

#: Identity fields that must match for a query or an index run to use the store.
IDENTITY_FIELDS = ("model", "pretrained", "weights_digest", "dim")

#: Small tables and their schemas (SQL, jobs and the query log read them whole).
SMALL_TABLES: dict[str, pa.Schema] = {
    "videos": VIDEOS_SCHEMA, "jobs": JOBS_SCHEMA, "query_log": QUERY_LOG_SCHEMA,
    "video_paths": VIDEO_PATHS_SCHEMA, "indexes": INDEXES_SCHEMA,
    "index_members": INDEX_MEMBERS_SCHEMA, "assets": ASSETS_SCHEMA,
    "answers": ANSWERS_SCHEMA, "answer_feedback": ANSWER_FEEDBACK_SCHEMA,
    "entity_collections": ENTITY_COLLECTIONS_SCHEMA, "entities": ENTITIES_SCHEMA,
}

#: The key column each table is read by (a BTREE index on it).
SCALAR_KEYS = {"frames": "video_id", "segments": "video_id", "jobs": "job_id"}

#: Shortest id prefix accepted as a video reference (ids are 20 hex characters).
MIN_PREFIX = 4


def new_generation() -> int:
    """A fresh generation number: nanoseconds since the epoch (unique and increasing)."""
    return time.time_ns()


class LanceStore(LanceCollections, LanceEntities):
    """A framedex store on LanceDB (implements :class:`framedex.store.Store`).

    Args:
        uri: a local folder (created on the first write) or an object-store URI
            (``s3://``, ``gs://``, ``az://``).
        storage_options: object-store settings (credentials, endpoint, region), handed to
            Lance and LanceDB alike.

    Raises:
        ConfigError / StoreError: an unusable location (a file, a bad ``~user``...).
    """

    def __init__(self, uri: str | os.PathLike, *,
                 storage_options: Mapping[str, str] | None = None,
                 lease_ttl: float | None = None, consistency_s: float | None = None):
        self.location = StoreLocation.parse(uri)
        self.uri = self.location.uri
        self.locks = StoreLocks(self.location, storage_options, ttl=lease_ttl)
        self._consistency_s = consistency_s
        self._jobs: JobStore | None = None
        self._open_handles(storage_options)

    def _open_handles(self, storage_options: Mapping[str, str] | None) -> None:
        """The table handles and the caches derived from them (all empty until used)."""
        self.tables = LanceTables(self.location, storage_options,
                                  consistency_s=self._consistency_s)
        self._identity: dict[str, Any] | None = None
        self._migrated = False
        # The videos table is small and read on every query: keep it in memory, keyed by the
        # Lance version it was read at (a version check costs ~10 µs, a read ~1 ms).
        self._videos_cache: tuple[int, dict[str, VideoRecord]] | None = None
        # Row maps and stats library search derives from a table version (framedex.store.ann).
        self._search_cache = ann.SearchCache()

    @property
    def storage_options(self) -> dict[str, str] | None:
        """The object-store settings this store was opened with."""
        return self.tables.storage_options

    # -- location -------------------------------------------------------------------------

    def exists(self) -> bool:
        """True when a store is at this location."""
        return self.location.exists()

    def require(self) -> None:
        """Raise :class:`~framedex.errors.StoreNotFoundError` when there is no store here."""
        self.location.require()

    # -- encoder identity -----------------------------------------------------------------

    def encoder_identity(self) -> dict[str, Any] | None:
        """The identity of the encoder this store was built with, or None if it is empty."""
        if self._identity is not None:  # fixed when the frames table is created
            return self._identity
        ds = self.tables.snapshot("frames")
        if ds is None:
            return None
        meta = ds.schema.metadata or {}
        raw = meta.get(ENCODER_KEY)
        self._identity = json.loads(raw) if raw else None
        self._migrate(ds.schema)
        return self._identity

    def ensure_encoder(self, identity: Mapping[str, Any]) -> None:
        """Create the embedding tables for ``identity``, or check it matches the store's.

        Raises:
            EncoderMismatchError: the store was built with another encoder.
            StoreError: the store cannot be created or written.
        """
        existing = self.encoder_identity()
        if existing is None:
            self.tables.create("frames", frames_schema(int(identity["dim"]), dict(identity)))
            self.tables.create("segments", segments_schema(int(identity["dim"])))
            self.tables.create("videos", VIDEOS_SCHEMA)
            self._identity = None
            return
        check_same_encoder(existing, identity, self.uri)

    def remember_model(self, spec: str) -> None:
        """Record ``spec`` as where the store's weights are now found (the caller checked they
        are the same weights): one metadata commit, so queries without ``--model`` find a
        model folder that moved.

        Raises:
            StoreError: the store cannot be written.
        """
        identity = self.encoder_identity()
        if identity is None or identity.get("spec") == spec:
            return
        updated = dict(identity, spec=spec)
        with self.writing(), store_io(self.location, "write to"):
            frames = self.tables.writable("frames")
            if frames is None:
                return
            frames.update_schema_metadata(
                {ENCODER_KEY.decode(): json.dumps(updated, sort_keys=True)})
        self._identity = updated

    @property
    def dim(self) -> int:
        """Embedding dimension of the store."""
        identity = self.encoder_identity()
        if identity is None:
            raise EmptyLibraryError(f"the store {self.uri} is empty: index videos first")
        return int(identity["dim"])

    def _migrate(self, frames: pa.Schema) -> None:
        """Upgrade a store written with an older schema version in place, once."""
        if self._migrated:
            return
        self._migrated = True
        version = (frames.metadata or {}).get(SCHEMA_VERSION_KEY, b"1").decode()
        if version == SCHEMA_VERSION and "generation" in frames.names:
            return
        from framedex.store.migrate import upgrade

        upgrade(self, version)

    # -- videos ---------------------------------------------------------------------------

    def _videos(self) -> dict[str, VideoRecord]:
        """All committed videos by id, oldest first, as of the table's newest version."""
        ds = self.tables.snapshot("videos")
        if ds is None:
            return {}
        version = int(ds.version)
        cached = self._videos_cache
        if cached is None or cached[0] != version:
            self.encoder_identity()  # runs the one-time migration before the first read
            with store_io(self.location, "read"):
                rows = ds.to_table().to_pylist()
            rows.sort(key=lambda r: (r["created_at"], r["path"]))
            cached = (version, {r["video_id"]: VideoRecord.from_row(r) for r in rows})
            self._videos_cache = cached
        return cached[1]

    def memory(self) -> dict[str, Any]:
        """The store's in-memory caches, as ``/health`` reports them: Lance's index and
        metadata caches (bounded by ``framedex.rules.LANCE_*_CACHE_BYTES``), the search row
        maps (one per table, newest version only) and the videos table (newest version)."""
        from framedex.rules import LANCE_INDEX_CACHE_BYTES, LANCE_METADATA_CACHE_BYTES

        videos = self._videos_cache
        return {
            "lance": {"bytes": self.tables.cache_bytes(),
                      "max_bytes": LANCE_INDEX_CACHE_BYTES + LANCE_METADATA_CACHE_BYTES},
            "search_maps": {"entries": len(self._search_cache),
                            "bytes": self._search_cache.nbytes()},
            "videos": {"entries": 0 if videos is None else len(videos[1])},
        }

    def videos_version(self) -> int:
        """The ``videos`` table's version: changes with every commit, re-index and delete."""
        return self.tables.version("videos")

    def list_videos(self, limit: int | None = None, offset: int = 0) -> list[VideoRecord]:
        """Indexed videos, oldest first."""
        videos = list(self._videos().values())
        return videos[offset: None if limit is None else offset + limit]

    def videos_by_id(self) -> Mapping[str, VideoRecord]:
        """Every committed video by id (a read-only view of one version: no copy, so a
        search over 100,000 videos does not build a dict per query)."""
        return MappingProxyType(self._videos())

    def count_videos(self) -> int:
        """Number of indexed videos."""
        return len(self._videos())

    def get_video(self, video_id: str) -> VideoRecord | None:
        """The video with this id, or None."""
        return self._videos().get(video_id)

    def find_video(self, ref: str) -> VideoRecord:
        """Resolve a video id, a unique id prefix (4+ characters) or any path it was seen at.

        Raises:
            EmptyLibraryError: nothing is indexed.
            VideoNotFoundError: nothing matches, or a prefix is ambiguous (the message says which).
        """
        check_ref(ref)
        videos = self._videos()
        if ref in videos:
            return videos[ref]
        if not videos:
            raise EmptyLibraryError(f"the store {self.uri} has no indexed video: run "
                                    "`framedex index PATH` first")
        for path in _path_forms(ref):
            found = [v for v in videos.values() if v.path == path]
            if found:
                return found[-1]
            alias = self.tables.read("video_paths", ["video_id"], f"path = {sql_str(path)}",
                                     VIDEO_PATHS_SCHEMA)
            for vid in alias.column("video_id").to_pylist():
                if vid in videos:
                    return videos[vid]
        ref_l = ref.lower()
        if len(ref_l) >= MIN_PREFIX and all(c in "0123456789abcdef" for c in ref_l):
            matches = [v for v in videos.values() if v.video_id.startswith(ref_l)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise VideoNotFoundError(
                    f"video id prefix {ref!r} is ambiguous: it matches "
                    f"{', '.join(v.video_id for v in matches[:5])}; give more characters")
        if "/" not in ref and "\\" not in ref:  # a bare file name, as `videos` shows it
            named = self._videos_named(ref, videos)
            if len(named) == 1:
                return named[0]
            if len(named) > 1:
                raise VideoNotFoundError(
                    f"the file name {ref!r} is ambiguous: it matches "
                    f"{', '.join(v.path for v in named[:5])}; give the path or the video id")
        short = f" (an id prefix needs at least {MIN_PREFIX} characters)" \
            if len(ref) < MIN_PREFIX else ""
        raise VideoNotFoundError(
            f"no indexed video {ref[:200]!r} in {self.uri}{short}: give a video_id, a unique "
            "id prefix or an indexed path (`framedex videos` lists them)")

    def _videos_named(self, name: str, videos: dict[str, VideoRecord]) -> list[VideoRecord]:
        """The videos with a recorded path (the indexed one or an alias) whose file name is
        ``name``."""
        ids = {v.video_id for v in videos.values() if os.path.basename(v.path) == name}
        aliases = self.tables.read("video_paths", ["path", "video_id"], None, VIDEO_PATHS_SCHEMA)
        for path, vid in zip(aliases.column("path").to_pylist(),
                             aliases.column("video_id").to_pylist(), strict=True):
            if vid in videos and os.path.basename(path) == name:
                ids.add(vid)
        return [videos[v] for v in sorted(ids)]

    # -- reads ----------------------------------------------------------------------------

    def _live_rows(self, table: str, video_id: str, columns: list[str]) -> pa.Table:
        """One filtered read of a committed video's live rows (BTREE on ``video_id``).

        Raises:
            VideoNotFoundError: the video is not indexed (or not yet committed).
        """
        record = self.get_video(video_id)
        if record is None:
            raise VideoNotFoundError(f"no indexed video {video_id[:200]!r} in {self.uri}")
        where = f"video_id = {sql_str(video_id)} AND generation = {int(record.generation)}"
        return self.tables.read(table, columns, where)

    def read_frames(self, video_id: str) -> FrameArrays:
        """All frames of one indexed video in time order, in one read.

        Raises:
            VideoNotFoundError: the video is not indexed (or not yet committed).
        """
        data = self._live_rows("frames", video_id, ["pos", "frame_idx", "pts_sec", "vector"])
        pos = data.column("pos").to_numpy()
        vectors = column_vectors(data.column("vector"), self.dim)
        frame_idx = data.column("frame_idx").to_numpy()
        pts_sec = data.column("pts_sec").to_numpy()
        if len(pos) > 1 and not bool((np.diff(pos) > 0).all()):
            # Rows come back in write order, which is time order unless fragments were
            # rewritten out of order (compaction); only then pay for the reorder copy.
            order = np.argsort(pos, kind="stable")
            pos, frame_idx, pts_sec, vectors = pos[order], frame_idx[order], pts_sec[order], \
                vectors[order]
        return FrameArrays(video_id, pos, frame_idx, pts_sec, vectors)

    def read_frame_idx(self, video_id: str) -> np.ndarray:
        """The native frame indices of a video's indexed frames, without the vectors.

        Raises:
            VideoNotFoundError: the video is not indexed (or not yet committed).
        """
        return self._live_rows("frames", video_id, ["frame_idx"]).column("frame_idx").to_numpy()

    def read_segments(self, video_id: str) -> SegmentArrays:
        """The segments of one indexed video, in time order.

        Raises:
            VideoNotFoundError: the video is not indexed (or not yet committed).
        """
        data = self._live_rows("segments", video_id, ["kind", "start_sec", "end_sec", "vector"])
        order = np.argsort(data.column("start_sec").to_numpy(), kind="stable")
        kinds = data.column("kind").to_pylist()
        return SegmentArrays(
            video_id=video_id,
            start_sec=data.column("start_sec").to_numpy()[order],
            end_sec=data.column("end_sec").to_numpy()[order],
            kind=[kinds[i] for i in order],
            vectors=column_vectors(data.column("vector"), self.dim)[order],
        )

    def search_frames(self, query: np.ndarray, limit: int, where: str | None = None,
                      nprobes: int | None = None, refine_factor: int | None = None) -> pa.Table:
        """Nearest frames to ``query`` across the library (ANN when an index exists).

        Returns rows of ``video_id, generation, pos, frame_idx, pts_sec, _distance`` (cosine
        distance), best first. Rows of uncommitted or retired generations are among them; the
        caller keeps those whose generation the ``videos`` row names.
        """
        ds = self.tables.snapshot("frames")
        if ds is None:
            raise EmptyLibraryError(f"the store {self.uri} is empty: index videos first")
        nearest: dict[str, Any] = {"column": "vector", "q": np.asarray(query, np.float32),
                                   "k": int(limit), "metric": "cosine"}
        if nprobes is not None:
            nearest["nprobes"] = int(nprobes)
        if refine_factor is not None:
            nearest["refine_factor"] = int(refine_factor)
        with store_io(self.location, "search"):
            return ds.to_table(
                columns=["video_id", "generation", "pos", "frame_idx", "pts_sec", "_distance"],
                nearest=nearest, filter=where, prefilter=bool(where))

    def has_ann_index(self) -> bool:
        """True when the segments or the frames table has a vector index."""
        for name in INDEX_TABLES:
            ds = self.tables.snapshot(name)
            if ds is not None and ann.vector_index(ds) is not None:
                return True
        return False

    # -- writes ---------------------------------------------------------------------------

    def discard_if_unused(self, made: list[Path]) -> bool:
        """Remove a store this run created (``made``: :meth:`StoreLocation.create`'s folders)
        when it holds no video and no other writer is active: a first ``index`` that indexed
        nothing (missing or broken files, a model that did not load) leaves no empty store
        that later reads would take for an empty library.

        Returns:
            True when the store was removed.
        """
        path = self.location.path
        if path is None or not made or path not in made:
            return False
        with self.locks.sweeper() as idle:
            if not idle or (self.tables.snapshot("videos") is not None
                            and self.count_videos() > 0):
                return False
            for child in path.iterdir():  # everything but the leases, which the sweeper's
                if child.name == STATE_DIR:  # own release still writes
                    continue
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        if all(child.name == STATE_DIR for child in path.iterdir()):  # nobody began meanwhile
            shutil.rmtree(path, ignore_errors=True)
        self._open_handles(self.tables.storage_options)
        self.location.remove_if_empty([p for p in made if p != path])  # its new parents
        return True

    def claim(self, video_id: str, *, wait: bool, timeout: float | None = None
              ) -> Claim | None:
        """Claim ``video_id`` for writing (see ``store/locks.py``); None when it is taken and
        ``wait`` is False (or ``timeout`` passed).

        Reads after the claim see everything its previous holder committed (the next read of
        each table looks up its newest version, whatever ``consistency_s`` is).
        """
        claim = self.locks.claim(video_id, wait=wait, timeout=timeout)
        if claim is not None:
            self.tables.refresh()
        return claim

    def writing(self) -> AbstractContextManager[None]:
        """Context of a writer: orphan sweeps wait until no writer is inside one."""
        return self.locks.writer()

    def begin_video(self, claim: Claim) -> int:
        """Start writing ``claim.video_id`` (the caller holds the claim): drop the rows a
        writer that died holding this claim left (the generation its lease recorded, unless
        that one is live), record the new generation in the claim, and return it.

        Nothing is deleted for a video nobody left rows of: a delete that matches nothing
        still commits a version (a paid request series on object storage).
        """
        live = self.get_video(claim.video_id)
        live_gen = None if live is None else int(live.generation)
        dead = claim.dead_generation
        if dead is not None and dead != live_gen:
            self.abort_video(claim.video_id, dead)
        return claim.begin(new_generation(), replaces=live_gen)

    def add_frames(self, video_id: str, generation: int, pos: np.ndarray,
                   frame_idx: np.ndarray, pts_sec: np.ndarray, vectors: np.ndarray) -> None:
        """Append a chunk of frame rows (not visible until :meth:`commit_video`)."""
        schema = self._frames_schema()
        rows = frame_rows(schema, video_id, generation, pos, frame_idx, pts_sec, vectors)
        self.tables.append("frames", rows, schema)

    def _frames_schema(self) -> pa.Schema:
        ds = self.tables.snapshot("frames")
        if ds is None:
            raise StoreError(f"the store {self.uri} has no frames table: call ensure_encoder")
        return ds.schema

    def add_segments(self, video_id: str, generation: int, start_sec: np.ndarray,
                     end_sec: np.ndarray, num_frames: np.ndarray, vectors: np.ndarray,
                     kind: str = "fixed") -> None:
        """Append segment rows (not visible until :meth:`commit_video`)."""
        n = len(start_sec)
        if n == 0:
            return
        schema = segments_schema(self.dim)
        rows = segment_rows(schema, video_id, generation, np.arange(n), start_sec, end_sec,
                            num_frames, vectors, kind)
        self.tables.append("segments", rows, schema)

    # Staged writes: data files written anywhere (a Ray worker), committed by one process.

    def stage_frames(self, video_id: str, generation: int, pos: np.ndarray,
                     frame_idx: np.ndarray, pts_sec: np.ndarray,
                     vectors: np.ndarray) -> list[str]:
        """Write frame rows as data files of the ``frames`` table without committing them.

        The files stay unreferenced (invisible, and swept by ``optimize`` if nobody commits
        them) until :meth:`commit_staged`; the rows stay invisible after that too, until
        :meth:`commit_video` names their generation.

        Returns:
            the written fragments, as JSON strings (small; they travel to the committer).
        """
        rows = frame_rows(self._frames_schema(), video_id, generation, pos, frame_idx,
                          pts_sec, vectors)
        return self.tables.stage("frames", rows)

    def stage_segments(self, video_id: str, generation: int, seg: np.ndarray,
                       start_sec: np.ndarray, end_sec: np.ndarray, num_frames: np.ndarray,
                       vectors: np.ndarray, kind: str = "fixed") -> list[str]:
        """Write segment rows as data files of ``segments`` without committing them
        (see :meth:`stage_frames`); ``seg`` numbers the video's segments in time order."""
        if len(seg) == 0:
            return []
        schema = self.tables.create("segments", segments_schema(self.dim)).schema
        rows = segment_rows(schema, video_id, generation, seg, start_sec, end_sec, num_frames,
                            vectors, kind)
        return self.tables.stage("segments", rows)

    def commit_staged(self, name: str, fragments: Sequence[str]) -> None:
        """Append staged fragments of ``frames`` or ``segments`` in one commit."""
        if name not in ("frames", "segments"):
            raise StoreError(f"no staged writes to table {name!r}: use frames or segments")
        self.tables.commit_staged(name, fragments)

    def commit_video(self, record: VideoRecord, segments: SegmentArrays | None = None,
                     replaced: VideoRecord | None = None) -> None:
        """Write the ``videos`` row: from here on ``record.generation`` is the live index.

        The generation's ``video_vectors`` row (its segments as one multivector, built from
        ``segments`` in memory) is written just before, so it is visible exactly when the
        video is. ``replaced``, the record this one supersedes, keeps its path findable when
        the path changed (``video_paths`` holds the other paths a content was seen at).
        """
        if segments is not None:
            multivector.write_video_vectors(self, record.video_id, record.generation,
                                            segments)
        row = pa.Table.from_pylist([record.to_row()], schema=VIDEOS_SCHEMA)
        self.tables.upsert("videos", "video_id", row, VIDEOS_SCHEMA)
        if replaced is not None and replaced.path != record.path:
            self.add_path(replaced.path, record.video_id)

    def retire_generation(self, video_id: str, generation: int | None) -> None:
        """Delete the rows of ``generation``, superseded by a commit (None: nothing)."""
        if generation is None:
            return
        where = f"video_id = {sql_str(video_id)} AND generation = {int(generation)}"
        for name in GENERATION_TABLES:
            self.tables.delete(name, where)

    def abort_video(self, video_id: str, generation: int) -> None:
        """Delete the rows a failed run wrote under ``generation``."""
        self.retire_generation(video_id, generation)

    def delete_video(self, video_id: str) -> None:
        """Remove a video: its ``videos`` row first (it vanishes at once), then its rows.

        Raises:
            VideoNotFoundError: no such video.
            BusyError: another writer holds the video (it is being indexed): try again.
        """
        if self.get_video(video_id) is None:
            raise VideoNotFoundError(f"no indexed video {video_id[:200]!r} in {self.uri}")
        claim = self.claim(video_id, wait=False)
        if claim is None:
            raise BusyError(f"video {video_id} is being indexed right now: delete it when "
                            "that is done")
        with claim, self.writing():
            if self.get_video(video_id) is None:  # deleted meanwhile by another process
                return
            where = f"video_id = {sql_str(video_id)}"
            self.tables.delete("videos", where)
            for name in (*GENERATION_TABLES, "video_paths", "index_members"):
                self.tables.delete(name, where)

    def add_path(self, path: str, video_id: str) -> None:
        """Remember that ``path`` holds ``video_id``'s content (any such path finds it); no
        commit when it is already recorded."""
        known = self.tables.read("video_paths", ["video_id"], f"path = {sql_str(path)}",
                                 VIDEO_PATHS_SCHEMA)
        if known.column("video_id").to_pylist() == [video_id]:
            return
        row = pa.Table.from_pylist([{"path": path, "video_id": video_id, "seen_at": now_utc()}],
                                   schema=VIDEO_PATHS_SCHEMA)
        self.tables.upsert("video_paths", "path", row, VIDEO_PATHS_SCHEMA)

    @property
    def jobs(self) -> JobStore:
        """The ingest jobs kept in this store (``store/jobs.py``)."""
        if self._jobs is None:
            self._jobs = JobStore(self)
        return self._jobs

    def reopen(self) -> None:
        """Drop every open handle and cache (the store was replaced under this process)."""
        self.tables.reset()
        self._identity = None
        self._migrated = False
        self._videos_cache = None
        self._search_cache = ann.SearchCache()

    def close(self) -> None:
        """Write the job states that wait, and release the leases this process holds on the
        store (claims, writer lease)."""
        if self._jobs is not None:
            self._jobs.close()
        self.locks.close()

    # -- multivector search (video_vectors) ----------------------------------------------

    def search_video_vectors(self, queries: np.ndarray, limit: int,
                             video_ids: Sequence[str] | None = None) -> VectorRows:
        """MaxSim search over each video's segment vectors (of ``video_ids`` only, when
        given): see :func:`framedex.store.multivector.search_video_vectors`."""
        return multivector.search_video_vectors(self, queries, limit, video_ids)

    def backfill_video_vectors(self) -> int:
        """Write the ``video_vectors`` rows committed videos lack (stores indexed before the
        table existed). Returns how many were written."""
        return multivector.backfill_video_vectors(self)

    def maxsim_snapshot(self) -> MaxSimSnapshot | None:
        """The codebook multi-part search scores with, at the newest versions (None without
        one): see :mod:`framedex.store.multivector`."""
        return multivector.open_maxsim(self, self._search_cache)

    def video_segments(self, video_ids: Sequence[str], *, times: bool = True) -> VectorRows:
        """The live generation's segment vectors of each video (one read): see
        :func:`framedex.store.multivector.read_video_segments`."""
        return multivector.read_video_segments(self, video_ids, self._search_cache,
                                               times=times)

    def count_video_vectors(self) -> int:
        """Rows in ``video_vectors`` (every generation; a cheap completeness check)."""
        ds = self.tables.snapshot(multivector.TABLE)
        return 0 if ds is None else int(ds.count_rows())

    # -- small tables ---------------------------------------------------------------------

    def table_arrow(self, name: str, columns: Sequence[str] | None = None) -> pa.Table:
        """A small table (videos, jobs, query_log, video_paths, indexes, index_members, assets)
        as Arrow, for SQL and stats.

        Raises:
            StoreError: unknown table name.
        """
        if name not in SMALL_TABLES:
            raise StoreError(f"no table {name!r}: use one of {', '.join(sorted(SMALL_TABLES))}")
        return self.tables.read(name, list(columns) if columns else None,
                                schema=SMALL_TABLES[name])

    def sql_source(self, name: str) -> Any:
        """What DuckDB scans for table ``name``: the Lance dataset (an Arrow dataset, so only
        the needed columns are read), or an empty table when it does not exist yet."""
        if name not in SMALL_TABLES:
            raise StoreError(f"no table {name!r}: use one of {', '.join(sorted(SMALL_TABLES))}")
        ds = self.tables.snapshot(name)
        return SMALL_TABLES[name].empty_table() if ds is None else ds

    def append(self, name: str, rows: Sequence[Mapping[str, object]]) -> None:
        """Append rows to a small table (``jobs``, ``query_log``, ``answers``...; created on
        first use)."""
        schema = SMALL_TABLES[name]
        self.tables.append(name, pa.Table.from_pylist(list(rows), schema=schema), schema)

    def table_where(self, name: str, where: str,
                    columns: Sequence[str] | None = None) -> pa.Table:
        """The rows of a small table that match a Lance SQL filter (empty when the table does
        not exist yet).

        Raises:
            StoreError: unknown table name.
        """
        if name not in SMALL_TABLES:
            raise StoreError(f"no table {name!r}: use one of {', '.join(sorted(SMALL_TABLES))}")
        return self.tables.read(name, list(columns) if columns else None, where=where,
                                schema=SMALL_TABLES[name])

    def upsert(self, name: str, key: str, rows: Sequence[Mapping[str, object]]) -> None:
        """Insert or replace rows of a small table by ``key`` (used for jobs)."""
        schema = SMALL_TABLES[name]
        self.tables.upsert(name, key, pa.Table.from_pylist(list(rows), schema=schema), schema)

    def iter_tables(self) -> Iterator[str]:
        """Names of the tables that exist."""
        return self.tables.names()

    # -- indexes and maintenance ----------------------------------------------------------

    def build_index(self, spec: IndexSpec | None = None, *,
                    num_partitions: int | None = None, num_sub_vectors: int | None = None,
                    index_type: str | None = None, table: str | None = None) -> dict[str, Any]:
        """Build (or rebuild) the ANN index library search uses, and the scalar indexes.

        Compacts the frames and segments tables first (one fragment per append makes every
        read touch many files), builds the vector index ``spec`` describes (default:
        IVF_HNSW_SQ on the segments, see ``framedex.store.ann``), stores the mean frame
        vector search uses as the query's background level, then the ``video_id`` BTREEs.

        Args:
            spec: the index; the keyword arguments override its fields (None: keep).

        Returns:
            what was built (for the CLI to print).

        Raises:
            EmptyLibraryError: nothing is indexed. ConfigError: a bad index setting.
        """
        overrides = {k: v for k, v in (("num_partitions", num_partitions),
                                       ("num_sub_vectors", num_sub_vectors),
                                       ("index_type", index_type), ("table", table))
                     if v is not None}
        spec = IndexSpec(**{**(asdict(spec) if spec else {}), **overrides})
        frames = self.tables.snapshot("frames")
        if frames is None or frames.count_rows() == 0:
            raise EmptyLibraryError(f"the store {self.uri} is empty: index videos first")
        with self.locks.maintenance(), self.writing(), store_io(self.location, "index"):
            for name in ("frames", "segments"):
                ds = self.tables.writable(name)
                if ds is not None and len(ds.get_fragments()) > 1:
                    ds.optimize.compact_files()
            target = self.tables.writable(spec.table)
            if target is None or target.count_rows() == 0:
                raise EmptyLibraryError(f"the store {self.uri} has no {spec.table}: "
                                        "index videos first")
            info = ann.build_vector_index(target, spec, self.dim)
            frames_ds = self.tables.writable("frames")
            assert frames_ds is not None
            ann.store_frame_mean(frames_ds, self.dim)
            multivector.backfill_video_vectors(self)
            info["codebook"] = multivector.build_codebook(self, spec.codebook)
        self.ensure_scalar_indexes()
        return info

    def search_snapshot(self) -> SearchSnapshot:
        """What library search reads, at the tables' newest versions, as arrays.

        Raises:
            EmptyLibraryError: nothing is indexed.
        """
        frames = self.tables.snapshot("frames")
        if frames is None:
            raise EmptyLibraryError(f"the store {self.uri} is empty: index videos first")
        return ann.open_search_tables(frames, self.tables.snapshot("segments"), self.dim,
                                      self._search_cache)

    def ensure_scalar_indexes(self, tables: Sequence[str] = ("frames", "segments")) -> None:
        """BTREE indexes for one-key reads: ``video_id`` on frames and segments (all of one
        video's rows), ``job_id`` on jobs.

        Built once; later appends are folded in by :meth:`optimize` (rows not yet indexed are
        still found, by a scan of the new fragments only).
        """
        from lancedb.index import BTree

        for name in tables:
            column = SCALAR_KEYS[name]
            ds = self.tables.snapshot(name)
            if ds is None or ds.count_rows() == 0 or column in _indexed_columns(ds):
                continue
            with self.locks.maintenance():
                self.tables.touched(name)
                ds = self.tables.snapshot(name)  # another process may have built it meanwhile
                if ds is None or column in _indexed_columns(ds):
                    continue
                table = self.tables.table(name)
                with store_io(self.location, "index"):
                    retry_conflicts(functools.partial(table.create_index, column,
                                                      config=BTree()), f"index {name}")

    def optimize(self, **options: Any) -> dict[str, Any]:
        """Compaction, index upkeep, retention, cleanup (``store.maintenance.optimize``)."""
        from framedex.store.maintenance import optimize

        return optimize(self, **options)

    def disk_usage(self) -> dict[str, int]:
        """Bytes on disk per table (local stores; empty for object stores)."""
        out: dict[str, int] = {}
        if self.location.path is None:
            return out
        for name in self.iter_tables():
            root = self.location.path / f"{name}.lance"
            out[name] = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
        return out


def _indexed_columns(ds: Any) -> set[str]:
    """Columns of ``ds`` that have an index."""
    try:
        return {c for i in ds.describe_indices() for c in (i.field_names or [])}
    except (OSError, RuntimeError, ValueError):  # an index being built concurrently
        return set()


def _path_forms(ref: str) -> list[str]:
    """``ref`` as given and as an absolute, resolved path (a file seen at either finds it)."""
    forms = [ref]
    if "://" not in ref:
        try:
            resolved = str(Path(ref).expanduser().resolve())
        except (OSError, RuntimeError, ValueError):
            return forms
        if resolved != ref:
            forms.append(resolved)
    return forms


def check_ref(ref: object) -> None:
    """Validate a video reference before any lookup.

    Raises:
        ConfigError: not a non-empty string, a NUL byte, or longer than a path may be
        (``framedex.rules.LIMITS["path"]``).
    """
    if not isinstance(ref, str) or not ref.strip():
        raise ConfigError("video='' is invalid: give a video id, id prefix or indexed path",
                          param="video")
    limit = LIMITS["path"]
    if "\x00" in ref or not limit.holds(len(ref)):
        raise ConfigError(f"video={ref[:80]!r} is invalid: no NUL bytes, at most "
                          f"{int(limit.high or 0)} characters", param="video")


def same_encoder(stored: Mapping[str, Any], asked: Mapping[str, Any]) -> bool:
    """Whether two encoder identities encode alike.

    Local weights are identified by their content (``weights_digest``), not by the path they
    were loaded from: a moved or copied model folder, a relative path given from another
    folder, and the shipped model loaded through its folder are the same encoder. Weights
    found by name (a pretrained tag, a Hub id) have no digest and match by name.
    """
    if stored.get("weights_digest") and asked.get("weights_digest"):
        return (stored["weights_digest"], stored.get("dim")) == \
            (asked["weights_digest"], asked.get("dim"))
    return all(stored.get(f) == asked.get(f) for f in IDENTITY_FIELDS)


def check_same_encoder(stored: Mapping[str, Any], asked: Mapping[str, Any], where: str) -> None:
    """Refuse an encoder whose identity differs from the store's (:func:`same_encoder`).

    Raises:
        EncoderMismatchError: naming both encoders and how to proceed.
    """
    if same_encoder(stored, asked):
        return

    def model(i: Mapping[str, Any]) -> str:
        tag = f":{i['pretrained']}" if i.get("pretrained") else ""
        return f"{i.get('model')}{tag}"

    def name(i: Mapping[str, Any]) -> str:
        digest = f"weights {i['weights_digest']}, " if i.get("weights_digest") else ""
        return f"{i.get('spec') or model(i)} ({digest}dim {i.get('dim')})"

    if model(stored) == model(asked) and stored.get("dim") == asked.get("dim"):
        # same model and dim: only the weights differ
        raise EncoderMismatchError(
            f"the store {where} was built with {model(stored)} weights "
            f"{stored.get('weights_digest')}, but this {model(asked)} has "
            f"weights {asked.get('weights_digest')} (the model files changed since, e.g. "
            "a retrained shipped model): re-index into another --db, or delete this store "
            "and index again"
        )
    # The stored spec is where the store last found its weights, so it loads them again.
    spec = stored.get("spec") or model(stored)
    raise EncoderMismatchError(
        f"the store {where} was built with {name(stored)}, not {name(asked)}: use "
        f"--model {spec} (or those weights from another place) or another --db"
    )
