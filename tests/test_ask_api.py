"""Asking over HTTP: a real ``framedex serve`` (a subprocess, ``--vlm-url`` pointing at the
shipped answering model, both on loopback) driven by the official ``twelvelabs`` SDK
(``analyze``, ``analyze_stream``), by httpx on ``/v1`` (ask, answers, feedback, arm stats),
and the ``openai`` package against the answering model with framedex's own payload; then the
``framedex ask`` / ``feedback`` / ``stats --by arm`` commands on the same store."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import threading
from typing import Any

import httpx
import pytest
from api_server import kill9, start_cli_server
from asking import AFTER_Q, COLOUR_Q, COUNT_Q
from typer.testing import CliRunner

twelvelabs = pytest.importorskip("twelvelabs")
openai = pytest.importorskip("openai")
from twelvelabs import TwelveLabs  # noqa: E402
from twelvelabs.core.api_error import ApiError  # noqa: E402

from framedex.cli import app  # noqa: E402

pytestmark = pytest.mark.heavy  # servers, clusters or processes: not in make test-fast

KEY = "ask-key-0123456789"
MODEL = "framedex-shapes-vlm"
#: A rollout key the server's rollout (aks=0.5,bolt=0.5) assigns to bolt.
BOLT_KEY = "user-1"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def media_url(qa_video):
    handler = functools.partial(_Quiet, directory=str(qa_video.parent))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory, answerer, media_url):
    """``framedex serve`` with the answering model as its video LLM and a rollout."""
    db = tmp_path_factory.mktemp("ask_api") / "lib.db"
    proc, base = start_cli_server(db, "synthetic-shapes", "--api-key", KEY, "--vlm-url",
                                  answerer.url, "--vlm-model", MODEL, "--rollout",
                                  "aks=0.5,bolt=0.5", "--allow-url", media_url,
                                  "--max-upload-mb", "8")
    yield {"base": base, "db": db, "proc": proc}
    kill9(proc)


@pytest.fixture(scope="module")
def tl(server) -> TwelveLabs:
    return TwelveLabs(api_key=KEY, base_url=f"{server['base']}/v1.3")


@pytest.fixture(scope="module")
def v1(server):
    with httpx.Client(base_url=server["base"], headers={"x-api-key": KEY},
                      timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def asset(tl, qa_video) -> dict[str, Any]:
    """The QA video uploaded as an asset (not indexed), then analyzed: indexed first."""
    with open(qa_video, "rb") as fh:
        created = tl.assets.create(method="direct", file=fh)
    first = tl.analyze(video={"type": "asset_id", "asset_id": created.id}, prompt=COLOUR_Q)
    return {"id": created.id, "first": first}


def test_health_names_the_model_and_the_rollout(server):
    health = httpx.get(f"{server['base']}/health").json()
    assert health["vlm_model"] == MODEL and health["rollout"] == "aks=0.5,bolt=0.5"


def test_analyze_indexes_the_asset_first_and_answers(tl, asset, answerer):
    first = asset["first"]
    assert first.data == "purple" and first.finish_reason == "stop"
    assert first.usage.output_tokens == 1 and first.usage.input_tokens > 8 * 25
    extra = first.framedex  # what Twelve Labs has no field for
    assert extra["arm"] in ("aks", "bolt") and extra["sampler"] == extra["arm"]
    assert len(extra["timestamps"]) == 8 and not extra["cached"]
    assert extra["latency_ms"]["model"] > 0
    calls = answerer.answerer.calls
    again = tl.analyze(video={"type": "asset_id", "asset_id": asset["id"]}, prompt=COLOUR_Q)
    assert again.data == "purple" and again.framedex["cached"]
    assert again.framedex["source_id"] == first.id and answerer.answerer.calls == calls
    # the indexed asset's id (the video id) names the same video
    by_video = tl.analyze(video={"type": "asset_id", "asset_id": extra["video_id"]},
                          prompt=COLOUR_Q, model_name="pegasus1.2")
    assert by_video.data == "purple"


def test_analyze_stream(tl, asset):
    events = list(tl.analyze_stream(video={"type": "asset_id", "asset_id": asset["id"]},
                                    prompt=COUNT_Q))
    kinds = [e.event_type for e in events]
    assert kinds[0] == "stream_start" and kinds[-1] == "stream_end"
    assert set(kinds[1:-1]) == {"text_generation"}
    assert "".join(e.text for e in events[1:-1]) == "2"
    end = events[-1]
    assert end.finish_reason == "stop" and end.metadata.usage.output_tokens == 1
    assert end.metadata.generation_id == events[0].metadata.generation_id


def test_analyze_honours_span_max_tokens_and_response_format(tl, asset):
    video = {"type": "asset_id", "asset_id": asset["id"]}
    blind = tl.analyze(video=video, prompt=COLOUR_Q, start_time=20, end_time=60)
    assert "do not see a star" in blind.data
    assert all(20 <= t < 60 for t in blind.framedex["timestamps"])
    cut = tl.analyze(video=video, prompt="Describe this video.", max_tokens=4)
    assert cut.finish_reason == "length" and cut.usage.output_tokens <= 4
    assert "truncated" in cut.error.message
    schema = {"type": "object", "properties": {"colour": {"type": "string"}},
              "required": ["colour"]}
    shaped = tl.analyze(video=video, prompt=COLOUR_Q,
                        response_format={"type": "json_schema", "json_schema": schema})
    assert json.loads(shaped.data) == {"colour": "purple"}
    # the rollout's arm, pinned (by default it hangs on the video's id, which is its file's
    # hash: another PyAV build renders other bytes): bolt reads the order of the scenes
    warm = tl.analyze(video=video, prompt=AFTER_Q, temperature=0.3, request_options={
        "additional_headers": {"x-framedex-rollout-key": BOLT_KEY}})
    assert warm.framedex["sampler"] == "bolt" and warm.data == "triangle"


def test_analyze_takes_base64_and_allowed_urls(tl, asset, qa_video, media_url):
    data = base64.b64encode(qa_video.read_bytes()).decode()
    res = tl.analyze(video={"type": "base64_string", "base64_string": data}, prompt=COLOUR_Q)
    assert res.data == "purple"  # the same content: indexed once, answered from the cache
    res = tl.analyze(video={"type": "url", "url": media_url + qa_video.name}, prompt=COLOUR_Q)
    assert res.data == "purple"


@pytest.mark.parametrize("kwargs, status, code, word", [
    (dict(video={"type": "url", "url": "http://example.com/a.mp4"}, prompt=COLOUR_Q), 400,
     "parameter_invalid", "allowed"),
    (dict(video={"type": "asset_id", "asset_id": "0" * 24}, prompt=COLOUR_Q), 404,
     "resource_not_exists", "asset"),
    (dict(image=[{"url": "http://x/y.png"}], prompt=COLOUR_Q), 400, "unsupported", "image"),
    (dict(video={"type": "base64_string", "base64_string": "@@@"}, prompt="x"), 400,
     "parameter_invalid", "base64"),
])
def test_analyze_refusals_are_clear(tl, kwargs, status, code, word):
    with pytest.raises(ApiError) as err:
        tl.analyze(**kwargs)
    assert err.value.status_code == status and err.value.body["code"] == code
    assert word in err.value.body["message"]


def test_a_failing_model_is_a_502_naming_the_endpoint(tl, v1, asset, answerer):
    with pytest.raises(ApiError) as err:
        tl.analyze(video={"type": "asset_id", "asset_id": asset["id"]}, prompt=COLOUR_Q,
                   model_name="no-such-model")
    assert err.value.status_code == 502 and err.value.body["code"] == "model_endpoint_error"
    assert answerer.url in err.value.body["message"]
    with pytest.raises(ApiError) as err:  # streamed: the failure comes before the stream
        list(tl.analyze_stream(video={"type": "asset_id", "asset_id": asset["id"]},
                               prompt=COLOUR_Q, model_name="no-such-model"))
    assert err.value.status_code == 502 and answerer.url in err.value.body["message"]
    video_id = asset["first"].framedex["video_id"]
    r = v1.post(f"/v1/videos/{video_id}/ask", json={"question": COLOUR_Q,
                                                      "model": "no-such-model"})
    assert r.status_code == 502 and answerer.url in r.json()["error"]["message"]


# -- /v1 ------------------------------------------------------------------------------------


def test_v1_ask_feedback_and_arms(v1, asset):
    video_id = asset["first"].framedex["video_id"]
    answers = []
    for user in ("u1", "u2", "u3", "u4"):
        r = v1.post(f"/v1/videos/{video_id}/ask",
                    json={"question": COLOUR_Q, "budget": 6, "rollout_key": user})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["answer"] == "purple" and body["arm"] in ("aks", "bolt")
        assert len(body["timestamps"]) == 6 and body["usage"]["completion_tokens"] == 1
        assert set(body["latency_ms"]) == {"select", "deliver", "model", "total"}
        answers.append(body)
    named = v1.post(f"/v1/videos/{video_id}/ask",
                    json={"question": COLOUR_Q, "sampler": "topk", "budget": 6}).json()
    assert named["arm"] is None and named["sampler"] == "topk"
    for body in answers:
        r = v1.post(f"/v1/answers/{body['answer_id']}/feedback", json={"rating": "good"})
        assert r.status_code == 200 and r.json()["rating"] == "good"
    stored = v1.get(f"/v1/answers/{answers[0]['answer_id']}").json()
    assert stored["answer"] == "purple" and stored["arm"] == answers[0]["arm"]
    assert stored["timestamps"] == answers[0]["timestamps"] and stored["options"] == {}
    assert v1.get(f"/v1/answers/{'0' * 24}").status_code == 404
    assert v1.post(f"/v1/answers/{answers[0]['answer_id']}/feedback",
                     json={"rating": "great"}).status_code == 422
    arms = {a["arm"]: a for a in v1.get("/v1/stats/arms").json()["arms"]}
    assert sum(a["ratings"] for a in arms.values()) >= 4
    assert all(a["good_rate"] == 1.0 for a in arms.values() if a["ratings"])
    refused = v1.post(f"/v1/videos/{video_id}/ask",
                      json={"question": COLOUR_Q, "budget": 4, "tokens": 500})
    assert refused.status_code == 422


# -- the openai package against the answering model, with framedex's payload ----------------


def test_openai_package_against_the_answering_model(v1, asset, answerer):
    video_id = asset["first"].framedex["video_id"]
    sel = v1.post(f"/v1/videos/{video_id}/select",
                    json={"question": COLOUR_Q, "sampler": "aks", "budget": 8,
                          "include": ["payload"]}).json()
    payload = sel["payload"]
    client = openai.OpenAI(base_url=answerer.url, api_key="unused", max_retries=0)
    assert MODEL in [m.id for m in client.models.list()]
    reply = client.chat.completions.create(**{**payload, "model": MODEL})
    assert reply.choices[0].message.content == "purple"
    assert reply.usage.prompt_tokens > 8 * 25 and reply.usage.completion_tokens == 1
    chunks = list(client.chat.completions.create(**{**payload, "model": MODEL}, stream=True,
                                                 stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "purple" and chunks[-1].usage.total_tokens == reply.usage.total_tokens
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(**{**payload, "model": "gpt-4o"})


# -- the CLI on the same store ----------------------------------------------------------------


def test_cli_ask_feedback_and_stats(server, asset, answerer, monkeypatch):
    monkeypatch.setenv("FRAMEDEX_VLM_API_KEY", "sk-cli-secret-123")
    runner = CliRunner()
    db = str(server["db"])
    video_id = asset["first"].framedex["video_id"]
    args = ["ask", video_id[:8], COUNT_Q, "--db", db, "--vlm-url", answerer.url, "--vlm-model",
            MODEL, "--sampler", "uniform", "--budget", "32"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == "2"
    assert "uniform: 32 frames" in res.stderr and "sk-cli-secret" not in res.output
    answer_id = res.stderr.rsplit("answer ", 1)[1].split()[0]
    res = runner.invoke(app, [*args, "--json"])
    data = json.loads(res.stdout)
    assert data["cached"] and data["source_id"] == answer_id and data["answer"] == "2"
    res = runner.invoke(app, ["feedback", answer_id, "good", "--db", db])
    assert res.exit_code == 0 and "rated" in res.stdout
    res = runner.invoke(app, ["stats", "--by", "arm", "--db", db])
    assert res.exit_code == 0 and "aks" in res.stdout and "Wilson" in res.stderr
    res = runner.invoke(app, ["ask", video_id, COUNT_Q, "--db", db, "--vlm-url",
                              "http://127.0.0.1:9/v1", "--vlm-model", MODEL, "--no-cache",
                              "--vlm-retries", "0"])
    assert res.exit_code == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "cannot reach the video LLM at http://127.0.0.1:9/v1" in res.stderr
    res = runner.invoke(app, ["ask", video_id, COUNT_Q, "--db", db])
    assert res.exit_code == 1 and "--vlm-url is missing" in res.stderr
