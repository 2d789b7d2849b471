"""Arrow schemas of the store's tables, and the records read back from them.

Tables (one LanceDB database, a local folder by default):

- ``videos``: one row per indexed video; a row exists only once all its frames and segments
  are written, so its presence is the visibility point (see ``Store.commit_video``).
- ``frames``: one row per indexed frame: ``video_id``, ``generation`` (which index run wrote
  it), ``pos`` (position in the video's
  index grid), ``frame_idx`` (native frame), ``pts_sec`` and the L2-normalised ``vector``
  (float32: Lance trains IVF-PQ ~7x slower on float16 columns, measured 199 s vs 27 s
  for 10k x 512 vectors; samplers then need no cast either).
- ``segments``: fixed windows (6 s by default, Twelve Labs' default) with a mean-pooled,
  re-normalised ``vector``.
- ``video_paths``: every path a content id was seen at (so any of them finds the video).
- ``jobs`` and ``query_log``: ingest jobs of the HTTP API, and one row per search/select
  (with the rollout ``arm`` that chose its sampler, if any).
- ``answers`` and ``answer_feedback``: one row per ``ask`` (a video LLM's answer, or the
  cached answer it reused) and the good/bad ratings users gave answers (``store.answers``).
- ``video_vectors``: one row per video generation holding the video's segment vectors as a
  LanceDB *multivector* column (with their ``start_sec``/``end_sec``), for MaxSim
  late-interaction search over multi-part queries ("videos that show all of these"). Written
  by ``commit_video`` just before the ``videos`` row, under the same generation, so it follows
  the same visibility rule as frames and segments.
- ``indexes`` and ``index_members``: named collections of videos (a Twelve Labs *index*); a
  video can be in several, and deleting or renaming an index never touches its videos.
  Membership counts only for committed videos.
- ``assets``: uploaded files not yet indexed (a Twelve Labs *asset*).
- ``entity_collections`` and ``entities``: named sets of entities (a person, a product, a
  logo), each entity the embeddings of its reference images (assets), searched for with
  ``<@entity_id>`` in a query (Twelve Labs' *entity search*). An entity keeps its reference
  vectors and the encoder that made them, so a search needs neither the files nor the image
  tower.

**Generations.** Every index run of a video writes its rows under a new ``generation`` number;
the ``videos`` row names the generation that is live. A re-index therefore writes its new rows
beside the old ones, swaps the ``videos`` row in one commit, and only then deletes the old rows:
readers see the old index or the new one, never neither, and a failed re-index leaves the old one
live. Rows of a generation no ``videos`` row names (a killed run) are invisible and are swept by
``framedex optimize``.

The encoder identity lives in the ``frames`` table's schema metadata (``framedex.encoder``),
as LanceDB does for its embedding functions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, TypedDict

import numpy as np
import pyarrow as pa

#: Tables holding rows per (video, generation): written before the commit, swept after it.
GENERATION_TABLES = ("frames", "segments", "video_vectors")

ENCODER_KEY = b"framedex.encoder"
SCHEMA_VERSION_KEY = b"framedex.schema_version"
#: 2: ``generation`` on frames, segments and videos; ``file_size`` on videos; ``video_paths``;
#: ``cache_hit`` on query_log. 3: ``file_dev``, ``file_ino``, ``file_mtime_ns`` on videos (the
#: source file's identity, checked at every later open).
SCHEMA_VERSION = "3"


def sql_str(value: str) -> str:
    """``value`` as a quoted SQL string literal (the one quoting rule for Lance filters: every
    string that goes into a filter goes through here)."""
    return "'" + value.replace("'", "''") + "'"


def sql_strs(values: Iterable[str]) -> str:
    """``('a', 'b')``: a parenthesised list of quoted literals, for ``IN``."""
    return "(" + ", ".join(sql_str(v) for v in values) + ")"


def sql_timestamp(value: datetime) -> str:
    """``TIMESTAMP '2026-01-02 03:04:05.000006'``: a timestamp literal in UTC (``value`` is
    timezone-aware, as every timestamp framedex makes)."""
    return f"TIMESTAMP '{value.astimezone(timezone.utc).strftime('%Y-%m-%d %H:%M:%S.%f')}'"


def column_vectors(column: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    """Arrow fixed-size-list column -> (N, D) float32 array."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    flat = column.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(-1, dim).astype(np.float32, copy=False)


def frames_schema(dim: int, encoder: dict[str, Any]) -> pa.Schema:
    """Schema of the ``frames`` table, carrying the encoder identity in its metadata."""
    return pa.schema(
        [
            ("video_id", pa.string()),
            ("generation", pa.int64()),
            ("pos", pa.int32()),
            ("frame_idx", pa.int64()),
            ("pts_sec", pa.float64()),
            ("vector", pa.list_(pa.float32(), dim)),
        ],
        metadata={ENCODER_KEY: json.dumps(encoder, sort_keys=True).encode(),
                  SCHEMA_VERSION_KEY: SCHEMA_VERSION.encode()},
    )


def segments_schema(dim: int) -> pa.Schema:
    """Schema of the ``segments`` table."""
    return pa.schema(
        [
            ("video_id", pa.string()),
            ("generation", pa.int64()),
            ("seg", pa.int32()),
            ("kind", pa.string()),
            ("start_sec", pa.float64()),
            ("end_sec", pa.float64()),
            ("num_frames", pa.int32()),
            ("vector", pa.list_(pa.float32(), dim)),
        ]
    )


def vectors_column(vectors: np.ndarray) -> pa.FixedSizeListArray:
    """(N, D) float array -> Arrow fixed-size-list column of float32."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])


def frame_rows(schema: pa.Schema, video_id: str, generation: int, pos: np.ndarray,
               frame_idx: np.ndarray, pts_sec: np.ndarray, vectors: np.ndarray) -> pa.Table:
    """Rows of the ``frames`` table for one video's frames, with the table's ``schema``."""
    n = len(pos)
    return pa.table(
        {
            "video_id": pa.array([video_id] * n, pa.string()),
            "generation": pa.array(np.full(n, generation, np.int64)),
            "pos": pa.array(np.asarray(pos, np.int32)),
            "frame_idx": pa.array(np.asarray(frame_idx, np.int64)),
            "pts_sec": pa.array(np.asarray(pts_sec, np.float64)),
            "vector": vectors_column(vectors),
        },
        schema=schema,
    )


def segment_rows(schema: pa.Schema, video_id: str, generation: int, seg: np.ndarray,
                 start_sec: np.ndarray, end_sec: np.ndarray, num_frames: np.ndarray,
                 vectors: np.ndarray, kind: str = "fixed") -> pa.Table:
    """Rows of the ``segments`` table for one video's segments (``seg``: their positions
    among the video's segments), with the table's ``schema``."""
    n = len(seg)
    return pa.table(
        {
            "video_id": pa.array([video_id] * n, pa.string()),
            "generation": pa.array(np.full(n, generation, np.int64)),
            "seg": pa.array(np.asarray(seg, np.int32)),
            "kind": pa.array([kind] * n, pa.string()),
            "start_sec": pa.array(np.asarray(start_sec, np.float64)),
            "end_sec": pa.array(np.asarray(end_sec, np.float64)),
            "num_frames": pa.array(np.asarray(num_frames, np.int32)),
            "vector": vectors_column(vectors),
        },
        schema=schema,
    )


VIDEOS_SCHEMA = pa.schema(
    [
        ("video_id", pa.string()),
        ("path", pa.string()),
        ("duration", pa.float64()),
        ("frame_rate", pa.float64()),
        ("num_frames", pa.int64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("start_sec", pa.float64()),
        ("is_vfr", pa.bool_()),
        ("index_fps", pa.float64()),
        ("num_indexed", pa.int32()),
        ("decoder", pa.string()),
        ("encoder", pa.string()),
        ("status", pa.string()),
        ("metadata", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("generation", pa.int64()),
        ("file_size", pa.int64()),
        ("file_dev", pa.int64()),
        ("file_ino", pa.int64()),
        ("file_mtime_ns", pa.int64()),
    ]
)

VIDEO_PATHS_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("video_id", pa.string()),
        ("seen_at", pa.timestamp("us", tz="UTC")),
    ]
)

JOBS_SCHEMA = pa.schema(
    [
        ("job_id", pa.string()),
        ("status", pa.string()),
        ("source", pa.string()),
        ("path", pa.string()),
        ("progress", pa.float64()),
        ("video_id", pa.string()),
        ("error", pa.string()),
        ("params", pa.string()),
        ("attempts", pa.int32()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)

QUERY_LOG_SCHEMA = pa.schema(
    [
        ("ts", pa.timestamp("us", tz="UTC")),
        ("kind", pa.string()),
        ("sampler", pa.string()),
        ("budget", pa.int32()),
        ("tokens", pa.int32()),
        ("video_id", pa.string()),
        ("query", pa.string()),
        ("latency_ms", pa.float64()),
        ("result_size", pa.int32()),
        ("params", pa.string()),
        ("cache_hit", pa.bool_()),
        # The rollout arm that chose the sampler (None: the request named it, or no rollout).
        # Added after schema version 2: an older table gets it on its next append.
        ("arm", pa.string()),
    ]
)

#: One row per ``ask``: the model's answer (``cached`` false: the cache entry later asks with
#: the same ``cache_key`` reuse) or an answer served from the cache (``cached`` true,
#: ``source_id`` the row it came from). Timestamps and frame numbers are the frames the model
#: saw; tokens are what this ask spent (0 for a cached one); times are milliseconds (select:
#: the sampler; deliver: decoding and encoding the frames; model: the endpoint's call);
#: ``options`` is the JSON of the request options in the key (sampler params, span,
#: max_tokens, temperature, format, system).
ANSWERS_SCHEMA = pa.schema(
    [
        ("answer_id", pa.string()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("cache_key", pa.string()),
        ("cached", pa.bool_()),
        ("source_id", pa.string()),
        ("video_id", pa.string()),
        ("generation", pa.int64()),
        ("question", pa.string()),
        ("sampler", pa.string()),
        ("arm", pa.string()),
        ("budget", pa.int32()),
        ("tokens", pa.int32()),
        ("model", pa.string()),
        ("endpoint", pa.string()),
        ("answer", pa.string()),
        ("finish_reason", pa.string()),
        ("timestamps", pa.list_(pa.float64())),
        ("frame_idx", pa.list_(pa.int64())),
        ("tiers", pa.list_(pa.string())),
        ("prompt_tokens", pa.int32()),
        ("completion_tokens", pa.int32()),
        ("select_ms", pa.float64()),
        ("deliver_ms", pa.float64()),
        ("model_ms", pa.float64()),
        ("latency_ms", pa.float64()),
        ("options", pa.string()),
    ]
)

class AnswerRow(TypedDict):
    """One row of ``answers`` (:data:`ANSWERS_SCHEMA`), as it is written and read back."""

    answer_id: str
    ts: datetime
    cache_key: str
    cached: bool
    source_id: str | None
    video_id: str
    generation: int
    question: str
    sampler: str
    arm: str | None
    budget: int | None
    tokens: int | None
    model: str
    endpoint: str
    answer: str
    finish_reason: str | None
    timestamps: list[float] | None
    frame_idx: list[int] | None
    tiers: list[str] | None
    prompt_tokens: int | None
    completion_tokens: int | None
    select_ms: float | None
    deliver_ms: float | None
    model_ms: float | None
    latency_ms: float | None
    options: str


#: A user's rating of an answer (``good`` or ``bad``); the newest rating of an answer counts.
ANSWER_FEEDBACK_SCHEMA = pa.schema(
    [
        ("answer_id", pa.string()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("rating", pa.string()),
        ("comment", pa.string()),
    ]
)


INDEXES_SCHEMA = pa.schema(
    [
        ("index_id", pa.string()),
        ("name", pa.string()),
        ("models", pa.string()),  # JSON list of {"model_name", "model_options"}
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)

INDEX_MEMBERS_SCHEMA = pa.schema(
    [
        ("index_id", pa.string()),
        ("video_id", pa.string()),
        ("added_at", pa.timestamp("us", tz="UTC")),
    ]
)

ASSETS_SCHEMA = pa.schema(
    [
        ("asset_id", pa.string()),
        ("filename", pa.string()),
        ("path", pa.string()),
        ("size", pa.int64()),
        ("method", pa.string()),
        ("metadata", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
    ]
)


ENTITY_COLLECTIONS_SCHEMA = pa.schema(
    [
        ("entity_collection_id", pa.string()),
        ("name", pa.string()),
        ("description", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)

ENTITIES_SCHEMA = pa.schema(
    [
        ("entity_id", pa.string()),
        ("entity_collection_id", pa.string()),
        ("name", pa.string()),
        ("description", pa.string()),
        ("metadata", pa.string()),  # JSON object of scalars
        ("asset_ids", pa.list_(pa.string())),
        # one L2-normalised vector per reference image, in asset_ids' order (any dimension:
        # the table does not depend on the store's encoder, the encoder column names it)
        ("vectors", pa.list_(pa.list_(pa.float32()))),
        ("encoder", pa.string()),  # JSON identity of the encoder that embedded the images
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("updated_at", pa.timestamp("us", tz="UTC")),
    ]
)


def video_vectors_schema(dim: int) -> pa.Schema:
    """Schema of the ``video_vectors`` table: a multivector column of the segment vectors."""
    return pa.schema(
        [
            ("video_id", pa.string()),
            ("generation", pa.int64()),
            ("start_sec", pa.list_(pa.float64())),
            ("end_sec", pa.list_(pa.float64())),
            ("vectors", pa.list_(pa.list_(pa.float32(), dim))),
        ]
    )


def now_utc() -> datetime:
    """The current time, timezone-aware UTC (what every timestamp column holds)."""
    return datetime.now(timezone.utc)


@dataclass
class VideoRecord:
    """One row of the ``videos`` table, as Python sees it."""

    video_id: str
    path: str
    duration: float
    frame_rate: float
    num_frames: int
    width: int
    height: int
    start_sec: float
    is_vfr: bool
    index_fps: float
    num_indexed: int
    decoder: str
    encoder: str
    status: str = "ready"
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=now_utc)
    #: The index run whose frames and segments are live (see the module docstring).
    generation: int = 0
    #: Size of the source file when it was indexed (a changed file is not served as this one).
    file_size: int | None = None
    #: The source file's device, inode and modification time (ns) when it was indexed: with
    #: the size, what every later open checks, so another file put at the same path (a
    #: directory swapped for a link, a hard link, a rewrite) is never served as this video.
    #: None in stores indexed before schema version 3 (the size and path are checked then).
    file_dev: int | None = None
    file_ino: int | None = None
    file_mtime_ns: int | None = None

    def to_row(self) -> dict[str, Any]:
        """The Arrow row for this record."""
        row = asdict(self)
        row["metadata"] = json.dumps(self.metadata, sort_keys=True)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> VideoRecord:
        """Build from a row read back from the table."""
        row = dict(row)
        row["metadata"] = json.loads(row.get("metadata") or "{}")
        row["generation"] = int(row.get("generation") or 0)
        return cls(**{k: row[k] for k in cls.__dataclass_fields__ if k in row})

    def summary(self) -> dict[str, Any]:
        """The fields ``framedex videos --json`` prints."""
        return {
            "video_id": self.video_id,
            "path": self.path,
            "duration": round(self.duration, 3),
            "frame_rate": round(self.frame_rate, 3),
            "index_fps": self.index_fps,
            "num_frames": self.num_frames,
            "num_indexed": self.num_indexed,
        }


@dataclass
class IndexRecord:
    """One row of the ``indexes`` table: a named collection of videos."""

    index_id: str
    name: str
    models: list[dict[str, Any]] = field(default_factory=list)
    created_at: datetime = field(default_factory=now_utc)
    updated_at: datetime = field(default_factory=now_utc)

    def to_row(self) -> dict[str, Any]:
        """The Arrow row for this record."""
        row = asdict(self)
        row["models"] = json.dumps(self.models, sort_keys=True)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> IndexRecord:
        """Build from a row read back from the table."""
        return cls(index_id=row["index_id"], name=row["name"],
                   models=json.loads(row.get("models") or "[]"),
                   created_at=row["created_at"], updated_at=row["updated_at"])


@dataclass
class MemberRecord:
    """One row of the ``index_members`` table: ``video_id`` is in index ``index_id``."""

    index_id: str
    video_id: str
    added_at: datetime = field(default_factory=now_utc)


@dataclass
class AssetRecord:
    """One row of the ``assets`` table: a file kept on the server, indexed on request."""

    asset_id: str
    filename: str
    path: str
    size: int
    method: str = "direct"
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=now_utc)

    def to_row(self) -> dict[str, Any]:
        """The Arrow row for this record."""
        row = asdict(self)
        row["metadata"] = json.dumps(self.metadata, sort_keys=True)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> AssetRecord:
        """Build from a row read back from the table."""
        row = dict(row)
        row["metadata"] = json.loads(row.get("metadata") or "{}")
        return cls(**{k: row[k] for k in cls.__dataclass_fields__ if k in row})


@dataclass
class EntityCollectionRecord:
    """One row of the ``entity_collections`` table: a named set of entities."""

    entity_collection_id: str
    name: str
    description: str | None = None
    created_at: datetime = field(default_factory=now_utc)
    updated_at: datetime = field(default_factory=now_utc)

    def to_row(self) -> dict[str, Any]:
        """The Arrow row for this record."""
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> EntityCollectionRecord:
        """Build from a row read back from the table."""
        return cls(**{k: row[k] for k in cls.__dataclass_fields__ if k in row})


@dataclass
class EntityRecord:
    """One row of the ``entities`` table: an entity and its reference images' embeddings.

    Attributes:
        vectors: (R, D) float32, one L2-normalised vector per reference image, in the order
            of ``asset_ids``.
        encoder: the identity of the encoder that embedded them (checked against the store's
            at every search).
    """

    entity_id: str
    entity_collection_id: str
    name: str
    asset_ids: list[str]
    vectors: np.ndarray
    encoder: dict[str, Any]
    description: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=now_utc)
    updated_at: datetime = field(default_factory=now_utc)

    def to_row(self) -> dict[str, Any]:
        """The Arrow row for this record."""
        return {"entity_id": self.entity_id, "entity_collection_id": self.entity_collection_id,
                "name": self.name, "description": self.description,
                "metadata": json.dumps(self.metadata, sort_keys=True),
                "asset_ids": list(self.asset_ids),
                "vectors": np.asarray(self.vectors, np.float32).tolist(),
                "encoder": json.dumps(self.encoder, sort_keys=True),
                "created_at": self.created_at, "updated_at": self.updated_at}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> EntityRecord:
        """Build from a row read back from the table."""
        vectors = np.asarray(row.get("vectors") or [], np.float32)
        return cls(entity_id=row["entity_id"], entity_collection_id=row["entity_collection_id"],
                   name=row["name"], asset_ids=list(row.get("asset_ids") or []),
                   vectors=vectors.reshape(len(vectors), -1) if len(vectors) else vectors,
                   encoder=json.loads(row.get("encoder") or "{}"),
                   description=row.get("description"),
                   metadata=json.loads(row.get("metadata") or "{}"),
                   created_at=row["created_at"], updated_at=row["updated_at"])
