"""ANN indexes and the row maps library search reads through (pylance datasets, no lancedb).

Library search (``framedex.query.search``) asks three things of the store, all answered here
from a :class:`lance.LanceDataset` opened at its newest version:

1. *candidates*: the nearest segment (or frame) rows to the query, from the vector index when
   one is built (:func:`nearest_rows`), as bare row ids and approximate distances.
   Materialising columns through Lance costs more than the ANN search itself on a store of
   many small fragments (measured 9 ms for 100 rows over 15 fragments against 1.1 ms for the
   HNSW search), so the columns come from an in-memory :class:`RowMap` instead;
2. *frames by time*: which frame rows of a video lie in ``[t0, t1)`` (:class:`FrameRows`), to
   rescore them exactly;
3. the frames' exact vectors (:meth:`FrameRows.take_vectors`), one batched ``take``.

Row maps are built by one scan of a few scalar columns (1M frames: ~55 ms) and cached per
table version by :class:`SearchCache`; a new version (an append, a compaction) rebuilds them.

Index building (:func:`build_vector_index`, called by ``Store.build_index``): the decision
and its numbers are in ``docs/search-benchmark.md`` (``scripts/bench_search.py``, 1M frames,
2 busy cores). IVF_HNSW_SQ on the *segments* table (1M frames = 167k segments, one HNSW
graph) built in 90 s where the first version's IVF-PQ on the frames took 695 s in the same
run (IVF-PQ on the segments: 314 s; IVF_HNSW_SQ on the frames: 741 s; 4 partitions instead
of 1: 277 s); library search over it: recall@10 1.000, p50 6.7 ms.

Example::

    ds = lance.dataset("framedex.db/segments.lance")
    build_vector_index(ds, IndexSpec(table="segments"))
    addr, dist = nearest_rows(ds, query, 80)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute

from framedex.store.base import (
    IndexSpec,
    Nearest,
    SearchParams,
)
from framedex.store.schema import sql_strs

#: Rows per IVF partition when ``num_partitions`` is not given. HNSW: one graph per ~1M
#: rows (1M frames = 167k segments = one partition; more partitions only added k-means time).
#: PQ: ~4K rows per partition (LanceDB's guidance).
ROWS_PER_PARTITION = {"IVF_HNSW_SQ": 1_000_000, "IVF_PQ": 4096}
#: Dataset config key holding the mean frame vector (see :func:`frame_mean`).
FRAME_MEAN_KEY = "framedex.frame_mean"


def build_vector_index(ds: Any, spec: IndexSpec, dim: int) -> dict[str, Any]:
    """Build (or replace) the cosine vector index on ``ds``'s ``vector`` column.

    Args:
        ds: the Lance dataset of ``spec.table``.
        spec: what to build.
        dim: the vector dimension (for the PQ default).

    Returns:
        ``{"table", "index_type", "rows", "num_partitions", ..., "seconds"}``.
    """
    rows = ds.count_rows()
    parts = spec.num_partitions or max(1, rows // ROWS_PER_PARTITION[spec.index_type])
    kwargs: dict[str, Any] = {"num_partitions": parts}
    if spec.index_type == "IVF_PQ":
        kwargs["num_sub_vectors"] = spec.num_sub_vectors or max(1, dim // 8)
    else:
        kwargs.update({k: v for k, v in (("m", spec.m), ("ef_construction",
                                                          spec.ef_construction)) if v})
    t0 = time.perf_counter()
    ds.create_index("vector", index_type=spec.index_type, metric="cosine", replace=True,
                    **kwargs)
    return {"table": spec.table, "index_type": spec.index_type, "rows": rows, **kwargs,
            "seconds": round(time.perf_counter() - t0, 1)}


def vector_index(ds: Any) -> str | None:
    """The type of ``ds``'s vector index on ``vector`` (e.g. ``"IVF_HNSW_SQ"``), or None."""
    for index in ds.describe_indices():
        if list(index.field_names) == ["vector"] and index.index_type.startswith("IVF"):
            return str(index.index_type)
    return None


def nearest_rows(ds: Any, query: np.ndarray, k: int, *, params: SearchParams | None = None,
                 where: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``ds`` nearest to ``query`` by cosine, best first.

    Uses the vector index when there is one (rows appended since it was built are searched
    flat, as Lance does), else a flat (exact) scan.

    Args:
        ds: a Lance dataset with a ``vector`` column.
        query: (D,) query vector.
        k: number of rows.
        params: ANN settings.
        where: SQL filter applied before the search (e.g. ``video_id IN (...)``).

    Returns:
        (row ids as uint64, cosine distances as float32), best first.
    """
    nearest: dict[str, Any] = {"column": "vector", "q": np.asarray(query, dtype=np.float32),
                               "k": int(k), "metric": "cosine"}
    params = params or SearchParams()
    for key, value in asdict(params).items():
        if value is not None:
            nearest[key] = value
    if "ef" in nearest:
        nearest["ef"] = max(nearest["ef"], int(k))  # Lance refuses ef < k
    # Row ids come straight from the index; row addresses would cost a read of the table.
    table = ds.to_table(nearest=nearest, columns=["_distance"], with_row_id=True,
                        filter=where, prefilter=bool(where),
                        disable_scoring_autoprojection=True)
    return (table.column("_rowid").to_numpy(),
            table.column("_distance").to_numpy().astype(np.float32, copy=False))


class RowMap:
    """Scalar columns of every row of one table version, looked up by row id.

    Args:
        table: the columns, with ``_rowid``, in any order.
    """

    def __init__(self, table: pa.Table):
        addr = table.column("_rowid").to_numpy()
        order = np.argsort(addr, kind="stable")
        self.addr = addr[order]
        self.table = table.take(pa.array(order)).drop_columns(["_rowid"])

    @classmethod
    def scan(cls, ds: Any, columns: list[str]) -> RowMap:
        """One scan of ``columns`` (with row ids) of ``ds``."""
        return cls(ds.to_table(columns=columns, with_row_id=True))

    @property
    def nbytes(self) -> int:
        """Memory held by the map."""
        return int(self.addr.nbytes + self.table.nbytes)

    def lookup(self, addr: np.ndarray) -> tuple[pa.Table, np.ndarray]:
        """Rows for row ids ``addr`` (same order); ids not in the map are dropped.

        Returns:
            (the rows, the positions in ``addr`` they came from).
        """
        idx = np.searchsorted(self.addr, addr)
        idx = np.minimum(idx, max(len(self.addr) - 1, 0))
        found = np.flatnonzero((len(self.addr) > 0) & (self.addr[idx] == addr))
        return self.table.take(pa.array(idx[found])), found


class FrameRows:
    """Where each video's frames sit in one version of the frames dataset, in time order.

    Built from one scan of ``video_id, generation, pos, pts_sec, frame_idx`` in dataset order,
    so a frame's index in that scan is its offset for :meth:`lance.LanceDataset.take` (which
    counts live rows). Frames are grouped by (video, generation): a re-index writes its new
    rows beside the live ones, and search reads only the generation the ``videos`` row names.

    Args:
        table: ``video_id, generation, pos, pts_sec, frame_idx`` of every row, in dataset order.
    """

    COLUMNS: ClassVar[list[str]] = ["video_id", "generation", "pos", "pts_sec", "frame_idx"]

    def __init__(self, table: pa.Table):
        key = pa.compute.binary_join_element_wise(
            table.column("video_id"), pa.compute.cast(table.column("generation"), pa.string()),
            "\x00").combine_chunks().dictionary_encode()
        codes = key.indices.to_numpy(zero_copy_only=False)
        pts = table.column("pts_sec").to_numpy()
        order = np.lexsort((pts, codes))
        self.offsets = order.astype(np.int64)
        self.pts = pts[order].astype(np.float64)
        self.pos = table.column("pos").to_numpy()[order]
        self.frame_idx = table.column("frame_idx").to_numpy()[order]
        sorted_codes = codes[order]
        names = key.dictionary.to_pylist()
        starts = np.searchsorted(sorted_codes, np.arange(len(names)), side="left")
        stops = np.searchsorted(sorted_codes, np.arange(len(names)), side="right")
        self._span: dict[tuple[str, int], tuple[int, int]] = {}
        for name, a, b in zip(names, starts.tolist(), stops.tolist(), strict=True):
            if b > a:
                vid, gen = name.rsplit("\x00", 1)
                self._span[(vid, int(gen))] = (a, b)

    @classmethod
    def scan(cls, ds: Any) -> FrameRows:
        """One scan of the frames dataset's scalar columns."""
        return cls(ds.to_table(columns=cls.COLUMNS))

    @property
    def nbytes(self) -> int:
        """Memory held by the map (its arrays, and ~100 bytes per video for the spans)."""
        return int(self.offsets.nbytes + self.pts.nbytes + self.pos.nbytes
                   + self.frame_idx.nbytes + 100 * len(self._span))

    def span(self, video_id: str, generation: int) -> tuple[int, int] | None:
        """[start, stop) of the generation's frames in this map, or None if it has none."""
        return self._span.get((video_id, generation))

    def between(self, live: dict[str, int], video_ids: list[str], t0: np.ndarray,
                t1: np.ndarray) -> list[tuple[str, int, int]]:
        """For each ``(video_ids[i], t0[i], t1[i])``: ``(video_id, i0, i1)``, the live
        generation's frames with ``t0 <= pts_sec < t1`` as video-relative indices
        ``[i0, i1)``. Videos not in ``live`` (video id -> live generation), videos without
        frames here and empty ranges are left out."""
        out: list[tuple[str, int, int]] = []
        rows: dict[str, list[int]] = {}
        for i, vid in enumerate(video_ids):
            rows.setdefault(vid, []).append(i)
        for vid, idx in rows.items():
            span = self._span.get((vid, live[vid])) if vid in live else None
            if span is None:
                continue
            pts = self.pts[span[0]:span[1]]
            a = np.searchsorted(pts, t0[idx], side="left").tolist()
            b = np.searchsorted(pts, t1[idx], side="left").tolist()
            out.extend((vid, i0, i1) for i0, i1 in zip(a, b, strict=True) if i1 > i0)
        return out

    def take_vectors(self, ds: Any, rows: np.ndarray, dim: int) -> np.ndarray:
        """(len(rows), dim) float32 vectors of map rows ``rows`` (any order), one ``take``."""
        if len(rows) == 0:
            return np.zeros((0, dim), dtype=np.float32)
        offsets = self.offsets[rows]
        ordered = bool((offsets[1:] > offsets[:-1]).all())  # the usual case: one video, in order
        order = None if ordered else np.argsort(offsets, kind="stable")
        table = ds.take(offsets if order is None else offsets[order], columns=["vector"])
        column = table.column("vector")
        chunk = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        flat = chunk.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
        if order is None:
            return flat
        vectors = np.empty((len(rows), dim), dtype=np.float32)
        vectors[order] = flat
        return vectors


class SearchCache:
    """Per-store cache of objects derived from one version of a table (row maps, stats).

    One entry per key, for the newest version seen: its memory is bounded by the library's
    size (~40 bytes per frame, ~60 per segment), never by the number of queries or versions.
    """

    def __init__(self) -> None:
        self._items: dict[str, tuple[object, Any]] = {}

    def get(self, key: str, version: object, build: Callable[[], Any]) -> Any:
        """The cached value for ``key`` at ``version`` (a table version, or a tuple of them);
        ``build()`` it on a miss."""
        item = self._items.get(key)
        if item is None or item[0] != version:
            item = (version, build())
            self._items[key] = item
        return item[1]

    def nbytes(self) -> int:
        """Memory held by the cached objects (arrays, row maps)."""
        return sum(int(getattr(value, "nbytes", 0)) for _, value in list(self._items.values()))

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class SearchTables:
    """What one library search reads: the datasets at one version and their row maps, seen
    from outside the store only as arrays (:class:`~framedex.store.base.SearchSnapshot`).

    Attributes:
        frame_rows: where each video's frames are (:class:`FrameRows`).
        index_table: ``"segments"`` or ``"frames"``: the table whose vector index search
            uses (segments first), or None when neither has one (exact search).
        index_type: that index's type (``"IVF_HNSW_SQ"``, ``"IVF_PQ"``), or None.
        candidate_table: the table candidates come from.
        mean: the mean frame vector (float64).
        dim: the vector dimension.
    """

    _frames: Any
    _segments: Any
    frame_rows: FrameRows
    index_table: str | None
    index_type: str | None
    mean: np.ndarray
    dim: int
    _cache: SearchCache

    @property
    def candidate_table(self) -> str:
        """The indexed table, else ``segments`` (``frames`` when the store has none)."""
        return self.index_table or ("segments" if self._segments is not None else "frames")

    def row_map(self, table: str) -> RowMap:
        """Row id -> ``video_id``, ``generation`` and times of ``table`` (segments:
        ``start_sec``, ``end_sec``; frames: ``pts_sec``), cached per version."""
        ds = self._segments if table == "segments" else self._frames
        columns = ["video_id", "generation", "start_sec", "end_sec"] if table == "segments" \
            else ["video_id", "generation", "pts_sec"]
        return self._cache.get(f"{table}_rows", ds.version, lambda: RowMap.scan(ds, columns))

    def nearest(self, query: np.ndarray, k: int, *, params: SearchParams | None = None,
                video_ids: Sequence[str] | None = None,
                skip: Collection[int] = ()) -> Nearest:
        """See :meth:`framedex.store.base.SearchSnapshot.nearest`."""
        table = self.candidate_table
        ds = self._segments if table == "segments" else self._frames
        where = None if video_ids is None else f"video_id IN {sql_strs(video_ids)}"
        addr, dist = nearest_rows(ds, query, k, params=params, where=where)
        fresh = np.flatnonzero([a not in skip for a in addr.tolist()]) if skip else \
            np.arange(len(addr))
        rows, hit = self.row_map(table).lookup(addr[fresh])
        if table == "segments":
            t0 = rows.column("start_sec").to_numpy()
            t1 = rows.column("end_sec").to_numpy()
        else:
            t0 = rows.column("pts_sec").to_numpy()
            t1 = np.nextafter(t0, np.inf)
        return Nearest(rows=addr, distances=dist, found=fresh[hit],
                       video_ids=rows.column("video_id").to_pylist(),
                       generations=rows.column("generation").to_numpy(), t0=t0, t1=t1)

    def frame_vectors(self, rows: np.ndarray) -> np.ndarray:
        """See :meth:`framedex.store.base.SearchSnapshot.frame_vectors`."""
        return self.frame_rows.take_vectors(self._frames, rows, self.dim)


def open_search_tables(frames: Any, segments: Any, dim: int,
                       cache: SearchCache) -> SearchTables:
    """Bundle the datasets with their cached row maps (rebuilt when a version changed)."""
    index_table = index_type = None
    for name, ds in (("segments", segments), ("frames", frames)):
        index_type = vector_index(ds) if ds is not None else None
        if index_type is not None:
            index_table = name
            break
    frame_rows = cache.get("frame_rows", frames.version, lambda: FrameRows.scan(frames))
    return SearchTables(frames, segments, frame_rows, index_table, index_type,
                        frame_mean(frames, dim, cache), dim, cache)


def frame_mean(ds: Any, dim: int, cache: SearchCache) -> np.ndarray:
    """The mean frame vector (float64): search's background level for a query.

    The one :func:`store_frame_mean` kept in the dataset config (``Store.build_index`` does),
    else one scan of the vectors; either is cached per version.
    """

    def load() -> np.ndarray:
        raw = ds.config().get(FRAME_MEAN_KEY)
        if raw:
            return np.asarray(json.loads(raw)["mean"], dtype=np.float64)
        return scan_frame_mean(ds, dim)

    return cache.get("frame_mean", ds.version, load)


def scan_frame_mean(ds: Any, dim: int) -> np.ndarray:
    """Mean of every vector of ``ds`` (float64), streamed in batches."""
    total = np.zeros(dim, dtype=np.float64)
    count = 0
    for batch in ds.to_batches(columns=["vector"], batch_size=65_536):
        flat = batch.column(0).flatten().to_numpy(zero_copy_only=False)
        total += flat.reshape(-1, dim).astype(np.float64).sum(0)
        count += batch.num_rows
    return total / max(count, 1)


def store_frame_mean(ds: Any, dim: int) -> np.ndarray:
    """Compute the mean frame vector and keep it in the dataset config (a new version)."""
    mean = scan_frame_mean(ds, dim)
    ds.update_config({FRAME_MEAN_KEY: json.dumps({"rows": ds.count_rows(),
                                                  "mean": [float(x) for x in mean]})})
    return mean
