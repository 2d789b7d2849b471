"""Query-string values of the viewer's pages, translated to the facade's types.

The pages read their query strings as text so that a bad value (``budget=abc``) becomes the
viewer's error page naming the parameter, not FastAPI's JSON 422. Only translation happens
here; the rules (``budget >= 1``, a known sampler, a non-empty question) are the
:class:`~framedex.library.Library`'s, checked once there.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from framedex.errors import ConfigError, check


def text(q: QueryParams, name: str) -> str | None:
    """A text value; None when absent or blank."""
    value = q.get(name)
    return value if value is not None and value.strip() else None


def integer(q: QueryParams, name: str) -> int | None:
    """An integer value; None when absent or empty.

    Raises:
        ConfigError: not an integer.
    """
    raw = q.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw[:40]!r} is invalid: must be an integer") from None


def number(q: QueryParams, name: str, *, minimum: float = 0.0) -> float | None:
    """A finite number >= ``minimum``; None when absent or empty.

    Raises:
        ConfigError: not such a number.
    """
    raw = q.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    check(math.isfinite(value) and value >= minimum, name, raw[:40],
          f"must be a number >= {minimum:g}")
    return value


def names(q: QueryParams, name: str) -> list[str]:
    """Repeated values (``sampler=aks&sampler=bolt`` or ``sampler=aks,bolt``), deduplicated,
    in order."""
    out: list[str] = []
    for raw in q.getlist(name):
        for part in raw.split(","):
            part = part.strip()
            if part and part not in out:
                out.append(part)
    return out


def link(path: str, **values: Any) -> str:
    """``path?k=v&...`` without the empty values (lists repeat their key)."""
    items: list[tuple[str, str]] = []
    for key, value in values.items():
        if value is None or value == "" or value == []:
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            items.append((key, str(v)))
    return path + ("?" + urlencode(items) if items else "")
