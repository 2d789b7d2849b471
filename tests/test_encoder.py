"""The open_clip encoder: spec parsing, local loading, outputs, identity and load errors."""

from __future__ import annotations

import numpy as np
import pytest

from framedex.errors import ConfigError, ModelLoadError
from framedex.indexer.encoder import BUILTIN_MODELS, ModelSpec, load_encoder


def test_spec_forms(tiny_model, tmp_path):
    s = ModelSpec.parse("ViT-B-32:laion2b_s34b_b79k")
    assert (s.model_name, s.pretrained) == ("ViT-B-32", "laion2b_s34b_b79k")
    assert ModelSpec.parse("hf-hub:org/name").model_name == "hf-hub:org/name"
    local = ModelSpec.parse(tiny_model)
    assert local.model_name.startswith("local-dir:") and local.is_local
    ckpt = tmp_path / "w.bin"
    ckpt.write_bytes(b"x")
    assert ModelSpec.parse(f"ViT-B-32:{ckpt}").pretrained == str(ckpt.resolve())
    shipped = ModelSpec.parse("synthetic-shapes")
    assert shipped.model_name == f"local-dir:{BUILTIN_MODELS['synthetic-shapes']}"


@pytest.mark.parametrize("bad", ["", "ViT-B-32"])
def test_bad_spec_names_the_parameter(bad):
    with pytest.raises(ConfigError, match="model="):
        ModelSpec.parse(bad)


@pytest.mark.parametrize("spec", ["/no/such/folder", "models/m1", "ViT-B-32:models/gone.bin"])
def test_a_missing_folder_or_file_is_missing_not_invalid(spec, tmp_path, monkeypatch):
    """A model folder that moved was reported as `model='models/m1' is invalid: give
    ARCH:TAG ...`, and a moved checkpoint was tried as a pretrained tag to download."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelLoadError, match=r"there is no (folder|checkpoint file) at /") as err:
        ModelSpec.parse(spec)
    assert "invalid" not in str(err.value) and "moved or deleted" in str(err.value)


def test_a_spec_records_where_the_weights_are_from_any_folder(tiny_model, tmp_path,
                                                              monkeypatch):
    """A relative --model broke every later command run from another folder: the store
    recorded the path as typed."""
    from pathlib import Path

    monkeypatch.chdir(Path(tiny_model).parent)
    relative = ModelSpec.parse(Path(tiny_model).name)
    assert relative.location == str(Path(tiny_model).resolve())
    shipped_folder = ModelSpec.parse(str(BUILTIN_MODELS["synthetic-shapes"]))
    assert shipped_folder.location == "synthetic-shapes"
    assert ModelSpec.parse("ViT-B-32:laion2b_s34b_b79k").location is None


def test_local_model_encodes_normalised_batches(tiny_model):
    enc = load_encoder(tiny_model, device="cpu")
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (5, 48, 80, 3), dtype=np.uint8)
    img = enc.encode_images(frames)
    assert img.shape == (5, enc.dim) and img.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(img, axis=1), 1.0, atol=1e-5)
    # batching does not change results: one at a time equals the batch
    one = np.concatenate([enc.encode_images(frames[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(one, img, atol=1e-5)
    txt = enc.encode_text(["a red circle", "a blue star"])
    assert txt.shape == (2, enc.dim)
    np.testing.assert_allclose(np.linalg.norm(txt, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(txt[0], txt[1])


def test_identity_records_model_and_preprocessing(tiny_model, other_tiny_model):
    a = load_encoder(tiny_model, device="cpu").identity
    b = load_encoder(other_tiny_model, device="cpu").identity
    assert a["dim"] == 32 and a["preprocess"]["size"] == 32
    assert a["preprocess"]["mean"] == [0.5, 0.5, 0.5]
    assert a["weights_digest"] != b["weights_digest"]


def test_empty_text_is_refused(tiny_model):
    with pytest.raises(ConfigError, match="empty"):
        load_encoder(tiny_model, device="cpu").encode_text(["  "])


def test_unreachable_weights_give_one_actionable_line(monkeypatch):
    from framedex.indexer import encoder as mod

    monkeypatch.setattr(mod, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(ModelLoadError) as info:
        load_encoder("ViT-B-32:laion2b_s34b_b79k_not_cached", device="cpu")
    msg = str(info.value)
    assert "\n" not in msg
    assert "ViT-B-32:laion2b_s34b_b79k_not_cached" in msg
    assert "--model" in msg and "local" in msg


def test_unknown_architecture():
    with pytest.raises(ModelLoadError, match="unknown open_clip architecture"):
        load_encoder("NoSuchArch:some_tag", device="cpu")


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelLoadError, match=r"open_clip_config\.json"):
        load_encoder(str(tmp_path), device="cpu")


def test_folder_with_config_but_no_weights(tmp_path):
    """open_clip alone builds random weights here: every search would silently be noise."""
    import json

    from conftest import TINY_CFG

    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CFG}))
    (tmp_path / "notes.pt").write_bytes(b"open_clip does not load *.pt from a folder")
    with pytest.raises(ModelLoadError, match="no weights") as info:
        load_encoder(str(tmp_path), device="cpu")
    assert "open_clip_model.safetensors" in str(info.value) and "\n" not in str(info.value)


def test_forced_unavailable_device():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="device="):
        load_encoder("synthetic-shapes", device="cuda")


def test_batches_that_span_videos_of_several_sizes(tiny_model):
    """A batch made of pieces of different frame sizes (numpy or torch) encodes each frame as
    it would alone, in the pieces' order."""
    import torch

    enc = load_encoder(tiny_model, device="cpu")
    rng = np.random.default_rng(1)
    a = rng.integers(0, 255, (3, 48, 80, 3), dtype=np.uint8)
    b = rng.integers(0, 255, (2, 40, 40, 3), dtype=np.uint8)
    c = rng.integers(0, 255, (1, 48, 80, 3), dtype=np.uint8)
    got = enc.submit([a, b, torch.from_numpy(c)]).result()
    want = np.concatenate([enc.encode_images(x) for x in (a, b, c)])
    assert got.shape == (6, enc.dim)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(enc.encode_images(torch.from_numpy(a)), want[:3], atol=1e-5)
    mixed = enc.encode_images([b[0], a[0], b[1]])  # a list of frames of two sizes
    np.testing.assert_allclose(mixed, want[[3, 0, 4]], atol=1e-5)
