"""Multi-part queries on the ``video_vectors`` multivector table, image queries, collections.

Four generated 24 s videos with known needles (a red circle at 6-12 s, a blue star at 18-24 s):
``both`` has the two, ``red`` and ``blue`` one each, ``none`` neither. An ``and`` query for
both needles must rank ``both`` first (LanceDB's MaxSim: the sum of each part's best segment),
an ``or`` query ranks by the best single part. The multivector rows follow the store's crash
rule: invisible until the video's commit, gone with a re-index's old generation and with a
deleted video.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest
from needles import BLUE, BLUE_SPAN, RED_SPAN, VIDEOS, needle_image, needle_spec

from framedex.errors import ConfigError, NotFoundError, VideoNotFoundError
from framedex.indexer.encoder import BUILTIN_MODELS
from framedex.library import internals
from framedex.query.search import SearchFilters

SHIPPED = BUILTIN_MODELS["synthetic-shapes"]
HAVE_SHIPPED = (Path(SHIPPED) / "open_clip_config.json").exists()
needs_shipped = pytest.mark.skipif(not HAVE_SHIPPED,
                                   reason="synthetic-shapes weights are not trained yet")


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_model):
    """(Library, {name: video_id}, media folder) over the four indexed needle videos."""
    from framedex import Library
    from framedex.synth import render

    root = tmp_path_factory.mktemp("multivector")
    lib = Library(root / "db", model="synthetic-shapes" if HAVE_SHIPPED else tiny_model,
                  device="cpu")
    ids = {}
    for seed, (name, (red, blue)) in enumerate(VIDEOS.items()):
        path = root / f"{name}.mp4"
        render(needle_spec(seed, red, blue), path)
        outcome = lib.index_file(path, metadata={"name": name})
        assert outcome.status == "indexed", outcome.error
        ids[name] = outcome.video_id
    return lib, ids, root


@needs_shipped
def test_and_ranks_the_video_with_both_needles_first(world):
    lib, ids, _ = world
    names = {v: k for k, v in ids.items()}
    hits = lib.search(["a red circle", "a blue star"], operator="and", group_by="video",
                      limit=4, threshold="none")
    order = [names[h.video_id] for h in hits]
    assert order[0] == "both" and order[-1] == "none", order
    # by default (threshold low) a video must show every part: the one-needle videos and
    # the video with neither are left out, not listed below it
    shown = lib.search(["a red circle", "a blue star"], operator="and", group_by="video",
                       limit=4)
    assert [names[h.video_id] for h in shown] == ["both"]
    assert shown[0].confidence in ("high", "medium", "low")
    best = hits[0]
    by_part = {m.part: m for m in best.moments}
    assert (by_part[0].start, by_part[0].end) == RED_SPAN
    assert (by_part[1].start, by_part[1].end) == BLUE_SPAN
    # each moment names its best frame, inside its segment (a thumbnail for the face)
    for m in best.moments:
        assert m.frame_idx is not None and m.start <= m.best_pts_sec < m.end
    # and: the score is the sum over the parts of each part's best segment
    assert best.score == pytest.approx(sum(m.score for m in best.moments), abs=1e-5)


@needs_shipped
def test_or_scores_the_best_single_part(world):
    lib, _, _ = world
    hits = lib.search(["a red circle", "a blue star"], operator="or", group_by="video",
                      limit=4)
    for h in hits:
        assert h.score == pytest.approx(max(m.score for m in h.moments), abs=1e-5)
    and_hits = lib.search(["a red circle", "a blue star"], operator="and", group_by="video",
                          limit=4, threshold="none")
    # the one-needle videos are far behind "both" under and, close to it under or
    gap_and = and_hits[0].score - and_hits[1].score
    gap_or = hits[0].score - hits[1].score
    assert gap_and > 3 * gap_or


@needs_shipped
def test_group_by_moment_lists_each_ranked_videos_moments(world):
    lib, ids, _ = world
    moments = lib.search(["a red circle", "a blue star"], operator="and", limit=3)
    assert [m.video_id for m in moments[:2]] == [ids["both"]] * 2
    assert {m.part for m in moments[:2]} == {0, 1}
    assert moments[0].to_json()["part"] in (0, 1)


@needs_shipped
def test_image_query_finds_the_needle_like_a_text(world):
    lib, ids, _ = world
    image = needle_image(BLUE)
    hits = lib.search(image=image, limit=2)
    assert {m.video_id for m in hits} == {ids["both"], ids["blue"]}
    assert all(BLUE_SPAN[0] - 1 <= m.best_pts_sec <= BLUE_SPAN[1] for m in hits)
    # same filters as a text query
    only = lib.search(image=image, limit=5, filters=SearchFilters(metadata={"name": "blue"}))
    assert {m.video_id for m in only} == {ids["blue"]}
    # text and image compose: "and" of a red circle (text) and a blue star (image)
    both = lib.search("a red circle", image=image, operator="and", group_by="video", limit=4)
    assert both[0].video_id == ids["both"]


def test_query_validation(world):
    lib, _, _ = world
    with pytest.raises(ConfigError, match="text or an image"):
        lib.search()
    with pytest.raises(ConfigError, match="operator"):
        lib.search(["a", "b"], operator="xor")
    with pytest.raises(ConfigError, match="image"):
        lib.search(image=np.zeros((4, 4), np.uint8))
    with pytest.raises(ConfigError, match="at most"):
        lib.search(["a red circle"] * 12, operator="and")
    with pytest.raises(ConfigError, match="not a readable image"):
        lib.load_image(b"not an image")


def test_query_images_are_decoded_at_the_model_input_size(world):
    """A query image is decoded straight to the image tower's input size (its shorter side),
    never enlarged; JPEG through the decoder's own scaling, palette PNGs in colour."""
    import io

    from PIL import Image

    lib, _, _ = world
    side = lib._query_image_side()
    photo = Image.new("RGB", (4000, 3000), (250, 120, 10))
    jpeg, png, tiny = io.BytesIO(), io.BytesIO(), io.BytesIO()
    photo.save(jpeg, format="JPEG")
    photo.convert("P", palette=Image.Palette.ADAPTIVE).save(png, format="PNG")
    Image.new("RGB", (40, 20), (0, 0, 255)).save(tiny, format="PNG")
    big, pal, small = lib.load_images([jpeg.getvalue(), png.getvalue(), tiny.getvalue()])
    assert big.shape == pal.shape == (side, round(4000 * side / 3000), 3)
    assert abs(int(big[0, 0, 0]) - 250) < 8 and abs(int(pal[0, 0, 1]) - 120) < 8
    assert small.shape == (20, 40, 3)  # smaller than the input size: as it is
    with pytest.raises(ConfigError, match="pixels per request"):
        lib.load_images([jpeg.getvalue()] * 11)  # 11 x 12 MP: over the request's pixels


def test_collections_keep_videos_when_deleted_or_renamed(world):
    lib, ids, _ = world
    c = lib.create_collection("needles", models=[{"model_name": "marengo3.0",
                                                   "model_options": ["visual"]}])
    cid = c.collection.index_id
    with pytest.raises(ConfigError, match="exists"):
        lib.create_collection("needles")
    lib.add_to_collection(cid, ids["red"])
    lib.add_to_collection(cid, ids["red"])  # again: still one member
    lib.add_to_collection(cid, ids["both"])
    info = lib.collection(cid)
    assert info.video_count == 2 and info.total_duration == pytest.approx(48.0, abs=0.5)
    assert [v.video_id for _, v in lib.collection_videos(cid)] == [ids["red"], ids["both"]]
    hits = lib.search("a blue star", collection=cid, limit=10)
    assert {m.video_id for m in hits} <= {ids["red"], ids["both"]}
    assert lib.rename_collection(cid, "renamed").collection.name == "renamed"
    lib.remove_from_collection(cid, ids["red"])
    assert lib.collection(cid).video_count == 1
    with pytest.raises(VideoNotFoundError):
        lib.add_to_collection(cid, "0" * 20)
    lib.delete_collection(cid)
    with pytest.raises(NotFoundError):
        lib.collection(cid)
    assert lib.count_videos() == 4  # the videos stay
    empty = lib.create_collection("empty").collection.index_id
    assert lib.search("a red circle", collection=empty) == []
    with pytest.raises(ConfigError, match="index_id"):
        lib.collection("../etc")


def test_video_embeddings_tile_the_video(world):
    lib, ids, _ = world
    clips = lib.video_embeddings(ids["both"], segmentation="fixed", seconds=5)
    assert [c.start_sec for c in clips] == [0, 5, 10, 15, 20]
    assert clips[-1].end_sec == pytest.approx(24.0, abs=0.3)
    assert all(a.end_sec == b.start_sec for a, b in itertools.pairwise(clips))
    shots = lib.video_embeddings(ids["both"], segmentation="dynamic", seconds=4,
                                 scopes=("clip", "asset"))
    clips = [s for s in shots if s.scope == "clip"]
    assert shots[-1].scope == "asset" and shots[-1].start_sec == 0
    assert clips[0].start_sec == 0 and clips[-1].end_sec == pytest.approx(24.0, abs=0.3)
    assert all(a.end_sec == b.start_sec for a, b in itertools.pairwise(clips))
    assert all(c.end_sec - c.start_sec >= 4 - 1e-6 for c in clips)
    if HAVE_SHIPPED:  # the four 6 s scenes are four shots
        assert [c.start_sec for c in clips] == [0, 6, 12, 18]
    for c in shots:
        assert np.linalg.norm(c.vector) == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ConfigError, match="segmentation"):
        lib.video_embeddings(ids["both"], segmentation="scenes")


# -- the crash rule ---------------------------------------------------------------------------


@pytest.fixture()
def scratch(world, tmp_path):
    """A fresh library over copies of two of the world's videos (safe to re-index/delete)."""
    from framedex import Library

    lib0, _, root = world
    lib = Library(tmp_path / "db", model=lib0.model, device="cpu")
    out = {}
    for name in ("red", "blue"):
        shutil.copy(root / f"{name}.mp4", tmp_path / f"{name}.mp4")
        out[name] = lib.index_file(tmp_path / f"{name}.mp4").video_id
    return lib, out, tmp_path


def _vector_rows(lib) -> list[tuple[str, int]]:
    data = internals(lib).store.tables.read("video_vectors", ["video_id", "generation"])
    return sorted(zip(data.column("video_id").to_pylist(),
                      data.column("generation").to_pylist(), strict=True))


def test_vectors_row_follows_the_generation_and_the_delete(scratch):
    lib, ids, folder = scratch
    red = lib.video(ids["red"])
    assert (ids["red"], red.generation) in _vector_rows(lib)
    cid = lib.create_collection("c").collection.index_id
    lib.add_to_collection(cid, ids["red"])
    lib.index_file(folder / "red.mp4", fps=2.0)  # a re-index: a new generation
    again = lib.video(ids["red"])
    assert again.generation != red.generation
    rows = [r for r in _vector_rows(lib) if r[0] == ids["red"]]
    assert rows == [(ids["red"], again.generation)]
    assert lib.collection(cid).video_count == 1  # membership survives a re-index
    lib.delete(ids["red"])
    assert all(v != ids["red"] for v, _ in _vector_rows(lib))
    assert lib.collection(cid).video_count == 0
    assert internals(lib).store.tables.read("index_members").num_rows == 0


def test_uncommitted_vectors_are_invisible(scratch):
    from framedex.store.base import SegmentArrays
    from framedex.store.multivector import write_video_vectors

    lib, ids, _ = scratch
    store = internals(lib).store
    ghost = "f" * 20
    q = lib.embed_text(["a red circle", "a blue star"])
    claim = store.claim(ghost, wait=False)
    gen = store.begin_video(claim)  # a run that wrote its rows and never committed them
    store.add_segments(ghost, gen, np.array([0.0, 6.0]), np.array([6.0, 12.0]),
                       np.array([6, 6]), q)
    write_video_vectors(store, ghost, gen, SegmentArrays(
        ghost, np.array([0.0, 6.0]), np.array([6.0, 12.0]), ["fixed"] * 2, q))
    claim.release()  # (a killed run's claim: see test_store_integrity for the expiry)
    assert (ghost, gen) in _vector_rows(lib)
    for op in ("and", "or"):
        hits = lib.search(["a red circle", "a blue star"], operator=op, group_by="video",
                          threshold="none")
        assert ghost not in {h.video_id for h in hits}
        assert {h.video_id for h in hits} == set(ids.values())
    lib.optimize()  # sweeps the dead generation
    assert ghost not in {v for v, _ in _vector_rows(lib)}


def test_missing_rows_are_backfilled(scratch):
    lib, ids, _ = scratch
    internals(lib).store.tables.delete("video_vectors", "true")  # a store indexed before the table
    assert internals(lib).store.count_video_vectors() == 0
    hits = lib.search(["a red circle", "a blue star"], operator="and", group_by="video",
                      threshold="none")
    assert {h.video_id for h in hits} == set(ids.values())
    assert internals(lib).store.count_video_vectors() == 2


# -- the CLI ----------------------------------------------------------------------------------


@needs_shipped
def test_cli_search_image_and_and(world):
    import json

    from PIL import Image
    from typer.testing import CliRunner

    from framedex.cli import app

    lib, ids, root = world
    png = root / "blue_star.png"
    Image.fromarray(needle_image(BLUE)).save(png)
    db = lib.uri
    r = CliRunner().invoke(app, ["search", "--db", db, "--image", str(png), "--json", "-n", "1",
                                 "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)[0]["video_id"] in (ids["both"], ids["blue"])
    r = CliRunner().invoke(app, ["search", "a red circle", "--and", "a blue star", "--db", db,
                                 "--group-by", "video", "--json", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    hits = json.loads(r.stdout)
    assert hits[0]["video_id"] == ids["both"]
    assert sorted(m["part"] for m in hits[0]["moments"]) == [0, 1]
    r = CliRunner().invoke(app, ["search", "--db", db, "--image", str(root / "nope.png")])
    assert r.exit_code != 0 and "--image" in r.stderr and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["search", "--db", db])
    assert r.exit_code != 0 and "give what to look for" in r.stderr and "--image" in r.stderr
