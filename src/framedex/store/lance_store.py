"""The LanceDB store: videos, frame and segment embeddings, jobs and the query log.

Example::

    store = Store("framedex.db")            # a local folder; s3://... URIs pass through
    store.ensure_encoder(encoder.identity)  # refuses a different encoder than the store's
    frames = store.read_frames(video_id)    # one read: all frames of a video, in time order

Visibility: a video's frames and segments are appended first; the ``videos`` row is written
last (``commit_video``). Readers only see videos that have a row, so a crash mid-index leaves
nothing half-visible; the next run deletes the leftovers (``begin_video``) and redoes it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from framedex.errors import (
    ConfigError,
    EmptyLibraryError,
    EncoderMismatchError,
    StoreError,
    VideoNotFoundError,
)
from framedex.store import ann
from framedex.store.schema import (
    ENCODER_KEY,
    JOBS_SCHEMA,
    QUERY_LOG_SCHEMA,
    VIDEOS_SCHEMA,
    VideoRecord,
    frames_schema,
    segments_schema,
)

#: Identity fields that must match for a query or an index run to use the store.
IDENTITY_FIELDS = ("model", "pretrained", "weights_digest", "dim")


@dataclass
class FrameArrays:
    """All indexed frames of one video, in time order (``pos`` ascending)."""

    video_id: str
    pos: np.ndarray  # (N,) int32
    frame_idx: np.ndarray  # (N,) int64
    pts_sec: np.ndarray  # (N,) float64
    vectors: np.ndarray  # (N, D) float32, L2-normalised


@dataclass
class SegmentArrays:
    """The segments of one video, in time order."""

    video_id: str
    start_sec: np.ndarray
    end_sec: np.ndarray
    kind: list[str]
    vectors: np.ndarray


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def vectors_column(vectors: np.ndarray) -> pa.FixedSizeListArray:
    """(N, D) float array -> Arrow fixed-size-list column of float32."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])


def column_vectors(column: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    """Arrow fixed-size-list column -> (N, D) float32 array."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(-1, dim).astype(np.float32, copy=False)


class Store:
    """A framedex store on LanceDB.

    Args:
        uri: a local folder (created on first write) or any URI LanceDB accepts (``s3://``,
            ``gs://``, ``memory://``).
    """

    def __init__(self, uri: str | Path):
        import lancedb

        self.uri = str(uri)
        if "://" not in self.uri:
            path = Path(self.uri).expanduser()
            if path.exists() and not path.is_dir():
                raise ConfigError(f"db={self.uri!r} is invalid: it is a file, not a folder")
            self.uri = str(path)
        self._db = lancedb.connect(self.uri)
        self._write_lock = threading.RLock()
        self._tables: dict[str, Any] = {}
        self._identity: dict[str, Any] | None = None
        # The videos table is small and read on every query: keep it in memory, keyed by the
        # Lance version it was read at (a version check costs ~0.3 ms, a filtered read ~9 ms).
        self._videos_cache: tuple[int, dict[str, VideoRecord]] | None = None
        # Row maps and stats library search derives from a table version (framedex.store.ann).
        self._search_cache = ann.SearchCache()
        self._datasets: dict[str, Any] = {}  # pylance handles, see _lance

    # -- tables ---------------------------------------------------------------------------

    def _names(self) -> set[str]:
        listing = self._db.list_tables()
        names = getattr(listing, "tables", listing)
        return set(names)

    def _table(self, name: str, schema: pa.Schema | None = None):
        """Open (or, with a schema, create) a table; None when it does not exist yet."""
        table = self._tables.get(name)
        if table is not None:
            return table
        if name in self._names():
            table = self._db.open_table(name)
        elif schema is not None:
            with self._write_lock:
                table = self._db.create_table(name, schema=schema, exist_ok=True)
        else:
            return None
        self._tables[name] = table
        return table

    def _fresh(self, name: str):
        """The table at its newest version (other processes may have written)."""
        table = self._table(name)
        if table is not None:
            table.checkout_latest()
        return table

    # -- encoder identity -----------------------------------------------------------------

    def encoder_identity(self) -> dict[str, Any] | None:
        """The identity of the encoder this store was built with, or None if it is empty."""
        if self._identity is not None:  # fixed when the frames table is created
            return self._identity
        table = self._table("frames")
        if table is None:
            return None
        raw = (table.schema.metadata or {}).get(ENCODER_KEY)
        self._identity = json.loads(raw) if raw else None
        return self._identity

    def ensure_encoder(self, identity: dict[str, Any]) -> None:
        """Create the embedding tables for ``identity``, or check it matches the store's.

        Raises:
            EncoderMismatchError: the store was built with another encoder.
        """
        existing = self.encoder_identity()
        if existing is None:
            with self._write_lock:
                self._table("frames", frames_schema(identity["dim"], identity))
                self._table("segments", segments_schema(identity["dim"]))
                self._table("videos", VIDEOS_SCHEMA)
            return
        check_same_encoder(existing, identity, self.uri)

    @property
    def dim(self) -> int:
        """Embedding dimension of the store."""
        identity = self.encoder_identity()
        if identity is None:
            raise EmptyLibraryError(f"the store {self.uri} is empty: index videos first")
        return int(identity["dim"])

    # -- videos ---------------------------------------------------------------------------

    def _videos(self) -> dict[str, VideoRecord]:
        """All committed videos by id, oldest first, as of the table's newest version."""
        # The version check goes through the kept pylance handle (~5 us); lancedb's
        # checkout_latest hops to its event-loop thread (0.3 ms idle, ~3 ms on a busy box).
        ds = self._lance("videos")
        if ds is None:
            return {}
        version = ds.version
        if self._videos_cache is None or self._videos_cache[0] != version:
            rows = ds.to_table().to_pylist()
            rows.sort(key=lambda r: (r["created_at"], r["path"]))
            self._videos_cache = (version, {r["video_id"]: VideoRecord.from_row(r) for r in rows})
        return self._videos_cache[1]

    def list_videos(self, limit: int | None = None, offset: int = 0) -> list[VideoRecord]:
        """Indexed videos, oldest first."""
        videos = list(self._videos().values())
        return videos[offset : None if limit is None else offset + limit]

    def count_videos(self) -> int:
        """Number of indexed videos."""
        return len(self._videos())

    def get_video(self, video_id: str) -> VideoRecord | None:
        """The video with this id, or None."""
        return self._videos().get(video_id)

    def find_video(self, ref: str) -> VideoRecord:
        """Resolve a video id, an id prefix (>= 6 chars) or an indexed path.

        Raises:
            VideoNotFoundError: nothing matches, or a prefix is ambiguous.
        """
        video = self.get_video(ref)
        if video is not None:
            return video
        videos = self.list_videos()
        if not videos:
            raise EmptyLibraryError(f"the store {self.uri} has no indexed video: run "
                                    "`framedex index PATH` first")
        resolved = str(Path(ref).expanduser().resolve()) if "://" not in ref else ref
        by_path = [v for v in videos if v.path in (ref, resolved)]
        if by_path:
            return by_path[-1]
        if len(ref) >= 6:
            by_prefix = [v for v in videos if v.video_id.startswith(ref)]
            if len(by_prefix) == 1:
                return by_prefix[0]
        raise VideoNotFoundError(
            f"no indexed video {ref!r} in {self.uri}: give a video_id or an indexed path "
            "(`framedex videos` lists them)"
        )

    def begin_video(self, video_id: str) -> None:
        """Drop any rows a crashed or superseded run left for ``video_id``."""
        where = f"video_id = {_sql_str(video_id)}"
        with self._write_lock:
            for name in ("videos", "frames", "segments"):
                table = self._fresh(name)
                if table is not None:
                    table.delete(where)

    def add_frames(self, video_id: str, pos: np.ndarray, frame_idx: np.ndarray,
                   pts_sec: np.ndarray, vectors: np.ndarray) -> None:
        """Append a chunk of frame rows (not visible until :meth:`commit_video`)."""
        table = self._table("frames")
        n = len(pos)
        batch = pa.table(
            {
                "video_id": pa.array([video_id] * n, pa.string()),
                "pos": pa.array(pos, pa.int32()),
                "frame_idx": pa.array(frame_idx, pa.int64()),
                "pts_sec": pa.array(pts_sec, pa.float64()),
                "vector": vectors_column(vectors),
            },
            schema=table.schema,
        )
        with self._write_lock:
            table.add(batch)

    def add_segments(self, video_id: str, start_sec: np.ndarray, end_sec: np.ndarray,
                     num_frames: np.ndarray, vectors: np.ndarray, kind: str = "window") -> None:
        """Append segment rows (not visible until :meth:`commit_video`)."""
        table = self._table("segments")
        n = len(start_sec)
        if n == 0:
            return
        batch = pa.table(
            {
                "video_id": pa.array([video_id] * n, pa.string()),
                "seg": pa.array(np.arange(n), pa.int32()),
                "kind": pa.array([kind] * n, pa.string()),
                "start_sec": pa.array(start_sec, pa.float64()),
                "end_sec": pa.array(end_sec, pa.float64()),
                "num_frames": pa.array(num_frames, pa.int32()),
                "vector": vectors_column(vectors),
            },
            schema=table.schema,
        )
        with self._write_lock:
            table.add(batch)

    def commit_video(self, record: VideoRecord) -> None:
        """Write the ``videos`` row: from here on the video is visible to every reader."""
        table = self._table("videos", VIDEOS_SCHEMA)
        row = pa.Table.from_pylist([record.to_row()], schema=VIDEOS_SCHEMA)
        with self._write_lock:
            table.merge_insert("video_id").when_matched_update_all() \
                .when_not_matched_insert_all().execute(row)

    def delete_video(self, video_id: str) -> None:
        """Remove a video and all its rows (the videos row first, so it vanishes at once).

        Raises:
            VideoNotFoundError: no such video.
        """
        if self.get_video(video_id) is None:
            raise VideoNotFoundError(f"no indexed video {video_id!r} in {self.uri}")
        self.begin_video(video_id)

    # -- reads ----------------------------------------------------------------------------

    def _read_video_rows(self, table_name: str, video_id: str, columns: list[str]) -> pa.Table:
        """One filtered read of a committed video's rows (BTREE on ``video_id``).

        Raises:
            VideoNotFoundError: the video is not indexed (or not yet committed).
        """
        if self.get_video(video_id) is None:
            raise VideoNotFoundError(f"no indexed video {video_id!r} in {self.uri}")
        return (
            self._fresh(table_name).search()
            .where(f"video_id = {_sql_str(video_id)}")
            .select(columns)
            .limit(None)
            .to_arrow()
        )

    def read_frames(self, video_id: str) -> FrameArrays:
        """All frames of one indexed video in time order, in one read.

        Raises:
            VideoNotFoundError: the video is not indexed (or not yet committed).
        """
        data = self._read_video_rows("frames", video_id, ["pos", "frame_idx", "pts_sec", "vector"])
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
        return self._read_video_rows("frames", video_id, ["frame_idx"]).column(
            "frame_idx").to_numpy()

    def read_segments(self, video_id: str) -> SegmentArrays:
        """The segments of one indexed video, in time order."""
        data = self._read_video_rows("segments", video_id,
                                     ["seg", "kind", "start_sec", "end_sec", "vector"])
        order = np.argsort(data.column("start_sec").to_numpy(), kind="stable")
        return SegmentArrays(
            video_id=video_id,
            start_sec=data.column("start_sec").to_numpy()[order],
            end_sec=data.column("end_sec").to_numpy()[order],
            kind=[data.column("kind").to_pylist()[i] for i in order],
            vectors=column_vectors(data.column("vector"), self.dim)[order],
        )

    def search_frames(self, query: np.ndarray, limit: int, where: str | None = None,
                      nprobes: int | None = None, refine_factor: int | None = None) -> pa.Table:
        """Nearest frames to ``query`` across the library (ANN when an index exists).

        Returns rows of ``video_id, pos, frame_idx, pts_sec, _distance`` (cosine distance),
        best first. Rows of uncommitted videos are filtered out by the caller's ``where`` or
        by :meth:`visible`.
        """
        table = self._fresh("frames")
        if table is None:
            raise EmptyLibraryError(f"the store {self.uri} is empty: index videos first")
        q = table.search(np.asarray(query, dtype=np.float32)).distance_type("cosine")
        if nprobes is not None:
            q = q.nprobes(nprobes)
        if refine_factor is not None:
            q = q.refine_factor(refine_factor)
        if where:
            q = q.where(where, prefilter=True)
        # _distance selected explicitly: lance warns (on stderr) when it is auto-projected.
        return q.select(["video_id", "pos", "frame_idx", "pts_sec", "_distance"]) \
            .limit(limit).to_arrow()

    def build_index(self, spec: ann.IndexSpec | None = None, *,
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
            EmptyLibraryError: nothing is indexed.
            ConfigError: a bad index setting.
        """
        overrides = {k: v for k, v in (("num_partitions", num_partitions),
                                       ("num_sub_vectors", num_sub_vectors),
                                       ("index_type", index_type), ("table", table))
                     if v is not None}
        spec = ann.IndexSpec(**{**(asdict(spec) if spec else {}), **overrides})
        frames = self._fresh("frames")
        if frames is None or frames.count_rows() == 0:
            raise EmptyLibraryError(f"the store {self.uri} is empty: index videos first")
        with self._write_lock:
            for name in ("frames", "segments"):
                ds = self._lance(name)
                if ds is not None and len(ds.get_fragments()) > 1:
                    ds.optimize.compact_files()
            target = self._lance(spec.table)
            if target is None or target.count_rows() == 0:
                raise EmptyLibraryError(f"the store {self.uri} has no {spec.table}: "
                                        "index videos first")
            info = ann.build_vector_index(target, spec, self.dim)
            ann.store_frame_mean(self._lance("frames"), self.dim)
        self.ensure_scalar_indexes()
        return info

    def _lance(self, name: str) -> Any:
        """The pylance dataset of a table at its newest version, or None if it is absent.

        The handle is kept: checking for a newer version costs ~5 us, opening ~0.3 ms.
        """
        ds = self._datasets.get(name)
        if ds is not None:
            latest = ds.latest_version
            if latest != ds.version:
                ds = self._datasets[name] = ds.checkout_version(latest)
            return ds
        if "://" not in self.uri:
            import lance

            path = Path(self.uri) / f"{name}.lance"
            ds = lance.dataset(str(path)) if path.exists() else None
        else:
            table = self._fresh(name)
            ds = None if table is None else table.to_lance()
        if ds is not None:
            self._datasets[name] = ds
        return ds

    def search_tables(self) -> ann.SearchTables:
        """The datasets and row maps library search reads, at their newest versions.

        Raises:
            EmptyLibraryError: nothing is indexed.
        """
        frames = self._lance("frames")
        if frames is None:
            raise EmptyLibraryError(f"the store {self.uri} is empty: index videos first")
        return ann.open_search_tables(frames, self._lance("segments"), self.dim,
                                      self._search_cache)

    def ensure_scalar_indexes(self) -> None:
        """BTREE index on ``video_id`` so one video's frames are one indexed read.

        Built once; later appends are folded in by :meth:`optimize` (rows not yet indexed are
        still found, by a scan of the new fragments only).
        """
        from lancedb.index import BTree

        for name in ("frames", "segments"):
            table = self._fresh(name)
            if table is None or table.count_rows() == 0:
                continue
            indexed = {c for i in table.list_indices() for c in (getattr(i, "columns", []) or [])}
            with self._write_lock:
                if "video_id" not in indexed:
                    table.create_index("video_id", config=BTree())
                else:
                    table.optimize()

    def has_ann_index(self) -> bool:
        """True when the segments or the frames table has a vector index."""
        for name in ann.INDEX_TABLES:
            ds = self._lance(name)
            if ds is not None and ann.vector_index(ds) is not None:
                return True
        return False

    def optimize(self) -> None:
        """Compact fragments and fold new rows into the indexes."""
        for name in ("videos", "frames", "segments"):
            table = self._fresh(name)
            if table is not None:
                with self._write_lock:
                    table.optimize()

    # -- jobs and logs --------------------------------------------------------------------

    def table_arrow(self, name: str) -> pa.Table:
        """A whole small table (videos, jobs, query_log) as Arrow, for SQL and stats.

        Raises:
            StoreError: unknown table name.
        """
        schemas = {"videos": VIDEOS_SCHEMA, "jobs": JOBS_SCHEMA, "query_log": QUERY_LOG_SCHEMA}
        if name not in schemas:
            raise StoreError(f"no table {name!r}: use one of {', '.join(sorted(schemas))}")
        table = self._fresh(name)
        if table is None:
            return schemas[name].empty_table()
        return table.search().limit(None).to_arrow()

    def append(self, name: str, rows: list[dict[str, Any]]) -> None:
        """Append rows to the ``jobs`` or ``query_log`` table (created on first use)."""
        schema = {"jobs": JOBS_SCHEMA, "query_log": QUERY_LOG_SCHEMA}[name]
        table = self._table(name, schema)
        with self._write_lock:
            table.add(pa.Table.from_pylist(rows, schema=schema))

    def upsert(self, name: str, key: str, rows: list[dict[str, Any]]) -> None:
        """Insert or replace rows of a small table by ``key`` (used for jobs)."""
        schema = {"jobs": JOBS_SCHEMA, "videos": VIDEOS_SCHEMA}[name]
        table = self._table(name, schema)
        with self._write_lock:
            table.merge_insert(key).when_matched_update_all().when_not_matched_insert_all() \
                .execute(pa.Table.from_pylist(rows, schema=schema))


def check_same_encoder(stored: dict[str, Any], asked: dict[str, Any], where: str) -> None:
    """Refuse an encoder whose identity differs from the store's.

    Raises:
        EncoderMismatchError: naming both encoders and how to proceed.
    """
    diff = [f for f in IDENTITY_FIELDS if stored.get(f) != asked.get(f)]
    if diff:
        def name(i: dict[str, Any]) -> str:
            tag = f":{i['pretrained']}" if i.get("pretrained") else ""
            return f"{i.get('model')}{tag} (dim {i.get('dim')})"

        # The stored spec is the exact string the store was indexed with, so it loads again.
        spec = stored.get("spec") or name(stored).split(" (")[0]
        raise EncoderMismatchError(
            f"the store {where} was built with {name(stored)}, not {name(asked)}: use "
            f"--model {spec} or another --db"
        )
