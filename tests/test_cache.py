"""The query path's caches: never stale, bounded by bytes, shared by threads, measured."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from framedex import Library
from framedex.errors import NotFoundError
from framedex.query.cache import FrameCache
from framedex.store.base import FrameArrays
from framedex.synth import haystack_spec, render

NEEDLE = {"time": 12.0, "duration": 3.0, "background": "white",
          "objects": [{"shape": "triangle", "color": "orange"}]}


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("cache")
    paths = []
    for i in range(3):
        p = root / f"c{i}.mp4"
        render(haystack_spec(30.0, [dict(NEEDLE, time=6.0 + 6 * i)], seed=10 + i, fps=4,
                             size=[48, 48]), p)
        paths.append(p)
    return paths


def _lib(path: Path, **kw) -> Library:
    return Library(path, model="synthetic-shapes", device="cpu", **kw)


def test_a_reindex_or_delete_is_never_served_stale(tmp_path, videos):
    lib = _lib(tmp_path / "db")
    vid = lib.index([videos[0]]).by_status("indexed")[0].video_id
    assert lib.select(vid, "an orange triangle", budget=3).num_frames == 30
    assert lib.select(vid, "an orange triangle", budget=3).num_frames == 30
    assert lib.cache_stats()["frames"]["hits"] == 1
    # Another process re-indexes the video at 2 fps: this library must see the new index.
    other = _lib(tmp_path / "db")
    other.index([videos[0]], fps=2.0)
    again = lib.select(vid, "an orange triangle", budget=3)
    assert again.num_frames == 60 and lib.cache_stats()["frames"]["misses"] == 2
    other.delete(vid)
    with pytest.raises(NotFoundError):  # the library is empty now
        lib.select(vid, "an orange triangle", budget=3)


def test_the_cache_never_holds_more_than_its_bound(tmp_path, videos):
    probe = _lib(tmp_path / "db")
    ids = [o.video_id for o in probe.index(videos).by_status("indexed")]
    one = probe.embeddings(ids[0])[1].nbytes
    lib = _lib(tmp_path / "db", cache_bytes=int(one * 1.5))  # room for one video, not two
    for _ in range(3):
        for vid in ids:
            lib.select(vid, "an orange triangle", budget=2)
            stats = lib.cache_stats()["frames"]
            assert stats["bytes"] <= stats["max_bytes"] and stats["entries"] <= 1
    assert lib.cache_stats()["frames"]["hits"] == 0  # round-robin over 3 never hits at 1 slot
    lib.select(ids[2], "an orange triangle", budget=2)
    assert lib.cache_stats()["frames"]["hits"] == 1
    off = _lib(tmp_path / "db", cache_bytes=0)
    off.select(ids[0], "an orange triangle", budget=2)
    assert off.cache_stats()["frames"]["entries"] == 0


def test_concurrent_selects_match_uncached_ones(tmp_path, videos):
    lib = _lib(tmp_path / "db")
    ids = [o.video_id for o in lib.index(videos).by_status("indexed")]
    uncached = _lib(tmp_path / "db", cache_bytes=0, text_cache=0, log_queries=False)
    requests = [(vid, q, s, k) for vid in ids
                for q in ("an orange triangle", "a white screen", "what happens?")
                for s in ("aks", "bolt", "mmr", "qframe") for k in (2, 5)]
    want = {r: uncached.select(r[0], r[1], sampler=r[2], budget=r[3]) for r in requests}

    def run(r):
        return r, lib.select(r[0], r[1], sampler=r[2], budget=r[3])

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(run, requests * 3))
    for r, res in got:
        w = want[r]
        assert (res.indices, res.frame_idx, res.tiers) == (w.indices, w.frame_idx, w.tiers)
        np.testing.assert_allclose(res.scores, w.scores, rtol=0, atol=1e-7)
    stats = lib.cache_stats()
    assert stats["frames"]["entries"] == 3 and stats["frames"]["hit_rate"] > 0.9
    assert stats["text"]["entries"] == 3


def test_stats_report_the_cache_hit_rate(tmp_path, videos):
    lib = _lib(tmp_path / "db")
    vid = lib.index([videos[1]]).by_status("indexed")[0].video_id
    for _ in range(4):
        lib.select(vid, "an orange triangle", sampler="topk", budget=2)
    row = next(r for r in lib.stats() if r["sampler"] == "topk")
    assert row["count"] == 4 and row["cache_hit_rate"] == 0.75


def test_cached_arrays_are_read_only():
    cache = FrameCache(1 << 20)
    frames = FrameArrays("v", np.arange(3, dtype=np.int32), np.arange(3), np.arange(3.0),
                         np.ones((3, 4), np.float32))
    got, hit = cache.get_or_load("k", lambda: frames)
    assert not hit and cache.get_or_load("k", lambda: frames)[1]
    with pytest.raises(ValueError, match="read-only"):
        got.vectors[0, 0] = 2.0
