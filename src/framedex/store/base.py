"""The store seam: what the indexer and the query layer need from a store, as Protocols, and
the plain types that cross it (arrays and records, never a Lance object).

:class:`~framedex.store.lance_store.LanceStore` implements it on LanceDB; a new backend
implements the same methods and passes the same tests. Layers above talk to these Protocols,
never to Lance. The seam has four parts, and each caller asks for the part it uses:

- :class:`StoreReader`: videos, their frames and segments, library search (as arrays);
- :class:`StoreWriter`: the write protocol below, and the small tables' appends;
- :class:`StoreCollections`: collections of videos ("indexes"), uploaded assets, entities;
- :class:`StoreMaintenance`: ANN and scalar indexes, compaction and retention.

:class:`Store` is all four, plus the ingest jobs (:class:`~framedex.store.jobs.JobStore`).

Writing one video (the indexer's side of the protocol)::

    claim = store.claim(video_id, wait=False)          # None: another writer holds it
    generation = store.begin_video(claim)              # records it in the claim; drops what
                                                       # a dead holder of the claim left
    store.add_frames(video_id, generation, ...)        # invisible until the commit
    store.add_segments(video_id, generation, ...)
    claim.check()                                      # still ours (not taken over)
    store.commit_video(record, segments, replaced)     # record.generation: one atomic swap
                                                       # (writes the video_vectors row first)
    store.retire_generation(video_id, claim.replaces)  # the generation it replaced, if any
    claim.release()

Claims are leases in the store itself (``store/leases.py``): the protocol holds the same on
a local disk and on object storage, across processes and machines.

A distributed writer (the Ray engine) splits the middle step: workers ``stage_frames`` and
``stage_segments`` (data files written, nothing committed) and the process holding the claim
``commit_staged`` their fragments before ``commit_video``. Staged files nobody commits (a
killed job) are unreferenced and removed by ``optimize`` when no writer is active.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import pyarrow as pa
import pyarrow.dataset as pa_dataset

from framedex.errors import check
from framedex.store.code_columns import CodeColumns
from framedex.store.location import StoreLocation
from framedex.store.locks import Claim
from framedex.store.schema import (
    AssetRecord,
    EntityCollectionRecord,
    EntityRecord,
    IndexRecord,
    MemberRecord,
    VideoRecord,
)
from framedex.values import Array, Json, JsonObject

if TYPE_CHECKING:
    from framedex.store.jobs import JobStore
    from framedex.store.locks import StoreLocks
    from framedex.store.tables import LanceTables

#: Vector index types ``build_index`` accepts.
INDEX_TYPES = ("IVF_HNSW_SQ", "IVF_PQ")
#: Tables whose ``vector`` column can carry the ANN index library search uses.
INDEX_TABLES = ("segments", "frames")


@dataclass
class FrameArrays:
    """All indexed frames of one video, in time order (``pos`` ascending)."""

    video_id: str
    pos: Array  # (N,) int32
    frame_idx: Array  # (N,) int64
    pts_sec: Array  # (N,) float64
    vectors: Array  # (N, D) float32, L2-normalised

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays."""
        return int(self.pos.nbytes + self.frame_idx.nbytes + self.pts_sec.nbytes
                   + self.vectors.nbytes)


@dataclass
class SegmentArrays:
    """The segments of one video, in time order."""

    video_id: str
    start_sec: Array
    end_sec: Array
    kind: list[str]
    vectors: Array


@dataclass(frozen=True)
class IndexSpec:
    """How ``build_index`` builds the vector index.

    Args:
        table: ``"segments"`` (default: library search ranks 6-s segments, then rescores their
            frames exactly) or ``"frames"``.
        index_type: ``"IVF_HNSW_SQ"`` (default) or ``"IVF_PQ"``.
        num_partitions: IVF partitions; None: rows / ``ROWS_PER_PARTITION``, at least 1.
        num_sub_vectors: PQ sub-vectors (IVF_PQ only); None: dim / 8.
        m: HNSW edges per node (IVF_HNSW_SQ only); None: Lance's default (20).
        ef_construction: HNSW build beam (IVF_HNSW_SQ only); None: Lance's default (150).
        codebook: centroids of the multi-part search's codebook (``store/multivector.py``);
            None: about sqrt(segments).
    """

    table: str = "segments"
    index_type: str = "IVF_HNSW_SQ"
    num_partitions: int | None = None
    num_sub_vectors: int | None = None
    m: int | None = None
    ef_construction: int | None = None
    codebook: int | None = None

    def __post_init__(self) -> None:
        check(self.table in INDEX_TABLES, "table", self.table,
              f"must be one of {', '.join(INDEX_TABLES)}")
        check(self.index_type in INDEX_TYPES, "index_type", self.index_type,
              f"must be one of {', '.join(INDEX_TYPES)}")
        for name in ("num_partitions", "num_sub_vectors", "m", "ef_construction", "codebook"):
            value = getattr(self, name)
            check(value is None or (isinstance(value, int) and not isinstance(value, bool)
                                    and value >= 1), name, value, "must be an integer >= 1")
        if self.index_type != "IVF_PQ":
            check(self.num_sub_vectors is None, "num_sub_vectors", self.num_sub_vectors,
                  "applies to IVF_PQ only")
        if self.index_type != "IVF_HNSW_SQ":
            for name in ("m", "ef_construction"):
                check(getattr(self, name) is None, name, getattr(self, name),
                      "applies to IVF_HNSW_SQ only")


@dataclass(frozen=True)
class SearchParams:
    """Query-time ANN settings (None: the index's default).

    Args:
        nprobes: IVF partitions to search.
        ef: HNSW search beam (IVF_HNSW_SQ); the search uses max(ef, k).
        refine_factor: re-rank ``k * refine_factor`` candidates with full vectors.
    """

    nprobes: int | None = None
    ef: int | None = None
    refine_factor: int | None = None

    def __post_init__(self) -> None:
        for name in ("nprobes", "ef", "refine_factor"):
            value = getattr(self, name)
            check(value is None or (isinstance(value, int) and not isinstance(value, bool)
                                    and value >= 1), name, value, "must be an integer >= 1")


@dataclass(frozen=True)
class Nearest:
    """One fetch of candidate rows for library search, best first, as arrays.

    Attributes:
        rows: the id of every row fetched (uint64), best first.
        distances: their cosine distances (float32), same order.
        found: positions into ``rows`` of the rows looked up (those not skipped).
        video_ids: the video of each looked-up row.
        generations: its generation (int64).
        t0: its start: a segment's ``start_sec``, or a frame's ``pts_sec`` (float64).
        t1: its end: a segment's ``end_sec``, or the next float after a frame's ``pts_sec``.
    """

    rows: Array
    distances: Array
    found: Array
    video_ids: list[str]
    generations: Array
    t0: Array
    t1: Array


@dataclass(frozen=True)
class VectorRows:
    """Rows of the ``video_vectors`` table (one per video generation), best first."""

    video_ids: list[str]
    generations: list[int]
    start_sec: list[Array]  # float64, per row
    end_sec: list[Array]  # float64, per row
    vectors: list[Array]  # (S, D) float32, per row

    def __len__(self) -> int:
        return len(self.video_ids)


class FrameIndex(Protocol):
    """Where each video's frames sit in one version of the frames table, in time order, as
    arrays: ``pos``, ``pts`` and ``frame_idx`` of every frame, grouped by (video, generation)."""

    @property
    def pos(self) -> Array: ...
    @property
    def pts(self) -> Array: ...
    @property
    def frame_idx(self) -> Array: ...

    def span(self, video_id: str, generation: int) -> tuple[int, int] | None:
        """[start, stop) of the generation's frames in the arrays, or None if it has none."""
        ...

    def between(self, live: dict[str, int], video_ids: list[str], t0: Array,
                t1: Array) -> list[tuple[str, int, int]]:
        """``(video_id, i0, i1)``: the live generation's frames with ``t0 <= pts < t1``, as
        video-relative indices ``[i0, i1)``, for each ``(video_ids[i], t0[i], t1[i])``."""
        ...


class SearchSnapshot(Protocol):
    """What one library search reads, at one version of the tables: arrays only.

    Attributes:
        dim: the vector dimension.
        mean: the mean frame vector (float64): a query's background level.
        index_table: the table whose vector index search uses (``segments`` first), or None
            (exact search).
        index_type: that index's type, or None.
        candidate_table: where candidates come from: the indexed table, else ``segments``
            (``frames`` when the store has no segments).
        frame_rows: the frames' positions (:class:`FrameIndex`).
    """

    @property
    def dim(self) -> int: ...
    @property
    def mean(self) -> Array: ...
    @property
    def index_table(self) -> str | None: ...
    @property
    def index_type(self) -> str | None: ...
    @property
    def candidate_table(self) -> str: ...
    @property
    def frame_rows(self) -> FrameIndex: ...

    def nearest(self, query: Array, k: int, *, params: SearchParams | None = None,
                video_ids: Sequence[str] | None = None,
                skip: Collection[int] = ()) -> Nearest:
        """The ``k`` rows of the candidate table nearest to ``query`` (of ``video_ids`` only,
        when given), looking up all but the ``skip`` row ids."""
        ...

    def frame_vectors(self, rows: Array) -> Array:
        """(len(rows), dim) float32 vectors of ``frame_rows`` positions ``rows`` (any order),
        in one read."""
        ...


class MaxSimSnapshot(Protocol):
    """What a multi-part ``and`` search reads (``framedex.query.search.search_parts``): each
    video's segments as codes of one codebook, so every video gets an approximate MaxSim score
    from a few array operations (the exact vectors of the best come from
    :meth:`StoreReader.video_segments`).

    Rows are videos (one generation each), as arrays.

    Attributes:
        centroids: (C, D) float32, unit vectors: the codebook.
        columns: every row's segment codes (indices into ``centroids``), laid out so that
            each row's best code per part takes a few array operations
            (:meth:`~framedex.store.code_columns.CodeColumns.best`).
        video_ids: the video of each row.
        live: (R,) bool: the row is its video's committed generation.
        margin: how far a part's approximate score (its best segment's centroid) may lie from
            its exact score, one part (a high quantile measured when the codebook was built).
    """

    @property
    def centroids(self) -> Array: ...
    @property
    def columns(self) -> CodeColumns: ...
    @property
    def video_ids(self) -> Sequence[str]: ...
    @property
    def live(self) -> Array: ...
    @property
    def margin(self) -> float: ...

    def rows_of(self, video_ids: Collection[str]) -> Array:
        """Row index of each of ``video_ids``' live row (int64; videos without one left
        out)."""
        ...

    def uncovered(self) -> list[str]:
        """Committed videos without a live row (indexed since the codebook was built)."""
        ...


@runtime_checkable
class StoreReader(Protocol):
    """Reads: the videos, their frames and segments, library search."""

    uri: str
    location: StoreLocation

    def exists(self) -> bool: ...
    def require(self) -> None: ...
    def encoder_identity(self) -> JsonObject | None: ...
    @property
    def dim(self) -> int: ...
    def list_videos(self, limit: int | None = None, offset: int = 0) -> list[VideoRecord]: ...
    def count_videos(self) -> int: ...
    def videos_by_id(self) -> Mapping[str, VideoRecord]: ...
    def get_video(self, video_id: str) -> VideoRecord | None: ...
    def find_video(self, ref: str) -> VideoRecord: ...
    def videos_version(self) -> int: ...
    def memory(self) -> JsonObject:
        """The store's in-memory caches (bytes, bounds), for ``/health``."""
        ...
    def read_frames(self, video_id: str) -> FrameArrays: ...
    def read_frame_idx(self, video_id: str) -> Array: ...
    def read_segments(self, video_id: str) -> SegmentArrays: ...
    def search_snapshot(self) -> SearchSnapshot: ...
    def has_ann_index(self) -> bool: ...
    def search_video_vectors(self, queries: Array, limit: int,
                             video_ids: Sequence[str] | None = None) -> VectorRows: ...
    def count_video_vectors(self) -> int: ...
    def video_segments(self, video_ids: Sequence[str], *, times: bool = True) -> VectorRows:
        """The live generation's ``video_vectors`` row of each of ``video_ids`` (exact
        vectors, one read), in that order; videos without one are left out. ``times=False``:
        the vectors only (``start_sec``/``end_sec`` empty), for scoring."""
        ...
    def maxsim_snapshot(self) -> MaxSimSnapshot | None:
        """The multi-part search's codes at the newest versions, or None when the store has
        no codebook (``build_index`` builds one): then multi-part search scans exactly."""
        ...
    def table_arrow(self, name: str, columns: Sequence[str] | None = None) -> pa.Table: ...
    def table_where(self, name: str, where: str,
                    columns: Sequence[str] | None = None) -> pa.Table: ...
    def sql_source(self, name: str) -> pa.Table | pa_dataset.Dataset: ...
    def iter_tables(self) -> Iterator[str]: ...
    def reopen(self) -> None: ...
    def close(self) -> None: ...


@runtime_checkable
class StoreWriter(Protocol):
    """Writes: the write protocol of the module docstring, and small tables' rows."""

    def ensure_encoder(self, identity: Mapping[str, Json]) -> None: ...
    def remember_model(self, spec: str) -> None: ...
    def claim(self, video_id: str, *, wait: bool,
              timeout: float | None = None) -> Claim | None: ...
    def discard_if_unused(self, made: list[Path]) -> bool: ...
    def writing(self) -> AbstractContextManager[None]: ...
    def begin_video(self, claim: Claim) -> int: ...
    def add_frames(self, video_id: str, generation: int, pos: Array,
                   frame_idx: Array, pts_sec: Array, vectors: Array) -> None: ...
    def add_segments(self, video_id: str, generation: int, start_sec: Array,
                     end_sec: Array, num_frames: Array, vectors: Array,
                     kind: str = "fixed") -> None: ...
    def stage_frames(self, video_id: str, generation: int, pos: Array,
                     frame_idx: Array, pts_sec: Array,
                     vectors: Array) -> list[str]: ...
    def stage_segments(self, video_id: str, generation: int, seg: Array,
                       start_sec: Array, end_sec: Array, num_frames: Array,
                       vectors: Array, kind: str = "fixed") -> list[str]: ...
    def commit_staged(self, name: str, fragments: Sequence[str]) -> None: ...
    def commit_video(self, record: VideoRecord, segments: SegmentArrays | None = None,
                     replaced: VideoRecord | None = None) -> None: ...
    def retire_generation(self, video_id: str, generation: int | None) -> None: ...
    def abort_video(self, video_id: str, generation: int) -> None: ...
    def delete_video(self, video_id: str) -> None: ...
    def add_path(self, path: str, video_id: str) -> None: ...
    def append(self, name: str, rows: Sequence[Mapping[str, object]]) -> None: ...
    def upsert(self, name: str, key: str, rows: Sequence[Mapping[str, object]]) -> None: ...


@runtime_checkable
class StoreCollections(Protocol):
    """Collections of videos ("indexes", as Twelve Labs calls them), uploaded assets, and
    entity collections with their entities (reference images' embeddings, for entity
    search)."""

    def list_indexes(self) -> list[IndexRecord]: ...
    def get_index(self, index_id: str) -> IndexRecord | None: ...
    def save_index(self, record: IndexRecord) -> None: ...
    def delete_index(self, index_id: str) -> None: ...
    def add_members(self, index_id: str, video_ids: Sequence[str]) -> None: ...
    def remove_member(self, index_id: str, video_id: str) -> None: ...
    def list_members(self, index_id: str | None = None) -> list[MemberRecord]: ...
    def save_asset(self, record: AssetRecord) -> None: ...
    def get_asset(self, asset_id: str) -> AssetRecord | None: ...
    def list_assets(self, created_before: datetime | None = None) -> list[AssetRecord]: ...
    def page_assets(self, limit: int, offset: int = 0) -> tuple[list[AssetRecord], int]: ...
    def delete_asset(self, asset_id: str) -> None: ...
    def list_entity_collections(self) -> list[EntityCollectionRecord]: ...
    def get_entity_collection(self, entity_collection_id: str
                              ) -> EntityCollectionRecord | None: ...
    def save_entity_collection(self, record: EntityCollectionRecord) -> None: ...
    def delete_entity_collection(self, entity_collection_id: str) -> None: ...
    def list_entities(self, entity_collection_id: str | None = None) -> list[EntityRecord]: ...
    def get_entity(self, entity_id: str) -> EntityRecord | None: ...
    def save_entity(self, record: EntityRecord) -> None: ...
    def delete_entity(self, entity_id: str) -> None: ...


@runtime_checkable
class StoreMaintenance(Protocol):
    """Indexes and upkeep: what bounds the store's read time and disk use."""

    def build_index(self, spec: IndexSpec | None = None, *,
                    num_partitions: int | None = None, num_sub_vectors: int | None = None,
                    index_type: str | None = None,
                    table: str | None = None) -> JsonObject: ...
    def ensure_scalar_indexes(self, tables: Sequence[str] = ("frames", "segments")
                              ) -> None: ...
    def backfill_video_vectors(self) -> int: ...
    def optimize(self, **options: object) -> JsonObject: ...
    def disk_usage(self) -> dict[str, int]: ...


@runtime_checkable
class Store(StoreReader, StoreWriter, StoreCollections, StoreMaintenance, Protocol):
    """A whole store: the four parts, and the ingest jobs kept in it."""

    @property
    def jobs(self) -> JobStore: ...


class LanceParts(Store, Protocol):
    """A store on Lance tables, as its own helper modules (multivector, maintenance, migrate,
    answers) see it: the :class:`Store` and the tables and leases under it. Nothing above
    ``framedex.store`` uses this."""

    tables: LanceTables
    locks: StoreLocks
