"""framedex eval (suite, metrics, runner, report) and framedex export-selections."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from framedex.cli import app
from framedex.errors import ConfigError, UnknownNameError
from framedex.eval.export import load_manifest, validate, video_key
from framedex.eval.metrics import in_spans, score_selection, selection_tokens
from framedex.eval.runner import PreparedVideo, Step, budget_list, score_grid
from framedex.eval.suite import SPLIT_SEED, Question, VideoCase, build_suite, get_suite
from framedex.query.samplers import TokenBudget

runner = CliRunner()


# -- metrics ---------------------------------------------------------------------------------

def test_hit_uses_half_open_spans():
    assert in_spans([3.0, 5.0, 6.0], [(3.0, 6.0)]).tolist() == [True, True, False]
    s = score_selection([0.0, 6.0, 20.0], [[(3.0, 6.0)]])
    assert not s.hit and s.coverage == 0.0 and not s.full  # 6.0 is the end: outside


def test_multi_needle_coverage_counts_each_scene():
    groups = [[(10.0, 13.0)], [(40.0, 43.0)], [(70.0, 73.0)]]
    two = score_selection([11.0, 12.0, 41.0, 90.0], groups)
    assert two.hit and two.groups_hit == 2 and two.coverage == pytest.approx(2 / 3)
    assert not two.full and two.precision == pytest.approx(3 / 4)
    assert score_selection([10.0, 42.0, 72.0], groups).full


def test_temporal_order_needs_both_events():
    red_first, blue_later = [(5.0, 8.0)], [(50.0, 53.0)]
    only_one = score_selection([6.0, 7.0, 20.0], [red_first, blue_later])
    assert only_one.hit and not only_one.full and only_one.coverage == 0.5
    both = score_selection([6.0, 51.0], [red_first, blue_later])
    assert both.full and both.coverage == 1.0


def test_weak_question_groups_hit_by_any_of_their_spans():
    shapes = [[(0.0, 5.0), (30.0, 35.0)], [(10.0, 15.0)], [(20.0, 25.0)], [(40.0, 45.0)]]
    s = score_selection([31.0, 12.0], shapes)
    assert s.groups_hit == 2 and s.coverage == 0.5


def test_token_cost_rules():
    assert selection_tokens(8, 8, None, None) == 8 * 258  # frame budgets: Gemini default res
    tb = TokenBudget(2048)
    assert selection_tokens(3, tb, 700, ["high"] * 3) == 700  # the Selection's own count wins
    assert selection_tokens(3, tb, None, ["high", "mid", "low"]) == 258 + 130 + 66
    assert selection_tokens(31, tb, None, None) == 31 * 66  # untiered: every frame at low


# -- suite -----------------------------------------------------------------------------------

def test_suite_is_deterministic_with_disjoint_splits():
    a, b = build_suite("small"), build_suite("small")
    assert [c.spec for c in a] == [c.spec for c in b]
    assert {c.split for c in a} == {"tune", "test"}
    seeds = {split: {c.spec["seed"] for c in a if c.split == split} for split in ("tune", "test")}
    assert min(seeds["tune"] | seeds["test"]) >= 10**9  # unseen by the model's training
    assert not (seeds["tune"] & seeds["test"])
    assert max(get_suite("full").durations) >= 3600 and min(get_suite("full").durations) <= 60
    with pytest.raises(UnknownNameError, match="small"):
        get_suite("smal")


def test_suite_questions_have_visible_truth():
    for case in build_suite("small"):
        tasks = {q.task for q in case.questions}
        assert tasks == {"single", "multi", "order", "weak"}
        for q in case.questions:
            assert q.groups and all(g for g in q.groups)
            if q.task in ("single", "multi"):
                for (a, b), in q.groups:
                    # a needle spans >= 2 whole grid seconds, so the 1 fps grid sees it
                    assert b - a >= 2 and a == int(a)
            if q.task == "multi":
                starts = sorted(g[0][0] for g in q.groups)
                assert len(starts) >= 2 and min(np.diff(starts)) >= 10
            if q.task == "order":
                assert len(q.groups) == 2 and len(q.query_texts) == 2
                assert " or the " in q.question


# -- runner on hand-made embeddings ----------------------------------------------------------

def _fake_video(n: int = 120, needle: tuple[float, float] = (50.0, 53.0)) -> PreparedVideo:
    """Frames are noise except a 3 s needle aligned with the query vector e0."""
    rng = np.random.default_rng(0)
    v = rng.normal(size=(n, 16))
    v[:, 0] = 0.0
    v[int(needle[0]):int(needle[1]), 0] = 8.0
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    q = Question("v/single0", "v", "single", "When is there a red circle?", ("a red circle",),
                 ((needle,),))
    case = VideoCase("v", "test", float(n), {}, None, (q,))  # type: ignore[arg-type]
    return PreparedVideo(case, "vid", np.arange(n, dtype=np.float64), v.astype(np.float32))


def test_score_grid_query_aware_finds_the_needle_uniform_misses_it():
    video = _fake_video()
    qvecs = {("v/single0", "question"): np.eye(16)[0]}
    rows = score_grid([video], qvecs, [("topk", "topk", {}), ("uniform", "uniform", {})],
                      budget_list([4], [2048]), ["question"])
    by = {(r["sampler"], r["budget"]): r for r in rows}
    assert by[("topk", "K=4")]["hit"] and by[("topk", "K=4")]["precision"] == 0.75
    assert not by[("uniform", "K=4")]["hit"]  # uniform K=4 on 120 s: 0, 40, 79, 119
    assert by[("topk", "K=4")]["tokens"] == 4 * 258
    assert by[("uniform", "T=2048")]["budget_kind"] == "tokens"
    assert by[("uniform", "T=2048")]["tokens"] <= 2048


def test_eval_progress_counts_each_sampler_then_shows_lines_or_nothing(capsys):
    """`framedex eval` ran for minutes with a few lines; it now draws a bar per phase on a
    terminal. The steps count up to their total; into a pipe they are one line each, and
    with --json nothing reaches stderr."""
    from framedex.cli.eval import steps_display

    steps: list[Step] = []
    score_grid([_fake_video()], {("v/single0", "question"): np.eye(16)[0]},
               [("topk", "topk", {}), ("uniform", "uniform", {})], budget_list([4], []),
               ["question"], steps.append)
    assert [(s.done, s.total, s.item) for s in steps] == [(0, 2, "topk"), (1, 2, "uniform"),
                                                         (2, 2, "")]
    with steps_display(show=True) as shown:
        assert shown is not None
        for s in [*steps, Step("ask", 0, 4, "aks"), Step("ask", 1, 4, "aks")]:
            shown(s)
    assert capsys.readouterr().err.splitlines() == ["score topk", "score uniform", "ask aks"]
    with steps_display(show=False) as hidden:
        assert hidden is None


# -- end to end ------------------------------------------------------------------------------

def test_eval_cli_tiny_suite_writes_parquet_markdown_plot(tiny_model, tmp_path):
    import duckdb

    out = tmp_path / "ev"
    res = runner.invoke(app, ["eval", "--suite", "tiny", "--out", str(out), "--model",
                              tiny_model, "--samplers", "uniform,topk,bolt", "--device", "cpu",
                              "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["videos"] == 2 and summary["questions"] > 8
    con = duckdb.connect()
    n, = con.execute(f"SELECT count(*) FROM '{out}/results.parquet' "
                     "WHERE NOT sampler LIKE '%tuned%'").fetchone()
    assert n == 3 * 6 * 2 * summary["questions"]  # samplers x budgets x text modes x questions
    frames, tokens = con.execute(
        f"SELECT min(frames), max(tokens) FROM '{out}/results.parquet' "
        "WHERE budget = 'K=8' AND sampler = 'uniform'").fetchone()
    assert frames == 8 and tokens == 8 * 258
    md = (out / "results.md").read_text()
    assert "## K=8" in md and "| topk |" in md and "| bolt |" in md
    assert (out / "coverage_vs_tokens.png").read_bytes()[:4] == b"\x89PNG"
    assert "bolt" in (out / "sweep.md").read_text()
    # A second run reuses the rendered videos and the index.
    again = runner.invoke(app, ["eval", "--suite", "tiny", "--out", str(out), "--model",
                                tiny_model, "--samplers", "uniform", "--no-sweep", "--json"])
    assert again.exit_code == 0, again.output
    assert not (out / "results.md").read_text().count("| topk |")


def test_eval_cli_unknown_sampler_is_one_line(tmp_path, tiny_model):
    res = runner.invoke(app, ["eval", "--suite", "tiny", "--out", str(tmp_path), "--model",
                              tiny_model, "--samplers", "uniform,bolf"])
    assert res.exit_code == 1
    assert "bolf" in res.output and "bolt" in res.output and "Traceback" not in res.output


# -- export-selections -----------------------------------------------------------------------

@pytest.fixture()
def manifest(tmp_path, small_video) -> Path:
    import shutil

    shutil.copy(small_video, tmp_path / "vid.a.mp4")  # the reader's key stops at the first dot
    (tmp_path / "broken.mp4").write_bytes(b"not a video" * 50)
    items = [
        {"question_id": "q1", "video_path": str(tmp_path / "vid.a.mp4"),
         "question": "When is there a red circle?"},
        {"question_id": "q2", "video_path": str(tmp_path / "broken.mp4"),
         "question": "What happens?"},
        {"question_id": 3, "video_path": str(tmp_path / "vid.a.mp4"),
         "question": "Is there a blue star?"},
        {"question_id": "q4", "video_path": str(tmp_path / "missing.mp4"),
         "question": "Anything?"},
    ]
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(items))
    return path


def test_export_bolt_layout_reports_bad_videos(manifest, tiny_model, tmp_path):
    out = tmp_path / "sel.json"
    res = runner.invoke(app, ["export-selections", str(manifest), "--sampler", "topk",
                              "--budget", "4", "--out", str(out), "--db", str(tmp_path / "db"),
                              "--model", tiny_model, "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert sorted(Path(f["video_path"]).name for f in summary["failed"]) == [
        "broken.mp4", "missing.mp4"]
    data = json.loads(out.read_text())
    validate(data, "bolt")
    assert list(data) == ["vid"]
    entries = data["vid"]
    assert [e["question_id"] for e in entries] == ["q1", 3]
    for e in entries:
        assert len(e["frames"]) == 4 and e["frames"] == sorted(e["frames"])
        # seconds * native fps (10) gives back the native frame index, as the reader rounds it
        assert [round(s * 10) for s in e["frames"]] == e["frame_idx"]
        assert e["frame_idx"] == [10 * p for p in e["grid_pos"]]  # 1 fps grid on a 10 fps video
    assert summary["mismatched"] == [] and summary["short"] == []


def test_export_aks_layout_is_manifest_ordered_native_indices(manifest, tiny_model, tmp_path):
    out = tmp_path / "aks.json"
    res = runner.invoke(app, ["export-selections", str(manifest), "--sampler", "uniform",
                              "--budget", "3", "--out", str(out), "--db", str(tmp_path / "db"),
                              "--model", tiny_model, "--format", "aks"])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    validate(data, "aks")
    assert len(data) == 4 and data[1] == [] and data[3] == []
    assert data[0] == data[2] == [0, 30, 60]  # uniform over a 7 s video at 10 fps
    # a second run reuses the indexed video and says so, as `framedex index` does (it said
    # `index PATH`, as if it indexed it again); an output under a missing folder is refused
    # before any work, naming the folder (it was created with every parent)
    again = runner.invoke(app, ["export-selections", str(manifest), "--sampler", "uniform",
                                "--budget", "3", "--out", str(out), "--db", str(tmp_path / "db"),
                                "--model", tiny_model, "--format", "aks"])
    assert again.exit_code == 0, again.output
    assert "unchanged  " in again.stderr and "vid.a.mp4" in again.stderr
    assert "index " not in again.stderr
    deep = tmp_path / "nope" / "deeper" / "aks.json"
    bad = runner.invoke(app, ["export-selections", str(manifest), "--sampler", "uniform",
                              "--budget", "3", "--out", str(deep), "--db", str(tmp_path / "db")])
    assert bad.exit_code == 1 and bad.stderr.strip().splitlines() == [
        f"framedex: error: --out={str(deep)!r} is invalid: the folder {tmp_path / 'nope'} does "
        "not exist (framedex creates only the last folder of an output path)"]
    assert not (tmp_path / "nope").exists()


def test_export_schema_and_manifest_errors(tmp_path):
    with pytest.raises(ConfigError, match="frames"):
        validate({"v": [{"question_id": "a", "question": "q", "frames": [-1]}]}, "bolt")
    with pytest.raises(ConfigError, match="question"):
        validate({"v": [{"question_id": "a", "frames": [1.0]}]}, "bolt")
    with pytest.raises(ConfigError):
        validate([[1, "x"]], "aks")
    bad = tmp_path / "m.json"
    bad.write_text(json.dumps([{"question_id": "a", "question": "q"}]))
    with pytest.raises(ConfigError, match=r"manifest\[0\]\.video_path"):
        load_manifest(bad)
    assert video_key("/data/videomme/fFjv93ACGo8.mp4") == "fFjv93ACGo8"
    assert SPLIT_SEED["tune"] != SPLIT_SEED["test"]
