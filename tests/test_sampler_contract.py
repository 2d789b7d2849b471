"""The sampler contract, checked on every registered sampler (``list_samplers()``).

Every sampler, with its defaults, must return exactly min(K, N) distinct ascending in-range
positions for any valid input, return everything when K >= N, reject bad budgets by name, be
deterministic, and (when it uses the query) agree between the embedding and the scores entry
points.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framedex.errors import ConfigError, UnknownNameError
from framedex.query.samplers import create_sampler, list_samplers

SAMPLERS = list_samplers()


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def video(n: int, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth 'video' (random walk on the sphere, so shots/similarity mean something)."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.standard_normal((n, d)) * 0.3, axis=0) + rng.standard_normal(d)
    emb = walk / np.linalg.norm(walk, axis=1, keepdims=True)
    q = emb[n // 3] + 0.5 * unit_rows(rng, 1, d)[0]
    return emb, q / np.linalg.norm(q)


def assert_valid(idx: list[int], n: int, k: int) -> None:
    assert isinstance(idx, list) and all(isinstance(i, int) for i in idx)
    assert len(idx) == min(k, n), f"expected {min(k, n)} frames, got {len(idx)}: {idx}"
    assert idx == sorted(set(idx)), f"not distinct ascending: {idx}"
    assert all(0 <= i < n for i in idx), idx


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize(("n", "k"), [(1, 1), (1, 5), (2, 1), (7, 3), (50, 1), (50, 2),
                                      (50, 8), (50, 49), (50, 50), (50, 80), (300, 32),
                                      (300, 48), (300, 64)])
def test_exact_count_distinct_ascending(name: str, n: int, k: int) -> None:
    emb, q = video(n)
    assert_valid(create_sampler(name).select(emb, q, k), n, k)


@pytest.mark.parametrize("name", SAMPLERS)
def test_budget_at_least_n_returns_everything(name: str) -> None:
    emb, q = video(20)
    assert create_sampler(name).select(emb, q, 20) == list(range(20))
    assert create_sampler(name).select(emb, q, 10_000) == list(range(20))


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("budget", [0, -1, "x", 2.5, None])
def test_bad_budget_is_a_config_error_naming_budget(name: str, budget: object) -> None:
    emb, q = video(20)
    with pytest.raises(ConfigError, match="budget"):
        create_sampler(name).select(emb, q, budget)  # type: ignore[arg-type]


def test_unknown_sampler_lists_names_and_suggests_closest() -> None:
    with pytest.raises(UnknownNameError) as info:
        create_sampler("bolts")
    msg = str(info.value)
    assert "Did you mean 'bolt'?" in msg
    for name in SAMPLERS:
        assert name in msg


@pytest.mark.parametrize("name", SAMPLERS)
def test_deterministic(name: str) -> None:
    emb, q = video(400, seed=3)
    first = create_sampler(name).select(emb, q, 17)
    assert create_sampler(name).select(emb.copy(), q.copy(), 17) == first


@pytest.mark.parametrize("name", [s for s in SAMPLERS if create_sampler(s).query_aware])
def test_scores_entry_point_agrees_with_query(name: str) -> None:
    emb, q = video(300, seed=5)
    sampler = create_sampler(name)
    by_query = sampler.select(emb, q, 24)
    by_scores = sampler.select_scores(emb @ q, 24, frame_embeddings=emb)
    assert by_scores == by_query


@pytest.mark.parametrize("name", [s for s in SAMPLERS if create_sampler(s).query_aware])
def test_query_aware_samplers_follow_the_query(name: str) -> None:
    """Relevance concentrated on frames 200..209 must pull at least one pick there."""
    emb, _ = video(300, seed=7)
    scores = np.zeros(300)
    scores[200:210] = 1.0
    idx = create_sampler(name).select_scores(scores, 8, frame_embeddings=emb)
    assert any(200 <= i < 210 for i in idx), idx


@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("kind", ["constant", "extreme", "tiny_spread"])
def test_degenerate_scores(name: str, kind: str) -> None:
    n = 120
    emb, _ = video(n, seed=11)
    rng = np.random.default_rng(1)
    scores = {
        "constant": np.full(n, 0.3),
        "extreme": rng.choice([-1e308, 1e308, 0.0, 5e307], size=n),
        "tiny_spread": 0.2 + rng.random(n) * 1e-12,
    }[kind]
    sampler = create_sampler(name)
    for k in (1, 2, 3, 8, 32, 64, 119):
        assert_valid(sampler.select_scores(scores, k, frame_embeddings=emb), n, k)


@pytest.mark.parametrize("name", SAMPLERS)
def test_large_video(name: str) -> None:
    n = 100_000
    emb, q = video(n, d=8, seed=2)
    assert_valid(create_sampler(name).select(emb.astype(np.float32), q, 64), n, 64)


@pytest.mark.parametrize("name", SAMPLERS)
def test_float32_storage_matches_float64(name: str) -> None:
    """Storage precision must not change the frames picked on well-separated scores."""
    emb, q = video(200, seed=13)
    a = create_sampler(name).select(emb, q, 16)
    b = create_sampler(name).select(emb.astype(np.float32), q.astype(np.float32), 16)
    assert len(set(a) ^ set(b)) <= 2  # float32 cosines may flip a near-tie, not the picture


def test_uniform_and_fps_conventions() -> None:
    emb, _ = video(100)
    assert create_sampler("uniform").select(emb, None, 5) == [0, 25, 50, 74, 99]
    # 30 fps native grid, 10 s of video: target 1 fps -> one frame per second
    ts = np.arange(300) / 30.0
    emb3, _ = video(300)
    idx = create_sampler("fps", target_fps=1.0).select(emb3, None, 64, timestamps=ts)
    assert len(idx) == 64  # filled up to K by default
    only = create_sampler("fps", target_fps=1.0, fill=False).select(emb3, None, 64,
                                                                   timestamps=ts)
    assert only == [30 * s for s in range(10)]
    capped = create_sampler("fps", target_fps=2.0, fill=False).select(emb3, None, 4,
                                                                    timestamps=ts)
    assert capped == [0, 90, 195, 285]


def test_topk_ties_go_to_earlier_frames() -> None:
    scores = np.array([0.5, 0.9, 0.5, 0.9, 0.1, 0.9])
    assert create_sampler("topk").select_scores(scores, 2) == [1, 3]
    assert create_sampler("topk").select_scores(scores, 4) == [0, 1, 3, 5]


def test_shots_picks_one_frame_per_shot() -> None:
    rng = np.random.default_rng(4)
    centres = unit_rows(rng, 4, 32)
    emb = np.repeat(centres, [10, 20, 5, 15], axis=0) + 0.01 * rng.standard_normal((50, 32))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    idx = create_sampler("shots").select(emb, None, 4)
    assert idx == [4, 19, 32, 42]  # the middle frame of each shot
    scores = np.zeros(50)
    scores[[1, 29, 34, 35]] = 1.0
    assert create_sampler("shots").select_scores(scores, 4, frame_embeddings=emb) == [1, 29, 34, 35]


def test_mmr_prefers_diverse_frames() -> None:
    rng = np.random.default_rng(8)
    a, b = unit_rows(rng, 2, 16)
    emb = np.stack([a, a, a, b])
    scores = np.array([1.0, 0.99, 0.98, 0.6])
    assert create_sampler("topk").select_scores(scores, 2) == [0, 1]
    assert create_sampler("mmr").select_scores(scores, 2, frame_embeddings=emb) == [0, 3]


def test_bad_parameters_name_the_parameter() -> None:
    cases = {"bolt": {"power": -2}, "aks": {"all_depth": -1}, "vilamp": {"f2f_thrd": 3},
             "mmr": {"theta": 1.5}, "fps": {"target_fps": 0}, "shots": {"z": 0}}
    for name, params in cases.items():
        (param,) = params
        with pytest.raises(ConfigError, match=param):
            create_sampler(name, **params)
    with pytest.raises(ConfigError, match="bolt"):
        create_sampler("bolt", nonsense=1)


@pytest.mark.parametrize("name", SAMPLERS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 40), k=st.integers(1, 50), d=st.integers(2, 8),
       seed=st.integers(0, 2**32 - 1), constant=st.booleans())
def test_property_exact_count(name: str, n: int, k: int, d: int, seed: int,
                              constant: bool) -> None:
    rng = np.random.default_rng(seed)
    emb = unit_rows(rng, n, d)
    q = unit_rows(rng, 1, d)[0]
    sampler = create_sampler(name)
    scores = np.full(n, 0.25) if constant else emb @ q
    idx = sampler.select_scores(scores, k, frame_embeddings=emb)
    assert_valid(idx, n, k)
    assert sampler.select_scores(scores.copy(), k, frame_embeddings=emb.copy()) == idx
    if not constant:
        assert_valid(sampler.select(emb, q, k), n, k)
