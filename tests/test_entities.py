"""Entity collections and entities in the library, ``<@ENTITY_ID>`` and composed queries, and
the CLI's ``--entity``/``--compose`` (the SDK's side is in tests/test_twelvelabs.py).

One library (the shipped ``synthetic-shapes`` model) holds tests/entity_world.py's distractor
video and needles' ``blue`` video; the entity, a blue star, is made from three reference
images uploaded as assets. It must be found before every scene that shares only its colour
or only its shape, and a text beside it must pick the scene it describes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from entity_world import (
    DISTRACTOR_SPANS,
    DISTRACTORS,
    ON_WHITE,
    overlaps,
    png,
    reference_image,
    tiny_png,
)
from needles import BLUE_SPAN, needle_spec

from framedex.errors import (
    ConfigError,
    EncoderMismatchError,
    NotFoundError,
    PayloadTooLargeError,
)
from framedex.indexer.encoder import BUILTIN_MODELS
from framedex.library import internals
from framedex.query.compose import entity_refs, fuse, plan_parts
from framedex.rules import COMPOSE_TEXT_WEIGHT, MAX_IMAGE_BYTES, MAX_QUERY_IMAGES

HAVE_SHIPPED = (Path(BUILTIN_MODELS["synthetic-shapes"]) / "open_clip_config.json").exists()
pytestmark = pytest.mark.skipif(not HAVE_SHIPPED,
                                reason="synthetic-shapes weights are not trained yet")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(library, {"distractors": id, "blue": id}, reference asset ids, folder)."""
    from framedex import Library
    from framedex.synth import render

    root = tmp_path_factory.mktemp("entities")
    lib = Library(root / "db", model="synthetic-shapes", device="cpu")
    ids = {}
    for name, spec in (("distractors", DISTRACTORS), ("blue", needle_spec(2, False, True))):
        render(spec, root / f"{name}.mp4")
        outcome = lib.index_file(root / f"{name}.mp4")
        assert outcome.status == "indexed", outcome.error
        ids[name] = outcome.video_id
    assets = []
    for i in range(3):
        (root / f"ref{i}.png").write_bytes(png(reference_image(i)))
        assets.append(lib.add_asset(root / f"ref{i}.png", filename=f"ref{i}.png").asset_id)
    yield lib, ids, assets, root
    lib.close()


@pytest.fixture(scope="module")
def entity(world):
    lib, _, assets, _ = world
    collection = lib.create_entity_collection("shapes", description="the synthetic world")
    return lib.create_entity(collection.entity_collection_id, "blue star", assets,
                             metadata={"kind": "shape"})


def _where(hit, ids) -> tuple[str, float, float]:
    names = {v: k for k, v in ids.items()}
    return names[hit.video_id], hit.start, hit.end


# -- parsing and fusing (no model) ----------------------------------------------------------


def test_entity_references_are_split_out_of_the_text():
    assert entity_refs("<@e1> on a white background") == ("on a white background", ["e1"])
    assert entity_refs("<@a_1>  and <@b-2>") == ("and", ["a_1", "b-2"])
    assert entity_refs("a red star") == ("a red star", [])
    for bad in ("<@>", "<@two words>", "<@" + "x" * 65 + ">"):
        with pytest.raises(ConfigError, match="entity reference"):
            entity_refs(bad)


def test_parts_keep_entities_with_their_text_and_compose_makes_one():
    parts = plan_parts(["<@e1> walks", "a dog"], images=2, entities=["e2"], compose=False)
    assert [(p.texts, p.images, p.entities) for p in parts] == [
        (("walks",), (), ("e1", "e2")), (("a dog",), (), ()), ((), (0,), ()), ((), (1,), ())]
    alone = plan_parts([], images=0, entities=["e1"], compose=False)
    assert [(p.texts, p.entities) for p in alone] == [((), ("e1",))]
    (one,) = plan_parts(["<@e1>", "on white"], images=2, entities=["e1"], compose=True)
    assert (one.texts, one.images, one.entities) == (("on white",), (0, 1), ("e1",))


def test_fuse_weighs_the_text_against_the_mean_of_the_visual_side():
    t = np.array([[1.0, 0.0, 0.0]])
    v = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    q = fuse(t, v)
    visual = np.array([0.0, 1.0, 1.0]) / np.sqrt(2)
    want = COMPOSE_TEXT_WEIGHT * t[0] + (1 - COMPOSE_TEXT_WEIGHT) * visual
    np.testing.assert_allclose(q, want / np.linalg.norm(want), atol=1e-6)
    np.testing.assert_allclose(fuse(t, None), t[0])  # one side alone: itself
    np.testing.assert_allclose(fuse(None, v), visual, atol=1e-6)


# -- entities -------------------------------------------------------------------------------


def test_an_entity_ranks_before_scenes_sharing_its_colour_or_shape(world, entity):
    lib, ids, _, _ = world
    hits = lib.search(f"<@{entity.entity_id}>", limit=6)
    top = [_where(h, ids) for h in hits[:2]]
    # the two scenes that show a blue star, first; then the colour and shape distractors
    assert {name for name, *_ in top} == {"distractors", "blue"}, top
    for name, start, end in top:
        assert overlaps(start, end, ON_WHITE if name == "distractors" else BLUE_SPAN), top
    rest = [_where(h, ids) for h in hits[2:]]
    assert any(n == "distractors" and any(overlaps(s, e, d) for d in DISTRACTOR_SPANS)
               for n, s, e in rest)
    assert hits[1].score > max(h.score for h in hits[2:])
    # a text beside the entity picks the scene it describes
    white = lib.search(f"on a white background <@{entity.entity_id}>", limit=1)[0]
    assert _where(white, ids)[0] == "distractors" and overlaps(white.start, white.end, ON_WHITE)
    # entity= is <@id> in the (first) text
    same = lib.search("on a white background", entity=entity.entity_id, limit=3)
    assert [(h.video_id, h.start) for h in same] == [
        (h.video_id, h.start) for h in lib.search(
            f"<@{entity.entity_id}> on a white background", limit=3)]


def test_entity_lifecycle(world, entity):
    lib, _, assets, _ = world
    cid = entity.entity_collection_id
    assert entity.vectors.shape == (3, 128) and entity.asset_ids == assets
    assert [e.entity_id for e in lib.entities(cid)] == [entity.entity_id]
    assert lib.entities(cid)[0].vectors.size == 0  # lists leave the vectors out
    assert [e.entity_id for e in lib.entities_with_asset(assets[1])] == [entity.entity_id]
    renamed = lib.update_entity(cid, entity.entity_id, name="the blue star",
                                metadata={"team": 10})
    assert renamed.name == "the blue star" and renamed.metadata == {"team": 10}
    assert renamed.vectors.shape == (3, 128)  # its reference images stay
    # take two references out and put one back: the vectors follow the assets
    fewer = lib.remove_entity_assets(cid, entity.entity_id, assets[1:])
    assert fewer.asset_ids == assets[:1] and fewer.vectors.shape == (1, 128)
    np.testing.assert_allclose(fewer.vectors[0], entity.vectors[0])
    with pytest.raises(ConfigError, match="at least one"):
        lib.remove_entity_assets(cid, entity.entity_id, assets[:1])
    more = lib.add_entity_assets(cid, entity.entity_id, [assets[0], assets[2], assets[1]])
    assert more.asset_ids == [assets[0], assets[2], assets[1]]
    np.testing.assert_allclose(more.vectors[1:], entity.vectors[[2, 1]], atol=1e-6)
    # another collection: its own entities; deleting it deletes them, not the assets
    other = lib.create_entity_collection("others")
    temp = lib.create_entity(other.entity_collection_id, "temp", assets[:1])
    with pytest.raises(NotFoundError):
        lib.entity(cid, temp.entity_id)  # an entity is reached through its collection
    assert lib.update_entity_collection(other.entity_collection_id, name="renamed").name == \
        "renamed"
    lib.delete_entity_collection(other.entity_collection_id)
    with pytest.raises(NotFoundError):
        lib.search(f"<@{temp.entity_id}>")
    assert lib.asset(assets[0]).asset_id == assets[0]
    assert [c.name for c in lib.entity_collections()] == ["shapes"]


def test_entity_errors(world, entity, tmp_path):
    lib, _, assets, _ = world
    cid = entity.entity_collection_id
    with pytest.raises(NotFoundError, match="no entity"):
        lib.search("<@nosuchentity> on white")
    with pytest.raises(ConfigError, match="entity reference"):
        lib.search("<@not an id>")
    with pytest.raises(NotFoundError, match="no asset"):
        lib.create_entity(cid, "x", ["0" * 24])
    with pytest.raises(ConfigError, match="asset_ids"):
        lib.create_entity(cid, "x", [])
    with pytest.raises(ConfigError, match="asset_ids"):
        lib.create_entity(cid, "x", [f"a{i}" for i in range(51)])

    def asset(name: str, data: bytes | None = None, size: int | None = None) -> str:
        path = tmp_path / name
        path.write_bytes(data or b"")
        if size is not None:
            with open(path, "r+b") as fh:  # sparse: the size rule is read from the header
                fh.truncate(size)
        return lib.add_asset(path, filename=name).asset_id

    with pytest.raises(ConfigError, match=r"asset_ids\[1\] is invalid: 4x4 must have sides "
                                          r"of at least 8 pixels"):
        lib.create_entity(cid, "x", [assets[0], asset("tiny.png", tiny_png())])
    with pytest.raises(PayloadTooLargeError, match=r"asset_ids\[0\] is too large"):
        lib.create_entity(cid, "x", [asset("big.png", size=MAX_IMAGE_BYTES + 1)])
    with pytest.raises(ConfigError, match="not a readable image") as err:
        lib.create_entity(cid, "x", [asset("clip.mp4", b"\x00\x00\x00\x18ftypmp42" * 9)])
    assert str(tmp_path) not in str(err.value)  # no server path in the message
    gone = asset("gone.png", png(reference_image(1)))
    Path(lib.asset(gone).path).unlink()
    with pytest.raises(ConfigError, match="file is gone"):
        lib.create_entity(cid, "x", [gone])
    # an entity embedded by another encoder than the store's is refused, not mixed
    store = internals(lib).store
    copy = lib.create_entity(cid, "copy", assets[:1])
    copy.encoder = {**copy.encoder, "weights_digest": "another"}
    store.save_entity(copy)
    with pytest.raises(EncoderMismatchError, match="create the entity again"):
        lib.search(f"<@{copy.entity_id}>")
    lib.delete_entity(cid, copy.entity_id)


# -- composed queries and several images ----------------------------------------------------


def test_a_composed_query_is_one_vector_where_parts_take_the_best(world):
    lib, ids, _, _ = world
    on_black = reference_image(0)  # a blue star on black
    composed = lib.search("on a white background", image=on_black, compose=True, limit=1)[0]
    assert _where(composed, ids)[0] == "distractors" and overlaps(composed.start, composed.end,
                                                                  ON_WHITE)
    assert composed.part is None  # one part: every frame searched
    parts = lib.search("on a white background", image=on_black, limit=1)[0]
    assert not (_where(parts, ids)[0] == "distractors"
                and overlaps(parts.start, parts.end, ON_WHITE))  # the image's best alone
    # several images: composed, one query of their mean; as parts, one part each
    images = [reference_image(i) for i in range(3)]
    top = lib.search(image=images, compose=True, limit=2)
    assert {_where(h, ids)[0] for h in top} == {"distractors", "blue"}
    videos = lib.search(image=images, group_by="video", limit=2)
    assert {m.part for m in videos[0].moments} <= {0, 1, 2}
    with pytest.raises(ConfigError, match="image"):
        lib.search(image=images * 4, compose=True)  # 12 > MAX_QUERY_IMAGES
    assert MAX_QUERY_IMAGES == 10
    with pytest.raises(ConfigError, match="composed query is one vector"):
        lib.search("a", image=on_black, compose=True, operator="and")


def test_cli_finds_an_entity_and_composes(world, entity):
    from typer.testing import CliRunner

    from framedex.cli import app

    _, ids, _, root = world
    run = CliRunner().invoke(app, ["search", "on a white background", "--entity",
                                   entity.entity_id, "--db", str(root / "db"), "--json",
                                   "--limit", "1"])
    assert run.exit_code == 0, run.output
    (hit,) = json.loads(run.stdout)
    assert hit["video_id"] == ids["distractors"] and overlaps(hit["start"], hit["end"], ON_WHITE)
    (root / "query.png").write_bytes(png(reference_image(0)))
    run = CliRunner().invoke(app, ["search", "on a white background", "--image",
                                   str(root / "query.png"), "--compose", "--db",
                                   str(root / "db"), "--json", "--limit", "1"])
    assert run.exit_code == 0, run.output
    (hit,) = json.loads(run.stdout)
    assert hit["video_id"] == ids["distractors"] and overlaps(hit["start"], hit["end"], ON_WHITE)
    run = CliRunner().invoke(app, ["search", "--entity", "nosuchentity", "--db",
                                   str(root / "db")])
    assert run.exit_code == 1 and "no entity 'nosuchentity'" in run.output
    assert "Traceback" not in run.output
