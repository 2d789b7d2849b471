"""Library search with the default ANN index returns the moments exact search returns.

A hermetic store of a few thousand generated frame vectors (scenes about a few topics, as
scripts/bench_search.py generates at 1M), its 6-s segments, and ``Store.build_index()``'s
default index (IVF_HNSW_SQ on the segments). The exact reference runs the same moment rule
over every frame, best first, in memory.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from framedex.query.moments import MomentFinder, frame_scores
from framedex.query.search import search_moments
from framedex.store import LanceStore as Store
from framedex.store.schema import VideoRecord

D = 64
VIDEOS, FRAMES = 5, 720  # 3,600 frames, 600 segments


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def library(seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """{video_id: (FRAMES, D) vectors} and topic queries."""
    rng = np.random.default_rng(seed)
    topics = unit(rng.standard_normal((6, D)))
    videos = {}
    for v in range(VIDEOS):
        lengths = rng.integers(3, 40, size=FRAMES)
        owner = np.repeat(np.arange(len(lengths)), lengths)[:FRAMES]
        alpha = rng.uniform(0.2, 0.9, owner[-1] + 1)[:, None]
        centres = unit(alpha * topics[rng.integers(0, 6, owner[-1] + 1)]
                       + np.sqrt(1 - alpha**2) * unit(rng.standard_normal((owner[-1] + 1, D))))
        videos[f"video{v}"] = unit(centres[owner] + 0.4 / np.sqrt(D)
                                   * rng.standard_normal((FRAMES, D)))
    queries = unit(topics + 0.5 / np.sqrt(D) * rng.standard_normal(topics.shape))
    return videos, queries


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    videos, queries = library()
    store = Store(tmp_path_factory.mktemp("ann") / "db")
    store.ensure_encoder({"spec": "t", "model": "t", "pretrained": None, "weights_digest": None,
                          "dim": D})
    for vid, x in videos.items():
        pos = np.arange(FRAMES)
        for a in range(0, FRAMES, 256):  # several appends per video, as the indexer does
            store.add_frames(vid, 0, pos[a:a + 256], pos[a:a + 256] * 25,
                             pos[a:a + 256].astype(float), x[a:a + 256])
        starts = np.arange(0, FRAMES, 6)
        sums = np.add.reduceat(x.astype(np.float64), starts, axis=0)
        store.add_segments(vid, 0, starts.astype(float), starts + 6.0, np.full(len(starts), 6),
                           unit(sums))
        store.commit_video(VideoRecord(
            video_id=vid, path=f"/v/{vid}.mp4", duration=float(FRAMES), frame_rate=25.0,
            num_frames=FRAMES * 25, width=64, height=64, start_sec=0.0, is_vfr=False,
            index_fps=1.0, num_indexed=FRAMES, decoder="pyav", encoder="t"))
    info = store.build_index()
    return store, videos, queries, info


class Memory:
    def __init__(self, videos: dict[str, np.ndarray], query: np.ndarray):
        self.videos, self.query = videos, query

    def num_frames(self, video_id: str) -> int:
        return len(self.videos[video_id])

    def read(self, windows):
        return [(np.arange(lo, hi), np.arange(lo, hi, dtype=float),
                 frame_scores(self.videos[v][lo:hi], self.query)) for v, lo, hi in windows]


def exact_moments(videos, query, baseline, limit):
    finder = MomentFinder(Memory(videos, query), baseline)
    finder.add([(v, 0, len(x)) for v, x in videos.items()])
    out = []
    while len(out) < limit and (m := finder.next()) is not None:
        out.append((m.video_id, m.start_pts, m.hi - m.lo + 1, m.peak_pts, m.score))
    return sorted(out, key=lambda t: (-t[4], t[0], t[1]))


def test_default_index_is_hnsw_on_segments(indexed):
    store, _, _, info = indexed
    assert (info["table"], info["index_type"], info["rows"]) == ("segments", "IVF_HNSW_SQ",
                                                                 VIDEOS * FRAMES // 6)
    assert store.has_ann_index()
    assert store.search_snapshot().index_table == "segments"
    # build_index compacted the appends and stored the mean frame vector
    frames = store.tables.snapshot("frames")
    assert len(frames.get_fragments()) == 1
    assert "framedex.frame_mean" in frames.config()


@pytest.mark.parametrize("limit", [3, 10])
def test_ann_moments_equal_exact_moments(indexed, limit):
    store, videos, queries, _ = indexed
    mean = store.search_snapshot().mean
    all_vecs = np.concatenate(list(videos.values()))
    for q in queries:
        res = search_moments(store, q, limit=limit)
        assert res.source == "segments"
        # recall@10 of the frames the search scored, against brute force: 1
        vids, pos, scores = res.frames
        best = {(vids[i], int(pos[i])) for i in np.argsort(-scores, kind="stable")[:10]}
        flat = frame_scores(all_vecs, q)
        want = {(f"video{i // FRAMES}", i % FRAMES) for i in np.argsort(-flat)[:10]}
        assert best == want
        got = [(m.video_id, m.start, m.num_hits, m.best_pts_sec, m.score) for m in res.hits]
        assert got == exact_moments(videos, q, float(mean @ q), limit)
        # and the search read a small part of the library
        assert len(vids) < len(all_vecs) / 2


def test_moment_seconds_and_ranking(indexed):
    store, _, queries, _ = indexed
    hits = search_moments(store, queries[0], limit=10).hits
    assert [m.score for m in hits] == sorted((m.score for m in hits), reverse=True)
    for m in hits:
        assert 0 <= m.start <= m.best_pts_sec < m.end <= FRAMES
        assert math.isclose(m.end - m.start, m.num_hits) or m.end == FRAMES


def test_group_by_video_with_the_index(indexed):
    store, _, queries, _ = indexed
    hits = search_moments(store, queries[1], limit=VIDEOS, group_by="video").hits
    assert sorted(h.video_id for h in hits) == sorted(f"video{v}" for v in range(VIDEOS))
    for h in hits:
        assert h.score == h.moments[0].score


def test_filters_apply_inside_the_index_search(indexed):
    from framedex.query.search import SearchFilters

    store, videos, queries, _ = indexed
    keep = {"video1", "video3"}
    res = search_moments(store, queries[2], limit=10,
                         filters=SearchFilters(path_glob="/v/video[13].mp4"))
    assert res.hits and {m.video_id for m in res.hits} <= keep
    mean = store.search_snapshot().mean
    subset = {v: x for v, x in videos.items() if v in keep}
    got = [(m.video_id, m.start, m.num_hits, m.best_pts_sec, m.score) for m in res.hits]
    assert got == exact_moments(subset, queries[2], float(mean @ queries[2]), 10)


def test_videos_added_after_the_index_are_found(tmp_path):
    """Rows appended after build_index are searched too (Lance scans them flat)."""
    videos, queries = library(seed=1)
    store = Store(tmp_path / "db")
    store.ensure_encoder({"spec": "t", "model": "t", "pretrained": None, "weights_digest": None,
                          "dim": D})

    def add(vid: str, x: np.ndarray) -> None:
        pos = np.arange(len(x))
        store.add_frames(vid, 0, pos, pos, pos.astype(float), x)
        starts = np.arange(0, len(x), 6)
        store.add_segments(vid, 0, starts.astype(float), starts + 6.0, np.full(len(starts), 6),
                           unit(np.add.reduceat(x.astype(np.float64), starts, axis=0)))
        store.commit_video(VideoRecord(
            video_id=vid, path=f"/v/{vid}.mp4", duration=float(len(x)), frame_rate=1.0,
            num_frames=len(x), width=8, height=8, start_sec=0.0, is_vfr=False, index_fps=1.0,
            num_indexed=len(x), decoder="pyav", encoder="t"))

    for vid, x in list(videos.items())[:3]:
        add(vid, x)
    store.build_index()
    late = np.repeat(queries[0][None], 12, axis=0)  # a 12-frame scene that is the query itself
    add("late", np.concatenate([list(videos.values())[3][:30], late,
                                list(videos.values())[3][:30]]))
    best = search_moments(store, queries[0], limit=3).hits[0]
    assert (best.video_id, best.start, best.end) == ("late", 30.0, 42.0)
    assert best.score == pytest.approx(1.0, abs=1e-6)
