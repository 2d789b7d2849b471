"""Shared fixtures: generated videos and a tiny random open_clip model on disk.

Nothing here touches the network or ../shared: every medium is generated. Any record logged
at ERROR during a test (in its process, any thread: a server's request handler too) fails it,
unless the test is marked ``expect_error_logs``: an error nobody looks at is a defect.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _no_error_logs(request, caplog):
    """Fail a test that logged at ERROR or above (``@pytest.mark.expect_error_logs`` allows
    it, for tests that provoke such an error on purpose)."""
    caplog.set_level(logging.ERROR, logger="framedex")
    yield
    if request.node.get_closest_marker("expect_error_logs") is not None:
        return
    errors = [r for when in ("setup", "call") for r in caplog.get_records(when)
              if r.levelno >= logging.ERROR]
    if errors:
        pytest.fail("logged at ERROR: " + "; ".join(
            f"{r.name}: {r.getMessage()[:300]}" for r in errors[:5]), pytrace=False)

TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def write_tiny_model(folder: Path, seed: int = 0) -> Path:
    """A random-weight open_clip model in the Hub layout (config + safetensors)."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": TINY_CFG, "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}))
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_CFG)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(folder / "open_clip_model.safetensors"))
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """Path of a tiny random local model folder (a spec string for --model)."""
    return str(write_tiny_model(tmp_path_factory.mktemp("models") / "tiny"))


@pytest.fixture(scope="session")
def other_tiny_model(tmp_path_factory) -> str:
    """A second tiny model with other weights (for encoder-mismatch tests)."""
    return str(write_tiny_model(tmp_path_factory.mktemp("models2") / "tiny2", seed=1))


SMALL_SPEC = {
    "fps": 10, "size": [64, 64], "seed": 0,
    "scenes": [
        {"duration": 4.0, "background": "black", "objects": [{"shape": "circle", "color": "red"}]},
        {"duration": 3.0, "background": "white", "objects": [{"shape": "star", "color": "blue"}]},
    ],
}


@pytest.fixture(scope="session")
def small_video(tmp_path_factory) -> Path:
    """A 7-second synthetic video (10 fps, 64x64) with two scenes."""
    from framedex.synth.render import render

    out = tmp_path_factory.mktemp("videos") / "small.mp4"
    render(SMALL_SPEC, out)
    return out


@pytest.fixture()
def library(tmp_path, small_video) -> Path:
    """A folder with two good videos, a corrupt one and a truncated one."""
    import shutil

    from framedex.synth.render import render

    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copy(small_video, lib / "a.mp4")
    spec = dict(SMALL_SPEC, seed=3, scenes=SMALL_SPEC["scenes"][::-1])
    render(spec, lib / "b.mp4")
    (lib / "corrupt.mp4").write_bytes(b"this is not a video at all" * 100)
    data = (lib / "a.mp4").read_bytes()
    (lib / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (lib / "notes.txt").write_text("ignored: not a video extension")
    return lib


@pytest.fixture(scope="session")
def s3_endpoint():
    """An S3 stand-in (moto, one request at a time, counting requests) on a loopback port for
    the whole session (tests/s3_loopback.py); skips when moto is not installed."""
    import importlib.util

    if importlib.util.find_spec("moto") is None:
        pytest.skip("moto is not installed (pip install 'moto[server]'): the S3 stand-in")
    import s3_loopback

    proc, endpoint = s3_loopback.start()
    try:
        yield endpoint
    finally:
        proc.terminate()
        proc.wait()


@pytest.fixture()
def s3_store(s3_endpoint, request):
    """A fresh ``s3://`` store URI in its own bucket, and its storage options."""
    import re
    import uuid

    import s3_loopback

    bucket = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-") + \
        "-" + uuid.uuid4().hex[:6]
    s3_loopback.make_bucket(s3_endpoint, bucket)
    return f"s3://{bucket}/lib", s3_loopback.storage_options(s3_endpoint)


@pytest.fixture(scope="session")
def answerer():
    """The shipped answering model (framedex.eval.answerer) on loopback, for the ask tests."""
    from framedex.eval.answerer import AnswererServer

    with AnswererServer() as server:
        yield server


@pytest.fixture(scope="session")
def qa_video(tmp_path_factory) -> Path:
    """An 80 s video whose truth answers the ask tests' questions (tests/asking.py)."""
    from asking import QA_SPEC

    from framedex.synth.render import render

    out = tmp_path_factory.mktemp("qa") / "qa.mp4"
    render(QA_SPEC, out)
    return out


@pytest.fixture(scope="session")
def scale_videos(tmp_path_factory) -> Path:
    """Six distinct 6-second clips (the store-at-scale and replica tests)."""
    from scale import render_clip

    root = tmp_path_factory.mktemp("scale") / "videos"
    root.mkdir()
    for i in range(6):
        render_clip(root / f"v{i}.mp4", seed=100 + i)
    return root


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.slow)])
def scale_db(request, tmp_path):
    """A fresh store on a local folder or on S3: (``--db`` value, the environment a process
    needs for it, a function opening a LanceStore on it)."""
    import os

    import s3_loopback

    from framedex.store import LanceStore

    if request.param == "local":
        path = str(tmp_path / "lib.db")
        return path, dict(os.environ), lambda: LanceStore(path)
    uri, options = request.getfixturevalue("s3_store")
    return uri, dict(os.environ, **s3_loopback.environment(options["aws_endpoint"])), \
        lambda: LanceStore(uri, storage_options=options)
