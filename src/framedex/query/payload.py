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
from collections.abc import Mapping, Sequence
from typing import TypeAlias

import numpy as np

from framedex import rules
from framedex.errors import UnknownNameError, check
from framedex.query.frames import is_jpeg, jpeg_data_url, to_jpeg
from framedex.rules import FAMILIES, GEMINI, PAYLOAD_FORMATS, TIERS
from framedex.values import Array, Json, JsonObject


def _as_data_url(image: Array | bytes | str, quality: int) -> str:
    """An ``image_url`` for OpenAI (a string was checked by :func:`_ordered`)."""
    if isinstance(image, str):
        return image
    if isinstance(image, (bytes, bytearray)):
        return jpeg_data_url(bytes(image))
    return jpeg_data_url(to_jpeg(image, quality))


def _as_inline(image: Array | bytes | str, quality: int) -> tuple[str, str]:
    """``(mime_type, base64)`` for Gemini's inline_data (a string was checked by
    :func:`_ordered`)."""
    if isinstance(image, str):
        head, data = image.split(",", 1)
        return head[len("data:"):].split(";", 1)[0], data
    raw = bytes(image) if isinstance(image, (bytes, bytearray)) else to_jpeg(image, quality)
    return "image/jpeg", base64.b64encode(raw).decode("ascii")


def _check_image(image: object, inline: bool) -> None:
    """A payload image: an RGB array (checked when encoded), JPEG bytes, or a URL the format
    takes (Gemini: a base64 ``data:`` URL; OpenAI: a ``data:image/`` or http(s) URL)."""
    if isinstance(image, str):
        if inline:
            check(image.startswith("data:") and ";base64," in image, "images", image[:40],
                  "Gemini inline_data needs bytes, an array or a base64 data: URL")
        else:
            check(image.startswith(("data:image/", "http://", "https://")), "images",
                  image[:40], "a string must be a data:image/... URL or an http(s) URL")
    elif isinstance(image, (bytes, bytearray)):
        check(is_jpeg(image), "jpeg_bytes", f"<{type(image).__name__}>",
              "must be JPEG bytes (use to_jpeg(image) first)")


#: A frame as a payload takes it: an RGB array, JPEG bytes, or a URL.
Image: TypeAlias = "Array | bytes | str"
#: One frame of a request: the image, its time, its tier.
Item: TypeAlias = "tuple[Image, float, str | None]"
#: The ``model`` field of an OpenAI request when the caller names none.
DEFAULT_OPENAI_MODEL = "gpt-4o"


def in_time_order(images: Sequence[Image], timestamps: Sequence[float],
                  tiers: Sequence[str | None] | None) -> list[Item]:
    """The frames of a selection as items sorted by time (stable), unchecked."""
    tier_list = list(tiers) if tiers is not None else [None] * len(images)
    items = [(im, float(ts), tr) for im, ts, tr in zip(images, timestamps, tier_list,
                                                       strict=True)]
    return sorted(items, key=lambda x: x[1])


def _ordered(images: Sequence[Image], timestamps: Sequence[float],
             tiers: Sequence[str | None] | None, *, inline: bool) -> list[Item]:
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
    for image in images:
        _check_image(image, inline)
    return in_time_order(images, timestamps, tier_list)


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
    images: Sequence[Array | bytes | str],
    timestamps: Sequence[float],
    question: str,
    *,
    model: str = DEFAULT_OPENAI_MODEL,
    tiers: Sequence[str | None] | None = None,
    duration_sec: float | None = None,
    intro: str | None = None,
    system: str | None = None,
    max_tokens: int | None = None,
    quality: int = 90,
) -> JsonObject:
    """An OpenAI/vLLM Chat Completions request body asking ``question`` about the frames.

    Args:
        images: per frame an RGB array, JPEG bytes, or a data:/http(s) URL.
        timestamps: ``pts_sec`` per frame; frames are sent sorted by it.
        question: the user's question (the last text part).
        model: the ``model`` field (e.g. the vLLM served model name).
        tiers: per-frame tier; sets each image's ``detail`` (the tier's ``openai_detail``).
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
    items = _ordered(images, timestamps, tiers, inline=False)
    check(max_tokens is None or (isinstance(max_tokens, int) and max_tokens >= 1),
          "max_tokens", max_tokens, "must be an integer >= 1")
    return openai_body(items, question, model=model, duration_sec=duration_sec, intro=intro,
                       system=system, max_tokens=max_tokens, quality=quality)


def openai_body(items: Sequence[Item], question: str, *, model: str = DEFAULT_OPENAI_MODEL,
                duration_sec: float | None = None, intro: str | None = None,
                system: str | None = None, max_tokens: int | None = None,
                quality: int = 90) -> JsonObject:
    """:func:`openai_payload` of frames already in time order and checked (the delivery
    step's: JPEGs of a selection, a question the facade checked)."""
    intro = _intro(len(items), duration_sec) if intro is None else intro
    content: list[JsonObject] = [{"type": "text", "text": intro}] if intro else []
    for pos, (im, ts, tier) in enumerate(items, start=1):
        content.append({"type": "text", "text": frame_label(pos, ts)})
        content.append({"type": "image_url", "image_url": {
            "url": _as_data_url(im, quality), "detail": rules.tier(tier).openai_detail}})
    content.append({"type": "text", "text": question})
    messages: list[JsonObject] = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": content})
    body: JsonObject = {"model": model, "messages": messages}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


def gemini_payload(
    images: Sequence[Array | bytes | str],
    timestamps: Sequence[float],
    question: str,
    *,
    tiers: Sequence[str | None] | None = None,
    duration_sec: float | None = None,
    intro: str | None = None,
    system: str | None = None,
    quality: int = 90,
) -> JsonObject:
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
    items = _ordered(images, timestamps, tiers, inline=True)
    return gemini_body(items, question, duration_sec=duration_sec, intro=intro, system=system,
                       quality=quality)


def gemini_body(items: Sequence[Item], question: str, *, duration_sec: float | None = None,
                intro: str | None = None, system: str | None = None,
                quality: int = 90) -> JsonObject:
    """:func:`gemini_payload` of frames already in time order and checked (the delivery
    step's)."""
    intro = _intro(len(items), duration_sec) if intro is None else intro
    parts: list[JsonObject] = [{"text": intro}] if intro else []
    for pos, (im, ts, _tier) in enumerate(items, start=1):
        mime, data = _as_inline(im, quality)
        parts.append({"text": frame_label(pos, ts)})
        parts.append({"inline_data": {"mime_type": mime, "data": data}})
    parts.append({"text": question})
    body: JsonObject = {"contents": [{"role": "user", "parts": parts}]}
    if system:
        body["system_instruction"] = {"parts": [{"text": system}]}
    return body


def build_payload(fmt: str, images: Sequence[Image], timestamps: Sequence[float], question: str,
                  *, model: str | None = None, tiers: Sequence[str | None] | None = None,
                  duration_sec: float | None = None, intro: str | None = None,
                  system: str | None = None, max_tokens: int | None = None,
                  quality: int = 90) -> JsonObject:
    """Dispatch to :func:`openai_payload` (``"openai"``, also vLLM) or :func:`gemini_payload`
    (``model`` and ``max_tokens`` are OpenAI's fields: Gemini's model is in the URL).

    Raises:
        UnknownNameError: unknown format (lists the known ones).
        ConfigError: see the builders; ``model`` or ``max_tokens`` for Gemini.
    """
    if fmt not in PAYLOAD_FORMATS:
        raise UnknownNameError("payload format", str(fmt), PAYLOAD_FORMATS)
    if fmt == GEMINI:
        check(model is None and max_tokens is None, "model/max_tokens", (model, max_tokens),
              "apply to the openai format only (Gemini's model is in the request URL)")
        return gemini_payload(images, timestamps, question, tiers=tiers,
                              duration_sec=duration_sec, intro=intro, system=system,
                              quality=quality)
    return openai_payload(images, timestamps, question, model=model or DEFAULT_OPENAI_MODEL,
                          tiers=tiers, duration_sec=duration_sec, intro=intro, system=system,
                          max_tokens=max_tokens, quality=quality)


def request_body(fmt: str, items: Sequence[Item], question: str, *,
                 duration_sec: float | None, options: Mapping[str, Json]) -> JsonObject:
    """The body of a request in format ``fmt`` (checked) for frames already in time order
    (the delivery step's); ``options``: ``model``, ``system``, ``max_tokens`` (openai),
    ``system`` (gemini), checked by the caller."""
    system = options.get("system")
    system = system if isinstance(system, str) else None
    if fmt == GEMINI:
        return gemini_body(items, question, duration_sec=duration_sec, system=system)
    model, max_tokens = options.get("model"), options.get("max_tokens")
    return openai_body(items, question,
                       model=model if isinstance(model, str) else DEFAULT_OPENAI_MODEL,
                       duration_sec=duration_sec, system=system,
                       max_tokens=max_tokens if isinstance(max_tokens, int) else None)


def cost_line(
    num_frames: int,
    tokens_used: int | None,
    duration_sec: float,
    tiers: Sequence[str | None] | None = None,
) -> JsonObject:
    """Tokens this selection costs against sending the whole video natively.

    Whole video: each model family's native sampling (``framedex.rules.FAMILIES``: Gemini at
    1 fps, Qwen2.5-VL at 2 fps with two frames per temporal patch). Selection: ``tokens_used``
    (the sampler's TokenBudget count, in Gemini units) if given, else each frame's cost at its
    tier (``framedex.rules.TIER_TABLE``; an untiered frame costs a full image).

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
    check(tokens_used is None or int(tokens_used) >= 0, "tokens_used", tokens_used,
          "must be >= 0")
    return cost_of(int(num_frames), tokens_used, duration_sec, tiers)


def cost_of(num_frames: int, tokens_used: int | None, duration_sec: float,
            tiers: Sequence[str | None] | None) -> JsonObject:
    """:func:`cost_line` of a selection (its tiers a sampler's, its duration positive)."""
    tiers = list(tiers) if tiers is not None else [None] * num_frames
    gem = sum(rules.tier(t).tokens["gemini"] for t in tiers)
    if tokens_used is not None:
        gem = int(tokens_used)
    qwen = sum(rules.tier(t).tokens["qwen"] for t in tiers)
    whole_gem = whole_video_tokens("gemini", duration_sec)
    whole_qwen = whole_video_tokens("qwen", duration_sec)
    savings_gem = whole_gem / gem if gem else math.inf
    savings_qwen = whole_qwen / qwen if qwen else math.inf
    out: JsonObject = {
        "num_frames": int(num_frames), "duration_sec": float(duration_sec),
        "selection_tokens_gemini": gem, "selection_tokens_qwen": qwen,
        "whole_video_tokens_gemini": whole_gem, "whole_video_tokens_qwen": whole_qwen,
        "fraction_gemini": gem / whole_gem, "fraction_qwen": qwen / whole_qwen,
        "savings_x_gemini": savings_gem, "savings_x_qwen": savings_qwen,
    }
    out["text"] = (
        f"{num_frames} frames = {gem:,} tokens vs {whole_gem:,} for the whole "
        f"{_clock(duration_sec)} video at {_family_rate('gemini')} "
        f"({_fewer(savings_gem)}); {FAMILIES['qwen'].label}: {qwen:,} vs "
        f"{whole_qwen:,} at {_family_rate('qwen', label=False)} "
        f"({_fewer(savings_qwen)})"
    )
    return out


def whole_video_tokens(family: str, duration_sec: float) -> int:
    """Tokens a model family spends on a whole video of ``duration_sec`` sent natively: its
    sampling rate's frames (padded to whole temporal patches) at its per-frame cost."""
    fam = FAMILIES[family]
    # ceil(-1e-9): a 1800.0 s video has frames at 0..1799 s, not 1801 of them.
    frames = max(fam.frames_per_patch, math.ceil(duration_sec * fam.video_fps - 1e-9))
    frames += -frames % fam.frames_per_patch  # padded to a whole temporal patch
    return frames * fam.video_frame_tokens


def _family_rate(family: str, *, label: bool = True) -> str:
    fam = FAMILIES[family]
    return f"{fam.label + ' ' if label else ''}{fam.video_fps:g} fps"


def _clock(sec: float) -> str:
    s = round(sec)
    if s >= 3600:
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def _fewer(ratio: float) -> str:
    """``12x fewer`` tokens than the whole video; about as many, or more (a selection of
    every frame of a short video costs what the whole video does: "1.0x fewer" said
    otherwise)."""
    if ratio >= 1.05:
        return f"{_x(ratio)} fewer"
    if ratio > 1 / 1.05:
        return "about as many"
    return f"{_x(1 / ratio)} more"


def _x(ratio: float) -> str:
    return "inf x" if math.isinf(ratio) else f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.1f}x"


__all__ = [
    "DEFAULT_OPENAI_MODEL", "build_payload", "cost_line", "cost_of", "frame_label",
    "gemini_body", "gemini_payload", "in_time_order", "openai_body", "openai_payload",
    "request_body", "whole_video_tokens",
]
