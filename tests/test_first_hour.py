"""The first hour of a new user, command by command: the exact command, its one line, its exit
code. Each test is a stumble a newcomer reported."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_run import cli, one_line

import framedex
from framedex.synth import haystack_spec, render

pytestmark = pytest.mark.heavy  # servers, clusters or processes: not in make test-fast

NEEDLE = {"time": 10.0, "duration": 4.0, "background": "white",
          "objects": [{"shape": "star", "color": "purple"}]}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[Path, Path, str]:
    """(db, video, video_id): one 30 s video with a purple-star needle, shipped model."""
    root = tmp_path_factory.mktemp("first_hour")
    video = root / "clips" / "BIKES.MOV"
    video.parent.mkdir()
    render(haystack_spec(30.0, [NEEDLE], seed=2, fps=5, size=[64, 64]), video.with_suffix(".mp4"))
    video.with_suffix(".mp4").rename(video)
    db = root / "lib.db"
    run = cli("index", str(video.parent), "--db", str(db), "--model", "synthetic-shapes",
              "--json")
    assert run.returncode == 0, run.stderr
    return db, video, json.loads(run.stdout)["indexed"][0]["video_id"]


def test_version_from_a_real_process():
    run = subprocess.run([sys.executable, "-m", "framedex", "--version"], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == f"framedex {framedex.__version__}"
    bad = subprocess.run([sys.executable, "-m", "framedex", "videos", "--db", "/nonexistent/x"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "no store at" in bad.stderr


def test_short_unique_id_prefixes_work_and_the_rule_is_stated(store):
    db, _, vid = store
    run = cli("select", vid[:4], "a purple star", "--db", str(db), "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["video_id"] == vid
    one_line(cli("select", vid[:3], "a purple star", "--db", str(db)),
             "no indexed video", "at least 4 characters")


def test_the_same_content_at_a_new_path_is_the_same_video(store, tmp_path):
    db, video, vid = store
    exts = tmp_path / "exts"
    exts.mkdir()
    shutil.copy(video, exts / "clip.mkv")
    run = cli("index", str(exts), "--db", str(db))
    assert run.returncode == 0 and "unchanged" in run.stdout and "clip.mkv" in run.stdout
    run = cli("select", str(exts / "clip.mkv"), "a purple star", "--db", str(db), "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["video_id"] == vid


def test_build_index_on_a_small_library_advises_instead_of_flooding(store):
    db, _, _ = store
    # `framedex build-index` as the README lists it: a notice and exit 0 (it was `error:`, 1)
    run = cli("build-index", "--db", str(db))
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert run.stdout.startswith("nothing built: the library has 30 frames: exact search")
    assert "--force" in run.stdout
    run = cli("build-index", "--db", str(db), "--force", "--partitions", "2")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("built IVF_HNSW_SQ on segments over 5 rows")
    assert len(run.stderr.strip().splitlines()) <= 1, run.stderr  # no KMeans warnings


def test_the_toy_model_says_what_it_does_not_know(store):
    db, _, _ = store
    run = cli("search", "a rabbit in a forest", "--db", str(db), "--json")
    assert run.returncode == 0
    notes = [line for line in run.stderr.splitlines() if "outside the world" in line]
    assert len(notes) == 1 and "'rabbit'" in notes[0] and "'forest'" in notes[0]
    json.loads(run.stdout)  # stdout stays machine-readable
    inside = cli("search", "a purple star", "--db", str(db))
    assert "outside the world" not in inside.stderr
    videos = cli("videos", "--db", str(db))
    assert "synthetic-shapes" in videos.stderr and "BIKES.MOV" in videos.stdout


def test_sampler_parameters_can_be_discovered(store):
    db, video, _ = store
    listing = cli("samplers")
    assert listing.returncode == 0
    from framedex.library import sampler_names

    names = [line.split()[0] for line in listing.stdout.splitlines()[:-1]]
    assert names == sampler_names()
    bolt = cli("samplers", "bolt")
    assert "power (float, default 3.0)" in bolt.stdout and "dedupe (bool" in bolt.stdout
    one_line(cli("select", str(video), "a star", "--db", str(db), "--sampler", "bolt",
                 "--param", "nosuch=1"), "no parameter 'nosuch'", "power (default 3.0)")
    one_line(cli("select", str(video), "a star", "--db", str(db), "--tokens", "50"),
             "tokens=50", "cheapest tier (66 tokens)")
    one_line(cli("select", str(video), "a star", "--db", str(db), "--sampler", "BOLT"),
             "Did you mean 'bolt'")
    one_line(cli("samplers", "bolz"), "Did you mean 'bolt'")


def test_failed_files_go_to_stderr_and_tables_show_file_names(store, tmp_path):
    db, video, _ = store
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copy(video, mixed / "good.mov")
    (mixed / "broken.mp4").write_bytes(b"not a video")
    run = cli("index", str(mixed), "--db", str(db))
    assert run.returncode == 0
    assert "broken.mp4" not in run.stdout and "failed     " in run.stderr
    assert "1 unchanged, 0 indexed" in run.stdout.replace("0 indexed, 1 unchanged",
                                                          "1 unchanged, 0 indexed")


def test_select_writes_a_payload_for_a_vlm(store, tmp_path):
    db, video, _ = store
    out = tmp_path / "req.json"
    run = cli("select", str(video), "when is the purple star?", "--db", str(db), "--payload",
              "gemini", "--out", str(out), "--budget", "3")
    assert run.returncode == 0, run.stderr
    body = json.loads(out.read_text())
    parts = body["contents"][0]["parts"]
    assert sum("inline_data" in p for p in parts) == 3
    assert parts[-1] == {"text": "when is the purple star?"}
    run = cli("select", str(video), "when?", "--db", str(db), "--payload", "openai")
    assert run.returncode == 0 and json.loads(run.stdout)["messages"][0]["role"] == "user"


def test_the_api_docs_work_offline(tmp_path):
    import httpx
    from api_server import ThreadServer

    from framedex.api.settings import Settings

    with ThreadServer(Settings(db=str(tmp_path / "db"), model="synthetic-shapes",
                               device="cpu")) as srv:
        page = httpx.get(f"{srv.base}/docs").text
        assert "https://" not in page and "/docs/assets/swagger-ui-bundle.js" in page
        js = httpx.get(f"{srv.base}/docs/assets/swagger-ui-bundle.js")
        assert js.status_code == 200 and len(js.content) > 100_000
        assert httpx.get(f"{srv.base}/docs/assets/../app.py").status_code == 404
        health = httpx.get(f"{srv.base}/health").json()
        assert health["encoder"]["synthetic"] is True and health["encoder"]["device"] == "cpu"


def test_serve_with_a_model_that_cannot_load_is_one_line_and_leaves_nothing(tmp_path):
    """It printed `serving ...`, then ~80 lines of lifespan traceback, and left DB.uploads/."""
    weightless = tmp_path / "model"  # a config and no weights: found only when loading
    weightless.mkdir()
    shutil.copy(Path(framedex.__file__).parent / "indexer" / "models" / "synthetic-shapes" /
                "open_clip_config.json", weightless)
    db = tmp_path / "srv.db"
    one_line(cli("serve", "--db", str(db), "--model", str(weightless), "--port", "0",
                 "--create"),
             str(weightless))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_serve_on_a_port_in_use_is_one_line(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        one_line(cli("serve", "--create", "--db", str(tmp_path / "db"), "--model",
                     "synthetic-shapes",
                     "--port", str(port)), f"127.0.0.1:{port} is already in use", "--port")
    assert list(tmp_path.iterdir()) == []


def test_cli_errors_name_the_options_and_come_before_the_work(store, tmp_path):
    """They named internal fields (`text=[]`, `payload_format=`, `out_dir=`), and a bad
    --plot was reported only after the selection had run."""
    db, video, _ = store
    one_line(cli("search", "--db", str(db)), "give what to look for", "--image")
    one_line(cli("select", str(video), "when?", "--db", str(db), "--payload", "claude"),
             "--payload='claude' is invalid", "openai, gemini")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    one_line(cli("select", str(video), "when?", "--db", str(db), "--frames-out",
                 str(a_file / "sub")), "--frames-out=", "cannot write there")
    one_line(cli("select", str(video), "when?", "--db", str(db), "--plot", "/proc/x.png"),
             "--plot='/proc/x.png' is invalid")


def test_a_video_by_the_file_name_that_videos_shows(store):
    """`videos` shows `BIKES.MOV` in its file column; `select BIKES.MOV ...` said `no indexed
    video` unless given the full path."""
    db, video, vid = store
    run = cli("select", video.name, "when is the purple star?", "--db", str(db), "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["video_id"] == vid
    one_line(cli("select", "NOPE.MOV", "when?", "--db", str(db)), "no indexed video 'NOPE.MOV'")


def test_impossible_paths_are_reported_not_internal_errors(tmp_path):
    """Each of these was `framedex: internal error: ...` with exit 2 (issue 27): a path longer
    than the file system allows, a `~user` nobody is, and `synth` to such a name."""
    long_name = str(tmp_path / ("a" * 4000 + ".mp4"))
    for path, reason in ((long_name, "file name too long"),
                         ("~nosuchuser-framedex/x.mp4", "no such user")):
        run = cli("index", path, "--db", str(tmp_path / "db"))
        assert run.returncode == 1, (path[:40], run.stderr)
        assert "internal error" not in run.stderr
        (line,) = [ln for ln in run.stderr.splitlines() if ln.strip()]
        assert line.startswith("failed") and reason in line, line[:200]
        assert "0 indexed, 0 unchanged, 1 failed" in run.stdout
    assert not (tmp_path / "db").exists()
    spec = Path(__file__).resolve().parents[1] / "examples" / "specs" / "clip1.json"
    one_line(cli("synth", str(spec), long_name), "cannot write", "File name too long")


def test_an_empty_weights_file_is_one_line_on_index_and_serve(tmp_path):
    """An empty `open_clip_pytorch_model.bin` (an interrupted copy) made the load error's own
    message an IndexError: `internal error`, exit 2, on index and serve."""
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(Path(framedex.__file__).parent / "indexer" / "models" / "synthetic-shapes" /
                "open_clip_config.json", folder)
    (folder / "open_clip_pytorch_model.bin").write_bytes(b"")
    video = tmp_path / "v.mp4"
    render(haystack_spec(2.0, [], seed=1, fps=5, size=[32, 32]), video)
    for args in (("index", str(video)), ("serve", "--port", "0", "--create")):
        db = tmp_path / f"{args[0]}.db"
        one_line(cli(*args, "--db", str(db), "--model", str(folder)),
                 f"cannot load model {str(folder)!r}", "EOFError", "empty or truncated")
        assert not db.exists()


def test_deeply_nested_json_is_one_line(store, tmp_path):
    """`--metadata '{"a":{"a":...'` 10,000 deep (50 KB) was `internal error: RecursionError`,
    exit 2; `--meta k=[[[...` too."""
    deep = '{"a":' * 10_000 + "1" + "}" * 10_000
    db, video, _ = store
    one_line(cli("index", str(video), "--db", str(db), "--metadata", deep),
             "metadata is invalid", "nests 10000 levels")
    spec = tmp_path / "spec.json"
    spec.write_text(deep)
    one_line(cli("synth", str(spec), str(tmp_path / "x.mp4")), "spec=", "nests 10000 levels")
    assert not (tmp_path / "x.mp4").exists()
    # a --meta value that is an array or object is compared as text, never parsed
    run = cli("search", "a purple star", "--db", str(db), "--meta", "k=" + "[" * 10_000,
              "--json")
    assert run.returncode == 0 and json.loads(run.stdout) == [], run.stderr[:300]
