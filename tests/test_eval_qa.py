"""``framedex eval --qa``: QA videos whose truth answers each question exactly once, answers
extracted the way the scorer reads them, and a tiny run through ``ask`` with the shipped
answering model (a sampler that sends the needle's frames answers right, one that does not
answers wrong)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from framedex.cli import app
from framedex.eval.qa import build_qa_suite, extract_answer, get_qa_suite
from framedex.synth.spec import SHAPES

MODEL = "framedex-shapes-vlm"


def test_qa_videos_have_one_answer_per_question():
    cases = build_qa_suite("small")
    assert len(cases) == 12 and [c.spec for c in cases] == [c.spec for c in
                                                            build_qa_suite("small")]
    counts = set()
    for case in cases:
        colour_q, after_q, count_q = case.questions
        shape = colour_q.question.split()[-1].rstrip("?")
        seen = {c for sc in case.truth.scenes for s, c in sc.objects if s == shape}
        assert seen == {colour_q.answer}
        assert after_q.answer in SHAPES and after_q.answer not in after_q.question
        runs = count_q.groups
        counts.add(count_q.answer)
        assert count_q.answer == str(len(runs))
        starts = [g[0][0] for g in runs]
        ends = [g[-1][1] for g in runs]
        assert all(b - a > 30 for a, b in zip(ends, starts[1:], strict=False))  # apart
    assert counts == {"1", "2", "3"}
    with pytest.raises(LookupError, match="small"):
        get_qa_suite("smal")


@pytest.mark.parametrize("task, text, want", [
    ("colour", "purple", "purple"), ("colour", "The star is Purple.", "purple"),
    ("colour", "grey", "gray"), ("colour", "I do not see a star in these frames.", None),
    ("after", "triangle", "triangle"), ("after", "It is followed by two squares", "square"),
    ("count", "2", "2"), ("count", "It appears twice.", "2"), ("count", "three times", "3"),
    ("count", "none", "0"),
])
def test_answers_are_read_like_the_scorer_reads_them(task, text, want):
    assert extract_answer(task, text) == want


def test_eval_qa_runs_through_ask(tmp_path, answerer):
    out = tmp_path / "qa"
    res = CliRunner().invoke(app, [
        "eval", "--qa", "--suite", "tiny", "--samplers", "aks,uniform", "--budgets", "8,16",
        "--token-budgets", "", "--vlm-url", answerer.url, "--vlm-model", MODEL,
        "--out", str(out), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    rows = json.loads((out / "qa_results.json").read_text())
    assert len(rows) == 3 * 2 * 2 and not any(r["cached"] for r in rows)
    cell = {(r["sampler"], r["budget"], r["task"]): r for r in rows}
    # AKS at 16 frames sends every needle scene and answers all three
    assert all(cell[("aks", "K=16", t)]["correct"] for t in ("colour", "after", "count"))
    # uniform's 8 frames over 2 minutes miss the 3 s colour scene, and so its answer
    miss = cell[("uniform", "K=8", "colour")]
    assert not miss["evidence"] and not miss["correct"]
    for r in rows:  # every ask reached the model, with its budget's frames
        assert r["prompt_tokens"] > 0 and r["frames"] == int(r["budget"][2:])
    table = (out / "qa.md").read_text()
    assert "| sampler | K=8 | K=16 |" in table and "| aks | " in table
    assert "| sampler | K=8 | K=16 |" in res.stdout
