"""Select on cached embeddings: grid-consistent frames, needles found, budgets, logs, SQL."""

from __future__ import annotations

import numpy as np
import pytest

from framedex.errors import (
    ConfigError,
    NotFoundError,
    UnknownNameError,
    VideoNotFoundError,
)
from framedex.library import internals
from framedex.synth import haystack_spec, render

FPS = 5  # native frame rate of the generated video
NEEDLE = (52.0, 4.0)  # a 4 s purple star at 52 s of a 90 s video


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model):
    """(Library, video path, Truth) for one 90 s video with a short needle scene."""
    from framedex import Library

    root = tmp_path_factory.mktemp("select_world")
    spec = haystack_spec(90.0, [{"time": NEEDLE[0], "duration": NEEDLE[1], "background": "white",
                                 "objects": [{"shape": "star", "color": "purple"}]}],
                         seed=7, fps=FPS, size=[96, 96], filler_duration=(5.0, 10.0))
    path = root / "needle.mp4"
    truth = render(spec, path)
    lib = Library(root / "db", model="synthetic-shapes")
    outcome = lib.index_file(path)
    assert outcome.status == "indexed", outcome.error
    return lib, str(path), truth


def test_selection_is_consistent_with_the_index_grid(world):
    lib, path, _ = world
    res = lib.select(path, "a purple star", sampler="bolt", budget=8)
    frames = internals(lib).store.read_frames(res.video_id)
    assert res.sampler == "bolt" and res.path == path and res.num_frames == len(frames.pos) == 90
    assert len(res.indices) == 8 and res.indices == sorted(set(res.indices))
    idx = np.asarray(res.indices)
    np.testing.assert_allclose(res.timestamps, frames.pts_sec[idx])
    assert res.timestamps == [float(i) for i in res.indices]  # 1 fps grid: position i at i s
    assert res.frame_idx == [i * FPS for i in res.indices]  # native frame at that time
    query = lib.embed_text(["a purple star"])[0]
    np.testing.assert_allclose(res.scores, frames.vectors[idx] @ query, atol=1e-4)
    j = res.to_json()
    assert {"video_id", "sampler", "budget", "indices", "timestamps", "frame_idx",
            "scores"} <= set(j) and j["budget"] == 8


@pytest.mark.parametrize("sampler", ["topk", "bolt"])
def test_query_aware_sampler_hits_the_short_needle(world, sampler):
    lib, path, _ = world
    res = lib.select(path, "a purple star", sampler=sampler, budget=8)
    start, dur = NEEDLE
    hits = [t for t in res.timestamps if start <= t < start + dur]
    assert len(hits) >= (3 if sampler == "topk" else 1), res.timestamps


def test_token_budget_reports_tiers_and_tokens(world):
    lib, path, _ = world
    res = lib.select(path, "a purple star", sampler="router", tokens=1000)
    cost = {"high": 258, "mid": 130, "low": 66}
    assert res.tokens == 1000 and res.tiers is not None
    assert len(res.tiers) == len(res.indices) >= 1
    assert res.tokens_used == sum(cost[t] for t in res.tiers) <= 1000
    # a 4 s needle in 90 s stands out: few frames, sharp
    assert res.decision == "relevance" and "threshold" in res.reason
    assert set(res.tiers) <= {"high", "mid"}


def test_router_routes_a_needle_to_relevance_and_a_vague_question_to_coverage(world):
    lib, path, _ = world
    start, dur = NEEDLE
    needle = lib.select(path, "a purple star", sampler="router", budget=6)
    assert needle.decision == "relevance" and ">= threshold" in needle.reason
    assert len(needle.indices) == 6
    assert any(start <= t < start + dur for t in needle.timestamps)
    vague = lib.select(path, "what happens in the video?", sampler="router", budget=6)
    assert vague.decision == "coverage" and "< threshold" in vague.reason
    assert vague.tiers == ["low"] * 6
    assert np.diff(vague.timestamps).min() >= 10  # spread over the 90 s


def test_default_sampler_is_a_setting(world, monkeypatch):
    from framedex import Library
    from framedex.library import DEFAULT_SAMPLER

    lib, path, _ = world
    # The environment is read at the edge (the CLI's --sampler option), never in the library.
    monkeypatch.setenv("FRAMEDEX_SAMPLER", "uniform")
    with Library(lib.uri, log_queries=False) as plain:
        assert plain.select(path, "a star", budget=3).sampler == DEFAULT_SAMPLER
    configured = Library(lib.uri, default_sampler="uniform", log_queries=False)
    res = configured.select(path, "a star", budget=3)
    assert res.sampler == "uniform"
    # uniform over 90 frames at K=3 spreads evenly, whatever the question
    assert np.diff(res.indices).min() >= 20
    assert configured.select(path, "a star", sampler="mmr", budget=3).sampler == "mmr"
    with pytest.raises(UnknownNameError, match="Did you mean 'topk'"):
        Library(lib.uri, default_sampler="topkk")


def test_bad_requests_raise_clear_errors(world):
    lib, path, _ = world
    with pytest.raises(VideoNotFoundError, match="no indexed video"):
        lib.select("nope.mp4", "a star", sampler="topk")
    with pytest.raises(UnknownNameError, match="Known samplers"):
        lib.select(path, "a star", sampler="bolz")
    with pytest.raises(ConfigError, match="budget"):
        lib.select(path, "a star", sampler="topk", budget=0)
    with pytest.raises(ConfigError, match="budget"):
        lib.select(path, "a star", sampler="topk", budget=-3)
    with pytest.raises(ConfigError, match="tokens"):
        lib.select(path, "a star", sampler="topk", tokens=0)
    with pytest.raises(ConfigError, match="question"):
        lib.select(path, "  ", sampler="topk")
    with pytest.raises(ConfigError, match="has no parameter 'nonsense'"):
        lib.select(path, "a star", sampler="topk", params={"nonsense": 1})
    with pytest.raises(ConfigError, match=r"Did you mean 'power'\? Its parameters: power"):
        lib.select(path, "a star", sampler="bolt", params={"powr": 2})
    with pytest.raises(ConfigError, match="must be float"):
        lib.select(path, "a star", sampler="bolt", params={"power": [2]})
    with pytest.raises(ConfigError, match="not both"):
        lib.select(path, "a star", sampler="topk", budget=4, tokens=600)
    with pytest.raises(ConfigError, match="cheapest tier"):
        lib.select(path, "a star", sampler="topk", tokens=50)


def test_select_appends_query_log_and_stats_and_sql_see_it(world):
    lib, path, _ = world
    before = len(lib.sql("SELECT * FROM query_log"))
    res = lib.select(path, "a purple star", sampler="topk", budget=5)
    lib.select(path, "a purple star", sampler="topk", budget=4)
    rows = lib.sql("SELECT kind, sampler, budget, video_id, query, result_size FROM query_log "
                   "ORDER BY ts").to_pylist()
    assert len(rows) == before + 2
    assert rows[-2] == {"kind": "select", "sampler": "topk", "budget": 5,
                        "video_id": res.video_id, "query": "a purple star", "result_size": 5}
    stats = {(r["kind"], r["sampler"]): r for r in lib.stats()}
    topk = stats[("select", "topk")]
    assert topk["count"] >= 2 and 0 < topk["p50_ms"] <= topk["p95_ms"]
    videos = lib.sql("SELECT video_id, duration FROM videos").to_pylist()
    assert videos == [{"video_id": res.video_id, "duration": pytest.approx(90.0, abs=0.2)}]
    assert len(lib.sql("SELECT * FROM jobs")) == 0
    with pytest.raises(ConfigError, match="sql is invalid"):
        lib.sql("SELEC nothing")
    with pytest.raises(ConfigError) as ex:
        lib.sql("SELECT * FROM no_such_table")
    assert "\n" not in str(ex.value)


def test_frames_decodes_only_indexed_frames(world):
    lib, path, truth = world
    res = lib.select(path, "a purple star", sampler="topk", budget=2)
    images = lib.frames(res.video_id, res.frame_idx)
    assert [im.shape for im in images] == [(96, 96, 3)] * 2
    scene = truth.scene_at(res.timestamps[0])
    assert scene.background == "white"  # the needle scene
    assert images[0].mean() > 128  # a white background, decoded
    with pytest.raises(NotFoundError, match="not indexed"):
        lib.frames(res.video_id, [res.frame_idx[0] + 1])  # a native frame between grid points
