"""The first hour, round 3 (issue 23): what a new user met, command by command, in this
process (typer's runner: no start-up cost per command). Each test names the stumble."""

from __future__ import annotations

import json
import shutil

import pytest
from cli_run import cli, ok, one_line

from framedex.indexer.encoder import BUILTIN_MODELS

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
    search = ok(cli("search", "a red circle", "--db", db, "--group-by", "video",
                    "--threshold", "none"))  # a random tiny model: every result is weak
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


# -- 6. search output: confidence, a threshold, grouped counts, --and rows ------------------


@pytest.fixture(scope="module")
def shapes_world(tmp_path_factory):
    """A synthetic-shapes store of three 24 s videos, ``both`` (a red circle at 4-8 s, a blue
    star at 14-18 s), ``red`` (red circles at 3-7 s and 15-19 s) and ``plain`` (neither), in
    one collection (``index``). Between the needles: gray scenes with orange shapes, which no
    query here names."""
    from framedex import Library
    from framedex.synth import render

    root = tmp_path_factory.mktemp("shapes_world")
    red = [{"shape": "circle", "color": "red"}]
    blue = [{"shape": "star", "color": "blue"}]
    orange = [{"shape": "square", "color": "orange"}]
    scenes = {"both": [(4, []), (4, red), (6, orange), (4, blue), (6, [])],
              "red": [(3, orange), (4, red), (8, []), (4, red), (5, orange)],
              "plain": [(6, orange), (6, []), (6, orange), (6, [])]}
    ids = {}
    with Library(root / "db", model="synthetic-shapes", log_queries=False) as lib:
        for seed, (name, parts) in enumerate(scenes.items()):
            spec = {"fps": 5, "size": [64, 64], "seed": seed, "scenes": [
                {"duration": float(d), "background": "white" if objs in (red, blue) else "gray",
                 "objects": objs} for d, objs in parts]}
            render(spec, root / f"{name}.mp4")
            outcome = lib.index_file(root / f"{name}.mp4")
            assert outcome.status == "indexed", outcome.error
            ids[name] = outcome.video_id
        collection = lib.create_collection("all").collection.index_id
        for vid in ids.values():
            lib.add_to_collection(collection, vid)
    return str(root / "db"), {**ids, "index": collection}


def test_grouped_moments_do_not_change_with_limit_and_weak_videos_are_left_out(shapes_world):
    """`--group-by video` said `+49 more moments` at -n 4 and `+680` at -n 50, and listed a
    video without the object with `+33 more moments` at score 0.04."""
    db, ids = shapes_world

    def grouped(*extra: str) -> dict[str, dict]:
        run = ok(cli("search", "a red circle", "--db", db, "--group-by", "video", "--json",
                     *extra))
        return {h["video_id"]: h for h in json.loads(run.stdout)}

    one, many = grouped("-n", "1"), grouped("-n", "50")
    assert set(many) == {ids["red"], ids["both"]}  # not plain: no red circle, no result
    best = next(iter(one))
    assert len(many[best]["moments"]) == len(one[best]["moments"])
    spans = sorted((m["start"], m["end"]) for m in many[ids["red"]]["moments"])
    assert [(round(a), round(b)) for a, b in spans] == [(3, 7), (15, 19)]
    assert {h["confidence"] for h in many.values()} <= {"high", "medium", "low"}
    everything = grouped("-n", "50", "--threshold", "none")
    assert set(everything) == {ids["red"], ids["both"], ids["plain"]}
    assert everything[ids["plain"]]["confidence"] == "none"
    table = ok(cli("search", "a red circle", "--db", db, "--group-by", "video", "-n", "1"))
    header = table.stdout.splitlines()[0].split()
    assert header == ["#", "score", "confidence", "start", "end", "video_id", "file",
                      "moments"]
    assert "more moment" not in table.stdout


def test_and_prints_each_video_once_with_a_part_column_best_first(shapes_world):
    """`--and` printed one row per part, with no part column, no combined score and rows
    out of order."""
    db, ids = shapes_world
    run = ok(cli("search", "a red circle", "--and", "a blue star", "--db", db,
                 "--threshold", "none"))
    lines = run.stdout.splitlines()
    assert lines[0].split()[:6] == ["#", "score", "confidence", "video_id", "file", "part"]
    ranked = [line.split() for line in lines[1:] if line.split()[0].isdigit()]
    assert [r[0] for r in ranked] == ["1", "2", "3"]
    assert ranked[0][3] == ids["both"]
    scores = [float(r[1]) for r in ranked]
    assert scores == sorted(scores, reverse=True)
    assert sum("a red circle" in line for line in lines) == 3  # one row per part per video
    assert sum("a blue star" in line for line in lines) == 3
    hits = json.loads(ok(cli("search", "a red circle", "--and", "a blue star", "--db", db,
                             "--json")).stdout)
    assert [h["video_id"] for h in hits] == [ids["both"]]  # the only one showing both
    assert sorted(m["part"] for m in hits[0]["moments"]) == [0, 1]


def test_a_threshold_that_is_not_a_level_is_one_line(shapes_world):
    db, _ = shapes_world
    one_line(cli("search", "a red circle", "--db", db, "--threshold", "maybe"),
             "--threshold='maybe'", "high, medium, low, none")
    quiet = ok(cli("search", "a green triangle", "--db", db, "--threshold", "high"))
    assert quiet.stdout.strip() == ("no match of high confidence or better (--threshold none "
                                    "lists every result)")


def test_v1_and_v1_3_search_report_confidence_and_filter_by_threshold(shapes_world):
    """The same levels over HTTP: `/v1/search` and Twelve Labs' `/v1.3/search`."""
    from fastapi.testclient import TestClient

    from framedex.api.app import create_app
    from framedex.api.settings import Settings

    db, ids = shapes_world
    settings = Settings(db=db, model="synthetic-shapes", device="cpu", log_queries=False)
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/search", json={"text": "a red circle", "group_by": "video"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["threshold"] == "low"
        assert {h["video_id"] for h in body["results"]} == {ids["red"], ids["both"]}
        assert body["results"][0]["confidence"] in ("high", "medium", "low")
        r = client.post("/v1/search", json={"text": "a red circle", "threshold": "none",
                                            "group_by": "video"})
        assert len(r.json()["results"]) == 3
        bad = client.post("/v1/search", json={"text": "a red circle", "threshold": "maybe"})
        assert bad.status_code == 422
        error = bad.json()["error"]
        assert error["detail"][0]["field"] == "body.threshold"
        assert "high, medium, low, none" in error["message"]

        form = {"index_id": ids["index"], "search_options": "visual",
                "query_text": "a red circle", "group_by": "video"}
        for threshold, videos in ((None, {ids["red"], ids["both"]}), ("none", 3)):
            sent = form if threshold is None else {**form, "threshold": threshold}
            r = client.post("/v1.3/search", data=sent, files={"unused": ("", b"")})
            assert r.status_code == 200, r.text
            data = r.json()["data"]
            if isinstance(videos, set):
                assert {d["video_id"] for d in data} == videos
                assert data[0]["confidence"] in ("high", "medium", "low")
                assert {c["confidence"] for c in data[0]["clips"]} <= {"high", "medium", "low"}
            else:
                assert len(data) == videos and data[-1]["confidence"] == "none"
        r = client.post("/v1.3/search", data={**form, "threshold": "maybe"},
                        files={"unused": ("", b"")})
        assert r.status_code == 400 and "threshold" in r.json()["message"], r.text


# -- 9. a budget that takes every frame, and one set of limits --------------------------------


def test_a_budget_above_the_frames_indexed_says_all_are_returned(tiny_model, small_video,
                                                                 tmp_path):
    """`--budget 32` on a 7-frame video said "1.0x fewer", as if 32 frames had been chosen
    and saved tokens."""
    db = str(tmp_path / "lib.db")
    ok(cli("index", str(small_video), "--db", db, "--model", tiny_model))
    run = ok(cli("select", str(small_video), "a red circle", "--db", db, "--budget", "32",
                 "--sampler", "topk"))
    assert "chose 7 of 7 frames" in run.stdout
    assert "1.0x fewer" not in run.stdout and "about as many" in run.stdout
    assert ("framedex: budget 32 >= the 7 frames indexed of video" in run.stderr
            and "all 7 frames are returned" in run.stderr), run.stderr
    data = json.loads(ok(cli("select", str(small_video), "a red circle", "--db", db,
                             "--budget", "32", "--json")).stdout)
    assert data["notes"] and "all 7 frames are returned" in data["notes"][0]
    fewer = json.loads(ok(cli("select", str(small_video), "a red circle", "--db", db,
                              "--budget", "3", "--json")).stdout)
    assert fewer["notes"] == []
    # the CLI's bound is the API's (framedex.rules.LIMITS): 100000 was accepted here, 422 there
    one_line(cli("select", str(small_video), "a red circle", "--db", db, "--budget", "100000"),
             "budget=100000 is invalid", "10000")


# -- 8. frame sizes: one default on every face, the high tier never below untiered ----------


def _sizes_of(folder) -> list[tuple[int, int]]:
    from PIL import Image

    out = []
    for f in sorted(folder.iterdir()):
        with Image.open(f) as im:
            out.append(im.size)
    return out


def test_frames_are_512_by_default_and_high_is_never_below_untiered(tiny_model, tmp_path):
    """The CLI sent 1280x720 frames where the API capped at 512, and on a 128 px video the
    "high" tier was 64 px while an untiered frame was 128 px."""
    from framedex.synth import render

    scene = {"duration": 4.0, "background": "white",
             "objects": [{"shape": "circle", "color": "red"}]}
    for name, size in (("wide", [640, 360]), ("small", [128, 128])):
        render({"fps": 5, "size": size, "scenes": [scene]}, tmp_path / f"{name}.mp4")
    db = str(tmp_path / "lib.db")
    ok(cli("index", str(tmp_path), "--db", db, "--model", tiny_model))

    plain = tmp_path / "plain"
    ok(cli("select", str(tmp_path / "wide.mp4"), "a red circle", "--db", db, "--budget", "2",
           "--frames-out", str(plain)))
    assert _sizes_of(plain) == [(512, 288)] * 2  # the API's default frame_max_side
    native = tmp_path / "native"
    ok(cli("select", str(tmp_path / "wide.mp4"), "a red circle", "--db", db, "--budget", "2",
           "--frames-out", str(native), "--max-side", "8192"))
    assert _sizes_of(native) == [(640, 360)] * 2

    tiered = tmp_path / "tiered"
    out = json.loads(ok(cli("select", str(tmp_path / "small.mp4"), "a red circle", "--db", db,
                            "--sampler", "qframe", "--tokens", "600", "--frames-out",
                            str(tiered), "--json")).stdout)
    assert "high" in out["tiers"], out["tiers"]
    from PIL import Image

    by_tier = {}
    for tier, frame in zip(out["tiers"], out["frames"], strict=True):
        with Image.open(frame) as im:
            by_tier[tier] = im.size
    assert by_tier["high"] == (128, 128)  # the untiered size, not 64 px
    assert all(s[0] <= 128 for s in by_tier.values())


# -- what users of similar tools expect: delete and collections in the CLI -------------------


def test_delete_removes_videos_by_name_and_a_typo_deletes_nothing(tiny_model, small_video,
                                                                  tmp_path):
    db = str(tmp_path / "lib.db")
    ok(cli("index", str(small_video), "--db", db, "--model", tiny_model))
    ids = [v["video_id"] for v in json.loads(ok(cli("videos", "--db", db, "--json")).stdout)]
    one_line(cli("delete", ids[0], "nosuchvideo.mp4", "--db", db), "nosuchvideo.mp4")
    assert len(json.loads(ok(cli("videos", "--db", db, "--json")).stdout)) == 1
    run = ok(cli("delete", str(small_video), "--db", db))
    assert run.stdout.strip() == f"deleted {ids[0]}  small.mp4"
    assert json.loads(ok(cli("videos", "--db", db, "--json")).stdout) == []
    one_line(cli("delete", ids[0], "--db", db), "has no indexed video")


def test_collections_lists_the_twelve_labs_indexes(shapes_world, tmp_path):
    db, ids = shapes_world
    listed = json.loads(ok(cli("collections", "--db", db, "--json")).stdout)
    assert listed == [{"id": ids["index"], "name": "all", "video_count": 3,
                       "total_duration": 72.0}]
    table = ok(cli("collections", "--db", db)).stdout.splitlines()
    assert table[0].split() == ["id", "name", "videos", "duration"]
    assert table[1].split() == [ids["index"], "all", "3", "72.0s"]


def test_scenes_lists_the_shots_the_shots_sampler_sees(shapes_world):
    """PySceneDetect users expect the scene list: here the shots of `both` (4 s, 4 s, 6 s,
    4 s, 6 s scenes) as CSV and JSON with start and end seconds."""
    db, ids = shapes_world
    run = ok(cli("scenes", ids["both"], "--db", db))
    assert run.stdout.splitlines() == [
        "scene,start,end,frame_idx,frames", "1,0.000,4.000,0,4", "2,4.000,8.000,20,4",
        "3,8.000,14.000,40,6", "4,14.000,18.000,70,4", "5,18.000,24.000,90,6"]
    data = json.loads(ok(cli("scenes", ids["both"], "--db", db, "--json")).stdout)
    assert [(s["start"], s["end"]) for s in data["scenes"]] == [
        (0.0, 4.0), (4.0, 8.0), (8.0, 14.0), (14.0, 18.0), (18.0, 24.0)]
    one_line(cli("scenes", ids["both"], "--db", db, "--param", "z=-1"), "z=-1")


def test_the_payload_names_the_model_asked_for(shapes_world):
    """The payload's model was always gpt-4o: `--vlm-model` / `vlm_model` name another (a
    vLLM server's), on the CLI and over HTTP."""
    from fastapi.testclient import TestClient

    from framedex.api.app import create_app
    from framedex.api.settings import Settings

    db, ids = shapes_world
    qwen = "Qwen/Qwen2.5-VL-7B-Instruct"
    out = json.loads(ok(cli("select", ids["both"], "a red circle", "--db", db, "--budget", "2",
                            "--payload", "openai", "--vlm-model", qwen, "--json")).stdout)
    assert out["payload"]["model"] == qwen
    default = json.loads(ok(cli("select", ids["both"], "a red circle", "--db", db, "--budget",
                                "2", "--payload", "openai", "--json")).stdout)
    assert default["payload"]["model"] == "gpt-4o"
    one_line(cli("select", ids["both"], "a red circle", "--db", db, "--payload", "gemini",
                 "--vlm-model", qwen), "--vlm-model=", "names its model in the URL")
    settings = Settings(db=db, model="synthetic-shapes", device="cpu", log_queries=False)
    with TestClient(create_app(settings)) as client:
        r = client.post(f"/v1/videos/{ids['both']}/select", json={
            "question": "a red circle", "budget": 2, "include": ["payload"],
            "vlm_model": qwen})
        assert r.status_code == 200, r.text
        assert r.json()["payload"]["model"] == qwen
        bad = client.post(f"/v1/videos/{ids['both']}/select", json={
            "question": "a red circle", "include": ["payload"], "payload_format": "gemini",
            "vlm_model": qwen})
        assert bad.status_code == 422
        assert bad.json()["error"]["detail"][0]["field"] == "body.vlm_model"


def test_eval_prints_the_main_table_of_its_report():
    """`framedex eval` only named the files it wrote; it now prints the K = 8 table (the
    README's) first."""
    from framedex.cli.eval import main_table

    report = ("# framedex eval\n\n24 videos.\n\n## K=4\n\n| sampler | hit |\n|---|---:|\n"
              "| aks | 97 |\n\n## K=8\n\n| sampler | hit |\n|---|---:|\n| aks | 100 |\n"
              "| uniform | 7 |\n\n## K=16\n\n| sampler | hit |\n")
    assert main_table(report) == ("## K=8\n\n| sampler | hit |\n|---|---:|\n| aks | 100 |\n"
                                  "| uniform | 7 |")
    assert main_table(report.replace("K=8", "K=9")).startswith("## K=4\n")
    assert main_table("# nothing scored\n") == ""
