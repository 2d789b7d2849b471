"""Validation of what a request carries, done once at the facade (``Library``): texts,
budgets, bounded values, metadata; and the registry names the faces offer as choices.

The rules themselves are :mod:`framedex.rules`' tables; this module checks a value against
them. Every function raises :class:`~framedex.errors.ConfigError` (or ``UnknownNameError``)
naming the parameter, the value and the rule.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from framedex.errors import ConfigError, MalformedJSONError, check
from framedex.query.samplers.base import (
    Budget,
    CheckedFrames,
    CheckedTokens,
    SamplerInfo,
    list_samplers,
    sampler_info,
)
from framedex.rules import DEFAULT_BUDGET, LIMITS, Limit

#: Deepest nesting accepted in JSON text (metadata, filters, spec files). Python's json parser
#: recurses once per level, so ``{"a":`` x 10,000 (50 KB) raised RecursionError: a 500 on the
#: API and an internal error in the CLI. What framedex reads nests 3 levels at most.
MAX_JSON_DEPTH = 32
#: A JSON string literal (escapes included): brackets inside strings do not nest.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


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
        value: Any = raw
        if raw.lstrip()[:1] not in ("[", "{"):  # an array or object stays text: never parsed
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


def json_depth(text: str) -> int:
    """How deep arrays and objects nest in JSON ``text`` (0 for a scalar), counted without
    parsing it: brackets outside string literals, in one vectorised pass."""
    bare = _JSON_STRING.sub("", text).encode("utf-8", "surrogatepass")
    if not bare:
        return 0
    b = np.frombuffer(bare, np.uint8)
    step = ((b == 0x5B) | (b == 0x7B)).astype(np.int32) - ((b == 0x5D) | (b == 0x7D))
    return int(np.cumsum(step).max(initial=0))


def parse_json(text: str, name: str) -> Any:
    """The value of JSON text a parameter carries (``--metadata``, a ``filter`` field, a spec
    file), nested at most :data:`MAX_JSON_DEPTH` levels.

    Raises:
        MalformedJSONError: not JSON, or nested deeper (names the parameter).
    """
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise MalformedJSONError(f"{name} is invalid: its JSON nests {depth} levels deep, "
                                 f"more than the {MAX_JSON_DEPTH} accepted")
    try:
        return json.loads(text)
    except json.JSONDecodeError as ex:
        raise MalformedJSONError(f"{name}={text[:80]!r} is invalid: not JSON ({ex.msg})"
                                 ) from None
    except RecursionError:  # unreachable below MAX_JSON_DEPTH; kept so it can never be a 500
        raise MalformedJSONError(f"{name} is invalid: its JSON nests too deep") from None


def parse_metadata(text: str | None) -> dict[str, Any]:
    """``--metadata`` JSON text -> a checked metadata dict.

    Raises:
        ConfigError: not a JSON object of scalar values (MalformedJSONError: not JSON).
    """
    if not text:
        return {}
    value = parse_json(text, "metadata")
    check(isinstance(value, dict), "metadata", text[:80], "must be a JSON object")
    return check_metadata(value)


def check_text(name: str, text: object) -> None:
    """Validate a question or search text (``framedex.rules.LIMITS[name]``, else the
    ``text`` rule).

    Raises:
        ConfigError: not a non-empty string, longer than the rule allows, or with a NUL byte.
    """
    limit = LIMITS.get(name, LIMITS["text"])
    ok = isinstance(text, str) and text.strip() != ""
    shown = text[:40] + "..." if isinstance(text, str) and len(text) > 40 else text
    check(ok and limit.holds(len(str(text))) and "\x00" not in str(text), name, shown,
          f"{limit.rule()}, without NUL bytes")


def check_limit(value: object, limit: Limit, name: str | None = None) -> None:
    """Validate a number against its rule in ``framedex.rules.LIMITS`` (None passes: the
    caller's default applies).

    Raises:
        ConfigError: not an integer (a number, for a ``number`` rule), or out of bounds.
    """
    if value is None:
        return
    if limit.kind == "int":
        ok = _is_int(value)
    else:
        ok = isinstance(value, (int, float, np.integer, np.floating)) \
            and not isinstance(value, bool) and bool(np.isfinite(float(value)))
    check(ok and limit.holds(float(value)), name or limit.param, value,  # type: ignore[arg-type]
          limit.rule())


def check_span(start: float | None, end: float | None) -> None:
    """Validate a time span of a request (seconds, ``end`` after ``start``).

    Raises:
        ConfigError: a negative or non-finite time, or ``end <= start``.
    """
    for name, value in (("start", start), ("end", end)):
        check_limit(value, LIMITS["seconds"], name)
    if start is not None and end is not None:
        check(end > start, "end", end, f"must be after start={start:g}")


def make_budget(budget: int | None, tokens: int | None) -> Budget:
    """The checked budget of a request's ``budget`` (frames) xor ``tokens`` (neither:
    ``framedex.rules.DEFAULT_BUDGET`` frames): samplers take it without checking again.

    Raises:
        ConfigError: both given, or a value outside its rule (``framedex.rules.LIMITS``).
    """
    if budget is not None and tokens is not None:
        raise ConfigError(f"budget={budget!r} and tokens={tokens!r} are invalid together: give "
                          "budget (frames) or tokens (a VLM token budget), not both")
    if tokens is not None:
        return CheckedTokens.of(tokens)
    return CheckedFrames.of(DEFAULT_BUDGET if budget is None else budget)


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
