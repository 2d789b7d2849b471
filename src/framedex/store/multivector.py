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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from framedex.store.base import LanceParts, SegmentArrays, VectorRows
from framedex.store.location import store_io
from framedex.store.schema import column_vectors, sql_str, sql_strs, video_vectors_schema

TABLE = "video_vectors"
#: Lance file format of the table. Lance 13's default (2.x) decodes this nested column
#: (a list of fixed-size float lists) 6-10x slower than the 0.1 ("legacy") format: at 10k
#: videos x 10 segments x 512 dims a full read took 570-980 ms against 53-85 ms, and a MaxSim
#: scan 545-1030 ms against 100-143 ms (2 shared cores, scripts/bench_multivector.py).
#: Revisit when the 2.x decoder catches up; existing tables keep the format they were made with.
STORAGE_VERSION = "legacy"
#: Columns a search returns (besides ``_distance``).
COLUMNS = ["video_id", "generation", "start_sec", "end_sec", "vectors"]


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
                           prefilter=bool(where))
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
