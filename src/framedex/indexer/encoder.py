"""The open_clip encoder: model specs, loading, batched image and text encoding.

A model spec is one string, parsed by :meth:`ModelSpec.parse`:

- ``ViT-B-32:laion2b_s34b_b79k``: an open_clip architecture and pretrained tag;
- ``ViT-B-32:/path/to/open_clip_pytorch_model.bin``: an architecture and a local checkpoint;
- ``hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K``: a Hugging Face Hub repository;
- ``/path/to/dir`` or ``local-dir:/path/to/dir``: a folder holding ``open_clip_config.json`` and
  the weights (the Hub layout, saved locally);
- ``synthetic-shapes``: the small model shipped inside this package (a local folder too).

Every form goes through ``open_clip.create_model_and_transforms``: the shipped model is loaded
exactly as a user's local checkpoint would be.

Queries only need the text tower. :func:`load_text_encoder` returns a numpy implementation of it
(``indexer/numpy_text.py``, no torch or open_clip import: ~0.2 s instead of ~5 s per process)
when the spec's weights are a local ``.safetensors`` file and its text tower is a standard one,
and the full :class:`Encoder` otherwise. Both satisfy :class:`TextEncoder` and have the same
``identity``.

Example::

    enc = load_encoder("synthetic-shapes")
    frames = enc.encode_images(batch_of_rgb_uint8)   # (n, D) float32, L2-normalised
    query = load_text_encoder("synthetic-shapes").encode_text(["a red circle"])[0]
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from framedex.errors import ConfigError, ModelLoadError, UnsupportedModelError

log = logging.getLogger(__name__)

#: Models shipped inside the package, by alias -> folder under ``indexer/models``.
BUILTIN_MODELS: dict[str, Path] = {
    "synthetic-shapes": Path(__file__).parent / "models" / "synthetic-shapes",
}

#: Default for real use. ViT-B-32 trained on LAION-2B is the open_clip workhorse for text->image
#: retrieval (about 0.65 MSCOCO text->image R@5 zero-shot), 512-d, and the fastest ViT to index
#: with (clip-retrieval's ~2,500 img/s per A100). See the README for stronger, slower choices.
DEFAULT_MODEL = "ViT-B-32:laion2b_s34b_b79k"

_LOCAL_DIR = "local-dir:"
_HF_HUB = "hf-hub:"

# open_clip's defaults (OPENAI_DATASET_MEAN / _STD, PreprocessCfg) for what a config leaves out.
_DEFAULT_PREPROCESS: dict[str, Any] = {
    "size": 224,
    "mean": (0.48145466, 0.4578275, 0.40821073),
    "std": (0.26862954, 0.26130258, 0.27577711),
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}


@runtime_checkable
class TextEncoder(Protocol):
    """What a query needs from an encoder: texts to vectors, and the identity the store checks.

    :class:`Encoder` (torch) and ``numpy_text.NumpyTextEncoder`` both satisfy it.

    Attributes:
        dim: output dimension D.
    """

    dim: int

    @property
    def identity(self) -> dict[str, Any]:
        """What the store records about the encoder (a query with another one is refused)."""
        ...

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """(n, D) float32, L2-normalised. Raises ConfigError for an empty text."""
        ...


@runtime_checkable
class ImageEncoder(Protocol):
    """What indexing and image queries need from an encoder: images to vectors, the input size
    to decode frames towards, and the identity the store checks.

    :class:`Encoder` satisfies it, and so does any stand-in with these three members.
    """

    @property
    def identity(self) -> dict[str, Any]:
        """What the store records about the encoder."""
        ...

    @property
    def image_size(self) -> int:
        """The image tower's input side in pixels (frames are decoded towards it)."""
        ...

    def encode_images(self, frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """(n, D) float32, L2-normalised, of RGB uint8 frames (n, H, W, 3)."""
        ...


class Pending(Protocol):
    """A batch of embeddings on its way (:meth:`PipelinedEncoder.submit`)."""

    def result(self) -> np.ndarray:
        """(n, D) float32, L2-normalised: waits for them."""
        ...


@runtime_checkable
class PipelinedEncoder(ImageEncoder, Protocol):
    """An :class:`ImageEncoder` that can start a batch and return before it is done (the next
    batch is prepared meanwhile), and that says which device it runs on: :class:`Encoder`."""

    @property
    def device(self) -> str:
        """Where the model runs (``cpu``, ``cuda:0``...)."""
        ...

    def submit(self, pieces: Sequence[Any]) -> Pending:
        """Start encoding a batch made of pieces (each (n, H, W, 3) uint8)."""
        ...


class LazyEncoder:
    """An :class:`ImageEncoder` whose model loads only when a frame has to be encoded.

    An index run of unchanged files, or of a folder without videos, encodes nothing: it needs
    the encoder's identity (checked against the store's) and its input size (the planner
    decodes towards it), both of which the model's files tell without torch
    (:func:`files_identity`). Loading the model costs seconds and ~1 GB, so it waits for the
    first frame.

    Args:
        identity: the encoder's identity (the store checks it; ``preprocess.size`` is the input
            size).
        load: loads the real encoder (called once, on first use, from any thread).
    """

    def __init__(self, identity: dict[str, Any], load: Callable[[], ImageEncoder]):
        self._identity = dict(identity)
        self._load = load
        self._encoder: ImageEncoder | None = None
        self._lock = threading.Lock()

    @property
    def identity(self) -> dict[str, Any]:
        """What the store records about the encoder."""
        return dict(self._identity)

    @property
    def image_size(self) -> int:
        """The image tower's input side, from the identity's preprocessing."""
        return identity_image_size(self._identity)

    @property
    def loaded(self) -> bool:
        """Whether the model has been loaded."""
        return self._encoder is not None

    def load(self) -> ImageEncoder:
        """The real encoder, loaded on the first call."""
        with self._lock:
            if self._encoder is None:
                self._encoder = self._load()
            return self._encoder

    def encode_images(self, frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """(n, D) float32 embeddings (loads the model first, once)."""
        return self.load().encode_images(frames)


def ready_encoder(encoder: ImageEncoder) -> ImageEncoder:
    """``encoder`` itself, or the loaded model behind a :class:`LazyEncoder`."""
    return encoder.load() if isinstance(encoder, LazyEncoder) else encoder


def identity_image_size(identity: dict[str, Any]) -> int:
    """The input side recorded in an encoder identity (``preprocess.size``; open_clip's 224
    when absent): what frames are decoded towards."""
    preprocess = identity.get("preprocess")
    size = preprocess.get("size", 224) if isinstance(preprocess, dict) else 224
    return int(size)


def encoder_device(encoder: ImageEncoder) -> str:
    """Where ``encoder`` runs: its device when it says (a :class:`PipelinedEncoder`), else the
    CPU."""
    return str(encoder.device) if isinstance(encoder, PipelinedEncoder) else "cpu"


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec.

    Attributes:
        raw: the spec as the user wrote it.
        model_name: what open_clip receives as ``model_name`` (may carry ``hf-hub:`` or
            ``local-dir:``).
        pretrained: tag or checkpoint path for architecture specs, else None.
    """

    raw: str
    model_name: str
    pretrained: str | None

    @classmethod
    def parse(cls, spec: str) -> ModelSpec:
        """Parse a spec string (see the module docstring for the forms).

        Raises:
            ConfigError: an empty spec, or an architecture with no pretrained tag.
        """
        spec = (spec or "").strip()
        if not spec:
            raise ConfigError("model='' is invalid: give a spec such as " + DEFAULT_MODEL)
        if spec in BUILTIN_MODELS:
            return cls(spec, _LOCAL_DIR + str(BUILTIN_MODELS[spec]), None)
        if spec.startswith((_HF_HUB, _LOCAL_DIR)):
            return cls(spec, spec, None)
        folder = Path(spec).expanduser()
        if folder.is_dir():
            return cls(spec, _LOCAL_DIR + str(folder.resolve()), None)
        arch, sep, tag = spec.partition(":")
        if not sep and _looks_like_path(spec):
            # a folder that moved is missing, not an invalid spec: say where it was looked for
            raise ModelLoadError(
                f"cannot load model {spec!r}: there is no folder at {folder.absolute()} "
                "(moved or deleted?); a model folder holds open_clip_config.json and the "
                "weights")
        if not sep or not tag:
            raise ConfigError(
                f"model={spec!r} is invalid: give ARCH:TAG (e.g. {DEFAULT_MODEL}), "
                "ARCH:/path/to/checkpoint, hf-hub:org/name or a local model folder"
            )
        checkpoint = Path(tag).expanduser()
        if checkpoint.is_file():
            tag = str(checkpoint.resolve())
        elif _looks_like_path(tag):  # else open_clip would try it as a pretrained tag
            raise ModelLoadError(
                f"cannot load model {spec!r}: there is no checkpoint file at "
                f"{checkpoint.absolute()} (moved or deleted?)")
        return cls(spec, arch, tag)

    @property
    def location(self) -> str | None:
        """The spec that finds these weights again from any folder: the absolute path of a
        model folder (``ARCH:/absolute/file`` for a checkpoint file), the alias of a shipped
        model, None for a pretrained tag or a Hub id (found by name)."""
        if self.model_name.startswith(_LOCAL_DIR):
            folder = Path(self.model_name[len(_LOCAL_DIR):])
            return _builtin_alias(folder) or str(folder.resolve())
        if self.pretrained is not None and os.path.isabs(self.pretrained):
            return f"{self.model_name}:{self.pretrained}"
        return None

    @property
    def is_local(self) -> bool:
        """True when the weights come from a file or folder on this machine."""
        return self.model_name.startswith(_LOCAL_DIR) or (
            self.pretrained is not None and os.path.isfile(self.pretrained)
        )


def _looks_like_path(text: str) -> bool:
    """Whether a spec (or the tag of ``ARCH:TAG``) names a place on disk rather than a name:
    pretrained tags and architectures never hold a slash or start with ``.`` or ``~``."""
    return "/" in text or os.sep in text or text.startswith((".", "~"))


def _builtin_alias(folder: Path) -> str | None:
    """The alias of a shipped model whose folder this is (None for any other folder): the
    shipped model loaded through its folder path is the shipped model."""
    try:
        resolved = folder.resolve()
    except OSError:
        return None
    for alias, path in BUILTIN_MODELS.items():
        if path.resolve() == resolved:
            return alias
    return None


def is_model_path(spec: str) -> bool:
    """Whether ``spec`` names a folder or a checkpoint file (as opposed to a shipped model, a
    pretrained tag or a Hub id): the specs that stop working when the files move."""
    if spec in BUILTIN_MODELS or spec.startswith(_HF_HUB):
        return False
    if spec.startswith(_LOCAL_DIR):
        return True
    _, sep, tag = spec.partition(":")
    return _looks_like_path(tag if sep else spec)


def missing_model_path(spec: str) -> str | None:
    """The absolute path a folder or checkpoint spec names when nothing is there any more
    (None when it is there, or when ``spec`` names no path)."""
    if not is_model_path(spec):
        return None
    _, sep, tag = spec.removeprefix(_LOCAL_DIR).partition(":")
    if spec.startswith(_LOCAL_DIR) or not sep:
        folder = Path(spec.removeprefix(_LOCAL_DIR)).expanduser()
        return None if folder.is_dir() else str(folder.absolute())
    checkpoint = Path(tag).expanduser()
    return None if checkpoint.is_file() else str(checkpoint.absolute())


def _weights_digest(spec: ModelSpec) -> str | None:
    """Content hash of local weights, so a moved file keeps its identity and a changed one not."""
    if spec.model_name.startswith(_LOCAL_DIR):
        folder = Path(spec.model_name[len(_LOCAL_DIR):])
        files = sorted(
            p for ext in ("*.safetensors", "*.bin", "*.pth", "*.pt") for p in folder.glob(ext)
        )
    elif spec.pretrained and os.path.isfile(spec.pretrained):
        files = [Path(spec.pretrained)]
    else:
        return None
    h = hashlib.blake2b(digest_size=8)
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _checkpoint_in_dir(folder: Path) -> Path | None:
    """The weights file open_clip loads from a model folder (its ``_find_checkpoint_in_dir``).

    safetensors first, then open_clip's preferred names, else the first file by name.
    """
    found = sorted([*folder.glob("*.safetensors"), *folder.glob("*.bin"), *folder.glob("*.pth")])
    if not found:
        return None
    found.sort(key=lambda p: p.suffix == ".safetensors", reverse=True)
    preferred = ["open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                 "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth",
                 "model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth"]
    named = sorted((p for p in found if p.name in preferred), key=lambda p: preferred.index(p.name))
    return named[0] if named else found[0]


def _local_folder_files(spec: ModelSpec) -> tuple[Path, Path]:
    """(open_clip_config.json, weights file) of a model-folder spec.

    Raises:
        ModelLoadError: no config, or no weights beside it (open_clip would silently build a
            model with random weights and every search would return noise).
    """
    folder = Path(spec.model_name[len(_LOCAL_DIR):])
    config = folder / "open_clip_config.json"
    if not config.is_file():
        raise ModelLoadError(
            f"cannot load model {spec.raw!r}: {folder} has no open_clip_config.json "
            "(a model folder needs open_clip_config.json and open_clip_model.safetensors)"
        )
    weights = _checkpoint_in_dir(folder)
    if weights is None:
        raise ModelLoadError(
            f"cannot load model {spec.raw!r}: {folder} has open_clip_config.json but no weights "
            "(*.safetensors, *.bin or *.pth); put open_clip_model.safetensors beside the config"
        )
    return config, weights


def _identity(spec: ModelSpec, digest: str | None, dim: int, preprocess: dict[str, Any],
              open_clip_version: str) -> dict[str, Any]:
    """The encoder identity a store records; one function for the torch and numpy encoders.

    ``spec`` is where the weights were found, as a spec that loads them again from any folder
    (an absolute path, not the relative one typed), so a store's queries find the model
    without ``--model``. The weights themselves are identified by ``weights_digest``
    (:func:`framedex.store.lance_store.check_same_encoder` compares that, not the path).
    """
    location = spec.location
    alias = location if location in BUILTIN_MODELS else None
    name = alias or spec.model_name
    pretrained = spec.pretrained
    if pretrained and os.path.isfile(pretrained):
        pretrained = "file:" + os.path.basename(pretrained)
    return {
        "spec": location or spec.raw,
        "model": name,
        "pretrained": pretrained,
        "weights_digest": digest,
        "dim": dim,
        "preprocess": preprocess,
        "open_clip_version": open_clip_version,
    }


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> cuda, then mps, then cpu. An explicit device is checked, never swapped.

    Raises:
        ConfigError: the asked-for device is not available.
    """
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} is invalid: CUDA is not available here; use cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device='mps' is invalid: MPS is not available here; use cpu")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise ConfigError(f"device={device!r} is invalid: use auto, cpu, mps, cuda or cuda:N")
    return device


def _precision_for(device: str, precision: str | None) -> str:
    if precision is None:
        return "fp32" if device == "cpu" else "fp16"
    if precision not in ("fp32", "fp16", "bf16"):
        raise ConfigError(f"precision={precision!r} is invalid: use fp32, fp16 or bf16")
    return precision


class Encoder:
    """An open_clip model with separate, batched image and text towers.

    Use :func:`load_encoder` to build one. Outputs are float32, L2-normalised numpy arrays.
    """

    #: Which implementation encodes (the numpy text encoder has "numpy").
    backend = "torch"

    def __init__(self, spec: ModelSpec, model: Any, tokenizer: Any, device: str, precision: str):
        import torch
        from open_clip import get_model_preprocess_cfg

        self.spec = spec
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.precision = precision
        self._dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[
            precision
        ]
        cfg = dict(get_model_preprocess_cfg(model))
        self.preprocess_cfg = _preprocess_identity(cfg)
        self.dim: int = int(model.text_projection.shape[1]
                            if getattr(model, "text_projection", None) is not None
                            and hasattr(model.text_projection, "shape")
                            else model.visual.output_dim)
        self.image_size: int = self.preprocess_cfg["size"]
        self._mean = torch.tensor(self.preprocess_cfg["mean"], device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(self.preprocess_cfg["std"], device=device).view(1, 3, 1, 1)
        self._lock = threading.Lock()  # one forward at a time per model (API threads share it)
        self._digest = _weights_digest(spec)

    @property
    def identity(self) -> dict[str, Any]:
        """What the store records about this encoder; a query with another identity is refused."""
        import open_clip

        return _identity(self.spec, self._digest, self.dim, self.preprocess_cfg,
                         open_clip.__version__)

    def _prepare(self, pieces: Sequence[Any]):
        """uint8 RGB pieces, each (n, H, W, 3), numpy or torch on the device -> normalised
        (sum n, 3, S, S) on the device, in the pieces' order.

        Pieces of one frame size are resized together (a batch that spans videos of several
        sizes does one resize per size). Numpy pieces reach a GPU through pinned memory with an
        asynchronous copy; the resize, crop and normalisation run on the device.
        """
        import torch

        groups: dict[tuple[int, int], list[int]] = {}
        for i, piece in enumerate(pieces):
            groups.setdefault((int(piece.shape[1]), int(piece.shape[2])), []).append(i)
        parts, order = [], []
        for members in groups.values():
            parts.append(self._resize_crop(self._upload([pieces[i] for i in members])))
            order.extend(members)
        x = parts[0] if len(parts) == 1 else torch.cat(parts)
        if order != sorted(order):  # back to the pieces' order
            start, at = {}, 0
            for i in order:
                start[i], at = at, at + len(pieces[i])
            perm = np.concatenate([np.arange(start[i], start[i] + len(pieces[i]))
                                   for i in range(len(pieces))])
            x = x[torch.as_tensor(perm, device=x.device)]
        return x

    def _upload(self, pieces: list[Any]):
        """Same-size uint8 pieces -> one (n, H, W, 3) uint8 tensor on the device."""
        import torch

        on_gpu = str(self.device).startswith("cuda")
        host = [p for p in pieces if isinstance(p, np.ndarray)]
        if len(host) == len(pieces) and on_gpu:
            n = sum(len(p) for p in host)
            staging = torch.empty((n, *host[0].shape[1:]), dtype=torch.uint8, pin_memory=True)
            view, at = staging.numpy(), 0
            for p in host:
                view[at:at + len(p)] = p
                at += len(p)
            return staging.to(self.device, non_blocking=True)
        if len(host) == len(pieces):  # the CPU (or MPS): one array, writable for torch
            batch = np.concatenate(host) if len(host) > 1 else host[0]
            if not (batch.flags.writeable and batch.flags.c_contiguous):
                batch = np.array(batch, order="C")
            return torch.from_numpy(batch).to(self.device)
        tensors = []
        for p in pieces:
            if isinstance(p, np.ndarray):
                tensors.append(torch.from_numpy(np.array(p, order="C")).to(self.device))
            else:
                if p.device.type == "cuda":  # made on a decoder's stream, consumed on ours
                    p.record_stream(torch.cuda.current_stream(p.device))
                tensors.append(p.to(self.device))
        return tensors[0] if len(tensors) == 1 else torch.cat(tensors)

    def _resize_crop(self, batch):
        """(n, H, W, 3) uint8 on the device -> normalised (n, 3, S, S) in the model's dtype.

        open_clip's default transform is PIL Resize(shortest side) + CenterCrop + Normalize;
        this is the same on tensors, batched and on the device, which keeps the GPU fed
        (clip-retrieval found PIL resizing to be the bottleneck).
        """
        import torch.nn.functional as F

        x = batch.permute(0, 3, 1, 2).float().div_(255.0)
        s = self.image_size
        h, w = x.shape[-2:]
        if self.preprocess_cfg["resize_mode"] == "squash":
            nh, nw = s, s
        else:
            scale = s / min(h, w)
            nh, nw = max(s, round(h * scale)), max(s, round(w * scale))
        if (nh, nw) != (h, w):
            mode = "bicubic" if self.preprocess_cfg["interpolation"] == "bicubic" else "bilinear"
            x = F.interpolate(x, size=(nh, nw), mode=mode, antialias=True, align_corners=False)
            x = x.clamp_(0.0, 1.0)
        top, left = (nh - s) // 2, (nw - s) // 2
        x = x[:, :, top : top + s, left : left + s]
        return ((x - self._mean) / self._std).to(self._dtype)

    def encode_images(self, frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Encode RGB uint8 frames (n, H, W, 3) in one forward pass.

        ``frames`` is one (n, H, W, 3) array (or torch tensor, also on the device), or a
        sequence of (H, W, 3) arrays of any sizes.

        Returns:
            (n, D) float32, L2-normalised.
        """
        if len(frames) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        pieces = [frames] if getattr(frames, "ndim", None) == 4 else [f[None] for f in frames]
        return self.submit(pieces).result()

    def submit(self, pieces: Sequence[Any]) -> PendingVectors:
        """Start encoding a batch made of pieces (each (n, H, W, 3) uint8, numpy or a torch
        tensor on the device; sizes may differ between pieces); one forward pass.

        On a GPU this returns once the work is queued: the caller prepares the next batch
        while this one runs, and :meth:`PendingVectors.result` waits for it (the copy back
        to the host is asynchronous too). On the CPU it returns finished.
        """
        import torch

        with self._lock, torch.inference_mode():
            x = self._prepare(pieces)
            feats = self.model.encode_image(x, normalize=True).float()
            if not str(self.device).startswith("cuda"):
                return PendingVectors(feats.numpy(), None)
            host = torch.empty(feats.shape, dtype=torch.float32, pin_memory=True)
            host.copy_(feats, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
        return PendingVectors(host, done)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Encode texts (queries). Returns (n, D) float32, L2-normalised.

        Raises:
            ConfigError: an empty text.
        """
        import torch

        for t in texts:
            if not t or not t.strip():
                raise ConfigError("text='' is invalid: the query text must not be empty")
        with self._lock, torch.inference_mode():
            tokens = self.tokenizer(list(texts)).to(self.device)
            feats = self.model.encode_text(tokens, normalize=True)
        return _normalise(feats.float().cpu().numpy())


class PendingVectors:
    """The embeddings of a submitted batch; :meth:`result` waits for them."""

    def __init__(self, out: Any, done: Any):
        self._out, self._done = out, done

    def result(self) -> np.ndarray:
        """(n, D) float32, L2-normalised."""
        if self._done is not None:
            self._done.synchronize()
            self._out, self._done = self._out.numpy(), None
        return _normalise(self._out)


def _preprocess_identity(cfg: dict[str, Any]) -> dict[str, Any]:
    """The recorded preprocessing, from open_clip's preprocess config (defaults filled in)."""
    size = cfg.get("size", _DEFAULT_PREPROCESS["size"])
    return {
        "size": int(size if isinstance(size, int) else size[0]),
        "mean": [float(x) for x in cfg.get("mean", _DEFAULT_PREPROCESS["mean"])],
        "std": [float(x) for x in cfg.get("std", _DEFAULT_PREPROCESS["std"])],
        "interpolation": cfg.get("interpolation", _DEFAULT_PREPROCESS["interpolation"]),
        "resize_mode": cfg.get("resize_mode", _DEFAULT_PREPROCESS["resize_mode"]),
    }


def _normalise(x: np.ndarray) -> np.ndarray:
    # Re-normalise in float32: fp16 towers leave norms a few 1e-3 off 1.
    x = x.astype(np.float32, copy=False)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


_CACHE: dict[tuple[str, str, str], Encoder] = {}
_CACHE_LOCK = threading.Lock()


def load_encoder(spec: str, device: str = "auto", precision: str | None = None) -> Encoder:
    """Create (or reuse, per process) the encoder for ``spec``.

    Args:
        spec: a model spec (see :class:`ModelSpec`).
        device: ``auto`` (cuda -> mps -> cpu), ``cpu``, ``mps``, ``cuda`` or ``cuda:N``.
        precision: ``fp32``/``fp16``/``bf16``; None means fp16 on GPU, fp32 on CPU.

    Raises:
        ConfigError: a malformed spec, device or precision.
        ModelLoadError: the model or its weights could not be loaded; one line saying how to fix.
    """
    parsed = ModelSpec.parse(spec)
    dev = resolve_device(device)
    prec = _precision_for(dev, precision)
    key = (parsed.raw, dev, prec)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = _create(parsed, dev, prec)
        return _CACHE[key]


def _create(spec: ModelSpec, device: str, precision: str) -> Encoder:
    if spec.model_name.startswith(_LOCAL_DIR):
        _local_folder_files(spec)  # open_clip alone would accept a folder without weights
    import open_clip

    try:
        with _hub_mode(offline=not spec.is_local and not _hub_reachable()), \
                _open_clip_errors_raised_not_logged():
            model, _, _ = open_clip.create_model_and_transforms(
                spec.model_name, pretrained=spec.pretrained, device=device, precision=precision,
            )
            tokenizer = open_clip.get_tokenizer(spec.model_name)
    except Exception as ex:  # open_clip raises RuntimeError/ValueError/OSError/HTTP errors alike
        raise ModelLoadError(_load_failure_message(spec, ex)) from ex
    model.eval()
    return Encoder(spec, model, tokenizer, device, precision)


class _DropOpenClipErrors(logging.Filter):
    """open_clip logs an error on the root logger and then raises it (an unknown pretrained
    tag, a missing file): the raise becomes framedex's one line, so the log would say it
    twice, the second time as a raw open_clip message on the user's terminal."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR
                    and f"{os.sep}open_clip{os.sep}" in record.pathname)


@contextlib.contextmanager
def _open_clip_errors_raised_not_logged() -> Iterator[None]:
    drop = _DropOpenClipErrors()
    root = logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


_TEXT_CACHE: dict[tuple[str, str], TextEncoder] = {}
_TEXT_LOCK = threading.Lock()


def load_text_encoder(spec: str, device: str = "auto") -> TextEncoder:
    """The encoder for query texts: numpy when it can run ``spec`` exactly, else torch.

    A query is one short text. The numpy text tower loads in ~0.2 s without importing torch or
    open_clip (~5 s together) and encodes a query in milliseconds on a CPU, so ``auto`` picks it
    even on a GPU machine (asking torch whether a GPU exists would itself cost the torch
    import). Its output equals open_clip's fp32 ``encode_text`` within 1e-5, and its
    ``identity`` equals :class:`Encoder`'s, so a store indexed with the torch encoder accepts it.

    Numpy is used for the shipped models and model folders whose weights file (the one open_clip
    would pick) is ``.safetensors``, and for ``ARCH:/path/to/file.safetensors`` with a built-in
    open_clip architecture, when ``numpy_text.text_tower_config`` accepts the text tower.
    Everything else (pretrained tags, ``hf-hub:``, ``.bin``/``.pth`` checkpoints, Hugging Face,
    SigLIP or CoCa text towers, ``device`` cuda/mps) gets :func:`load_encoder`; the reason is
    logged at INFO, and the returned encoder's ``backend`` says which ("numpy" or "torch").

    Args:
        spec: a model spec (see :class:`ModelSpec`).
        device: ``auto`` or ``cpu`` allow numpy; ``cuda``, ``cuda:N`` or ``mps`` mean torch there.

    Returns:
        A :class:`TextEncoder`, cached per process.

    Raises:
        ConfigError: a malformed spec or device.
        ModelLoadError: the model cannot be loaded (e.g. a folder with a config and no weights).
    """
    parsed = ModelSpec.parse(spec)
    if device not in ("auto", "cpu"):
        return load_encoder(spec, device=device)
    key = (parsed.raw, device)
    with _TEXT_LOCK:
        if key not in _TEXT_CACHE:
            try:
                _TEXT_CACHE[key] = _numpy_text_encoder(parsed)
            except UnsupportedModelError as ex:
                log.info("text encoder for %r: torch, not numpy (%s)", parsed.raw, ex)
                _TEXT_CACHE[key] = load_encoder(spec, device=device)
        return _TEXT_CACHE[key]


def files_identity(spec: str) -> dict[str, Any] | None:
    """The identity of ``spec``'s encoder read from its files, without torch: the numpy text
    tower's, which equals :class:`Encoder`'s (see :func:`load_text_encoder`). None when only
    loading the model can tell (pretrained tags, ``hf-hub:``, ``.bin`` checkpoints).

    Raises:
        ConfigError: a malformed spec. ModelLoadError: a model folder without config or
        weights.
    """
    parsed = ModelSpec.parse(spec)
    key = (parsed.raw, "cpu")
    with _TEXT_LOCK:
        encoder = _TEXT_CACHE.get(key)
        if encoder is None:
            try:
                encoder = _TEXT_CACHE[key] = _numpy_text_encoder(parsed)
            except UnsupportedModelError:
                return None
    return dict(encoder.identity) if getattr(encoder, "backend", "torch") == "numpy" else None


def _numpy_text_encoder(spec: ModelSpec) -> TextEncoder:
    """Build the numpy text encoder for ``spec`` from its files, never importing open_clip.

    Raises:
        UnsupportedModelError: the spec or its text tower needs torch (the reason says why).
        ModelLoadError: a model folder without config or weights.
    """
    from framedex.indexer import open_clip_files
    from framedex.indexer.numpy_text import NumpyTextEncoder, text_tower_config

    if spec.model_name.startswith(_LOCAL_DIR):
        config_path, weights = _local_folder_files(spec)
        try:
            full = json.loads(config_path.read_text(encoding="utf-8"))
            model_cfg, overlay = full["model_cfg"], full.get("preprocess_cfg") or {}
        except (OSError, ValueError, KeyError, TypeError) as ex:
            raise UnsupportedModelError(f"cannot read {config_path}: {ex!r}") from ex
    elif spec.model_name.startswith(_HF_HUB):
        raise UnsupportedModelError("hf-hub: models come through the Hugging Face hub client")
    elif spec.pretrained and os.path.isfile(spec.pretrained):
        if "siglip" in spec.model_name.lower():  # open_clip picks a SigLIP tokenizer by name
            raise UnsupportedModelError(f"SigLIP architecture {spec.model_name!r}")
        builtin = open_clip_files.builtin_config(spec.model_name)
        if builtin is None:
            raise UnsupportedModelError(f"no built-in open_clip config {spec.model_name!r}")
        weights, model_cfg, overlay = Path(spec.pretrained), builtin, {}
    else:
        raise UnsupportedModelError(f"pretrained tag {spec.pretrained!r} (its weights live in "
                                    "open_clip's download cache)")
    if weights.suffix != ".safetensors":
        raise UnsupportedModelError(f"{weights.name} is not a .safetensors file")
    cfg = text_tower_config(model_cfg)
    # As open_clip: its PreprocessCfg defaults, the folder's preprocess_cfg over them (known
    # keys, not None), then the size of the built vision tower.
    preprocess = dict(_DEFAULT_PREPROCESS)
    preprocess.update({k: v for k, v in overlay.items() if k in preprocess and v is not None})
    preprocess["size"] = (model_cfg.get("vision_cfg") or {}).get("image_size", 224)
    version = open_clip_files.version()
    if version is None:
        raise UnsupportedModelError("open_clip's version.py is missing")
    identity = _identity(spec, _weights_digest(spec), cfg.embed_dim,
                         _preprocess_identity(preprocess), version)
    return NumpyTextEncoder(cfg, weights, identity)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One TCP connect to the hub. Without it, huggingface_hub retries each file for ~25 s."""
    import socket
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host or "huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _hub_mode(offline: bool):
    """Serve hub files from the local cache only (fast failure) while ``offline`` is true."""
    if not offline:
        yield
        return
    from huggingface_hub import constants

    hub_log = logging.getLogger("huggingface_hub")
    saved, saved_level = constants.HF_HUB_OFFLINE, hub_log.level
    constants.HF_HUB_OFFLINE = True
    hub_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved
        hub_log.setLevel(saved_level)


def _load_failure_message(spec: ModelSpec, ex: Exception) -> str:
    # Some failures carry no message at all: torch.load of an empty weights file raises a bare
    # EOFError, which once made this line an IndexError (an internal error on index and serve).
    lines = str(ex).strip().splitlines()
    text = (lines[0] if lines else
            f"{type(ex).__name__} (the weights file is empty or truncated?)")[:160]
    if "not found in built-ins" in text or "Unknown model" in text:
        return (f"cannot load model {spec.raw!r}: unknown open_clip architecture "
                f"{spec.model_name!r}; "
                "`python -c 'import open_clip; print(open_clip.list_models())'` lists them")
    if spec.is_local:
        return f"cannot load model {spec.raw!r} from local files: {text}"
    return (
        f"cannot load model {spec.raw!r}: its weights are not in the local cache and could not "
        "be downloaded (no network?). Download them on a machine with internet and pass a local "
        "file, e.g. "
        "--model ViT-B-32:/path/to/open_clip_pytorch_model.bin, or a folder holding "
        "open_clip_config.json + weights (--model /path/to/folder); offline demo: "
        "--model synthetic-shapes"
    )
