"""The request rules are one table in the core (``framedex.rules``), and every face derives
from it.

- Each rule's boundary values, just inside and just outside, get the same answer from the CLI,
  the Python API and HTTP: accepted by all three, or refused by all three in the library's own
  words (and on HTTP as an error of the request's field).
- The API's OpenAPI schema documents the table's bounds and choices; the CLI's help names the
  table's choices and costs.
- One ``POST /v1/videos/{id}/select`` checks each rule once.
"""

from __future__ import annotations

import collections
import sys
import threading
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from api_server import ThreadServer, model_spec
from typer.testing import CliRunner

from framedex.cli import app
from framedex.errors import ConfigError
from framedex.rules import (
    GROUP_BY,
    INCLUDE,
    LIMITS,
    OPERATORS,
    PAYLOAD_FORMATS,
    TIERS,
    tier_costs_text,
)

KEY = "rules-key-0123456789"


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model, small_video):
    """A one-video store, the Library on it, and a server on it."""
    from framedex import Library
    from framedex.api.settings import Settings

    db = tmp_path_factory.mktemp("rules") / "lib.db"
    model = model_spec(tiny_model)
    lib = Library(db, model=model, device="cpu", log_queries=False)
    (outcome,) = lib.index([small_video]).by_status("indexed")
    settings = Settings(db=str(db), model=model, device="cpu", api_key=KEY, log_queries=False)
    with ThreadServer(settings) as srv, httpx.Client(
            base_url=srv.base, headers={"x-api-key": KEY}, timeout=120) as client:
        yield {"lib": lib, "db": str(db), "model": model, "video": outcome.video_id,
               "http": client, "openapi": client.get("/openapi.json").json()}
    lib.close()


@dataclass(frozen=True)
class Case:
    """One request with one value at a rule's boundary, as each face spells it."""

    param: str  # the rule: a key of LIMITS
    value: Any  # what the request carries (a text's length for text rules)
    inside: bool  # what the table says the answer is
    command: str  # "select" or "search"


def _boundary(param: str, command: str) -> list[Case]:
    """Just outside, at, and (for a bounded rule) at and just past the top of the rule."""
    limit = LIMITS[param]
    step = 1
    low, high = int(limit.low), None if limit.high is None else int(limit.high)
    cases = [Case(param, low - step, False, command), Case(param, low, True, command)]
    if high is not None:
        cases += [Case(param, high, True, command), Case(param, high + step, False, command)]
    if limit.kind == "length" or param == "parts":
        # no text, no part: another rule ("give a text or an image"), the faces' own parsers
        cases = [c for c in cases if c.value >= 1]
    return cases


CASES = [*_boundary("question", "select"), *_boundary("budget", "select"),
         *_boundary("tokens", "select"), *_boundary("max_side", "select"),
         *_boundary("text", "search"), *_boundary("limit", "search"),
         *_boundary("parts", "search")]


def _text(n: int) -> str:
    return ("a red circle " * (n // 13 + 1))[:n - 1] + "."


def _python(world: dict[str, Any], case: Case) -> str | None:
    lib, video = world["lib"], world["video"]
    try:
        if case.command == "select":
            question = _text(case.value) if case.param == "question" else "a red circle"
            kwargs = {case.param: case.value} if case.param in ("budget", "tokens") else {}
            result = lib.select(video, question, sampler="uniform", **kwargs)
            if case.param == "max_side":
                lib.deliver(result, include=(), max_side=case.value)
        else:
            texts = _texts(case)
            lib.search(texts, operator="or", **(
                {"limit": case.value} if case.param == "limit" else {}))
    except ConfigError as ex:
        return str(ex)
    return None


def _texts(case: Case) -> list[str]:
    if case.param == "text":
        return [_text(case.value)]
    if case.param == "parts":
        return ["a red circle"] * case.value
    return ["a red circle"]


def _cli(world: dict[str, Any], case: Case) -> str | None:
    common = ["--db", world["db"], "--model", world["model"], "--device", "cpu", "--json"]
    if case.command == "select":
        question = _text(case.value) if case.param == "question" else "a red circle"
        option = {"budget": "--budget", "tokens": "--tokens", "max_side": "--max-side"}
        extra = [option[case.param], str(case.value)] if case.param in option else []
        args = ["select", world["video"], question, "--sampler", "uniform", *extra]
    else:
        first, *more = _texts(case)
        args = ["search", first, *[a for t in more for a in ("--and", t)]]
        if case.param == "limit":
            args += ["--limit", str(case.value)]
    run = CliRunner().invoke(app, [*args, *common])
    if run.exit_code == 0:
        return None
    lines = run.stderr.strip().splitlines()
    assert run.exit_code == 1 and len(lines) == 1, run.stderr
    assert lines[0].startswith("framedex: error: "), lines[0]
    return lines[0].removeprefix("framedex: error: ")


#: The API field each rule's value travels in.
FIELDS = {"question": "question", "budget": "budget", "tokens": "tokens",
          "max_side": "frame_max_side", "text": "text", "limit": "limit", "parts": "text"}


def _http(world: dict[str, Any], case: Case) -> tuple[str | None, str | None]:
    """(the error message, the field it names), or (None, None) when accepted."""
    if case.command == "select":
        body: dict[str, Any] = {"question": "a red circle", "sampler": "uniform"}
        body[FIELDS[case.param]] = _text(case.value) if case.param == "question" else case.value
        r = world["http"].post(f"/v1/videos/{world['video']}/select", json=body)
    else:
        body = {"text": _texts(case), "operator": "or"}
        if case.param == "limit":
            body["limit"] = case.value
        r = world["http"].post("/v1/search", json=body)
    if r.status_code == 200:
        return None, None
    assert r.status_code == 422, r.text[:300]
    err = r.json()["error"]
    assert err["code"] == "invalid_parameter", err
    return err["message"], (err.get("detail") or [{}])[0].get("field")


def _flat(message: str) -> str:
    return " ".join(message.split())


@pytest.mark.heavy  # a server on loopback: not in make test-fast
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.command}-{c.param}-{c.value}")
def test_each_boundary_gets_the_same_answer_from_the_cli_python_and_http(world, case):
    python = _python(world, case)
    cli = _cli(world, case)
    http, field = _http(world, case)
    assert (python is None) is case.inside, python
    assert (cli is None) is case.inside, cli
    assert (http is None) is case.inside, http
    if not case.inside:
        assert python is not None and cli is not None and http is not None
        # the library's words, on every face
        name, rule = _flat(python).split("=", 1)  # the CLI may name its option instead
        assert any(f"{n}={rule}" in cli for n in (name, f"--{name.replace('_', '-')}")), \
            (python, cli)
        assert _flat(python) in _flat(http), (python, http)
        assert python.startswith(f"{FIELDS[case.param] if case.param == 'parts' else case.param}=")
        assert field == f"body.{FIELDS[case.param]}", (field, http)


def test_the_api_documents_the_tables_bounds_and_choices(world):
    """The OpenAPI schema's bounds, choices and defaults are the core table's."""
    doc = world["openapi"]
    paths = doc["paths"]
    select = paths["/v1/videos/{video_id}/select"]["post"]["requestBody"]["content"]
    props = select["application/json"]["schema"]["properties"]
    for param in ("budget", "tokens"):
        assert props[param]["minimum"] == LIMITS[param].low, param
        assert props[param]["maximum"] == LIMITS[param].high, param
    assert props["question"]["maxLength"] == LIMITS["question"].high
    assert props["frame_max_side"]["minimum"] == LIMITS["max_side"].low
    assert props["frame_max_side"]["maximum"] == LIMITS["max_side"].high
    assert props["payload_format"]["enum"] == list(PAYLOAD_FORMATS)
    assert props["include"]["items"]["enum"] == list(INCLUDE)
    search = paths["/v1/search"]["post"]["requestBody"]["content"]
    props = search["application/json"]["schema"]["properties"]
    assert props["limit"]["minimum"] == LIMITS["limit"].low
    assert props["limit"]["maximum"] == LIMITS["limit"].high
    assert props["group_by"]["enum"] == list(GROUP_BY)
    assert props["operator"]["enum"] == list(OPERATORS)
    texts = next(s for s in props["text"]["anyOf"] if s.get("type") == "array")
    assert texts["maxItems"] == LIMITS["parts"].high
    assert texts["items"]["maxLength"] == LIMITS["text"].high
    form = search["multipart/form-data"]["schema"]["properties"]
    assert form["group_by"]["enum"] == list(GROUP_BY)
    assert form["limit"]["maximum"] == LIMITS["limit"].high


def test_the_cli_help_names_the_tables_choices():
    select = CliRunner().invoke(app, ["select", "--help"], terminal_width=200).stdout
    assert tier_costs_text() in " ".join(select.split())
    assert all(name in select for name in PAYLOAD_FORMATS)
    search = CliRunner().invoke(app, ["search", "--help"], terminal_width=200).stdout
    assert " or ".join(GROUP_BY) in search
    assert "/".join(TIERS) in tier_costs_text()


def test_one_select_checks_each_rule_once(world):
    """Every call of ``framedex.errors.check`` during one ``POST .../select``, by the parameter
    it checks: the question, the token budget, the payload format, the include list and the
    tiers the sampler chose are each checked once (four times the question, four times the
    budget, six times the tiers and three times the payload format before)."""
    from fastapi.testclient import TestClient

    from framedex.api.app import create_app
    from framedex.api.settings import Settings
    from framedex.errors import check

    counts: collections.Counter[str] = collections.Counter()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code is check.__code__:
            counts[frame.f_locals["name"]] += 1

    settings = Settings(db=world["db"], model=world["model"], device="cpu", log_queries=False)
    body = {"question": "a red circle", "tokens": 2048, "sampler": "qframe",
            "include": ["frames", "payload", "plot"], "payload_format": "gemini"}
    # threads the request runs in start after the profile is set (a thread takes it then)
    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        with TestClient(create_app(settings)) as client:
            r = client.post(f"/v1/videos/{world['video']}/select", json=body)
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    assert r.status_code == 200, r.text[:300]
    out = r.json()
    assert out["tiers"] and set(out["tiers"]) <= set(TIERS) and out["payload"] and out["plot"]
    checked = {name: counts[name] for name in
               ("question", "tokens", "payload_format", "include", "tiers")}
    assert checked == dict.fromkeys(checked, 1), dict(counts)
    assert counts["budget"] == 0  # a token budget: no frame count to check
