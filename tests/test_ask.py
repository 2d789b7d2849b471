"""``Library.ask`` end to end with the shipped answering model on loopback: answers come from
the frames sent, the answers cache (hit, miss, what changes the key, a re-index invalidates,
another process's store hit), the rollout (deterministic arms in the advertised proportions,
logged with each selection and answer), feedback and ``arm_stats`` with their intervals, and
a misbehaving endpoint (timeout, 5xx, garbage, no key leak)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from asking import AFTER_Q, COLOUR_Q, COUNT_Q, STAR_SPANS, BadEndpoint

from framedex.errors import (
    ConfigError,
    ModelEndpointError,
    NotFoundError,
    UnknownNameError,
    UnsupportedError,
)
from framedex.library import Library, Rollout, VLMEndpoint

pytestmark = pytest.mark.heavy  # the answering model's server and an 80 s video: not test-fast

ANSWERER_MODEL = "framedex-shapes-vlm"


@pytest.fixture(scope="module")
def store(tmp_path_factory, qa_video):
    """A store with the QA video indexed (by its path)."""
    db = tmp_path_factory.mktemp("ask") / "lib.db"
    with Library(db, model="synthetic-shapes") as lib:
        report = lib.index([qa_video])
        assert report.by_status("indexed")
    return db


@pytest.fixture()
def endpoint(answerer) -> VLMEndpoint:
    return VLMEndpoint(answerer.url, ANSWERER_MODEL, timeout_s=30)


@pytest.fixture()
def lib(store, endpoint):
    with Library(store, vlm=endpoint) as library:
        yield library


def test_answers_come_from_the_frames_sent(lib, answerer):
    calls = answerer.answerer.calls
    res = lib.ask("qa.mp4", COLOUR_Q, sampler="aks", budget=16, cache=False)
    assert res.answer == "purple" and not res.cached
    assert any(a <= t < b for t in res.timestamps for a, b in STAR_SPANS)
    assert res.prompt_tokens and res.prompt_tokens > 16 * 25  # 16 images of 128 px, and text
    assert res.completion_tokens == 1 and res.finish_reason == "stop"
    assert res.model_ms > 0 and res.deliver_ms > 0 and res.select_ms > 0
    assert res.latency_ms >= res.model_ms + res.select_ms
    assert answerer.answerer.calls == calls + 1
    # the same model shown only frames without a star cannot know its colour
    blind = lib.ask("qa.mp4", COLOUR_Q, sampler="aks", budget=16, start=20, end=60)
    assert all(20 <= t < 60 for t in blind.timestamps)
    assert "do not see a star" in blind.answer
    assert lib.ask("qa.mp4", AFTER_Q, sampler="bolt", budget=16).answer == "triangle"
    assert lib.ask("qa.mp4", COUNT_Q, sampler="uniform", budget=32).answer == "2"


def test_the_cache_answers_without_calling_the_model(lib, answerer):
    first = lib.ask("qa.mp4", COUNT_Q, sampler="aks", budget=8, cache=False)
    calls = answerer.answerer.calls
    again = lib.ask("qa.mp4", "  How many times  does the purple star appear? ",
                    sampler="aks", budget=8)
    assert again.cached and again.answer == first.answer
    assert again.source_id == first.answer_id and again.answer_id != first.answer_id
    assert again.timestamps == first.timestamps and again.prompt_tokens == first.prompt_tokens
    assert again.model_ms == 0 and again.latency_ms < 100
    assert answerer.answerer.calls == calls
    # every part of the key matters: budget, sampler, options, model, the question's text
    for changed in (dict(budget=9), dict(sampler="bolt"), dict(max_tokens=5),
                    dict(system="Answer in one word."), dict(start=1.0)):
        res = lib.ask("qa.mp4", COUNT_Q, **{"sampler": "aks", "budget": 8, **changed})
        assert not res.cached, changed
    assert not lib.ask("qa.mp4", COUNT_Q.lower(), sampler="aks", budget=8).cached
    with pytest.raises(ModelEndpointError, match="does not exist"):
        lib.ask("qa.mp4", COUNT_Q, sampler="aks", budget=8, model="another-model")
    # cache=False asks again and the fresh answer becomes the entry
    fresh = lib.ask("qa.mp4", COUNT_Q, sampler="aks", budget=8, cache=False)
    assert not fresh.cached
    assert lib.ask("qa.mp4", COUNT_Q, sampler="aks", budget=8).source_id == fresh.answer_id


def test_another_process_finds_the_stored_answer(store, endpoint, answerer):
    with Library(store, vlm=endpoint) as first:
        made = first.ask("qa.mp4", AFTER_Q, sampler="mmr", budget=12, cache=False)
    calls = answerer.answerer.calls
    with Library(store, vlm=endpoint) as second:  # nothing in memory: read from the store
        hit = second.ask("qa.mp4", AFTER_Q, sampler="mmr", budget=12)
    assert hit.cached and hit.source_id == made.answer_id and hit.answer == made.answer
    assert answerer.answerer.calls == calls
    row = second.answer(hit.answer_id)
    assert row["cached"] and row["prompt_tokens"] == 0 and row["source_id"] == made.answer_id


def test_a_reindex_invalidates_the_answers(tmp_path, qa_video, endpoint, answerer):
    with Library(tmp_path / "lib.db", model="synthetic-shapes", vlm=endpoint) as lib:
        lib.index([qa_video])
        old = lib.ask("qa.mp4", COLOUR_Q, sampler="topk", budget=8)
        assert lib.ask("qa.mp4", COLOUR_Q, sampler="topk", budget=8).cached
        lib.index([qa_video], fps=2.0)  # a new generation of the same content
        calls = answerer.answerer.calls
        new = lib.ask("qa.mp4", COLOUR_Q, sampler="topk", budget=8)
        assert not new.cached and new.cache_key != old.cache_key
        assert answerer.answerer.calls == calls + 1
        lib.optimize()  # (the re-index's own upkeep may have swept them already)
        left = lib.sql("SELECT answer_id FROM answers").column("answer_id").to_pylist()
        assert old.answer_id not in left and new.answer_id in left
        assert lib.ask("qa.mp4", COLOUR_Q, sampler="topk", budget=8).cached


def test_streamed_answer_is_the_same_and_is_cached(lib):
    stream = lib.ask_stream("qa.mp4", COLOUR_Q, sampler="bolt", budget=16, cache=False)
    assert stream.result is None
    pieces = list(stream)
    assert "".join(pieces) == stream.result.answer == "purple"
    assert stream.result.answer_id == stream.answer_id
    assert stream.result.prompt_tokens and stream.result.completion_tokens == 1
    hit = lib.ask_stream("qa.mp4", COLOUR_Q, sampler="bolt", budget=16)
    assert list(hit) == ["purple"] and hit.result.cached


def test_asking_without_a_model_or_with_bad_options_is_refused(store, lib):
    with Library(store) as bare, pytest.raises(UnsupportedError, match="--vlm-url"):
        bare.ask("qa.mp4", COLOUR_Q)
    for bad in (dict(temperature=3.0), dict(max_tokens=0), dict(budget=2, tokens=500),
                dict(start=30, end=20), dict(response_format={"type": "yaml"}),
                dict(system="")):
        with pytest.raises(ConfigError):
            lib.ask("qa.mp4", COLOUR_Q, **bad)
    with pytest.raises(ConfigError, match="no indexed frame"):
        lib.ask("qa.mp4", COLOUR_Q, start=500, end=600)
    with pytest.raises(ConfigError, match="credentials"):
        VLMEndpoint("http://user:secret@127.0.0.1:1/v1", "m")


# -- rollout --------------------------------------------------------------------------------


def test_rollout_assignment_is_deterministic_and_proportional():
    rollout = Rollout.parse("aks=0.9,bolt=0.1")
    keys = [f"user-{i}" for i in range(10_000)]
    arms = [rollout.assign(k) for k in keys]
    share = arms.count("bolt") / len(arms)
    assert abs(share - 0.1) < 0.012  # 4 standard errors of a 10 % share over 10,000 keys
    again = Rollout.parse("aks=0.9,bolt=0.1")  # another instance (process, replica)
    assert arms == [again.assign(k) for k in keys]
    three = Rollout.parse({"uniform": 0.5, "aks": 0.3, "bolt": 0.2})
    got = [three.assign(k) for k in keys]
    for name, want in (("uniform", 0.5), ("aks", 0.3), ("bolt", 0.2)):
        assert abs(got.count(name) / len(got) - want) < 0.02, name
    # growing the last arm only moves keys into it: every BOLT user stays on BOLT
    wider = Rollout.parse("aks=0.8,bolt=0.2")
    assert all(wider.assign(k) == "bolt" for k, a in zip(keys, arms, strict=True)
               if a == "bolt")
    # another salt is another split
    other = Rollout((("aks", 0.9), ("bolt", 0.1)), salt="experiment-2")
    assert [other.assign(k) for k in keys] != arms


@pytest.mark.parametrize("spec, message", [
    ("aks=0.9,bolt=0.2", "sum to 1"), ("aks=0.9,bolt", "SAMPLER=SHARE"),
    ("aks=1,nope=0", "nope"), ("aks=0.5,aks=0.5", "twice"), ("aks=x", "number"),
])
def test_bad_rollouts_are_one_clear_error(spec, message):
    with pytest.raises((ConfigError, UnknownNameError), match=message):
        Rollout.parse(spec)


def test_the_arm_is_logged_with_each_selection_and_answer(store, endpoint):
    with Library(store, vlm=endpoint, rollout="aks=0.5,bolt=0.5") as lib:
        picks = {}
        for user in ("ana", "bo", "cy", "dee", "eve", "fay"):
            sel = lib.select("qa.mp4", COLOUR_Q, budget=8, rollout_key=user)
            assert sel.arm == sel.sampler == lib.rollout.assign(user)
            res = lib.ask("qa.mp4", COLOUR_Q, budget=8, rollout_key=user)
            assert res.arm == res.sampler == sel.arm
            picks[user] = res.arm
        named = lib.select("qa.mp4", COLOUR_Q, sampler="topk", rollout_key="ana")
        assert named.arm is None
        assert set(picks.values()) == {"aks", "bolt"}
        logged = lib.sql("SELECT arm, count(*) AS n FROM query_log WHERE kind = 'select' "
                         "AND arm IS NOT NULL GROUP BY arm").to_pylist()
        assert sum(r["n"] for r in logged) >= 6
        answers = lib.sql("SELECT arm, sampler FROM answers WHERE arm IS NOT NULL").to_pylist()
        assert all(r["arm"] == r["sampler"] for r in answers) and len(answers) >= 6


# -- feedback and arm statistics ------------------------------------------------------------


def test_feedback_and_arm_stats(tmp_path, qa_video, endpoint):
    with Library(tmp_path / "lib.db", model="synthetic-shapes", vlm=endpoint,
                 rollout="aks=0.5,uniform=0.5") as lib:
        lib.index([qa_video])
        results = [lib.ask("qa.mp4", COLOUR_Q, budget=4, rollout_key=f"user-{i}")
                   for i in range(12)]
        for r in results:  # the user says whether the answer was right
            lib.feedback(r.answer_id, "good" if r.answer == "purple" else "bad")
        lib.feedback(results[0].answer_id, "bad", comment="changed my mind")
        with pytest.raises(NotFoundError):
            lib.feedback("0" * 24, "good")
        with pytest.raises(ConfigError):
            lib.feedback(results[0].answer_id, "meh")
        stats = lib.arm_stats()
    arms = {a["arm"]: a for a in stats["arms"]}
    assert set(arms) == {"aks", "uniform"} and stats["rollout"] == "aks=0.5,uniform=0.5"
    by_arm = {name: [r for r in results if r.arm == name] for name in arms}
    for name, a in arms.items():
        rs = by_arm[name]
        good = sum(r.answer == "purple" for r in rs) - (results[0].arm == name
                                                        and results[0].answer == "purple")
        assert a["asks"] == len(rs) and a["ratings"] == len(rs) and a["good"] == good
        assert a["cached"] == sum(r.cached for r in rs)
        lo, hi = a["good_rate_ci"]
        assert lo <= a["good_rate"] <= hi
        if a["model_calls"] >= 6:
            mlo, mhi = a["model_p50_ci"]
            assert mlo <= a["model_p50_ms"] <= mhi
        tlo, thi = a["tokens_ci"] or (a["tokens_mean"], a["tokens_mean"])
        assert tlo <= a["tokens_mean"] <= thi
    assert stats["reference"] in arms
    other = next(a for n, a in arms.items() if n != stats["reference"])
    # AKS finds the star in 4 frames; uniform's 4 frames (0, 26, 53, 79 s) miss both scenes,
    # and the difference is clear even on a dozen users
    assert all(r.answer == "purple" for r in by_arm["aks"])
    assert not any(r.answer == "purple" for r in by_arm["uniform"])
    lo, hi = other["good_rate_diff_ci"]
    assert lo <= other["good_rate_diff"] <= hi and (hi < 0 or lo > 0)


def test_interval_formulas_match_published_values():
    from framedex.store.sql import median_ci, newcombe, wilson

    lo, hi = wilson(81, 263)  # Newcombe (1998a), the score interval of 81/263
    assert (round(lo, 4), round(hi, 4)) == (0.2553, 0.3662)
    lo, hi = newcombe(56, 70, 48, 80)  # Newcombe (1998b), method 10
    assert (round(lo, 4), round(hi, 4)) == (0.0524, 0.3339)
    assert median_ci(np.arange(1, 11)) == (2.0, 9.0)  # x(2), x(9): 97.9 % coverage
    assert median_ci(np.arange(1, 101)) == (40.0, 61.0)
    assert median_ci([1, 2, 3]) is None


# -- a misbehaving endpoint -----------------------------------------------------------------


@pytest.fixture(scope="module")
def bad():
    server = BadEndpoint()
    yield server
    server.close()


@pytest.mark.parametrize("mode, message", [
    ("slow", r"did not answer within 0\.3 s \(1 retry\)"),
    ("500", r"answered HTTP 500 \(1 retry\): .*GPU on fire"),
    ("text", "not a chat completion|without choices|failed"),
    ("nochoices", "without choices"),
])
def test_a_failing_endpoint_is_one_clear_error(lib, bad, mode, message, monkeypatch):
    monkeypatch.setenv("FRAMEDEX_TEST_VLM_KEY", "sk-secret-1234567890")
    bad.mode = mode
    before = bad.requests
    endpoint = VLMEndpoint(bad.url, "m", api_key_env="FRAMEDEX_TEST_VLM_KEY", timeout_s=0.3,
                           retries=1)
    t0 = time.monotonic()
    with pytest.raises(ModelEndpointError, match=message) as err:
        lib.ask("qa.mp4", COLOUR_Q, vlm=endpoint, sampler="topk", budget=2, cache=False)
    elapsed = time.monotonic() - t0
    assert bad.url in str(err.value) and "sk-secret" not in str(err.value)
    assert "\n" not in str(err.value)
    retried = mode in ("slow", "500")
    assert bad.requests - before == (2 if retried else 1)
    assert elapsed < (0.3 * 2 + 2.5 if mode == "slow" else 3.0)  # bounded: no hang
    assert bad.auth[-1] == "Bearer sk-secret-1234567890"  # the key, from the environment
    # nothing was stored for a failed ask
    assert not lib.sql("SELECT * FROM answers WHERE endpoint = "
                       f"'{bad.url}' AND answer IS NULL").num_rows


def test_a_good_reply_stores_no_key(lib, bad, monkeypatch):
    monkeypatch.setenv("FRAMEDEX_TEST_VLM_KEY", "sk-secret-1234567890")
    bad.mode = "ok"
    endpoint = VLMEndpoint(bad.url, "m", api_key_env="FRAMEDEX_TEST_VLM_KEY")
    res = lib.ask("qa.mp4", COLOUR_Q, vlm=endpoint, sampler="topk", budget=2, cache=False)
    assert res.answer == "blue" and res.prompt_tokens == 7 and res.endpoint == bad.url
    lib.answers.flush()
    rows = lib.sql("SELECT * FROM answers").to_pylist()
    assert rows and not any("sk-secret" in str(v) for r in rows for v in r.values())
    assert "sk-secret" not in repr(endpoint)
    unreachable = VLMEndpoint("http://127.0.0.1:9/v1", "m", retries=0, timeout_s=2)
    with pytest.raises(ModelEndpointError, match=r"cannot reach the video LLM at "
                                                 r"http://127\.0\.0\.1:9/v1"):
        lib.ask("qa.mp4", COLOUR_Q, vlm=unreachable, sampler="topk", budget=2, cache=False)


def test_an_older_query_log_gets_the_arm_column(tmp_path):
    import pyarrow as pa

    from framedex.store import QueryLog, open_store
    from framedex.store.schema import QUERY_LOG_SCHEMA, now_utc
    from framedex.store.sql import arm_stats

    store = open_store(tmp_path / "old.db")
    old = pa.schema([f for f in QUERY_LOG_SCHEMA if f.name != "arm"])
    row = {"ts": now_utc(), "kind": "select", "sampler": "aks", "budget": 8, "tokens": None,
           "video_id": "v", "query": "q", "latency_ms": 1.0, "result_size": 8, "params": "{}",
           "cache_hit": True}
    store.tables.append("query_log", pa.Table.from_pylist([row], schema=old), old)
    assert arm_stats(store)["arms"] == []  # a table without the column is read as no arms
    qlog = QueryLog(store)
    qlog.record(kind="select", query="q", latency_ms=2.0, result_size=8, sampler="bolt",
                arm="bolt")
    qlog.close()
    rows = store.table_arrow("query_log").to_pylist()
    assert [r.get("arm") for r in rows] == [None, "bolt"]
    assert [a["arm"] for a in arm_stats(store)["arms"]] == ["bolt"]
