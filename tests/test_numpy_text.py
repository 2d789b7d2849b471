"""The numpy text encoder equals open_clip's text tower, and the query path uses it.

Every supported option is checked on a random-weight model against ``load_encoder`` (open_clip
in fp32 on the CPU); unsupported ones must fall back to torch, never run approximately.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_CFG

from framedex.errors import ConfigError, ModelLoadError, UnsupportedModelError
from framedex.indexer import encoder as encoder_mod
from framedex.indexer import open_clip_files
from framedex.indexer.encoder import (
    ModelSpec,
    TextEncoder,
    _numpy_text_encoder,
    load_encoder,
    load_text_encoder,
)
from framedex.indexer.numpy_text import text_tower_config

TEXTS = [
    "a red circle",
    "A green triangle and a purple star on a gray background.",
    "Hello. World. It's 🎉 &amp; café",
    "x",
    "word " * 40,  # longer than any context here: truncated, end token last
]
ATOL = 1e-5


def _write_model(folder: Path, text: dict | None = None, top: dict | None = None,
                 seed: int = 0, dtype: str = "float32", legacy_keys: bool = False,
                 suffix: str = ".safetensors") -> str:
    """A random open_clip model folder; every parameter (LayerNorm, LayerScale, biases too) is
    perturbed so that a wrongly used tensor changes the output."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    cfg = copy.deepcopy(TINY_CFG)
    cfg["text_cfg"].update({"layers": 2, **(text or {})})
    cfg.update(top or {})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
    kwargs = {k: v for k, v in cfg.items() if k != "custom_text"}
    torch.manual_seed(seed)
    cls = open_clip.CustomTextCLIP if cfg.get("custom_text") else open_clip.CLIP
    model = cls(**kwargs)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state = {k: v.to(getattr(torch, dtype)) for k, v in state.items()}
    if legacy_keys:  # CustomTextCLIP weights saved by an old open_clip, text tower at the top
        state = {k.removeprefix("text."): v for k, v in state.items()}
    if suffix == ".safetensors":
        save_file(state, str(folder / "open_clip_model.safetensors"))
    else:
        torch.save(state, folder / f"open_clip_pytorch_model{suffix}")
    return str(folder)


def _assert_same_as_torch(spec: str, texts: list[str] = TEXTS) -> None:
    fast = load_text_encoder(spec, device="cpu")
    full = load_encoder(spec, device="cpu")
    assert fast.backend == "numpy"
    assert fast.identity == full.identity
    assert fast.dim == full.dim
    a, b = fast.encode_text(texts), full.encode_text(texts)
    assert a.dtype == np.float32 and a.shape == b.shape == (len(texts), full.dim)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(a, b, atol=ATOL, rtol=0)


def test_shipped_model_equals_open_clip():
    from test_clip_bpe import CORPUS

    texts = [t for t in CORPUS if t.strip()]
    fast = load_text_encoder("synthetic-shapes")
    full = load_encoder("synthetic-shapes", device="cpu")
    assert fast.backend == "numpy" and full.backend == "torch"
    np.testing.assert_allclose(fast.encode_text(texts), full.encode_text(texts), atol=ATOL,
                               rtol=0)


def test_identity_equals_the_torch_encoders_field_for_field(tiny_model):
    for spec in ("synthetic-shapes", tiny_model):
        fast, full = load_text_encoder(spec).identity, load_encoder(spec, device="cpu").identity
        assert list(fast) == list(full)
        for field in full:
            assert fast[field] == full[field], field


def test_conftest_tiny_model_equals_open_clip(tiny_model):
    _assert_same_as_torch(tiny_model)


VARIANTS = {
    "default": ({}, {}),
    "quick_gelu": ({}, {"quick_gelu": True}),
    "layer_scale": ({"ls_init_value": 0.1}, {}),
    "projection_bias": ({"proj_bias": True}, {}),
    "no_projection": ({"proj_type": "none"}, {}),
    "custom_text": ({}, {"custom_text": True}),
    "eos_pool": ({"pool_type": "eos", "eos_id": 269}, {}),  # 269 is "." at a word end
    "first_pool": ({"pool_type": "first"}, {}),
    "last_pool": ({"pool_type": "last"}, {}),
    "bidirectional": ({"no_causal_mask": True}, {}),
    "eps_and_mlp_ratio": ({"norm_kwargs": {"eps": 1e-6}, "mlp_ratio": 3.0}, {}),
    "canonicalize": ({"tokenizer_kwargs": {"clean": "canonicalize"}}, {}),
    "everything": ({"ls_init_value": 0.5, "proj_bias": True, "pool_type": "eos",
                    "eos_id": 269, "norm_kwargs": {"eps": 1e-6}, "mlp_ratio": 2.5},
                   {"quick_gelu": True, "custom_text": True}),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_supported_variant_equals_open_clip(tmp_path, name):
    text, top = VARIANTS[name]
    _assert_same_as_torch(_write_model(tmp_path / name, text, top))


def test_fp16_weights_are_computed_in_fp32_like_open_clip(tmp_path):
    _assert_same_as_torch(_write_model(tmp_path / "half", dtype="float16"))


def test_old_top_level_keys_of_a_custom_text_model(tmp_path):
    _assert_same_as_torch(_write_model(tmp_path / "legacy", top={"custom_text": True},
                                       legacy_keys=True))


def test_prefix_run_equals_full_context_and_batching(tmp_path):
    """Causal mask: the transformer runs only up to the longest text's end token. One text at
    a time (each its own shorter prefix) equals the batch, and both equal open_clip's run over
    all 16 positions."""
    spec = _write_model(tmp_path / "m")
    enc = load_text_encoder(spec)
    tower, tokens = enc.tower, enc.tokenizer(TEXTS)
    prefix = tower.encode_tokens(tokens)
    alone = np.concatenate([tower.encode_tokens(tokens[i : i + 1]) for i in range(len(TEXTS))])
    np.testing.assert_allclose(alone, prefix, atol=1e-6, rtol=0)
    full = load_encoder(spec, device="cpu").encode_text(TEXTS)  # open_clip: all 16 positions
    np.testing.assert_allclose(prefix, full, atol=ATOL, rtol=0)


@pytest.mark.parametrize(("change", "named"), [
    ({"text_cfg": {"hf_model_name": "roberta-base"}}, "hf_model_name"),
    ({"text_cfg": {"hf_tokenizer_name": "bert-base-uncased"}}, "hf_tokenizer_name"),
    ({"text_cfg": {"embed_cls": True}}, "embed_cls"),
    ({"text_cfg": {"pool_type": "none"}}, "pool_type"),
    ({"text_cfg": {"qk_norm": True}}, "custom attention"),
    ({"text_cfg": {"block_type": "custom"}}, "custom attention"),
    ({"text_cfg": {"act_kwargs": {"approximate": "tanh"}}}, "act_kwargs"),
    ({"text_cfg": {"norm_kwargs": {"elementwise_affine": False}}}, "norm_kwargs"),
    ({"text_cfg": {"tokenizer_kwargs": {"reduction_mask": "random"}}}, "tokenizer_kwargs"),
    ({"text_cfg": {"output_tokens": True}}, "output_tokens"),
    ({"text_cfg": {"no_such_key": 1}}, "no_such_key"),
    ({"multimodal_cfg": {"width": 32}}, "multimodal_cfg"),
    ({"text_cfg": {"proj_type": "none", "width": 64}}, "proj_type"),
    ({"text_cfg": None}, "without text_cfg"),
])
def test_unsupported_text_towers_are_refused_with_the_reason(change, named):
    cfg = copy.deepcopy(TINY_CFG)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key].update(value)
        else:
            cfg[key] = value
    with pytest.raises(UnsupportedModelError, match=named):
        text_tower_config(cfg)


def test_unsupported_tower_falls_back_to_torch(tmp_path):
    spec = _write_model(tmp_path / "tanh", {"act_kwargs": {"approximate": "tanh"}})
    enc = load_text_encoder(spec)
    assert enc.backend == "torch"
    assert enc is load_encoder(spec, device="auto")


def test_bin_checkpoint_falls_back_to_torch(tmp_path):
    spec = _write_model(tmp_path / "bin", suffix=".bin")
    assert load_text_encoder(spec).backend == "torch"


def test_bfloat16_weights_fall_back_to_torch(tmp_path):
    """numpy has no bfloat16; torch reads it (and computes in fp32 on the CPU)."""
    spec = _write_model(tmp_path / "bf16", dtype="bfloat16")
    with pytest.raises(UnsupportedModelError, match="BF16"):
        _numpy_text_encoder(ModelSpec.parse(spec))
    assert load_text_encoder(spec).backend == "torch"


@pytest.mark.parametrize(("spec", "reason"), [
    ("hf-hub:org/name", "hf-hub"),
    ("ViT-B-32:laion2b_s34b_b79k", "pretrained tag"),
])
def test_remote_weights_are_not_eligible(spec, reason):
    with pytest.raises(UnsupportedModelError, match=reason):
        _numpy_text_encoder(ModelSpec.parse(spec))


def test_explicit_gpu_device_goes_to_torch():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="device='cuda'"):
        load_text_encoder("synthetic-shapes", device="cuda")


def test_folder_with_config_but_no_weights_is_refused(tmp_path):
    folder = tmp_path / "noweights"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CFG}))
    for load in (load_text_encoder, lambda s: load_encoder(s, device="cpu")):
        with pytest.raises(ModelLoadError, match="no weights") as info:
            load(str(folder))
        assert "open_clip_model.safetensors" in str(info.value)


def test_architecture_with_a_safetensors_file(tmp_path, monkeypatch):
    """``ARCH:/path/file.safetensors``: the config comes from open_clip's model_configs."""
    import open_clip

    arch = "framedex-test-tiny"
    folder = Path(_write_model(tmp_path / "m"))
    model_cfg = json.loads((folder / "open_clip_config.json").read_text())["model_cfg"]
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / f"{arch}.json").write_text(json.dumps(model_cfg))
    open_clip.add_model_config(tmp_path / "cfg")  # what a user's extra config would do
    monkeypatch.setattr(open_clip_files, "builtin_config",
                        lambda name: copy.deepcopy(model_cfg) if name == arch else None)
    _assert_same_as_torch(f"{arch}:{folder / 'open_clip_model.safetensors'}")


@pytest.mark.slow
@pytest.mark.heavy  # a ViT-B-32 in torch and in numpy: ~10 s, not in make test-fast
def test_vit_b_32_architecture_with_random_weights(tmp_path):
    """open_clip's real ViT-B-32 config (77 tokens, 512 wide, 8 heads, 12 layers), read from
    its model_configs folder; ~600 MB of random fp32 weights."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32")  # no pretrained tag: random, offline
    path = tmp_path / "vit_b_32.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    del model
    _assert_same_as_torch(f"ViT-B-32:{path}", [*TEXTS, "word " * 100])


def test_package_files_read_without_import_equal_open_clip():
    import importlib.metadata

    import open_clip

    assert open_clip_files.builtin_config("ViT-B-32") == open_clip.get_model_config("ViT-B-32")
    assert open_clip_files.builtin_config("NoSuchArch") is None
    assert open_clip_files.version() == open_clip.__version__
    assert open_clip_files.version() == importlib.metadata.version("open_clip_torch")


def test_both_encoders_satisfy_the_protocol(tiny_model):
    assert isinstance(load_text_encoder(tiny_model), TextEncoder)
    assert isinstance(load_encoder(tiny_model, device="cpu"), TextEncoder)


def test_empty_text_is_refused():
    with pytest.raises(ConfigError, match="empty"):
        load_text_encoder("synthetic-shapes").encode_text(["a red circle", " "])


def test_cached_per_process():
    assert load_text_encoder("synthetic-shapes") is load_text_encoder("synthetic-shapes")


def _run(code: str) -> list[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.splitlines()


def test_encoder_module_and_query_encoding_import_neither_torch_nor_open_clip():
    heavy = "sorted(m for m in ('torch', 'open_clip', 'lancedb') if m in sys.modules)"
    assert _run(f"import sys, framedex.indexer.encoder; print({heavy})") == ["[]"]
    out = _run("import sys; from framedex.indexer.encoder import load_text_encoder; "
               "e = load_text_encoder('synthetic-shapes'); "
               f"print(e.backend, e.encode_text(['a red circle']).shape, {heavy})")
    assert out == ["numpy (1, 128) []"]


# -- the query path of Library --------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped_library(tmp_path_factory, small_video):
    from framedex import Library

    lib = Library(tmp_path_factory.mktemp("textfast") / "db", model="synthetic-shapes",
                  device="cpu", log_queries=False)
    assert lib.index_file(small_video).status == "indexed"
    return lib.uri


def test_library_search_and_select_equal_with_numpy_and_torch(shipped_library, monkeypatch):
    from framedex import Library

    def run() -> tuple:
        lib = Library(shipped_library, device="cpu", log_queries=False)
        hits = [h.to_json() for h in lib.search("a red circle", limit=5)]
        videos = [h.to_json() for h in lib.search("a blue star", group_by="video")]
        sel = lib.select(hits[0]["video_id"], "when is the blue star?", sampler="topk",
                         budget=4)
        return lib.text_encoder.backend, hits, videos, sel

    fast = run()
    monkeypatch.setattr(encoder_mod, "load_text_encoder",
                        lambda spec, device="auto": load_encoder(spec, device=device))
    full = run()
    assert (fast[0], full[0]) == ("numpy", "torch")
    for a, b in ((fast[1], full[1]), (fast[2], full[2])):
        assert [(h["video_id"], h["start"], h["end"]) for h in a] == \
            [(h["video_id"], h["start"], h["end"]) for h in b]
        np.testing.assert_allclose([h["score"] for h in a], [h["score"] for h in b],
                                   atol=ATOL)
    assert fast[3].frame_idx == full[3].frame_idx and len(fast[3].frame_idx) == 4
    assert fast[1][0]["start"] < 4.0  # the red circle is in the first scene (0-4 s)


def test_token_rows_cache_is_bounded_and_changes_nothing(monkeypatch):
    """The token-row cache (first in, first out) keeps at most its bound, and texts encode
    to the same vectors with it full, evicting, or empty."""
    from framedex.indexer import numpy_text
    from framedex.indexer.encoder import load_text_encoder

    texts = ["a red circle on black", "a blue star", "the white background, then a square"]
    encoder = load_text_encoder("synthetic-shapes")
    tower = next(v for v in vars(encoder).values() if hasattr(v, "_token_rows"))
    tower._token_rows.clear()
    fresh = encoder.encode_text(texts)
    assert len(tower._token_rows) > 3  # these texts have more distinct tokens than that
    tower._token_rows.clear()
    monkeypatch.setattr(numpy_text, "TOKEN_ROWS_CACHED", 3)
    for _ in range(2):
        assert np.array_equal(encoder.encode_text(texts), fresh)
        assert 0 < len(tower._token_rows) <= 3
