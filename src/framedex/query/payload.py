"""Ready-to-send VLM requests for a frame selection, and what the selection saves in tokens.

Two request shapes:

- :func:`openai_payload` — the OpenAI Chat Completions body that vLLM's OpenAI-compatible
  server also accepts: one user message whose content interleaves a text part
  ``"Frame i at 12.0s:"`` with an ``image_url`` part (a ``data:image/jpeg;base64`` URL) per
  frame, in time order, then the question. The tests validate it against the ``openai``
  package's own types.
- :func:`gemini_payload` — the Gemini ``generateContent`` REST body: ``contents`` with
  ``parts`` of ``{"text": ...}`` and ``{"inline_data": {"mime_type": "image/jpeg", "data":
  base64}}``. The REST API parses JSON with the protobuf mapping, which accepts the proto field
  names (snake_case, used here, as in Google's REST samples) as well as lowerCamelCase.

Timestamps go in the text parts because neither API has a per-image time field; a VLM reads
them as text (the "Frame i at t s" prefix is what VideoRAG/Q-Frame style prompting uses).

:func:`cost_line` compares the selection's tokens with sending the whole video natively.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from framedex.errors import UnknownNameError, check
from framedex.query.frames import to_data_url, to_jpeg
from framedex.query.samplers.base import TIERS, TokenBudget

#: OpenAI ``detail`` per tier: ``high`` asks for the tiled high-res read, ``low`` for the fixed
#: 512 px / 85-token read; ``mid`` (and no tier) leaves the choice to the server (``auto``).
DETAIL_BY_TIER: dict[str | None, str] = {"high": "high", "mid": "auto", "low": "low", None: "auto"}

#: Gemini: a video is sampled at 1 fps and every frame costs 258 tokens at the default media
#: resolution (66 at low); the per-tier image costs are TokenBudget's defaults (258/130/66).
GEMINI_VIDEO_FPS = 1.0
GEMINI_TOKENS_PER_FRAME = 258
GEMINI_TOKENS_PER_TIER: dict[str, int] = dict(TokenBudget(1).tokens_per_tier)

#: Qwen2.5-VL: ViT patch 14 with a 2x2 token merge, so one token per 28x28 pixels; videos are
#: sampled at 2 fps (qwen-vl-utils' default FPS) and two consecutive frames are merged into one
#: temporal patch (temporal_patch_size=2). Assumed input size: 448x448, a typical per-frame size
#: for long videos under its total-pixel cap. Then one 2-frame group is (448/28)^2 = 256
#: tokens, i.e. 128 tokens per video frame. A selected frame sent as a separate *image* is not
#: merged with a neighbour (the processor repeats it to fill the temporal patch), so it costs
#: 256 at 448x448; tiers halve the side per step (Q-Frame's 1/2, 1/4, 1/8), i.e. a quarter of the
#: tokens: high 256 (448 px), mid 64 (224 px), low 16 (112 px).
QWEN_VIDEO_FPS = 2.0
QWEN_TOKENS_PER_VIDEO_FRAME = 128
QWEN_TOKENS_PER_TIER: dict[str, int] = {"high": 256, "mid": 64, "low": 16}


def _as_data_url(image: np.ndarray | bytes | str, quality: int) -> str:
    if isinstance(image, str):
        check(image.startswith(("data:image/", "http://", "https://")), "images", image[:40],
              "a string must be a data:image/... URL or an http(s) URL")
        return image
    if isinstance(image, (bytes, bytearray)):
        return to_data_url(bytes(image))
    return to_data_url(to_jpeg(image, quality))


def _as_inline(image: np.ndarray | bytes | str, quality: int) -> tuple[str, str]:
    """``(mime_type, base64)`` for Gemini's inline_data."""
    if isinstance(image, str):
        check(image.startswith("data:") and ";base64," in image, "images", image[:40],
              "Gemini inline_data needs bytes, an array or a base64 data: URL")
        head, data = image.split(",", 1)
        return head[len("data:"):].split(";", 1)[0], data
    raw = bytes(image) if isinstance(image, (bytes, bytearray)) else to_jpeg(image, quality)
    to_data_url(raw)  # validates the JPEG signature
    return "image/jpeg", base64.b64encode(raw).decode("ascii")


def _ordered(images: Sequence[Any], timestamps: Sequence[float],
             tiers: Sequence[str | None] | None) -> list[tuple[Any, float, str | None]]:
    """Zip and sort by time (stable), validating lengths and values."""
    n = len(images)
    check(n >= 1, "images", n, "need at least one frame")
    check(len(timestamps) == n, "timestamps", len(timestamps), f"need one per image ({n})")
    tier_list: list[str | None] = list(tiers) if tiers is not None else [None] * n
    check(len(tier_list) == n, "tiers", len(tier_list), f"need one per image ({n})")
    for ts in timestamps:
        check(math.isfinite(float(ts)) and float(ts) >= 0, "timestamps", ts,
              "must be seconds >= 0")
    for tr in tier_list:
        check(tr is None or tr in TIERS, "tiers", tr, f"must be one of {', '.join(TIERS)}")
    items = [(im, float(ts), tr) for im, ts, tr in zip(images, timestamps, tier_list,
                                                       strict=True)]
    return sorted(items, key=lambda x: x[1])


def frame_label(position: int, pts_sec: float) -> str:
    """``"Frame 3 at 12.0s:"`` (with ``(mm:ss)`` / ``(h:mm:ss)`` from one minute on)."""
    clock = ""
    if pts_sec >= 60:
        s = int(pts_sec)
        clock = f" ({s // 3600}:{s // 60 % 60:02d}:{s % 60:02d})" if s >= 3600 \
            else f" ({s // 60}:{s % 60:02d})"
    return f"Frame {position} at {pts_sec:.1f}s{clock}:"


def _intro(n: int, duration_sec: float | None) -> str:
    span = f" of a {duration_sec:.1f}s video" if duration_sec is not None else " of a video"
    return f"Below are {n} frames{span}, in time order, each labelled with its timestamp."


def openai_payload(
    images: Sequence[np.ndarray | bytes | str],
    timestamps: Sequence[float],
    question: str,
    *,
    model: str = "gpt-4o",
    tiers: Sequence[str | None] | None = None,
    duration_sec: float | None = None,
    intro: str | None = None,
    system: str | None = None,
    max_tokens: int | None = None,
    quality: int = 90,
) -> dict[str, Any]:
    """An OpenAI/vLLM Chat Completions request body asking ``question`` about the frames.

    Args:
        images: per frame an RGB array, JPEG bytes, or a data:/http(s) URL.
        timestamps: ``pts_sec`` per frame; frames are sent sorted by it.
        question: the user's question (the last text part).
        model: the ``model`` field (e.g. the vLLM served model name).
        tiers: per-frame tier; sets each image's ``detail`` (see DETAIL_BY_TIER).
        duration_sec: the video's length, mentioned in the intro text when given.
        intro: first text part; None = a default sentence, ``""`` = none.
        system: optional system message.
        max_tokens: optional ``max_tokens`` field.
        quality: JPEG quality for arrays.

    Returns:
        ``{"model": ..., "messages": [...]}`` (plus ``max_tokens`` when given), JSON-ready.

    Raises:
        ConfigError: empty selection, length mismatch, bad tier, timestamp or image.
    """
    check(isinstance(question, str) and question.strip() != "", "question", question,
          "must be a non-empty string")
    items = _ordered(images, timestamps, tiers)
    intro = _intro(len(items), duration_sec) if intro is None else intro
    content: list[dict[str, Any]] = [{"type": "text", "text": intro}] if intro else []
    for pos, (im, ts, tier) in enumerate(items, start=1):
        content.append({"type": "text", "text": frame_label(pos, ts)})
        content.append({"type": "image_url", "image_url": {
            "url": _as_data_url(im, quality), "detail": DETAIL_BY_TIER[tier]}})
    content.append({"type": "text", "text": question})
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": content})
    body: dict[str, Any] = {"model": model, "messages": messages}
    if max_tokens is not None:
        check(isinstance(max_tokens, int) and max_tokens >= 1, "max_tokens", max_tokens,
              "must be an integer >= 1")
        body["max_tokens"] = max_tokens
    return body


def gemini_payload(
    images: Sequence[np.ndarray | bytes | str],
    timestamps: Sequence[float],
    question: str,
    *,
    tiers: Sequence[str | None] | None = None,
    duration_sec: float | None = None,
    intro: str | None = None,
    system: str | None = None,
    quality: int = 90,
) -> dict[str, Any]:
    """A Gemini ``models/{model}:generateContent`` REST body (the model goes in the URL).

    Tiers only change the pixels sent (set them when decoding); the stable REST API has no
    per-image resolution field, so a request-wide ``generation_config.media_resolution`` is
    left to the caller.

    Args:
        images: per frame an RGB array, JPEG bytes, or a base64 ``data:`` URL.
        timestamps: ``pts_sec`` per frame; frames are sent sorted by it.
        question: the user's question (the last part).
        tiers: per-frame tier (validated; the caller resizes).
        duration_sec: the video's length, mentioned in the intro text when given.
        intro: first text part; None = a default sentence, ``""`` = none.
        system: optional ``system_instruction`` text.
        quality: JPEG quality for arrays.

    Returns:
        ``{"contents": [{"role": "user", "parts": [...]}]}`` (+ ``system_instruction``).

    Raises:
        ConfigError: empty selection, length mismatch, bad tier, timestamp or image.
    """
    check(isinstance(question, str) and question.strip() != "", "question", question,
          "must be a non-empty string")
    items = _ordered(images, timestamps, tiers)
    intro = _intro(len(items), duration_sec) if intro is None else intro
    parts: list[dict[str, Any]] = [{"text": intro}] if intro else []
    for pos, (im, ts, _tier) in enumerate(items, start=1):
        mime, data = _as_inline(im, quality)
        parts.append({"text": frame_label(pos, ts)})
        parts.append({"inline_data": {"mime_type": mime, "data": data}})
    parts.append({"text": question})
    body: dict[str, Any] = {"contents": [{"role": "user", "parts": parts}]}
    if system:
        body["system_instruction"] = {"parts": [{"text": system}]}
    return body


#: Payload formats by name (the CLI/API choice list comes from here).
PAYLOAD_FORMATS = {"openai": openai_payload, "gemini": gemini_payload}


def build_payload(fmt: str, images: Sequence[Any], timestamps: Sequence[float], question: str,
                  **options: Any) -> dict[str, Any]:
    """Dispatch to :func:`openai_payload` (``"openai"``, also vLLM) or :func:`gemini_payload`.

    Raises:
        UnknownNameError: unknown format (lists the known ones).
        ConfigError: see the builders.
    """
    if fmt not in PAYLOAD_FORMATS:
        raise UnknownNameError("payload format", str(fmt), PAYLOAD_FORMATS)
    return PAYLOAD_FORMATS[fmt](images, timestamps, question, **options)


def cost_line(
    num_frames: int,
    tokens_used: int | None,
    duration_sec: float,
    tiers: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """Tokens this selection costs against sending the whole video natively.

    Whole video: Gemini at 1 fps x 258 tokens; Qwen2.5-VL at 2 fps x 128 tokens per frame
    (448x448, two frames per temporal patch; see QWEN_TOKENS_PER_VIDEO_FRAME). Selection:
    ``tokens_used`` (the sampler's TokenBudget count) if given, else per-frame Gemini costs
    (258 untiered; 258/130/66 by tier); for Qwen2.5-VL, 256 per untiered image, 256/64/16 by tier.

    Args:
        num_frames: frames selected.
        tokens_used: the selection's own token count (Gemini units), or None.
        duration_sec: the video's duration in seconds.
        tiers: per-frame tiers, or None.

    Returns:
        a JSON-ready dict with the token counts, ratios and a one-line ``text``.

    Raises:
        ConfigError: negative counts, bad duration, tiers of the wrong length.
    """
    check(isinstance(num_frames, (int, np.integer)) and num_frames >= 0, "num_frames",
          num_frames, "must be an integer >= 0")
    check(math.isfinite(duration_sec) and duration_sec > 0, "duration_sec", duration_sec,
          "must be a positive number of seconds")
    tiers = list(tiers) if tiers is not None else [None] * int(num_frames)
    check(len(tiers) == num_frames, "tiers", len(tiers), f"need one per frame ({num_frames})")
    for t in tiers:
        check(t is None or t in TIERS, "tiers", t, f"must be one of {', '.join(TIERS)}")
    gem = sum(GEMINI_TOKENS_PER_TIER[t] if t else GEMINI_TOKENS_PER_FRAME for t in tiers)
    if tokens_used is not None:
        check(int(tokens_used) >= 0, "tokens_used", tokens_used, "must be >= 0")
        gem = int(tokens_used)
    qwen = sum(QWEN_TOKENS_PER_TIER[t or "high"] for t in tiers)
    # ceil(-1e-9): a 1800.0 s video has frames at 0..1799 s, not 1801 of them.
    gem_frames = max(1, math.ceil(duration_sec * GEMINI_VIDEO_FPS - 1e-9))
    qwen_frames = max(2, math.ceil(duration_sec * QWEN_VIDEO_FPS - 1e-9))
    qwen_frames += qwen_frames % 2  # padded to a whole temporal patch
    whole_gem = gem_frames * GEMINI_TOKENS_PER_FRAME
    whole_qwen = qwen_frames * QWEN_TOKENS_PER_VIDEO_FRAME
    out: dict[str, Any] = {
        "num_frames": int(num_frames), "duration_sec": float(duration_sec),
        "selection_tokens_gemini": gem, "selection_tokens_qwen": qwen,
        "whole_video_tokens_gemini": whole_gem, "whole_video_tokens_qwen": whole_qwen,
        "fraction_gemini": gem / whole_gem, "fraction_qwen": qwen / whole_qwen,
        "savings_x_gemini": whole_gem / gem if gem else math.inf,
        "savings_x_qwen": whole_qwen / qwen if qwen else math.inf,
    }
    out["text"] = (
        f"{num_frames} frames = {gem:,} tokens vs {whole_gem:,} for the whole "
        f"{_clock(duration_sec)} video at Gemini 1 fps ({_x(out['savings_x_gemini'])} fewer); "
        f"Qwen2.5-VL: {qwen:,} vs {whole_qwen:,} at 2 fps ({_x(out['savings_x_qwen'])} fewer)"
    )
    return out


def _clock(sec: float) -> str:
    s = round(sec)
    if s >= 3600:
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def _x(ratio: float) -> str:
    return "inf x" if math.isinf(ratio) else f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.1f}x"


__all__ = [
    "DETAIL_BY_TIER", "GEMINI_TOKENS_PER_FRAME", "PAYLOAD_FORMATS", "QWEN_TOKENS_PER_TIER",
    "QWEN_TOKENS_PER_VIDEO_FRAME", "build_payload", "cost_line", "frame_label",
    "gemini_payload", "openai_payload",
]
