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
- ``jobs`` and ``query_log``: ingest jobs of the HTTP API, and one row per search/select.

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
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

ENCODER_KEY = b"framedex.encoder"
SCHEMA_VERSION_KEY = b"framedex.schema_version"
#: 2: ``generation`` on frames, segments and videos; ``file_size`` on videos; ``video_paths``;
#: ``cache_hit`` on query_log.
SCHEMA_VERSION = "2"


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
