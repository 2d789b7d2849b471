"""CLI search / select / stats / sql: JSON shapes, and one-line errors with a non-zero exit."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from framedex.cli import app
from framedex.synth import haystack_spec, render


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_model):
    """(db folder, video path, video_id) of a one-video library (20 s, 1 fps grid)."""
    from framedex import Library

    root = tmp_path_factory.mktemp("cli_world")
    spec = haystack_spec(20.0, [{"time": 8.0, "duration": 4.0, "background": "white",
                                 "objects": [{"shape": "circle", "color": "red"}]}],
                         seed=3, fps=5, size=[64, 64], filler_duration=(4.0, 6.0))
    path = root / "clip.mp4"
    render(spec, path)
    lib = Library(root / "db", model="synthetic-shapes")
    outcome = lib.index_file(path)
    assert outcome.status == "indexed", outcome.error
    return str(root / "db"), str(path), outcome.video_id


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def one_line_error(result, *needles: str) -> str:
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("framedex: error:"), result.stderr
    for needle in needles:
        assert needle in lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def test_search_json_is_a_ranked_list_of_moments(indexed):
    db, path, vid = indexed
    res = run("search", "a red circle", "--db", db, "--limit", "3", "--json")
    assert res.exit_code == 0, res.stderr
    hits = json.loads(res.stdout)
    assert 1 <= len(hits) <= 3
    for h in hits:
        assert set(h) == {"video_id", "path", "start", "end", "score", "confidence"}
        assert h["video_id"] == vid and h["path"] == path and 0 <= h["start"] < h["end"] <= 20.0
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    grouped = json.loads(run("search", "a red circle", "--db", db, "--group-by", "video",
                             "--json").stdout)
    assert len(grouped) == 1 and grouped[0]["moments"][0]["score"] == grouped[0]["score"]
    none = run("search", "a red circle", "--db", db, "--max-duration", "5", "--json")
    assert none.exit_code == 0 and json.loads(none.stdout) == []


def test_select_json_has_the_selection(indexed):
    db, path, vid = indexed
    res = run("select", path, "a red circle", "--db", db, "--sampler", "topk", "--budget", "4",
              "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["video_id"] == vid and out["sampler"] == "topk" and out["budget"] == 4
    assert len(out["indices"]) == len(out["timestamps"]) == len(out["frame_idx"]) == 4
    assert out["timestamps"] == [float(i) for i in out["indices"]]
    tok = json.loads(run("select", vid, "a red circle", "--db", db, "--sampler", "router",
                         "--tokens", "600", "--json").stdout)
    assert tok["tokens_used"] <= 600 and len(tok["tiers"]) == len(tok["indices"])
    # the 4 s red-circle needle stands out in 20 s of other shapes
    assert tok["decision"] == "relevance" and tok["budget"] is None and tok["tokens"] == 600
    param = json.loads(run("select", vid, "a red circle", "--db", db, "--sampler", "mmr",
                           "--param", "theta=0.7", "--json").stdout)
    assert param["params"] == {"theta": 0.7}


def test_select_writes_frames_and_plot(indexed, tmp_path):
    db, path, _ = indexed
    out_dir, png = tmp_path / "frames", tmp_path / "sel.png"
    res = run("select", path, "a red circle", "--db", db, "--sampler", "topk", "--budget", "3",
              "--frames-out", str(out_dir), "--plot", str(png), "--json")
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    jpgs = sorted(out_dir.glob("*.jpg"))
    assert len(jpgs) == 3 and [str(p) for p in jpgs] == sorted(out["frames"])
    assert jpgs[0].read_bytes()[:2] == b"\xff\xd8"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "tokens" in out["cost"]["text"]


def test_stats_and_sql(indexed):
    db, path, _ = indexed
    run("select", path, "a red circle", "--db", db, "--sampler", "uniform", "--budget", "2")
    stats = json.loads(run("stats", "--db", db, "--json").stdout)
    assert ("select", "uniform") in {(r["kind"], r["sampler"]) for r in stats["queries"]}
    assert stats["disk_bytes"]["frames"] > 0
    rows = json.loads(run("sql", "SELECT count(*) AS n FROM videos", "--db", db,
                          "--json").stdout)
    assert rows == [{"n": 1}]
    table = run("sql", "SELECT kind FROM query_log LIMIT 1", "--db", db)
    assert table.exit_code == 0 and "kind" in table.stdout
    one_line_error(run("sql", "SELECT * FROM nope", "--db", db), "sql is invalid")


def test_bad_input_is_one_line_and_non_zero(indexed, tmp_path):
    db, path, _ = indexed
    one_line_error(run("select", "missing.mp4", "a red circle", "--db", db, "--sampler", "topk"),
                   "no indexed video")
    one_line_error(run("select", path, "a red circle", "--db", db, "--sampler", "bolz"),
                   "unknown sampler 'bolz'", "bolt")
    one_line_error(run("select", path, "a red circle", "--db", db, "--budget", "0"), "budget")
    one_line_error(run("select", path, "", "--db", db), "question")
    one_line_error(run("select", path, "a red circle", "--db", db, "--param", "oops"), "--param")
    one_line_error(run("search", "", "--db", db), "text")
    one_line_error(run("search", "a star", "--db", db, "--group-by", "x"), "--group-by")
    empty = str(tmp_path / "empty.db")
    one_line_error(run("select", "clip.mp4", "a red circle", "--db", empty), "no store at",
                   "empty.db")
    one_line_error(run("search", "a red circle", "--db", empty), "no store at")
    assert not (tmp_path / "empty.db").exists()  # a read-only command created nothing
