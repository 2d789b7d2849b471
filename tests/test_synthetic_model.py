"""The bundled synthetic-shapes model loads through open_clip and understands the world.

Frames are rendered fresh (seeds >= 1e9, never used in training), encoded to H.264 and
decoded, as indexing would see them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import framedex
from framedex.synth import render
from framedex.synth.captions import single_object_prompts

MODEL_DIR = Path(framedex.__file__).parent / "indexer" / "models" / "synthetic-shapes"

SCENES = [  # (background, objects)
    ("black", [("circle", "red")]),
    ("white", [("circle", "red"), ("square", "blue")]),
    ("gray", [("square", "blue")]),
    ("black", [("star", "yellow")]),
    ("gray", [("triangle", "green"), ("star", "purple")]),
    ("white", []),
    ("gray", [("triangle", "purple"), ("circle", "orange"), ("square", "green")]),
    ("white", [("star", "orange")]),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    import av
    import open_clip
    import torch
    from PIL import Image

    name = f"local-dir:{MODEL_DIR}"
    model, _, preprocess = open_clip.create_model_and_transforms(name)
    model.eval()
    tokenizer = open_clip.get_tokenizer(name)
    spec = {"fps": 10, "size": [128, 128], "seed": 1_234_567_891, "scenes": [
        {"duration": 1.0, "background": bg, "objects": [{"shape": s, "color": c} for s, c in objs]}
        for bg, objs in SCENES]}
    path = tmp_path_factory.mktemp("model") / "w.mp4"
    render(spec, path)
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    picked = [frames[10 * i + 5] for i in range(len(SCENES))]
    with torch.no_grad():
        img = model.encode_image(torch.stack([preprocess(Image.fromarray(f)) for f in picked]))
        img = torch.nn.functional.normalize(img, dim=-1).numpy()

    def rank(text: str) -> list[int]:
        with torch.no_grad():
            t = torch.nn.functional.normalize(model.encode_text(tokenizer([text])), dim=-1)
        return list(np.argsort(-(img @ t.numpy()[0])))

    def classify(i: int) -> tuple[str, str]:
        prompts = single_object_prompts()
        with torch.no_grad():
            t = model.encode_text(tokenizer([p for p, _ in prompts]))
            t = torch.nn.functional.normalize(t, dim=-1).numpy()
        return prompts[int(np.argmax(t @ img[i]))][1]

    return rank, classify


def test_model_files_are_small_and_loadable():
    files = sorted(p.name for p in MODEL_DIR.iterdir())
    assert files == ["open_clip_config.json", "open_clip_model.safetensors"]
    assert (MODEL_DIR / "open_clip_model.safetensors").stat().st_size < 20e6


# Known gap of the shipped model (see scripts/train_synthetic_shapes.py): colours and
# backgrounds are reliable, shapes mostly learned (zero-shot colour+shape 0.97 at 128x128,
# 0.87 at 192x108) but circle/square and star/triangle still swap on some frames (here the
# red circle on black reads as a square, and the purple star outranks the purple triangle).
# Queries that need the shape to pick the right frame are strict xfails: when a better model
# ships they start passing, the suite reports XPASS as a failure, and the mark must go.
SHAPE_GAP = pytest.mark.xfail(strict=True, reason="synthetic-shapes does not yet tell shapes "
                              "apart reliably")


@pytest.mark.parametrize(("query", "expected"), [
    ("a red circle", {0, 1}),  # alone on black, and next to a blue square on white
    ("a blue square", {1, 2}),
    ("a yellow star", {3}),
    ("an empty white screen", {5}),
    ("a purple star", {4}),  # frame 6 has a purple triangle
    pytest.param("a purple triangle", {6}, marks=SHAPE_GAP),
    ("an orange star", {7}),  # frame 6 has an orange circle
    ("a green triangle and a purple star on a gray background", {4}),  # 6: purple+green on gray
])
def test_text_ranks_matching_frames_first(world, query, expected):
    rank, _ = world
    assert set(rank(query)[:len(expected)]) == expected


def test_zero_shot_colour_of_single_objects(world):
    _, classify = world
    for i, (_, objs) in enumerate(SCENES):
        if len(objs) == 1:
            assert classify(i)[1] == objs[0][1]


@SHAPE_GAP
def test_zero_shot_colour_and_shape_of_single_objects(world):
    _, classify = world
    assert [classify(i) for i, (_, o) in enumerate(SCENES) if len(o) == 1] == \
        [o[0] for _, o in SCENES if len(o) == 1]
