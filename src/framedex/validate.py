"""Validation of what a request carries, done once at the facade (``Library``): texts,
budgets, metadata; and the registry names the faces offer as choices.

Every function raises :class:`~framedex.errors.ConfigError` (or ``UnknownNameError``) naming the
parameter, the value and the rule.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from framedex.errors import ConfigError, check
from framedex.query.samplers.base import (
    Budget,
    SamplerInfo,
    TokenBudget,
    list_samplers,
    sampler_info,
)

#: Frames chosen when a request gives neither ``budget`` nor ``tokens``.
DEFAULT_BUDGET = 8
#: Longest accepted question or search text.
MAX_TEXT = 4000


def parse_pairs(items: Iterable[str] | None, name: str) -> dict[str, Any]:
    """``["k=v", ...]`` (``--param``, ``--meta``, the viewer's ``param=``/``meta=``) -> dict.
    Values are JSON literals when they parse (8, 0.5, true), else strings; blank items are
    skipped.

    Raises:
        ConfigError: an item without ``=`` or without a key.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        if not item.strip():
            continue
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{name}={item[:60]!r} is invalid: use KEY=VALUE")
        try:
            value = json.loads(raw)
            if not isinstance(value, (str, int, float, bool)):
                value = raw
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def sampler_names() -> list[str]:
    """Registered sampler names, sorted (what ``--sampler`` and the API accept)."""
    return list_samplers()


def sampler_infos(name: str | None = None) -> list[SamplerInfo]:
    """Every sampler's description and parameters, or just ``name``'s.

    Raises:
        UnknownNameError: an unknown name (lists the known ones, suggests the closest).
    """
    return [sampler_info(n) for n in ([name] if name else list_samplers())]


def decoder_names() -> list[str]:
    """Decode backends installed here (what ``--decoder`` accepts besides ``auto``)."""
    from framedex.indexer.decode import list_decoders

    return list_decoders()


def engine_names() -> list[str]:
    """Index engines (what ``--engine`` accepts): ``local``, ``ray``."""
    from framedex.indexer.engines import list_engines

    return list_engines()


def parse_metadata(text: str | None) -> dict[str, Any]:
    """``--metadata`` JSON text -> a checked metadata dict.

    Raises:
        ConfigError: not a JSON object of scalar values.
    """
    import json

    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as ex:
        raise ConfigError(f"metadata={text[:80]!r} is invalid: not JSON ({ex.msg})") from None
    check(isinstance(value, dict), "metadata", text[:80], "must be a JSON object")
    return check_metadata(value)


def check_text(name: str, text: object) -> None:
    """Validate a question or search text.

    Raises:
        ConfigError: not a non-empty string, or longer than :data:`MAX_TEXT`.
    """
    check(isinstance(text, str) and text.strip() != "", name, text, "must be non-empty text")
    assert isinstance(text, str)
    check(len(text) <= MAX_TEXT and "\x00" not in text, name, text[:40] + "...",
          f"must be at most {MAX_TEXT} characters, without NUL bytes")


def check_span(start: float | None, end: float | None) -> None:
    """Validate a time span of a request (seconds, ``end`` after ``start``).

    Raises:
        ConfigError: a negative or non-finite time, or ``end <= start``.
    """
    for name, value in (("start", start), ("end", end)):
        check(value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                and bool(np.isfinite(float(value))) and value >= 0),
              name, value, "must be seconds >= 0")
    if start is not None and end is not None:
        check(end > start, "end", end, f"must be after start={start:g}")


def make_budget(budget: int | None, tokens: int | None) -> Budget:
    """A frame count or a :class:`TokenBudget` from a request's ``budget`` xor ``tokens``.

    Raises:
        ConfigError: both given, or a value that is not a positive integer.
    """
    if budget is not None and tokens is not None:
        raise ConfigError(f"budget={budget!r} and tokens={tokens!r} are invalid together: give "
                          "budget (frames) or tokens (a VLM token budget), not both")
    if tokens is not None:
        check(_is_int(tokens) and tokens >= 1, "tokens", tokens, "must be an integer >= 1")
        return TokenBudget(tokens=int(tokens))
    k = DEFAULT_BUDGET if budget is None else budget
    check(_is_int(k) and k >= 1, "budget", k, "must be an integer >= 1 (frames)")
    return int(k)


def check_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """User metadata: a JSON object of string keys and scalar values.

    Raises:
        ConfigError: not a mapping, or a value that is not a string, number or boolean.
    """
    if metadata is None:
        return {}
    check(isinstance(metadata, Mapping), "metadata", metadata, "must be a JSON object")
    for key, value in metadata.items():
        check(isinstance(key, str) and key != "", "metadata", key, "keys must be non-empty text")
        check(value is None or isinstance(value, (str, int, float, bool)), f"metadata[{key!r}]",
              value, "must be a string, number, boolean or null")
    return dict(metadata)


def _is_int(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)
