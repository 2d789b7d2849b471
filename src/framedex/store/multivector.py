"""The ``video_vectors`` table: one row per video generation, its segment vectors as a LanceDB
multivector column, searched with LanceDB's MaxSim late interaction.

For a query of P parts ``q_1..q_P`` and a video whose segments are ``d_1..d_S``, LanceDB's
multivector cosine search ranks rows by ``sum_p max_s cos(q_p, d_s)`` (its ``_distance`` is
``P - that sum``): a video ranks by the sum over the query parts of each part's best segment,
which is what "videos that show all of these" asks.

Visibility: ``commit_video`` writes the row from the generation's segments (as the writer
computed them, in memory) just before the ``videos`` row that names the generation, so the row
is invisible until that commit (readers keep rows whose generation the ``videos`` row names) and
never missing after it. Re-index, abort, retire and delete treat the table exactly like
``frames`` and ``segments``.

**The codebook** (``video_codes``, built by ``Store.build_index``): an exact MaxSim scan
reads every segment vector of the library, 53 ms at 10,000 videos and linear in them. So, as
PLAID does for ColBERT, each segment vector is also kept as the number of its nearest centroid
(a spherical k-means codebook of about sqrt(segments) centroids, 1,024 at 1M segments): a
query part's score against every centroid is one small matrix product, and every video's
approximate MaxSim is a gather and a per-video maximum over 2 bytes per segment (~10 ms for
100,000 videos on one core). ``framedex.query.search.search_parts`` then scores exactly only
the videos that approximate scoring cannot rule out. The layout, one table so that a rebuild
is one atomic overwrite:

- centroid rows: ``video_id`` null, ``generation`` the centroid's number, ``centroid`` its
  unit vector;
- video rows: ``video_id`` and ``generation`` of a ``video_vectors`` row, ``codes`` its
  segments' centroids in that row's order;
- every row carries the ``build`` it belongs to; readers use the video rows of the centroids'
  build only, so a row appended with an older codebook is never read against a newer one.

Videos indexed after the build have no row until :func:`extend_codes` (run by ``optimize``)
codes them with the same centroids, or the next build; until then search scores them
exactly. Rows of retired generations stay until the next build (readers skip them).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from framedex.store.base import LanceParts, SegmentArrays, VectorRows
from framedex.store.code_columns import CodeColumns
from framedex.store.location import store_io
from framedex.store.schema import (
    VideoRecord,
    column_vectors,
    sql_str,
    sql_strs,
    video_vectors_schema,
)

TABLE = "video_vectors"
#: Lance file format of the table. Lance 13's default (2.x) decodes this nested column
#: (a list of fixed-size float lists) 6-10x slower than the 0.1 ("legacy") format: at 10k
#: videos x 10 segments x 512 dims a full read took 570-980 ms against 53-85 ms, and a MaxSim
#: scan 545-1030 ms against 100-143 ms (2 shared cores, scripts/bench_multivector.py).
#: Revisit when the 2.x decoder catches up; existing tables keep the format they were made with.
STORAGE_VERSION = "legacy"
#: Columns a search returns (besides ``_distance``).
COLUMNS = ["video_id", "generation", "start_sec", "end_sec", "vectors"]
#: The codebook table (see the module docstring).
CODES_TABLE = "video_codes"
#: Centroids per codebook: one per :data:`TRAIN_PER_CENTROID` segments, within these bounds.
#: More centroids approximate better, so fewer videos need exact scoring: at 10,000 videos x
#: 10 segments (512-d, 2 parts) 1,024 centroids gave 11.0 ms p50 against 28.3 ms with 256
#: (the square root of the segments, the first rule; bench_multivector.py --centroids).
#: Above 1,024 the score table outgrows the L1 cache: 4,096 took 17 ms of approximate
#: scoring at 100,000 videos against 10 ms (row-by-row scoring), and 4x the build time.
CODEBOOK_SIZE = (16, 1024)
#: Segment vectors the k-means is trained on, per centroid, and its iterations.
TRAIN_PER_CENTROID, TRAIN_ITERATIONS = 64, 10
#: Quantile of |q . (x - centroid(x))| taken as a part's approximation margin, measured on
#: segment vectors as stand-in queries.
MARGIN_QUANTILE = 0.999
#: Rows read, and segment vectors assigned, per batch when building.
BUILD_BATCH_ROWS = 4096


def codes_schema() -> pa.Schema:
    """Schema of the ``video_codes`` table (see the module docstring)."""
    return pa.schema([
        ("video_id", pa.string()),
        ("generation", pa.int64()),
        ("build", pa.int64()),
        ("codes", pa.list_(pa.uint16())),
        ("centroid", pa.list_(pa.float32())),
        ("margin", pa.float64()),
    ])


def ensure_table(store: LanceParts, dim: int) -> pa.Schema:
    """Create the table (in :data:`STORAGE_VERSION`) unless it exists; return its schema."""
    schema = video_vectors_schema(dim)
    store.tables.create(TABLE, schema, storage_version=STORAGE_VERSION)
    return schema


def write_video_vectors(store: LanceParts, video_id: str, generation: int,
                        segments: SegmentArrays) -> bool:
    """Write ``video_id``'s row for ``generation`` from its segments (in memory: the
    writer has just computed them, so nothing is read back).

    Returns:
        False when there are no segments (nothing is written).
    """
    if len(segments.start_sec) == 0:
        return False
    order = np.argsort(np.asarray(segments.start_sec), kind="stable")
    dim = store.dim
    vectors = np.asarray(segments.vectors, np.float32).reshape(-1, dim)[order]
    inner = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim)
    multi = pa.ListArray.from_arrays(pa.array([0, len(vectors)], pa.int32()), inner)
    schema = ensure_table(store, dim)
    row = pa.table({
        "video_id": pa.array([video_id], pa.string()),
        "generation": pa.array([int(generation)], pa.int64()),
        "start_sec": pa.array([np.asarray(segments.start_sec, np.float64)[order].tolist()],
                              pa.list_(pa.float64())),
        "end_sec": pa.array([np.asarray(segments.end_sec, np.float64)[order].tolist()],
                            pa.list_(pa.float64())),
        "vectors": multi.cast(schema.field("vectors").type),
    }, schema=schema)
    store.tables.append(TABLE, row, schema)
    return True


def stored_segments(store: LanceParts, video_id: str, generation: int) -> SegmentArrays:
    """A generation's segments as stored (for rows written before this table existed)."""
    where = f"video_id = {sql_str(video_id)} AND generation = {int(generation)}"
    data = store.tables.read("segments", ["kind", "start_sec", "end_sec", "vector"], where)
    return SegmentArrays(video_id, data.column("start_sec").to_numpy(),
                         data.column("end_sec").to_numpy(), data.column("kind").to_pylist(),
                         column_vectors(data.column("vector"), store.dim))


def search_video_vectors(store: LanceParts, queries: np.ndarray, limit: int,
                         video_ids: Sequence[str] | None = None) -> VectorRows:
    """MaxSim search of the multivector column.

    Args:
        store: the store.
        queries: (P, D) L2-normalised query parts (P = 1: a video's best segment).
        limit: rows to return.
        video_ids: search only these videos (a filter applied before the search).

    Returns:
        The rows best first (by ``P - sum_p max_s cos``). Rows of uncommitted or retired
        generations are among them; the caller keeps those whose generation the ``videos``
        row names.
    """
    ds = store.tables.snapshot(TABLE)
    if ds is None:
        return VectorRows([], [], [], [], [])
    q = np.ascontiguousarray(queries, dtype=np.float32)
    nearest: dict[str, Any] = {"column": "vectors", "q": q if len(q) > 1 else q[0],
                               "k": int(limit), "metric": "cosine"}
    where = None if video_ids is None else f"video_id IN {sql_strs(video_ids)}"
    with store_io(store.location, "search"):
        rows = ds.to_table(columns=COLUMNS, nearest=nearest, filter=where,
                           prefilter=bool(where), disable_scoring_autoprojection=True)
    return VectorRows(
        video_ids=rows.column("video_id").to_pylist(),
        generations=rows.column("generation").to_pylist(),
        start_sec=[np.asarray(s, np.float64) for s in rows.column("start_sec").to_pylist()],
        end_sec=[np.asarray(e, np.float64) for e in rows.column("end_sec").to_pylist()],
        vectors=[np.asarray(v, np.float32) for v in rows.column("vectors").to_pylist()])


def missing_video_vectors(store: LanceParts) -> list[str]:
    """Committed videos whose live generation has no row (stores indexed before the table
    existed, or a row lost to a crash between its write and a retry)."""
    live = {v.video_id: v.generation for v in store.list_videos()}
    if not live:
        return []
    have = store.tables.read(TABLE, ["video_id", "generation"])
    present = set(zip(have.column("video_id").to_pylist(),
                      have.column("generation").to_pylist(), strict=True)) \
        if have.num_rows else set()
    return [v for v, g in live.items() if (v, g) not in present]


def backfill_video_vectors(store: LanceParts) -> int:
    """Write the missing rows of committed videos (each under its claim). Returns how many."""
    done = 0
    for vid in missing_video_vectors(store):
        claim = store.claim(vid, wait=False)
        if claim is None:  # being indexed right now: its commit writes the row
            continue
        with claim, store.writing():
            record = store.get_video(vid)
            if record is None or vid not in missing_video_vectors(store):
                continue  # deleted, or written meanwhile
            segments = stored_segments(store, vid, record.generation)
            if write_video_vectors(store, vid, record.generation, segments):
                done += 1
    return done


# -- the codebook -----------------------------------------------------------------------------


def multivectors(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A ``vectors`` column (a list of fixed-size lists per row) as arrays, without Python
    lists: ((N, D) float32, every row's vectors concatenated; (R,) int64 vectors per row)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
    inner = column.flatten()
    dim = int(inner.type.list_size)
    flat = inner.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(-1, dim).astype(np.float32, copy=False), lengths.astype(np.int64)


def codebook_size(segments: int) -> int:
    """One centroid per :data:`TRAIN_PER_CENTROID` segments, within :data:`CODEBOOK_SIZE`
    (and never more than the segments)."""
    low, high = CODEBOOK_SIZE
    return int(min(high, max(low, segments // TRAIN_PER_CENTROID), max(1, segments)))


def nearest_centroids(vectors: np.ndarray, centroids: np.ndarray,
                      chunk: int = 16_384) -> np.ndarray:
    """Each vector's nearest centroid by cosine (unit vectors), as uint16."""
    out = np.empty(len(vectors), dtype=np.uint16)
    for at in range(0, len(vectors), chunk):
        out[at:at + chunk] = np.argmax(vectors[at:at + chunk] @ centroids.T, axis=1)
    return out


def spherical_kmeans(x: np.ndarray, k: int, iterations: int,
                     rng: np.random.Generator) -> np.ndarray:
    """(k, D) unit centroids of unit vectors ``x`` (cosine k-means; an empty cluster takes a
    random vector of ``x``)."""
    centroids = x[rng.choice(len(x), k, replace=False)].copy()
    for _ in range(iterations):
        assign = nearest_centroids(x, centroids)
        sums = np.zeros_like(centroids, dtype=np.float64)
        np.add.at(sums, assign, x)
        empty = np.bincount(assign, minlength=k) == 0
        sums[empty] = x[rng.integers(0, len(x), int(empty.sum()))]
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        centroids = (sums / np.maximum(norms, 1e-12)).astype(np.float32)
    return centroids


def approximation_margin(sample: np.ndarray, centroids: np.ndarray,
                         rng: np.random.Generator, probes: int = 256) -> float:
    """How far one part's approximate score may lie from its exact score: the
    :data:`MARGIN_QUANTILE` of |q . (x - centroid(x))| over sample vectors x, with other
    sample vectors as the queries q."""
    x = sample[rng.choice(len(sample), min(len(sample), 4096), replace=False)]
    residual = x - centroids[nearest_centroids(x, centroids)]
    q = sample[rng.choice(len(sample), min(len(sample), probes), replace=False)]
    return float(np.quantile(np.abs(q @ residual.T), MARGIN_QUANTILE))


def _live_batches(store: LanceParts, live: dict[str, int], columns: list[str],
                  where: str | None = None) -> Iterator[tuple[np.ndarray, pa.RecordBatch]]:
    """``video_vectors`` rows of the live generations (of ``where``), in batches: each with
    its rows' offsets in the dataset (for ``take``; without ``where`` only)."""
    ds = store.tables.snapshot(TABLE)
    if ds is None:
        return
    at = 0
    with store_io(store.location, "read"):
        for batch in ds.to_batches(columns=["video_id", "generation", *columns],
                                   batch_size=BUILD_BATCH_ROWS, filter=where):
            vids = batch.column(0).to_pylist()
            gens = batch.column(1).to_numpy()
            keep = np.array([i for i, v in enumerate(vids) if live.get(v) == gens[i]],
                            dtype=np.int64)
            if len(keep):
                yield keep + at, batch.take(pa.array(keep))
            at += batch.num_rows


def build_codebook(store: LanceParts, centroids: int | None = None,
                   seed: int = 0) -> dict[str, Any]:
    """Train the codebook on the live segment vectors and write every live video's codes
    (one overwrite of ``video_codes``; see the module docstring).

    Args:
        store: the store (the caller holds its maintenance lease).
        centroids: codebook size (None: :func:`codebook_size`).
        seed: the k-means seed (a build is deterministic).

    Returns:
        ``{"table", "videos", "segments", "centroids", "margin", "seconds"}`` (``videos`` 0
        and nothing written when there is no segment).
    """
    t0 = time.perf_counter()
    live = {v.video_id: v.generation for v in store.list_videos()}
    offsets, counts = [], []
    for rows, batch in _live_batches(store, live, ["start_sec"]):
        offsets.append(rows)
        counts.append(pc.fill_null(pc.list_value_length(batch.column(2)), 0)
                      .to_numpy(zero_copy_only=False))
    count = np.concatenate(counts).astype(np.int64) if counts else np.zeros(0, np.int64)
    total = int(count.sum())
    info: dict[str, Any] = {"table": CODES_TABLE, "videos": 0, "segments": total}
    if total == 0:
        return {**info, "seconds": round(time.perf_counter() - t0, 1)}
    k = codebook_size(total) if centroids is None else max(1, min(int(centroids), total))
    rng = np.random.default_rng(seed)
    # Train on all segments of randomly chosen videos (one take), about TRAIN_PER_CENTROID
    # segments per centroid.
    order = rng.permutation(len(count))
    chosen = order[:int(np.searchsorted(np.cumsum(count[order]), TRAIN_PER_CENTROID * k)) + 1]
    ds = store.tables.snapshot(TABLE)
    assert ds is not None
    with store_io(store.location, "read"):
        picked = ds.take(np.sort(np.concatenate(offsets)[chosen]), columns=["vectors"])
    sample, _ = multivectors(picked.column("vectors"))
    book = spherical_kmeans(sample, min(k, len(sample)), TRAIN_ITERATIONS, rng)
    margin = approximation_margin(sample, book, rng)
    build = time.time_ns()
    video_rows = _code_rows((b for _, b in _live_batches(store, live, ["vectors"])), book,
                            build)
    table = pa.concat_tables([_centroid_rows(book, build, margin), video_rows])
    store.tables.overwrite(CODES_TABLE, table, codes_schema())
    return {**info, "videos": video_rows.num_rows, "centroids": len(book),
            "margin": round(margin, 4), "seconds": round(time.perf_counter() - t0, 1)}


def _code_rows(batches: Iterator[pa.RecordBatch], book: np.ndarray, build: int) -> pa.Table:
    """Video rows (see :func:`codes_schema`) of ``video_vectors`` batches."""
    vids: list[str] = []
    gens: list[np.ndarray] = []
    codes: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    for batch in batches:
        vectors, n = multivectors(batch.column(2))
        vids.extend(batch.column(0).to_pylist())
        gens.append(batch.column(1).to_numpy())
        codes.append(nearest_centroids(vectors, book))
        lengths.append(n)
    n_all = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum(n_all)]).astype(np.int32)
    flat = np.concatenate(codes) if codes else np.zeros(0, np.uint16)
    rows = len(vids)
    return pa.table({
        "video_id": pa.array(vids, pa.string()),
        "generation": pa.array(np.concatenate(gens) if gens else np.zeros(0, np.int64),
                               pa.int64()),
        "build": pa.array(np.full(rows, build, np.int64)),
        "codes": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.uint16())),
        "centroid": pa.array([[]] * rows, pa.list_(pa.float32())),
        "margin": pa.array([None] * rows, pa.float64()),
    }, schema=codes_schema())


def _centroid_rows(book: np.ndarray, build: int, margin: float) -> pa.Table:
    k, dim = book.shape
    offsets = pa.array(np.arange(0, (k + 1) * dim, dim, dtype=np.int32))
    return pa.table({
        "video_id": pa.array([None] * k, pa.string()),
        "generation": pa.array(np.arange(k, dtype=np.int64)),
        "build": pa.array(np.full(k, build, np.int64)),
        "codes": pa.array([[]] * k, pa.list_(pa.uint16())),
        "centroid": pa.ListArray.from_arrays(offsets, pa.array(book.reshape(-1), pa.float32())),
        "margin": pa.array(np.full(k, margin, np.float64)),
    }, schema=codes_schema())


def extend_codes(store: LanceParts, limit: int = 50_000) -> int:
    """Code the committed videos the codebook has no row for (indexed since its build), with
    its centroids; one append. Run by ``optimize``, under the maintenance lease.

    Args:
        limit: the most videos coded per call (the rest wait for the next).

    Returns:
        how many videos were coded.
    """
    book = _read_codebook_now(store)
    if book is None:
        return 0
    live = {v.video_id: v.generation for v in store.list_videos()}
    missing = [v for v, g in live.items() if (v, g) not in book.row][:limit]
    if not missing:
        return 0
    tables = []
    for at in range(0, len(missing), 1000):  # an IN list of at most 1,000 ids per read
        where = f"video_id IN {sql_strs(missing[at:at + 1000])}"
        tables.append(_code_rows((b for _, b in _live_batches(store, live, ["vectors"], where)),
                                 book.centroids, book.build))
    rows = pa.concat_tables(tables)
    if rows.num_rows:
        store.tables.append(CODES_TABLE, rows, codes_schema())
    return int(rows.num_rows)


@dataclass
class Codebook:
    """One version of ``video_codes``, decoded: the centroids of its newest build and the
    video rows of that build."""

    build: int
    centroids: np.ndarray  # (C, D) float32
    margin: float
    video_ids: list[str]
    generations: np.ndarray  # (R,) int64
    columns: CodeColumns  # every row's segment codes, by segment position
    row: dict[tuple[str, int], int]

    @property
    def nbytes(self) -> int:
        """Memory held (arrays, and ~100 bytes per row for ids and the row map)."""
        return int(self.centroids.nbytes + self.generations.nbytes + self.columns.nbytes
                   + 100 * len(self.video_ids))


def read_codebook(ds: Any) -> Codebook | None:
    """Decode a ``video_codes`` dataset (None when it holds no centroid)."""
    table = ds.to_table(columns=["video_id", "generation", "build", "codes", "centroid",
                                 "margin"])
    is_centroid = pc.is_null(table.column("video_id"))
    centroid_rows = table.filter(is_centroid)
    if centroid_rows.num_rows == 0:
        return None
    builds = centroid_rows.column("build").to_numpy()
    build = int(builds.max())  # one build after an overwrite; the newest if ever more
    centroid_rows = centroid_rows.filter(pc.equal(centroid_rows.column("build"), build))
    centroid_rows = centroid_rows.sort_by("generation")
    flat = centroid_rows.column("centroid").combine_chunks().flatten().to_numpy(
        zero_copy_only=False)
    centroids = flat.reshape(centroid_rows.num_rows, -1).astype(np.float32)
    margin = float(centroid_rows.column("margin").to_numpy()[0])
    videos = table.filter(pc.and_(pc.invert(is_centroid),
                                  pc.equal(table.column("build"), build)))
    codes_col = videos.column("codes").combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(codes_col), 0).to_numpy(zero_copy_only=False)
    keep = np.flatnonzero(lengths > 0)  # a video row always has codes; never index an empty one
    videos = videos.take(pa.array(keep, pa.int64()))
    codes_col = videos.column("codes").combine_chunks()
    codes = codes_col.flatten().to_numpy(zero_copy_only=False).astype(np.uint16)
    starts = np.concatenate([[0], np.cumsum(lengths[keep])]).astype(np.int64)
    vids = videos.column("video_id").to_pylist()
    gens = videos.column("generation").to_numpy().astype(np.int64)
    row = {(v, int(g)): i for i, (v, g) in enumerate(zip(vids, gens.tolist(), strict=True))}
    return Codebook(build, centroids, margin, vids, gens, CodeColumns.from_rows(codes, starts),
                    row)


def _read_codebook_now(store: LanceParts) -> Codebook | None:
    store.tables.touched(CODES_TABLE)  # the newest version: this process may write next
    ds = store.tables.snapshot(CODES_TABLE)
    return None if ds is None else read_codebook(ds)


@dataclass
class Liveness:
    """Which codebook rows are committed videos' live generations, at one version of the
    ``videos`` table."""

    live: np.ndarray  # (R,) bool
    by_video: dict[str, int]  # video id -> its live row
    uncovered: list[str]  # committed videos without a live row
    committed: dict[str, int]  # video id -> live generation

    @property
    def nbytes(self) -> int:
        return int(self.live.nbytes + 150 * len(self.committed))


def liveness(book: Codebook, videos: Sequence[VideoRecord]) -> Liveness:
    """:class:`Liveness` of ``book``'s rows against the committed ``videos``."""
    committed = {v.video_id: v.generation for v in videos}
    live = np.fromiter((committed.get(v) == g for v, g in
                        zip(book.video_ids, book.generations.tolist(), strict=True)),
                       dtype=bool, count=len(book.video_ids))
    by_video = {book.video_ids[i]: int(i) for i in np.flatnonzero(live).tolist()}
    uncovered = [v for v in committed if v not in by_video]
    return Liveness(live, by_video, uncovered, committed)


class RowOffsets(dict[tuple[str, int], int]):
    """``(video_id, generation) -> row offset`` of one ``video_vectors`` version."""

    @property
    def nbytes(self) -> int:
        return 150 * len(self)


def row_offsets(ds: Any) -> RowOffsets:
    """One scan of ``video_id, generation`` (dataset order: offsets for ``take``)."""
    table = ds.to_table(columns=["video_id", "generation"])
    out = RowOffsets()
    for i, key in enumerate(zip(table.column(0).to_pylist(),
                                table.column(1).to_pylist(), strict=True)):
        out[key] = i
    return out


class MaxSimCodes:
    """:class:`~framedex.store.base.MaxSimSnapshot` over one version of ``video_codes`` and
    ``videos``."""

    def __init__(self, book: Codebook, state: Liveness):
        self.book, self.state = book, state

    @property
    def centroids(self) -> np.ndarray:
        return self.book.centroids

    @property
    def columns(self) -> CodeColumns:
        return self.book.columns

    @property
    def video_ids(self) -> Sequence[str]:
        return self.book.video_ids

    @property
    def live(self) -> np.ndarray:
        return self.state.live

    @property
    def margin(self) -> float:
        return self.book.margin

    def rows_of(self, video_ids: Collection[str]) -> np.ndarray:
        rows = self.state.by_video
        return np.fromiter((rows[v] for v in video_ids if v in rows), dtype=np.int64)

    def uncovered(self) -> list[str]:
        return list(self.state.uncovered)


def read_video_segments(store: LanceParts, video_ids: Sequence[str], cache: Any, *,
                        times: bool = True) -> VectorRows:
    """See :meth:`~framedex.store.base.StoreReader.video_segments`: one ``take`` of the rows,
    found through a ``(video_id, generation) -> offset`` map cached per table version.

    Without ``times`` only the vectors are read (``start_sec``/``end_sec`` come back empty):
    the two list columns cost this legacy-format take about a third of its time (17 of 52 ms
    for 640 videos), and scoring needs only the vectors."""
    ds = store.tables.snapshot(TABLE)
    if ds is None:
        return VectorRows([], [], [], [], [])
    offsets = cache.get("video_vectors_rows", ds.version, lambda: row_offsets(ds))
    videos = store.videos_by_id()
    wanted = [(v, videos[v].generation) for v in video_ids
              if v in videos and (v, videos[v].generation) in offsets]
    if not wanted:
        return VectorRows([], [], [], [], [])
    at = np.array([offsets[key] for key in wanted], dtype=np.int64)
    order = np.argsort(at, kind="stable")
    with store_io(store.location, "search"):
        table = ds.take(at[order], columns=["start_sec", "end_sec", "vectors"] if times
                        else ["vectors"])
    vectors, counts = multivectors(table.column("vectors"))
    if times:
        starts = pc.list_flatten(table.column("start_sec")).to_numpy(zero_copy_only=False)
        ends = pc.list_flatten(table.column("end_sec")).to_numpy(zero_copy_only=False)
    else:
        starts = ends = np.zeros(len(vectors), dtype=np.float64)[:0]
    bounds = np.concatenate([[0], np.cumsum(counts)])
    back = np.empty(len(order), dtype=np.int64)
    back[order] = np.arange(len(order))  # wanted[i] is row back[i] of the take
    spans = [(int(bounds[back[i]]), int(bounds[back[i] + 1])) for i in range(len(wanted))]
    return VectorRows(
        video_ids=[v for v, _ in wanted], generations=[g for _, g in wanted],
        start_sec=[starts[a:b] if times else starts for a, b in spans],
        end_sec=[ends[a:b] if times else ends for a, b in spans],
        vectors=[vectors[a:b] for a, b in spans])


def open_maxsim(store: LanceParts, cache: Any) -> MaxSimCodes | None:
    """The codes at the tables' newest versions (decoded once per version, in ``cache``: a
    :class:`~framedex.store.ann.SearchCache`), or None without a codebook."""
    ds = store.tables.snapshot(CODES_TABLE)
    if ds is None:
        return None
    book = cache.get("maxsim_codes", ds.version, lambda: read_codebook(ds))
    if book is None:
        return None
    state = cache.get("maxsim_live", (ds.version, store.videos_version()),
                      lambda: liveness(book, store.list_videos()))
    return MaxSimCodes(book, state)
