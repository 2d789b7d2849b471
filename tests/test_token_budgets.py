"""Token budgets: tiered samplers (qframe, router) trade frames for resolution.

Costs are Gemini's defaults (high 258, mid 130, low 66 tokens per frame) unless a test sets a
Qwen-like per-resolution table. The video is synthetic: unit embeddings whose cosine to the
query is a designed curve (see tests/test_samplers_behaviour.py for the construction).
"""

from __future__ import annotations

import numpy as np
import pytest

from framedex.query.samplers import TokenBudget, create_sampler

N = 600
NEEDLE = (300, 320)
QWEN = {"high": 256, "mid": 64, "low": 16}


def video(peaked: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    curve = 0.20 + 0.01 * rng.standard_normal(N)
    if peaked:
        curve[NEEDLE[0]:NEEDLE[1]] = 0.33
    q = np.zeros(32)
    q[0] = 1.0
    u = rng.standard_normal((N, 32))
    u[:, 0] = 0.0
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return curve[:, None] * q + np.sqrt(1 - curve[:, None] ** 2) * u, q


def counts(tiers: list[str]) -> tuple[int, int, int]:
    return tiers.count("high"), tiers.count("mid"), tiers.count("low")


def cost(tiers: list[str], table: dict[str, int]) -> int:
    return sum(table[t] for t in tiers)


GEMINI = TokenBudget(1).tokens_per_tier


@pytest.mark.parametrize("tokens", [66, 300, 1000, 4184, 8192, 30000])
def test_qframe_stays_within_the_token_budget_and_reports_tiers(tokens):
    frames, q = video(peaked=True)
    res = create_sampler("qframe").select_result(frames, q, TokenBudget(tokens))
    assert len(res.indices) >= 1 and res.indices == sorted(set(res.indices))
    assert len(res.tiers) == len(res.indices)
    assert res.tokens_used == cost(res.tiers, GEMINI) <= tokens


def test_qframe_official_token_cost_gives_the_official_4_8_32_split():
    frames, q = video(peaked=True)
    official = 4 * 258 + 8 * 130 + 32 * 66  # 4,184 tokens
    res = create_sampler("qframe").select_result(frames, q, TokenBudget(official))
    assert counts(res.tiers) == (4, 8, 32)
    assert res.tokens_used == official


def test_qframe_tiers_follow_the_4_8_32_order():
    frames, q = video(peaked=True)
    for tokens in (2000, 8192, 20000):
        h, m, lo = counts(create_sampler("qframe").select_result(
            frames, q, TokenBudget(tokens)).tiers)
        assert 1 <= h <= m <= lo, (tokens, h, m, lo)
        assert lo == pytest.approx(4 * m, rel=0.2) and m == pytest.approx(2 * h, rel=0.25)


def test_qframe_more_tokens_never_give_fewer_frames_or_worse_tiers():
    frames, q = video(peaked=True)
    previous = (0, 0, 0)  # frames at >= high, >= mid, any tier
    for tokens in range(66, 12000, 97):
        h, m, lo = counts(
            create_sampler("qframe").select_result(frames, q, TokenBudget(tokens)).tiers)
        now = (h, h + m, h + m + lo)
        assert all(a >= b for a, b in zip(now, previous, strict=True)), (tokens, now, previous)
        previous = now
    assert previous[2] > 100


def test_qframe_high_tier_goes_to_the_most_relevant_frames():
    frames, q = video(peaked=True)
    res = create_sampler("qframe").select_result(frames, q, TokenBudget(8192))
    high = [i for i, t in zip(res.indices, res.tiers, strict=True) if t == "high"]
    assert high and all(NEEDLE[0] <= i < NEEDLE[1] for i in high)


def test_qframe_int_budget_splits_k_in_proportion():
    frames, q = video(peaked=True)
    sampler = create_sampler("qframe")
    assert counts(sampler.select_result(frames, q, 44).tiers) == (4, 8, 32)
    assert counts(sampler.select_result(frames, q, 8).tiers) == (1, 1, 6)
    one = sampler.select_result(frames, q, 1)
    assert one.tiers == ["high"] and one.tokens_used is None


def test_qframe_tiny_budget_still_returns_one_frame_at_the_best_tier_that_fits():
    frames, q = video(peaked=True)
    res = create_sampler("qframe").select_result(frames, q, TokenBudget(140))
    assert res.tiers == ["mid"] and res.tokens_used == 130


def test_qframe_is_seeded():
    frames, q = video(peaked=False)
    a = create_sampler("qframe", seed=0).select_result(frames, q, 16)
    assert create_sampler("qframe", seed=0).select_result(frames, q, 16) == a
    assert create_sampler("qframe", seed=1).select(frames, q, 16) != a.indices


def test_qframe_with_a_qwen_like_cost_table():
    frames, q = video(peaked=True)
    budget = TokenBudget(4096, tokens_per_tier=QWEN)
    res = create_sampler("qframe").select_result(frames, q, budget)
    assert res.tokens_used == cost(res.tiers, QWEN) <= 4096
    assert res.tokens_used > 4096 - 256  # no room left for another high frame's worth


def test_router_coverage_spends_tokens_on_many_low_frames():
    frames, q = video(peaked=False)
    res = create_sampler("router").select_result(frames, q, TokenBudget(8192))
    assert res.decision == "coverage"
    assert res.tiers == ["low"] * len(res.indices)
    assert len(res.indices) == 8192 // 66 and res.tokens_used <= 8192


def test_router_relevance_spends_tokens_on_fewer_high_frames():
    frames, q = video(peaked=True)
    res = create_sampler("router").select_result(frames, q, TokenBudget(8192))
    assert res.decision == "relevance"
    assert res.tiers == ["high"] * len(res.indices)
    assert len(res.indices) == 8192 // 258 and res.tokens_used <= 8192
    flat = create_sampler("router").select_result(*video(peaked=False), TokenBudget(8192))
    assert len(res.indices) < len(flat.indices)


@pytest.mark.parametrize("peaked", [False, True])
def test_router_more_tokens_give_more_frames(peaked):
    frames, q = video(peaked=peaked)
    sizes = [len(create_sampler("router").select_result(frames, q, TokenBudget(t)).indices)
             for t in (300, 3000, 30000)]
    assert sizes[0] < sizes[1] < sizes[2]


def test_router_tiny_budget_returns_one_frame_within_budget():
    frames, q = video(peaked=True)
    res = create_sampler("router").select_result(frames, q, TokenBudget(100))
    assert len(res.indices) == 1 and res.tokens_used <= 100 and res.tiers == ["low"]


@pytest.mark.parametrize("name", ["adard_key", "focus"])
def test_untiered_samplers_report_low_tier_tokens(name):
    frames, q = video(peaked=True)
    res = create_sampler(name).select_result(frames, q, TokenBudget(1000))
    assert len(res.indices) == 1000 // 66
    assert res.tiers == ["low"] * len(res.indices) and res.tokens_used <= 1000


def test_untiered_samplers_report_tokens_at_the_cheapest_tier():
    """Under a token budget, a sampler without tiers spends it as K frames at the low tier."""
    import numpy as np

    from framedex.query.samplers import TokenBudget, create_sampler

    rng = np.random.default_rng(0)
    emb = rng.standard_normal((300, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    budget = TokenBudget(1000, {"high": 258, "low": 66})
    sel = create_sampler("topk").select_result(emb, emb[5], budget)
    assert len(sel.indices) == 1000 // 66
    assert sel.tiers == ["low"] * len(sel.indices)
    assert sel.tokens_used == 66 * len(sel.indices) <= 1000


def test_a_short_video_spends_the_rest_of_the_budget_on_resolution():
    """aks on a 10-frame clip with --tokens 4096 sent all 10 frames at the low tier (660
    tokens): every frame fits, so the rest buys resolution, the most relevant frames first."""
    frames, q = video(peaked=True)
    short, rel = frames[:10], frames[:10] @ q
    res = create_sampler("aks").select_result(short, q, TokenBudget(4096))
    assert len(res.indices) == 10 and res.tiers == ["high"] * 10 and res.tokens_used == 2580
    res = create_sampler("aks").select_result(short, q, TokenBudget(1000))
    assert res.tokens_used <= 1000 and res.tokens_used > 1000 - 64
    best = int(np.argmax(rel))
    assert res.tiers[res.indices.index(best)] == "high"
    assert sorted(res.tiers, key=["high", "mid", "low"].index) == \
        [res.tiers[res.indices.index(int(i))] for i in np.argsort(-rel, kind="stable")]


def test_a_budget_larger_than_a_short_video_upgrades_frames_across_scenes():
    """`--tokens 4096` with AKS on a short video sent 12 consecutive seconds of one scene at
    the high tier: every frame fitted at the low tier, and the rest of the budget raised the
    most relevant frames first, all in the best scene. The upgrades now spread over scenes."""
    rng = np.random.default_rng(0)
    scenes = rng.standard_normal((3, 32))
    emb = np.repeat(scenes, 10, axis=0) + 0.01 * rng.standard_normal((30, 32))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    scores = np.repeat([0.30, 0.25, 0.20], 10) + 0.001 * rng.random(30)
    sel = create_sampler("aks").select_result(emb, None, TokenBudget(4096), scores=scores)
    assert len(sel.indices) == 30 and sel.tokens_used <= 4096
    high = [i for i, t in zip(sel.indices, sel.tiers, strict=True) if t == "high"]
    per_scene = [sum(i // 10 == s for i in high) for s in range(3)]
    assert sum(per_scene) == 11  # 4096 - 30 x 66 pays for 11 upgrades to high (+192 each)
    # each scene gets some, the most relevant the most (it took 10 of 11 before)
    assert per_scene[0] >= per_scene[1] >= per_scene[2] >= 1 and per_scene[0] <= 6, per_scene


def test_router_spends_high_frames_across_relevant_scenes_not_on_duplicates():
    """The router at 2,048 tokens picked 5 `high` frames of one 5-second scene (near-identical
    frames) and 2 of the next relevant one. Each relevant scene now gets a high frame before
    the best scene gets a second."""
    rng = np.random.default_rng(0)
    scenes, length = 12, 5
    emb = np.repeat(rng.standard_normal((scenes, 32)), length, axis=0)
    emb += 0.05 * rng.standard_normal(emb.shape)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    relevance = np.full(scenes, 0.18)
    relevance[[3, 7, 9]] = [0.34, 0.30, 0.29]
    scores = np.repeat(relevance, length) + 0.003 * rng.standard_normal(scenes * length)
    sel = create_sampler("router").select_result(emb, None, TokenBudget(2048), scores=scores)
    assert sel.decision == "relevance"
    assert sel.tiers == ["high"] * 7 and sel.tokens_used == 7 * 258
    picked = [i // length for i in sel.indices]
    assert {3, 7, 9} <= set(picked)
    assert picked.count(3) <= 2, picked
    # an int budget keeps the relevance sampler's own picks: the 7 most relevant frames
    top = create_sampler("router").select_result(emb, None, 7, scores=scores)
    assert top.indices == sorted(np.argsort(-scores)[:7].tolist())


def test_router_keeps_a_second_appearance_of_the_object_in_another_scene():
    """A needle shown twice (at 300 s and 1,020 s of a demo video): the spread must not treat
    the second appearance as a duplicate of the first (a penalty over the whole video sent
    unrelated scenes instead). Only frames of the same scene pay for looking alike."""
    rng = np.random.default_rng(1)
    scenes, length = 12, 5
    base = rng.standard_normal((scenes, 32))
    base[9] = base[3] + 0.2 * rng.standard_normal(32)  # the same object, later, elsewhere
    emb = np.repeat(base, length, axis=0) + 0.05 * rng.standard_normal((scenes * length, 32))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    relevance = np.full(scenes, 0.18)
    relevance[[3, 9]] = [0.34, 0.31]
    scores = np.repeat(relevance, length) + 0.003 * rng.standard_normal(scenes * length)
    sel = create_sampler("router").select_result(emb, None, TokenBudget(2048), scores=scores)
    picked = [i // length for i in sel.indices]
    assert {3, 9} <= set(picked) and picked.count(3) == picked.count(9) == 1, picked
