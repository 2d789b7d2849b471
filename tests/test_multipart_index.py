"""Multi-part search once ``build_index`` has run: the codebook path (``and``) and the segment
index path (``or``) must rank exactly as an exact MaxSim over every video does.

A store of clustered random segment vectors (written straight to the tables, as the indexer
would), a numpy MaxSim over all of them as the truth: same videos, same order, same scores,
for 2- and 3-part queries, with a filter, and for videos indexed after the codebook was built.
"""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pytest

from framedex.query.search import SearchFilters, search_parts

VIDEOS, SEGMENTS, DIM, CLUSTERS = 240, 6, 32, 24


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _add_videos(store, ids: list[str], cube: np.ndarray) -> None:
    """Frames (one per segment), segments, ``video_vectors`` rows and the committed
    ``videos`` rows of ``ids``, one append per table."""
    from framedex.store.base import SegmentArrays
    from framedex.store.multivector import write_video_vectors
    from framedex.store.schema import (
        VIDEOS_SCHEMA,
        VideoRecord,
        frame_rows,
        segment_rows,
        segments_schema,
    )

    pos = np.arange(SEGMENTS)
    starts = pos * 6.0
    frames_schema = store.tables.snapshot("frames").schema
    seg_schema = segments_schema(DIM)
    frames, segs, records = [], [], []
    for vid, vecs in zip(ids, cube, strict=True):
        frames.append(frame_rows(frames_schema, vid, 1, pos, pos * 180, starts, vecs))
        segs.append(segment_rows(seg_schema, vid, 1, pos, starts, starts + 6.0,
                                 np.full(SEGMENTS, 6), vecs))
        write_video_vectors(store, vid, 1, SegmentArrays(vid, starts, starts + 6.0,
                                                          ["fixed"] * SEGMENTS, vecs))
        records.append(VideoRecord(
            video_id=vid, path=f"/lib/{vid}.mp4", duration=6.0 * SEGMENTS, frame_rate=30.0,
            num_frames=180 * SEGMENTS, width=64, height=64, start_sec=0.0, is_vfr=False,
            index_fps=1 / 6, num_indexed=SEGMENTS, decoder="pyav", encoder="test",
            generation=1).to_row())
    store.tables.append("frames", pa.concat_tables(frames), frames_schema)
    store.tables.append("segments", pa.concat_tables(segs), seg_schema)
    store.tables.append("videos", pa.Table.from_pylist(records, schema=VIDEOS_SCHEMA),
                        VIDEOS_SCHEMA)


@pytest.fixture(autouse=True)
def _codebook_at_any_size(monkeypatch):
    """The codebook path from the first video (it is used from 20,000 by default)."""
    monkeypatch.setattr("framedex.query.search.PARTS_CODES_MIN_VIDEOS", 0)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """(store, ids, (V, S, D) segment vectors, cluster centres) with the index built."""
    from framedex.store import LanceStore

    rng = np.random.default_rng(7)
    centres = _unit(rng.normal(size=(CLUSTERS, DIM)))
    cube = _unit(centres[rng.integers(0, CLUSTERS, (VIDEOS, SEGMENTS))]
                 + 0.4 * rng.normal(size=(VIDEOS, SEGMENTS, DIM)) / np.sqrt(DIM))
    store = LanceStore(tmp_path_factory.mktemp("multipart") / "db")
    store.ensure_encoder({"model": "test", "pretrained": None, "weights_digest": "x",
                          "dim": DIM, "spec": "test"})
    ids = [f"{i:020x}" for i in range(VIDEOS)]
    _add_videos(store, ids, cube)
    info = store.build_index()
    assert info["codebook"]["videos"] == VIDEOS
    return store, ids, cube, centres


def _queries(rng: np.random.Generator, centres: np.ndarray, parts: int) -> np.ndarray:
    return _unit(rng.normal(size=(parts, DIM)) / np.sqrt(DIM)
                 + centres[rng.choice(len(centres), parts, replace=False)])


def _exact(ids: list[str], cube: np.ndarray, q: np.ndarray, operator: str, limit: int,
           keep: set[str] | None = None) -> list[tuple[str, float]]:
    best = np.einsum("vsd,pd->vsp", cube.astype(np.float64), q.astype(np.float64)).max(1)
    scores = best.sum(1) if operator == "and" else best.max(1)
    ranked = sorted(((-float(s), v) for v, s in zip(ids, scores, strict=True)
                     if keep is None or v in keep))
    return [(v, -s) for s, v in ranked[:limit]]


def _assert_same(hits, want) -> None:
    assert [h.video_id for h in hits] == [v for v, _ in want]
    assert np.allclose([h.score for h in hits], [s for _, s in want], atol=1e-5)


@pytest.mark.parametrize("operator", ["and", "or"])
@pytest.mark.parametrize("parts", [2, 3])
def test_indexed_ranking_equals_exact_maxsim(indexed, operator, parts):
    store, ids, cube, centres = indexed
    assert store.maxsim_snapshot() is not None  # the indexed paths, not the scan
    rng = np.random.default_rng(parts)
    for _ in range(12):
        q = _queries(rng, centres, parts)
        hits = search_parts(store, q, operator=operator, limit=5, group_by="video")
        _assert_same(hits, _exact(ids, cube, q, operator, 5))


def test_filtered_and_equals_exact_among_the_allowed(indexed):
    store, ids, cube, centres = indexed
    keep = set(ids[::3])
    filters = SearchFilters(video_ids=sorted(keep))
    rng = np.random.default_rng(11)
    for _ in range(8):
        q = _queries(rng, centres, 2)
        hits = search_parts(store, q, operator="and", limit=5, group_by="video",
                            filters=filters)
        _assert_same(hits, _exact(ids, cube, q, "and", 5, keep))


def test_videos_indexed_after_the_build_are_found(tmp_path):
    """A video the codebook has no row for is scored exactly until ``optimize`` codes it;
    the ranking is the same before and after."""
    from framedex.store import LanceStore

    rng = np.random.default_rng(3)
    centres = _unit(rng.normal(size=(CLUSTERS, DIM)))
    cube = _unit(centres[rng.integers(0, CLUSTERS, (60, SEGMENTS))]
                 + 0.3 * rng.normal(size=(60, SEGMENTS, DIM)))
    store = LanceStore(tmp_path / "db")
    store.ensure_encoder({"model": "test", "pretrained": None, "weights_digest": "x",
                          "dim": DIM, "spec": "test"})
    ids = [f"{i:020x}" for i in range(60)]
    _add_videos(store, ids[:59], cube[:59])
    store.build_index()
    q = _unit(centres[:2])
    late = cube[59].copy()
    late[0], late[1] = q[0], q[1]  # the newcomer shows both parts exactly: the best video
    cube[59] = late
    _add_videos(store, ids[59:], cube[59:])
    codes = store.maxsim_snapshot()
    assert codes is not None and codes.uncovered() == [ids[59]]
    want = _exact(ids, cube, q, "and", 5)
    assert want[0][0] == ids[59]
    _assert_same(search_parts(store, q, operator="and", limit=5, group_by="video"), want)
    assert store.optimize()["videos_coded"] == 1
    codes = store.maxsim_snapshot()
    assert codes is not None and codes.uncovered() == []
    _assert_same(search_parts(store, q, operator="and", limit=5, group_by="video"), want)


@pytest.mark.parametrize("min_column", [1, 4, 40, 10**6])
def test_code_columns_give_each_videos_best_code(min_column):
    """The by-position layout of the codes scores every video as a per-video maximum over
    its own codes does: clips of 1-11 segments, a few long videos, and every split between
    columns and the row-by-row tail."""
    from framedex.store.code_columns import CodeColumns

    rng = np.random.default_rng(min_column)
    lengths = rng.integers(1, 12, 200)
    lengths[rng.choice(200, 4, replace=False)] = [30, 55, 80, 80]
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    codes = rng.integers(0, 64, int(starts[-1])).astype(np.uint16)
    table = rng.normal(size=(3, 64)).astype(np.float32)
    layout = CodeColumns.from_rows(codes, starts, min_column)
    want = np.array([[table[p][codes[a:b]].max() for p in range(3)]
                     for a, b in itertools.pairwise(starts)])
    assert np.array_equal(layout.best(table), want)
    # a column for every position some video reaches, down to one column and the rest tail
    assert len(layout.columns) == {1: 80, 4: 30, 10**6: 1}.get(min_column, len(layout.columns))
    assert (len(layout.tail_codes) > 0) == (min_column > 1)
