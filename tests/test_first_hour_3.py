"""The first hour, round 3 (issue 23): what a new user met, command by command, in this
process (typer's runner: no start-up cost per command). Each test names the stumble."""

from __future__ import annotations

import json
import shutil

from typer.testing import CliRunner

from framedex.cli import app
from framedex.indexer.encoder import BUILTIN_MODELS


class Run:
    """What a command gave: exit code, stdout, stderr."""

    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def cli(*args: str) -> Run:
    res = CliRunner().invoke(app, list(args))
    return Run(res.exit_code, res.stdout, res.stderr)


def one_line(run: Run, *needles: str) -> str:
    assert run.returncode == 1, (run.stdout, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("framedex: error:"), run.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def ok(run: Run) -> Run:
    assert run.returncode == 0, (run.stdout, run.stderr)
    return run


# -- 1. a store works wherever its weights are --------------------------------------------


def test_a_model_folder_that_moves_keeps_its_store(tiny_model, small_video, tmp_path,
                                                   monkeypatch, other_tiny_model):
    """The README's offline flow (fetch the weights once, copy the folder) broke: a moved
    folder gave `model='models/m1' is invalid`, the same weights from their new place were
    refused, and a relative --model broke from another folder."""
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    shutil.copytree(tiny_model, home / "models" / "m1")
    monkeypatch.chdir(home)
    ok(cli("index", str(small_video), "--db", "lib.db", "--model", "models/m1"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the relative folder is found from anywhere
    ok(cli("search", "a red circle", "--db", str(home / "lib.db"), "--json"))

    monkeypatch.chdir(home)
    (home / "models" / "m1").rename(home / "models" / "m2")
    one_line(cli("search", "a red circle", "--db", "lib.db"),
             f"built with the model at {home / 'models' / 'm1'}", "no longer there",
             "--model")
    one_line(cli("search", "a red circle", "--db", "lib.db", "--model", "models/m1"),
             f"no folder at {home / 'models' / 'm1'}")
    # the same weights from their new place are the same model, and the store remembers it
    ok(cli("search", "a red circle", "--db", "lib.db", "--model", "models/m2"))
    ok(cli("search", "a red circle", "--db", "lib.db"))
    # a copy on another "machine" (any folder) works too
    shutil.copytree(home / "models" / "m2", tmp_path / "copy")
    ok(cli("select", small_video.name, "a red circle", "--db", "lib.db", "--model",
           str(tmp_path / "copy"), "--json"))
    # a truly different model is still refused, both named with their weights
    line = one_line(cli("search", "a red circle", "--db", "lib.db", "--model",
                        other_tiny_model), "was built with", other_tiny_model, "weights")
    assert line.count("weights ") >= 2, line


def test_the_shipped_model_through_its_folder_is_the_shipped_model(tmp_path, small_video):
    """`--model .../models/synthetic-shapes` was refused on a `synthetic-shapes` store."""
    db = str(tmp_path / "db")
    ok(cli("index", str(small_video), "--db", db, "--model", "synthetic-shapes"))
    folder = str(BUILTIN_MODELS["synthetic-shapes"])
    run = ok(cli("search", "a red circle", "--db", db, "--model", folder, "--json"))
    assert json.loads(run.stdout)
    videos = ok(cli("videos", "--db", db))
    assert "synthetic-shapes" in videos.stderr  # still known as the shipped model


def test_an_old_store_that_recorded_a_relative_path_still_reads(tiny_model, small_video,
                                                                 tmp_path, monkeypatch):
    """Stores written before this round recorded the spec as typed (`models/m1`) and the
    folder in `model`: they keep working with the same weights from anywhere."""
    from framedex.store import open_store
    from framedex.store.schema import ENCODER_KEY

    db = tmp_path / "old.db"
    ok(cli("index", str(small_video), "--db", str(db), "--model", tiny_model))
    store = open_store(str(db))
    identity = dict(store.encoder_identity() or {})
    old = dict(identity, spec="models/m1", model="local-dir:/gone/models/m1")
    store.tables.writable("frames").update_schema_metadata(
        {ENCODER_KEY.decode(): json.dumps(old, sort_keys=True)})
    monkeypatch.chdir(tmp_path)
    one_line(cli("search", "a red circle", "--db", str(db)), "models/m1", "--model")
    ok(cli("search", "a red circle", "--db", str(db), "--model", tiny_model))
    ok(cli("search", "a red circle", "--db", str(db)))  # the new place was recorded


# -- 3. what is not framedex's own text is printed as it is -------------------------------


def test_markup_in_file_names_and_sql_results_is_printed_as_it_is(tiny_model, small_video,
                                                                   tmp_path):
    """`[red]clip :x:.mp4` showed as a red `clip ❌.mp4`, `holiday [bold] 2024.mp4` lost its
    `[bold]`, and `framedex sql "select ':x: [bold]hi[/bold]'"` printed an emoji."""
    names = ["[red]clip :x:.mp4", "holiday [bold] 2024.mp4"]
    folder = tmp_path / "clips"
    folder.mkdir()
    shutil.copy(small_video, folder / names[0])
    (folder / names[1]).write_bytes(small_video.read_bytes() + b"\0")  # another content id
    db = str(tmp_path / "db")
    index = ok(cli("index", str(folder), "--db", db, "--model", tiny_model))
    videos = ok(cli("videos", "--db", db))
    search = ok(cli("search", "a red circle", "--db", db, "--group-by", "video"))
    for name in names:
        assert name in index.stdout and name in videos.stdout and name in search.stdout
    sql = ok(cli("sql", "select ':x: [bold]hi[/bold]' as t", "--db", db))
    assert ":x: [bold]hi[/bold]" in sql.stdout and "❌" not in sql.stdout


# -- 4. a photo is not a video --------------------------------------------------------------


def test_an_image_given_explicitly_is_refused_not_indexed_as_a_video(tiny_model, small_video,
                                                                     tmp_path):
    """`index photo.jpg` gave `indexed ... 1 frames 0.0s`, and the photo then came up in
    search."""
    import numpy as np
    from PIL import Image

    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.full((48, 64, 3), 200, np.uint8)).save(photo)
    renamed = tmp_path / "still.mp4"  # an image by its content, whatever its name
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(renamed, format="PNG")
    db = tmp_path / "db"
    run = cli("index", str(photo), "--db", str(db), "--model", tiny_model)
    assert run.returncode == 1 and "0 indexed, 0 unchanged, 1 failed" in run.stdout
    (failed,) = [line for line in run.stderr.splitlines() if line.startswith("failed")]
    assert "it is an image (jpeg_pipe), not a video" in failed and "--image" in failed
    assert not db.exists()
    run = ok(cli("index", str(photo), str(renamed), str(small_video), "--db", str(db),
                 "--model", tiny_model, "--json"))
    report = json.loads(run.stdout)
    assert [o["path"] for o in report["indexed"]] == [str(small_video)]
    assert sorted(f["path"] for f in report["failed"]) == sorted([str(photo), str(renamed)])


# -- 5. serve needs a store ------------------------------------------------------------------


def test_serve_on_a_mistyped_store_says_so_and_creates_nothing(tmp_path):
    """`framedex serve --db typo.db` reported that the default model cannot load (and with
    network access would have served a new, empty store at the typo)."""
    import time

    t0 = time.monotonic()
    line = one_line(cli("serve", "--db", str(tmp_path / "typo.db"), "--port", "0"),
                    f"no store at {tmp_path / 'typo.db'}", "--create")
    assert "model" not in line and time.monotonic() - t0 < 5  # no model was loaded
    assert list(tmp_path.iterdir()) == []
