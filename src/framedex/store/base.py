"""The store seam: what the indexer and the query layer need from a store, as a Protocol.

:class:`~framedex.store.lance_store.LanceStore` implements it on LanceDB; a new backend
implements the same methods and passes the same tests. Layers above talk to ``Store``, never
to Lance.

Writing one video (the indexer's side of the protocol)::

    claim = store.claim(video_id, wait=False)          # None: another writer has it
    generation = store.begin_video(video_id)           # sweeps a killed run's rows
    store.add_frames(video_id, generation, ...)        # invisible until the commit
    store.add_segments(video_id, generation, ...)
    store.commit_video(record)                         # record.generation: one atomic swap
    store.retire_generations(video_id, keep=generation)
    claim.release()
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from framedex.store.location import StoreLocation
from framedex.store.locks import Claim
from framedex.store.schema import VideoRecord


@dataclass
class FrameArrays:
    """All indexed frames of one video, in time order (``pos`` ascending)."""

    video_id: str
    pos: np.ndarray  # (N,) int32
    frame_idx: np.ndarray  # (N,) int64
    pts_sec: np.ndarray  # (N,) float64
    vectors: np.ndarray  # (N, D) float32, L2-normalised

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays."""
        return int(self.pos.nbytes + self.frame_idx.nbytes + self.pts_sec.nbytes
                   + self.vectors.nbytes)


@dataclass
class SegmentArrays:
    """The segments of one video, in time order."""

    video_id: str
    start_sec: np.ndarray
    end_sec: np.ndarray
    kind: list[str]
    vectors: np.ndarray


@runtime_checkable
class Store(Protocol):
    """What framedex needs from a store (see the module docstring for the write protocol)."""

    uri: str
    location: StoreLocation

    # -- location and encoder ---------------------------------------------------------------
    def exists(self) -> bool: ...
    def require(self) -> None: ...
    def encoder_identity(self) -> dict[str, Any] | None: ...
    def ensure_encoder(self, identity: Mapping[str, Any]) -> None: ...
    @property
    def dim(self) -> int: ...

    # -- videos -----------------------------------------------------------------------------
    def list_videos(self, limit: int | None = None, offset: int = 0) -> list[VideoRecord]: ...
    def count_videos(self) -> int: ...
    def get_video(self, video_id: str) -> VideoRecord | None: ...
    def find_video(self, ref: str) -> VideoRecord: ...
    def videos_version(self) -> int: ...

    # -- reads ------------------------------------------------------------------------------
    def read_frames(self, video_id: str) -> FrameArrays: ...
    def read_frame_idx(self, video_id: str) -> np.ndarray: ...
    def read_segments(self, video_id: str) -> SegmentArrays: ...
    def search_frames(self, query: np.ndarray, limit: int, where: str | None = None,
                      nprobes: int | None = None,
                      refine_factor: int | None = None) -> pa.Table: ...
    def has_ann_index(self) -> bool: ...

    # -- writes -----------------------------------------------------------------------------
    def claim(self, video_id: str, *, wait: bool) -> Claim | None: ...
    def writing(self) -> AbstractContextManager[None]: ...
    def begin_video(self, video_id: str) -> int: ...
    def add_frames(self, video_id: str, generation: int, pos: np.ndarray,
                   frame_idx: np.ndarray, pts_sec: np.ndarray, vectors: np.ndarray) -> None: ...
    def add_segments(self, video_id: str, generation: int, start_sec: np.ndarray,
                     end_sec: np.ndarray, num_frames: np.ndarray, vectors: np.ndarray,
                     kind: str = "fixed") -> None: ...
    def commit_video(self, record: VideoRecord) -> None: ...
    def retire_generations(self, video_id: str, keep: int) -> None: ...
    def abort_video(self, video_id: str, generation: int) -> None: ...
    def delete_video(self, video_id: str) -> None: ...
    def add_path(self, path: str, video_id: str) -> None: ...

    # -- small tables, SQL and maintenance ----------------------------------------------------
    def table_arrow(self, name: str, columns: Sequence[str] | None = None) -> pa.Table: ...
    def sql_source(self, name: str) -> Any: ...
    def append(self, name: str, rows: list[dict[str, Any]]) -> None: ...
    def upsert(self, name: str, key: str, rows: list[dict[str, Any]]) -> None: ...
    def build_index(self, num_partitions: int | None = None,
                    num_sub_vectors: int | None = None,
                    index_type: str = "IVF_PQ") -> dict[str, Any]: ...
    def ensure_scalar_indexes(self) -> None: ...
    def optimize(self, **options: Any) -> dict[str, Any]: ...
    def disk_usage(self) -> dict[str, int]: ...
    def iter_tables(self) -> Iterator[str]: ...
