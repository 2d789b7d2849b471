"""Frame delivery: decode only the chosen frames, resize them, hand them out as JPEGs.

After a sampler has picked K positions, the video is opened once and only those native frames
are decoded by random access (:meth:`VideoDecoder.get_frames`); nothing else of the video is
touched. Frames come back as RGB arrays, which :func:`to_jpeg` / :func:`to_data_url` turn into
what a VLM request carries, or :func:`write_frames` saves as files named by their timestamp.

Sizes: ``max_side`` fits the longer side (never upscales); ``width`` sets the output width
(keeps the aspect ratio, never upscales). A resolution *tier* caps the side further:
``mid``/``low`` follow Q-Frame's official scales, 1/4 and 1/8 of the native frame side,
floored at :data:`MIN_TIER_SIDE` pixels so that a low tier of a small video still shows
something; ``high`` is delivered at the untiered size (``max_side``, the faces' default 512),
never below it (Q-Frame's 1/2 made a 128 px video's high frames 64 px, worse than untiered).

Example::

    imgs = decode_frames("clip.mp4", [120, 3705], tiers=["high", "low"])
    urls = [to_data_url(to_jpeg(im)) for im in imgs]
"""

from __future__ import annotations

import base64
import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from framedex import rules
from framedex.errors import ConfigError, check
from framedex.indexer.decode.base import output_size
from framedex.rules import LIMITS, TIERS
from framedex.values import Array

#: A tier never shrinks the longer side below this many pixels (1/8 of a 320 px video would
#: be a 40 px thumbnail, which no VLM can read); it also never upscales past the native size.
MIN_TIER_SIDE = 64


def tier_max_side(width: int, height: int, tier: str) -> int:
    """The longer output side of a ``width`` x ``height`` frame at resolution ``tier``.

    ``round(max(width, height) * scale)`` with the tier's scale (``framedex.rules.TIER_TABLE``),
    but at least :data:`MIN_TIER_SIDE` and at most the native longer side.

    Args:
        width: native frame width in pixels.
        height: native frame height in pixels.
        tier: ``"high"``, ``"mid"`` or ``"low"``.

    Returns:
        the longer side in pixels, to pass as ``max_side``.

    Raises:
        ConfigError: unknown tier or a non-positive size.
    """
    check(tier in TIERS, "tier", tier, f"must be one of {', '.join(TIERS)}")
    check(_is_int(width) and width >= 1, "width", width, "must be a positive integer")
    check(_is_int(height) and height >= 1, "height", height, "must be a positive integer")
    return _tier_side(int(width), int(height), tier)


def _tier_side(width: int, height: int, tier: str) -> int:
    native = max(width, height)
    return min(native, max(MIN_TIER_SIDE, round(native * rules.tier(tier).scale)))


def target_size(
    width: int, height: int, *, max_side: int | None = None, out_width: int | None = None,
    tier: str | None = None,
) -> tuple[int, int]:
    """``(w, h)`` a native ``width`` x ``height`` frame is delivered at.

    The tier's side and ``max_side`` both cap the longer side (the smaller wins); ``out_width``
    caps the width. None of them ever upscales.

    Raises:
        ConfigError: a bad size or tier.
    """
    _check_sizes(max_side, out_width)
    check(tier is None or tier in TIERS, "tier", tier, f"must be one of {', '.join(TIERS)}")
    return _sized(width, height, max_side, out_width, tier)


def _check_sizes(max_side: int | None, width: int | None) -> None:
    for name, value in (("max_side", max_side), ("width", width)):
        limit = LIMITS[name]
        check(value is None or (_is_int(value) and limit.holds(value)), name, value,
              f"must be None or {limit.rule().removeprefix('must be ')}")


def _sized(width: int, height: int, max_side: int | None, out_width: int | None,
           tier: str | None) -> tuple[int, int]:
    own = None if tier is None else _tier_side(width, height, tier)
    sides = [s for s in (max_side, own) if s]
    w, h = output_size(width, height, min(sides) if sides else None)
    if out_width is not None and w > out_width:
        w, h = out_width, max(1, round(h * out_width / w))
    return w, h


def decode_frames(
    path: str | os.PathLike[str],
    frame_idx: Sequence[int],
    *,
    decoder: str = "auto",
    max_side: int | None = None,
    width: int | None = None,
    tiers: Sequence[str | None] | None = None,
) -> list[Array]:
    """Decode the native frames ``frame_idx`` of ``path`` by random access, resized.

    The video is opened once; each distinct frame is decoded once, at the largest size any
    request needs, and smaller tiers are downsized from it with Pillow (cheaper than decoding
    the same frame again per tier).

    Args:
        path: the source video.
        frame_idx: native frame indices, any order, duplicates allowed.
        decoder: ``"auto"``, ``"pyav"`` or ``"decord"``.
        max_side: cap on the longer side in pixels (None = native).
        width: cap on the output width in pixels, aspect kept (None = no cap).
        tiers: one tier (``high``/``mid``/``low`` or None = no tier) per frame, or None.

    Returns:
        one ``H x W x 3`` uint8 RGB array per requested index, in the requested order.

    Raises:
        ConfigError: bad sizes, tiers of the wrong length or name, indices out of range.
        VideoOpenError: the file cannot be opened as a video.
        DecodeError: the stream is truncated or corrupt where a chosen frame lies.
    """
    idx = list(frame_idx)
    if tiers is not None:
        check(len(tiers) == len(idx), "tiers", f"<{len(tiers)} tiers>",
              f"must have one tier per frame ({len(idx)})")
        for t in tiers:
            check(t is None or t in TIERS, "tiers", t, f"must be one of {', '.join(TIERS)}")
    _check_sizes(max_side, width)
    return decode_sized(path, idx, decoder=decoder, max_side=max_side, width=width,
                        tiers=tiers)


def decode_sized(path: str | os.PathLike[str], frame_idx: Sequence[int], *, decoder: str,
                 max_side: int | None, width: int | None,
                 tiers: Sequence[str | None] | None) -> list[Array]:
    """:func:`decode_frames` with arguments already checked (the delivery step's: a sampler's
    tiers, the facade's sizes)."""
    from framedex.indexer.decode import open_video

    idx = list(frame_idx)
    tier_list = list(tiers) if tiers is not None else [None] * len(idx)
    with open_video(path, decoder=decoder) as dec:
        info = dec.info
        sizes = [_sized(info.width, info.height, max_side, width, t) for t in tier_list]
        if not idx:
            return []
        decode_side = max(max(s) for s in sizes)
        raw = dec.get_frames(idx, max_side=decode_side if decode_side >= 8 else None)
    return [_resize(img, size) for img, size in zip(raw, sizes, strict=True)]


def _resize(img: Array, size: tuple[int, int]) -> Array:
    if (img.shape[1], img.shape[0]) == size:
        return img
    from PIL import Image

    # LANCZOS: proper anti-aliasing on 4-8x reductions (a plain bilinear would alias edges).
    return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.LANCZOS))


def to_jpeg(image: Array, quality: int = 90) -> bytes:
    """Encode one RGB frame as JPEG bytes.

    Args:
        image: ``H x W x 3`` uint8 RGB (as :func:`decode_frames` returns).
        quality: JPEG quality 1..95.

    Returns:
        the JPEG file's bytes.

    Raises:
        ConfigError: not an ``H x W x 3`` uint8 array, or quality out of range.
    """
    limit = LIMITS["quality"]
    check(_is_int(quality) and limit.holds(quality), "quality", quality, limit.rule())
    arr = np.asarray(image)
    check(arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8 and arr.size > 0,
          "image", f"<array {arr.shape} {arr.dtype}>", "must be a non-empty H x W x 3 uint8 RGB")
    return encode_jpeg(arr, quality)


def encode_jpeg(image: Array, quality: int) -> bytes:
    """:func:`to_jpeg` of a decoded frame at a checked quality (the delivery step's)."""
    from PIL import Image

    arr = np.asarray(image)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr), "RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def to_data_url(jpeg_bytes: bytes) -> str:
    """``data:image/jpeg;base64,...`` for JPEG bytes (what OpenAI/vLLM ``image_url`` takes).

    Raises:
        ConfigError: the bytes are not a JPEG (no SOI marker), e.g. a raw array was passed.
    """
    check(is_jpeg(jpeg_bytes), "jpeg_bytes", f"<{type(jpeg_bytes).__name__}>",
          "must be JPEG bytes (use to_jpeg(image) first)")
    return jpeg_data_url(jpeg_bytes)


def is_jpeg(data: object) -> bool:
    """Whether ``data`` is bytes that start like a JPEG file (the SOI marker)."""
    return isinstance(data, (bytes, bytearray)) and data[:2] == b"\xff\xd8"


def jpeg_data_url(jpeg_bytes: bytes) -> str:
    """:func:`to_data_url` of JPEG bytes this process encoded (no check)."""
    return "data:image/jpeg;base64," + base64.b64encode(bytes(jpeg_bytes)).decode("ascii")


def frame_filename(position: int, pts_sec: float, frame_idx: int) -> str:
    """``"0003_t000123.500s_f3705.jpg"``: position, timestamp (ms precision), native index.

    Zero padding keeps ``ls`` order equal to time order for videos up to 11.5 days.
    """
    return f"{position:04d}_t{pts_sec:010.3f}s_f{int(frame_idx)}.jpg"


def write_frames(
    out_dir: str | os.PathLike[str],
    images: Sequence[Array | bytes],
    timestamps: Sequence[float],
    frame_idx: Sequence[int],
    *,
    quality: int = 90,
) -> list[Path]:
    """Write frames as JPEG files named by :func:`frame_filename`, numbered from 1.

    Args:
        out_dir: the folder (created if missing).
        images: RGB arrays, or JPEG bytes already encoded.
        timestamps: ``pts_sec`` of each frame.
        frame_idx: native frame index of each frame.
        quality: JPEG quality for arrays.

    Returns:
        the written paths, in the given order.

    Raises:
        ConfigError: the three sequences differ in length, or a bad image/timestamp.
    """
    n = len(images)
    check(len(timestamps) == n and len(frame_idx) == n, "timestamps/frame_idx",
          (len(timestamps), len(frame_idx)), f"must have one entry per image ({n})")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as ex:
        raise ConfigError(f"out_dir={str(out_dir)!r} is invalid: cannot create it ({ex})") from ex
    paths = []
    for pos, (img, t, fi) in enumerate(zip(images, timestamps, frame_idx, strict=True), 1):
        check(math.isfinite(float(t)) and float(t) >= 0, "timestamps", t,
              "must be finite seconds >= 0")
        data = bytes(img) if isinstance(img, (bytes, bytearray)) else to_jpeg(img, quality)
        p = out / frame_filename(pos, float(t), int(fi))
        p.write_bytes(data)
        paths.append(p)
    return paths


def _is_int(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


__all__ = [
    "MIN_TIER_SIDE", "decode_frames", "decode_sized", "encode_jpeg", "frame_filename",
    "is_jpeg", "jpeg_data_url", "target_size", "tier_max_side", "to_data_url", "to_jpeg",
    "write_frames",
]
