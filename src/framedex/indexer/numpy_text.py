"""open_clip's text tower in numpy float32: query-time text encoding without torch.

A query needs one forward pass of the text transformer on a handful of tokens, but importing
torch and open_clip to run it costs seconds per process. This module runs the forward pass of
open_clip's standard ``TextTransformer`` (as used by ``CLIP.encode_text`` and
``CustomTextCLIP.encode_text``) in numpy, with the weights read from the model's
``.safetensors`` file, text-tower keys only:

    x = token_embedding[ids] + positional_embedding
    for each block:  x += ls_1 * attn(ln_1(x), causal mask);  x += ls_2 * mlp(ln_2(x))
    x = ln_final(x)[pool index];  x = x @ text_projection  (or a Linear with bias);  x /= |x|

Everything is float32, as open_clip computes on a CPU in fp32 (fp16 checkpoints are upcast on
load, exactly as ``load_state_dict`` into an fp32 model does).

Because the mask is causal, the output at the pooled token (the end-of-text token for the
default ``argmax`` pooling) depends only on the tokens up to it; the transformer therefore runs
on that prefix (5 tokens for "a red circle" instead of 77), which is why a query costs about a
millisecond on the shipped model.

Only configurations this module reproduces exactly are accepted: :func:`text_tower_config`
raises :class:`~framedex.errors.UnsupportedModelError` naming the first feature it does not
implement (Hugging Face text towers, CoCa, class-token pooling, custom attention blocks...).
``tests/test_text_fast.py`` compares the outputs with open_clip on every supported option.

Example::

    cfg = text_tower_config(json.load(open("open_clip_config.json"))["model_cfg"])
    tower = NumpyTextTower(cfg, "open_clip_model.safetensors")
    tower.encode_tokens(ClipTokenizer(cfg.context_length)(["a red circle"]))   # (1, D)
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from framedex.errors import ConfigError, UnsupportedModelError

#: Poolings of open_clip's ``text_global_pool`` reproduced here ('none' returns all tokens).
POOL_TYPES = ("argmax", "eos", "first", "last")

# Every field of open_clip's ``CLIPTextCfg`` (an unknown key makes open_clip itself fail).
# Keys in _TEXT_IGNORED do not change the standard tower's forward pass.
_TEXT_IGNORED = {"pad_id", "final_ln_after_pool", "tokenizer_mode", "hf_model_pretrained",
                 "hf_proj_type", "hf_pooler_type"}
_TEXT_HANDLED = {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio",
                 "ls_init_value", "embed_cls", "eos_id", "no_causal_mask", "pool_type",
                 "proj_bias", "proj_type", "output_tokens", "act_kwargs", "norm_kwargs",
                 "block_type", "qk_norm", "scaled_cosine_attn", "scale_heads",
                 "scale_attn_inner", "scale_attn", "scale_fc", "hf_model_name",
                 "hf_tokenizer_name", "tokenizer_kwargs"}
_CUSTOM_BLOCK_FLAGS = ("qk_norm", "scaled_cosine_attn", "scale_heads", "scale_attn_inner",
                       "scale_attn", "scale_fc")
# Top-level keys of an open_clip model config that leave the text tower standard.
_MODEL_KEYS = {"embed_dim", "vision_cfg", "text_cfg", "quick_gelu", "custom_text",
               "init_logit_scale", "init_logit_bias", "nonscalar_logit_scale"}
#: safetensors dtypes numpy can read (numpy has no bfloat16).
_DTYPES = {"F32", "F16", "F64"}
#: Texts per forward pass: bounds the (batch, heads, tokens, tokens) attention scores.
_CHUNK = 64
#: Token embedding rows kept in memory (first in, first out). Reading one row through the
#: safetensors slice cost ~70 us under cProfile (0.7 ms of a warm select); 4,096
#: rows of a 512-wide tower are 8 MB.
TOKEN_ROWS_CACHED = 4096


@dataclass(frozen=True)
class TextTowerConfig:
    """What the numpy forward pass needs from an open_clip model config.

    Attributes:
        context_length: tokens per text (rows of the positional embedding).
        vocab_size: rows of the token embedding.
        width: transformer width; ``heads`` divides it.
        heads: attention heads.
        layers: residual attention blocks.
        mlp_width: hidden width of each block's MLP (``int(width * mlp_ratio)``).
        embed_dim: output dimension (the model's ``embed_dim``).
        quick_gelu: QuickGELU (``x * sigmoid(1.702 x)``) instead of exact GELU.
        layer_scale: blocks have LayerScale (``ls_1.gamma`` / ``ls_2.gamma``).
        norm_eps: LayerNorm epsilon (torch's 1e-5 unless ``norm_kwargs`` says otherwise).
        pool_type: one of :data:`POOL_TYPES`.
        eos_id: the token pooled by ``pool_type="eos"``.
        causal: causal attention mask (``no_causal_mask`` false).
        projection: ``matrix`` (``x @ P``), ``linear`` (``proj_bias``: weight and bias) or
            ``none``.
        prefix: key prefix of the text tower in the weights: ``""`` for open_clip's ``CLIP``,
            ``"text."`` for ``CustomTextCLIP``.
        clean: the tokenizer's text cleaning (``tokenizer_kwargs["clean"]``).
    """

    context_length: int
    vocab_size: int
    width: int
    heads: int
    layers: int
    mlp_width: int
    embed_dim: int
    quick_gelu: bool = False
    layer_scale: bool = False
    norm_eps: float = 1e-5
    pool_type: str = "argmax"
    eos_id: int = 2
    causal: bool = True
    projection: str = "matrix"
    prefix: str = ""
    clean: str = "lower"


def text_tower_config(model_cfg: Mapping[str, Any]) -> TextTowerConfig:
    """Read an open_clip ``model_cfg`` (the JSON's ``model_cfg``, or a built-in config).

    Args:
        model_cfg: with ``embed_dim``, ``text_cfg`` and optionally ``quick_gelu``,
            ``custom_text``...

    Returns:
        The tower's settings, with open_clip's defaults for absent keys.

    Raises:
        UnsupportedModelError: a feature this module does not reproduce (named in the message).
    """
    from framedex.indexer.clip_bpe import CLEANERS

    def refuse(feature: str) -> UnsupportedModelError:
        return UnsupportedModelError(f"the numpy text encoder does not support {feature}; "
                                     "use the torch encoder (load_encoder)")

    if not all(isinstance(model_cfg.get(k), Mapping) for k in ("text_cfg", "vision_cfg")):
        raise refuse("a model config without text_cfg and vision_cfg")
    extra = sorted(set(model_cfg) - _MODEL_KEYS)
    if extra:
        raise refuse(f"model config key {extra[0]!r}")
    text = dict(model_cfg["text_cfg"])
    unknown = sorted(set(text) - _TEXT_HANDLED - _TEXT_IGNORED)
    if unknown:
        raise refuse(f"text_cfg key {unknown[0]!r}")
    for key in ("hf_model_name", "hf_tokenizer_name"):
        if text.get(key):
            raise refuse(f"Hugging Face text towers or tokenizers ({key}={text[key]!r})")
    if text.get("embed_cls"):
        raise refuse("a class-token text tower (embed_cls, CoCa)")
    if text.get("output_tokens"):
        raise refuse("output_tokens")
    custom_flags = [f for f in _CUSTOM_BLOCK_FLAGS if text.get(f)]
    if custom_flags or text.get("block_type") not in (None, "default"):
        raise refuse(f"custom attention blocks ({custom_flags or text.get('block_type')})")
    if text.get("act_kwargs"):
        raise refuse(f"act_kwargs={text['act_kwargs']!r}")
    norm_kwargs = dict(text.get("norm_kwargs") or {})
    if set(norm_kwargs) - {"eps"}:
        raise refuse(f"norm_kwargs={norm_kwargs!r}")
    pool_type = text.get("pool_type", "argmax")
    if pool_type not in POOL_TYPES:
        raise refuse(f"pool_type={pool_type!r}")
    tokenizer_kwargs = dict(text.get("tokenizer_kwargs") or {})
    clean = tokenizer_kwargs.pop("clean", "lower")
    if tokenizer_kwargs or clean not in CLEANERS:
        raise refuse(f"tokenizer_kwargs={text.get('tokenizer_kwargs')!r}")
    width, heads = int(text.get("width", 512)), int(text.get("heads", 8))
    embed_dim = int(model_cfg.get("embed_dim") or 0)
    if heads <= 0 or width % heads or embed_dim <= 0:
        raise refuse(f"width={width}, heads={heads}, embed_dim={embed_dim}")
    projection = "none" if text.get("proj_type", "linear") == "none" else (
        "linear" if text.get("proj_bias") else "matrix")
    if projection == "none" and width != embed_dim:
        raise refuse(f"proj_type='none' with width {width} != embed_dim {embed_dim}")
    # open_clip builds CustomTextCLIP (text tower under "text.") for custom_text or for any
    # config that names an HF text model, even an empty name.
    custom = bool(model_cfg.get("custom_text")) or "hf_model_name" in text
    return TextTowerConfig(
        context_length=int(text.get("context_length", 77)),
        vocab_size=int(text.get("vocab_size", 49408)),
        width=width, heads=heads, layers=int(text.get("layers", 12)),
        mlp_width=int(width * float(text.get("mlp_ratio", 4.0))),
        embed_dim=embed_dim,
        quick_gelu=bool(model_cfg.get("quick_gelu", False)),
        layer_scale=text.get("ls_init_value") is not None,
        norm_eps=float(norm_kwargs.get("eps", 1e-5)),
        pool_type=pool_type,
        eos_id=int(text.get("eos_id", 2)),
        causal=not text.get("no_causal_mask", False),
        projection=projection,
        prefix="text." if custom else "",
        clean=clean,
    )


# -- math ------------------------------------------------------------------------------------

_SQRT1_2 = 1.0 / math.sqrt(2.0)


def _erfc_nonneg(z: np.ndarray) -> np.ndarray:
    """erfc(z) for z >= 0 in float64, relative error < 1.2e-7 (Numerical Recipes' ``erfcc``,
    a Chebyshev fit). numpy has no erf, and scipy is not a dependency."""
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))
    return t * np.exp(-z * z + poly)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, torch's ``nn.GELU()`` default: ``x/2 * (1 + erf(x/sqrt(2)))``.

    ``1 + erf(u)`` is computed as ``erfc(-u)`` for u < 0 and ``2 - erfc(u)`` otherwise, so the
    negative tail keeps its relative precision instead of cancelling to 0.
    """
    u = x.astype(np.float64) * _SQRT1_2
    a = _erfc_nonneg(np.abs(u))
    one_plus_erf = np.where(u < 0, a, 2.0 - a)
    return (0.5 * x * one_plus_erf).astype(np.float32)


def quick_gelu(x: np.ndarray) -> np.ndarray:
    """open_clip's QuickGELU, ``x * sigmoid(1.702 x)`` (OpenAI's original CLIP activation)."""
    with np.errstate(over="ignore"):  # exp overflows to inf for x << 0: x / inf = -0, correct
        return (x / (1.0 + np.exp(-1.702 * x))).astype(np.float32)


def _linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """torch's ``F.linear`` over the last axis: ``x @ weight.T + bias``, weight (out, in).

    One 2-D GEMM over all rows (numpy's stacked matmul would call BLAS once per text,
    re-reading the weights each time); the transpose is a BLAS flag, not a copy.
    """
    out = x.reshape(-1, x.shape[-1]) @ weight.T
    if bias is not None:
        out += bias
    return out.reshape(*x.shape[:-1], weight.shape[0])


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = np.mean(centred * centred, axis=-1, keepdims=True)  # biased, as torch
    return centred / np.sqrt(var + np.float32(eps)) * weight + bias


# -- weights ---------------------------------------------------------------------------------


@dataclass
class _Block:
    # Linear weights as torch stores them, (out, in); ``x @ w.T`` passes the transpose to BLAS
    # as a flag, so loading copies nothing.
    ln_1: tuple[np.ndarray, np.ndarray]
    qkv_w: np.ndarray  # (3 * width, width): q, k, v stacked
    qkv_b: np.ndarray
    out_w: np.ndarray  # (width, width)
    out_b: np.ndarray
    ln_2: tuple[np.ndarray, np.ndarray]
    fc_w: np.ndarray  # (mlp_width, width)
    fc_b: np.ndarray
    proj_w: np.ndarray  # (width, mlp_width)
    proj_b: np.ndarray
    ls_1: np.ndarray | None
    ls_2: np.ndarray | None


class NumpyTextTower:
    """The text tower of an open_clip model, read from a ``.safetensors`` file.

    Only the text-tower tensors are read; the token embedding stays in the file (memory-mapped
    by safetensors) and only the rows a batch uses are read, so loading ViT-B-32's text tower
    does not copy its 49,408 x 512 embedding.

    Args:
        cfg: from :func:`text_tower_config`.
        weights: the model's ``.safetensors`` file.

    Raises:
        UnsupportedModelError: the file lacks a text-tower tensor, has another shape than the
            config implies, or stores bfloat16 (numpy cannot read it); the torch encoder then
            reports or handles it.
    """

    def __init__(self, cfg: TextTowerConfig, weights: str | Path):
        from safetensors import safe_open

        self.cfg = cfg
        self.weights = Path(weights)
        try:
            self._file = safe_open(str(weights), framework="numpy")
            self._keys = set(self._file.keys())
        except Exception as ex:  # safetensors raises its own SafetensorError / OSError
            raise UnsupportedModelError(f"cannot read {weights} with safetensors: {ex}") from ex
        self._prefix = self._key_prefix()
        c, w = cfg, cfg.width
        self._tokens = self._slice("token_embedding.weight", (c.vocab_size, w))
        self._token_rows: dict[int, np.ndarray] = {}
        self._pos = self._get("positional_embedding", (c.context_length, w))
        self._blocks = [self._block(i) for i in range(c.layers)]
        self._ln_final = (self._get("ln_final.weight", (w,)), self._get("ln_final.bias", (w,)))
        self._proj_w: np.ndarray | None = None
        self._proj_b: np.ndarray | None = None
        if c.projection == "matrix":
            self._proj_w = self._get("text_projection", (w, c.embed_dim))
        elif c.projection == "linear":
            self._proj_w = self._get("text_projection.weight", (c.embed_dim, w)).T
            self._proj_b = self._get("text_projection.bias", (c.embed_dim,))
        self.dim = c.embed_dim if c.projection != "none" else w
        self._mask = np.triu(np.full((c.context_length,) * 2, -np.inf, np.float32), k=1)
        self._lock = threading.Lock()  # the safetensors handle is shared by API threads

    def _key_prefix(self) -> str:
        prefix = self.cfg.prefix
        # open_clip moves an old top-level checkpoint under "text." for CustomTextCLIP when it
        # has a top-level "text_projection" (convert_to_custom_text_state_dict).
        if (prefix and f"{prefix}positional_embedding" not in self._keys
                and {"positional_embedding", "text_projection"} <= self._keys):
            return ""
        return prefix

    def _check(self, key: str, shape: tuple[int, ...]) -> str:
        name = self._prefix + key
        if name not in self._keys:
            raise UnsupportedModelError(f"{self.weights} has no tensor {name!r} (keys such as "
                                        f"{sorted(self._keys)[:3]}); not a standard open_clip "
                                        "text tower")
        sl = self._file.get_slice(name)
        if sl.get_dtype() not in _DTYPES:
            raise UnsupportedModelError(f"{name} in {self.weights} is {sl.get_dtype()}, which "
                                        "numpy cannot read")
        if tuple(sl.get_shape()) != shape:
            raise UnsupportedModelError(f"{name} in {self.weights} has shape "
                                        f"{tuple(sl.get_shape())}, the config implies {shape}")
        return name

    def _get(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        tensor = self._file.get_tensor(self._check(key, shape))
        return np.ascontiguousarray(tensor, dtype=np.float32)

    def _slice(self, key: str, shape: tuple[int, ...]) -> Any:
        return self._file.get_slice(self._check(key, shape))

    def _block(self, i: int) -> _Block:
        w, m = self.cfg.width, self.cfg.mlp_width
        p = f"transformer.resblocks.{i}."

        def ln(name: str) -> tuple[np.ndarray, np.ndarray]:
            return self._get(p + name + ".weight", (w,)), self._get(p + name + ".bias", (w,))

        return _Block(
            ln_1=ln("ln_1"),
            qkv_w=self._get(p + "attn.in_proj_weight", (3 * w, w)),
            qkv_b=self._get(p + "attn.in_proj_bias", (3 * w,)),
            out_w=self._get(p + "attn.out_proj.weight", (w, w)),
            out_b=self._get(p + "attn.out_proj.bias", (w,)),
            ln_2=ln("ln_2"),
            fc_w=self._get(p + "mlp.c_fc.weight", (m, w)),
            fc_b=self._get(p + "mlp.c_fc.bias", (m,)),
            proj_w=self._get(p + "mlp.c_proj.weight", (w, m)),
            proj_b=self._get(p + "mlp.c_proj.bias", (w,)),
            ls_1=self._get(p + "ls_1.gamma", (w,)) if self.cfg.layer_scale else None,
            ls_2=self._get(p + "ls_2.gamma", (w,)) if self.cfg.layer_scale else None,
        )

    # -- forward -----------------------------------------------------------------------------

    def pool_index(self, tokens: np.ndarray) -> np.ndarray:
        """Position of the pooled token per row, as open_clip's ``text_global_pool``.

        ``argmax`` is the first position of the largest id (the end-of-text token, 49407);
        ``eos`` the first ``eos_id`` (position 0 if absent, like torch's argmax of a 0/1 row).
        """
        n, length = tokens.shape
        kind = self.cfg.pool_type
        if kind == "argmax":
            return tokens.argmax(axis=1)
        if kind == "eos":
            return (tokens == self.cfg.eos_id).argmax(axis=1)
        return np.full(n, 0 if kind == "first" else length - 1, dtype=np.int64)

    def _embed(self, tokens: np.ndarray) -> np.ndarray:
        ids, inverse = np.unique(tokens, return_inverse=True)
        if ids.min() < 0 or ids.max() >= self.cfg.vocab_size:
            raise ConfigError(f"tokens={ids.min()}..{ids.max()} is invalid: ids must be in "
                              f"0..{self.cfg.vocab_size - 1}")
        rows = np.stack([self._token_row(int(i)) for i in ids])
        return rows[inverse.reshape(tokens.shape)]

    def _token_row(self, i: int) -> np.ndarray:
        """Row ``i`` of the token embedding, float32 (see :data:`TOKEN_ROWS_CACHED`)."""
        row = self._token_rows.get(i)
        if row is None:
            if len(self._token_rows) >= TOKEN_ROWS_CACHED:
                # server threads share the encoder: another may evict at the same time
                with contextlib.suppress(RuntimeError, StopIteration):
                    self._token_rows.pop(next(iter(self._token_rows)), None)
            row = np.asarray(self._tokens[i : i + 1], dtype=np.float32)[0]
            self._token_rows[i] = row
        return row

    def _attention(self, x: np.ndarray, b: _Block, mask: np.ndarray | None) -> np.ndarray:
        n, t, w = x.shape
        h = self.cfg.heads
        d = w // h
        qkv = _linear(_layer_norm(x, *b.ln_1, self.cfg.norm_eps), b.qkv_w, b.qkv_b)
        q, k, v = qkv.reshape(n, t, 3, h, d).transpose(2, 0, 3, 1, 4)  # each (n, h, t, d)
        scores = (q @ k.transpose(0, 1, 3, 2)) * np.float32(1.0 / math.sqrt(d))
        if mask is not None:
            scores += mask
        scores -= scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        out = (probs @ v).transpose(0, 2, 1, 3).reshape(n, t, w)
        return _linear(out, b.out_w, b.out_b)

    def _mlp(self, x: np.ndarray, b: _Block) -> np.ndarray:
        hidden = _linear(_layer_norm(x, *b.ln_2, self.cfg.norm_eps), b.fc_w, b.fc_b)
        hidden = quick_gelu(hidden) if self.cfg.quick_gelu else gelu(hidden)
        return _linear(hidden, b.proj_w, b.proj_b)

    def _forward(self, tokens: np.ndarray) -> np.ndarray:
        pool = self.pool_index(tokens)
        # Causal: position p sees positions <= p only, so tokens after the last pooled position
        # cannot change any pooled output; drop them. Bidirectional: every token counts.
        t = int(pool.max()) + 1 if self.cfg.causal else tokens.shape[1]
        x = self._embed(tokens[:, :t]) + self._pos[:t]
        mask = self._mask[:t, :t] if self.cfg.causal else None
        for b in self._blocks:
            attn = self._attention(x, b, mask)
            x = x + (attn * b.ls_1 if b.ls_1 is not None else attn)
            mlp = self._mlp(x, b)
            x = x + (mlp * b.ls_2 if b.ls_2 is not None else mlp)
        # ln_final is per token, so pooling before it equals open_clip's pooling after it.
        x = _layer_norm(x[np.arange(len(pool)), pool], *self._ln_final, self.cfg.norm_eps)
        if self._proj_w is not None:
            x = x @ self._proj_w
        if self._proj_b is not None:
            x = x + self._proj_b
        return x

    def encode_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """Encode token ids (n, context_length) to (n, dim) float32, L2-normalised.

        Raises:
            ConfigError: tokens of another length than the context, or ids out of range.
        """
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or tokens.shape[1] != self.cfg.context_length:
            raise ConfigError(f"tokens.shape={tokens.shape} is invalid: expected "
                              f"(n, {self.cfg.context_length})")
        if len(tokens) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            out = np.concatenate([self._forward(tokens[i : i + _CHUNK])
                                  for i in range(0, len(tokens), _CHUNK)])
        out = out.astype(np.float32, copy=False)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), np.float32(1e-12))


class NumpyTextEncoder:
    """A query-time text encoder (tokenizer + numpy text tower); satisfies ``TextEncoder``.

    Build it with ``framedex.indexer.encoder.load_text_encoder``, which derives ``identity``
    exactly as the torch ``Encoder`` does, so stores indexed with the torch encoder accept it.

    Args:
        cfg: the tower's settings.
        weights: the ``.safetensors`` file.
        identity: what the store records about the encoder (see ``Encoder.identity``).

    Raises:
        UnsupportedModelError: see :class:`NumpyTextTower`.
        ModelLoadError: the tokenizer's merges file cannot be read.
    """

    #: Which implementation encodes (``Encoder`` has "torch").
    backend = "numpy"

    def __init__(self, cfg: TextTowerConfig, weights: str | Path, identity: dict[str, Any]):
        from framedex.indexer.clip_bpe import ClipTokenizer

        self.tower = NumpyTextTower(cfg, weights)
        self.tokenizer = ClipTokenizer(cfg.context_length, clean=cfg.clean)
        self._identity = dict(identity)
        self.dim: int = self.tower.dim

    @property
    def identity(self) -> dict[str, Any]:
        """What the store records about this encoder (equal to the torch ``Encoder``'s)."""
        return dict(self._identity)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Encode texts (queries). Returns (n, D) float32, L2-normalised.

        Raises:
            ConfigError: an empty text.
        """
        for t in texts:
            if not t or not t.strip():
                raise ConfigError("text='' is invalid: the query text must not be empty")
        return self.tower.encode_tokens(self.tokenizer(list(texts)))
