"""The synthetic video world: rendering, ground truth, determinism, validation, builders."""

from __future__ import annotations

import json

import numpy as np
import pytest

from framedex.errors import ConfigError
from framedex.synth import (
    COLORS,
    Query,
    Truth,
    haystack_spec,
    parse_spec,
    plan,
    random_caption,
    random_spec,
    relevance,
    render,
    truth_of,
    write_video,
)

EXAMPLE = {"fps": 10, "size": [128, 128], "seed": 0, "scenes": [
    {"duration": 30.0, "background": "black", "objects": [{"shape": "circle", "color": "red"}]},
    {"duration": 4.0, "background": "gray",
     "objects": [{"shape": "star", "color": "yellow"}, {"shape": "square", "color": "blue"}]},
    {"duration": 10.0, "background": "white", "objects": []},
]}


def decode(path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "x.mp4"
    truth = render(EXAMPLE, out)
    return out, truth, decode(out)


def test_example_frame_count_and_truth_file(example):
    out, truth, frames = example
    assert len(frames) == round(44.0 * 10) == 440
    assert frames[0].shape == (128, 128, 3)
    written = json.loads(out.with_name("x.truth.json").read_text())
    assert written == {"duration": 44.0, "fps": 10.0, "scenes": [
        {"start": 0.0, "end": 30.0, "background": "black",
         "objects": [{"shape": "circle", "color": "red"}]},
        {"start": 30.0, "end": 34.0, "background": "gray",
         "objects": [{"shape": "star", "color": "yellow"}, {"shape": "square", "color": "blue"}]},
        {"start": 34.0, "end": 44.0, "background": "white", "objects": []}]}
    assert Truth.load(out.with_name("x.truth.json")) == truth
    assert truth.scene_at(31.5).background == "gray"
    assert truth.spans_with(shape="star", color="yellow") == [(30.0, 34.0)]


def _close(pixel: np.ndarray, rgb: tuple[int, int, int], tol: int = 45) -> bool:
    return bool(np.all(np.abs(pixel.astype(int) - np.array(rgb)) <= tol))


def test_pixels_at_object_positions_have_the_object_colour(example):
    _, _, frames = example
    scenes = plan(parse_spec(EXAMPLE))
    checked = 0
    for sp in scenes:
        for idx in range(sp.start_frame + 2, sp.end_frame - 2, 7):
            t = (idx - sp.start_frame) / 10
            for tr in sp.tracks:
                cx, cy, _ = tr.at(t, (128, 128))
                y, x = round(cy), round(cx)
                patch = frames[idx][y - 1:y + 2, x - 1:x + 2].reshape(-1, 3).mean(0)
                assert _close(patch, COLORS[tr.color]), (sp.index, idx, tr.color, patch)
                checked += 1
    assert checked > 50
    # Empty white scene: every pixel is white; the black scene's corners far from the
    # circle stay black somewhere.
    assert frames[400].min() >= 235
    assert frames[100].reshape(-1, 3).min(0).max() <= 20


def test_objects_move_and_scenes_cut_hard(example):
    _, _, frames = example
    assert not np.array_equal(frames[0], frames[50])  # the circle moved
    # Last frame of the black scene vs first of the gray one: a hard cut, no fade.
    assert frames[299].mean() < 60 and abs(frames[300].mean() - 128) < 30


def test_same_spec_twice_is_identical(tmp_path):
    spec = random_spec(12.0, seed=5, scene_duration=(2.0, 4.0))
    t1, t2 = render(spec, tmp_path / "a.mp4"), render(spec, tmp_path / "b.mp4")
    assert t1 == t2
    assert (tmp_path / "a.truth.json").read_bytes() == (tmp_path / "b.truth.json").read_bytes()
    fa, fb = decode(tmp_path / "a.mp4"), decode(tmp_path / "b.mp4")
    assert len(fa) == len(fb) == 120
    assert all(np.array_equal(a, b) for a, b in zip(fa, fb, strict=True))
    render(dict(spec, seed=6), tmp_path / "c.mp4")
    other = decode(tmp_path / "c.mp4")
    assert not all(np.array_equal(a, b) for a, b in zip(fa, other, strict=True))


def _bad(path: str, value):
    spec = json.loads(json.dumps(EXAMPLE))
    target = spec
    parts = path.replace("]", "").replace("[", ".").split(".")
    for p in parts[:-1]:
        target = target[int(p)] if p.isdigit() else target[p]
    last = parts[-1]
    target[int(last) if last.isdigit() else last] = value
    return spec


@pytest.mark.parametrize(("path", "value", "message"), [
    ("scenes[1].objects[0].shape", "hexagon",
     "scenes[1].objects[0].shape='hexagon' is invalid: must be one of circle, square, star, "
     "triangle"),
    ("scenes[0].duration", -3.0, "scenes[0].duration=-3.0 is invalid"),
    ("scenes[2].objects", [{"shape": "star", "color": "red"}] * 4,
     "scenes[2].objects='<4 objects>' is invalid: at most 3 objects"),
    ("scenes[0].objects[0].color", "pink", "scenes[0].objects[0].color='pink' is invalid"),
    ("scenes[2].background", "teal", "scenes[2].background='teal' is invalid"),
    ("fps", 0, "fps=0 is invalid"),
    ("size", [127, 128], "size=[127, 128] is invalid"),
])
def test_invalid_specs_name_the_field(path, value, message, tmp_path):
    with pytest.raises(ConfigError) as err:
        render(_bad(path, value), tmp_path / "bad.mp4")
    assert message in str(err.value)
    assert not (tmp_path / "bad.mp4").exists()


def test_unknown_top_level_key_is_rejected():
    with pytest.raises(ConfigError, match="scenez"):
        parse_spec({**EXAMPLE, "scenez": []})


def test_haystack_needles_are_where_asked_and_unique():
    needle = {"time": 300.0, "duration": 3.0, "background": "white",
              "objects": [{"shape": "star", "color": "purple"}]}
    spec = haystack_spec(600.0, [needle], seed=1)
    truth = truth_of(spec)
    assert truth.duration == 600.0
    assert truth.spans_with(shape="star", color="purple") == [(300.0, 303.0)]
    assert all(s.end - s.start >= 1.0 for s in truth.scenes)
    with pytest.raises(ConfigError, match=r"needles\[1\].time"):
        haystack_spec(600.0, [needle, dict(needle, time=301.0)])


def test_write_video_round_trip_and_bad_frames(tmp_path):
    frames = [np.full((48, 64, 3), v, np.uint8) for v in (0, 128, 255)]
    assert write_video(tmp_path / "v.mp4", frames, fps=5) == 3
    back = decode(tmp_path / "v.mp4")
    assert [round(float(f.mean())) for f in back] == pytest.approx([0, 128, 255], abs=3)
    with pytest.raises(ConfigError, match="frames\\[1\\]"):
        write_video(tmp_path / "w.mp4", [frames[0], frames[0][:10]], fps=5)


def test_caption_relevance_grades():
    frame = ("gray", [("circle", "red"), ("star", "blue")])
    assert relevance(Query(items=(("circle", "red"), ("star", "blue"))), *frame) == 1.0
    assert relevance(Query(items=(("circle", "red"),)), *frame) == 0.5
    assert relevance(Query(items=(("circle", "red"),), background="white"), *frame) == 0.0
    assert relevance(Query(items=(("star", None),)), *frame) == 0.5
    assert relevance(Query(background="gray", empty=True), *frame) == 0.0
    assert relevance(Query(background="gray", empty=True), "gray", []) == 1.0


def test_bound_captions_name_whole_objects():
    """Binding captions (training's binding groups) always name colour and shape together,
    are true of the frame, and often name only some of the objects ("a purple star")."""
    objs = [("star", "purple"), ("triangle", "yellow"), ("circle", "orange")]
    seen_subset = False
    for seed in range(200):
        text, q = random_caption("gray", objs, np.random.default_rng(seed), bound=True)
        assert q.items and all(s is not None and c is not None for s, c in q.items), text
        assert relevance(q, "gray", objs) > 0
        seen_subset |= len(q.items) < len(objs)
    assert seen_subset
