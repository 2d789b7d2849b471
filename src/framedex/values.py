"""The value types that cross framedex's seams, named once: JSON values and numpy arrays.

The facade, the query layer, the store's Protocols and the indexer's drivers are type-checked
with ``disallow_any_explicit`` (``pyproject.toml``): they write these names instead of ``Any``.

- :data:`Json` is a JSON value, recursively (read-only containers, so a ``list[float]`` or a
  ``dict[str, int]`` is one), and :data:`JsonObject` what ``to_json`` methods return.
- :data:`Array` is a numpy array. numpy types an array by shape and dtype, and framedex's
  arrays change dtype on purpose (float32 storage, float64 arithmetic); the dtype a seam
  promises is in its docstring.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy.typing as npt

#: A JSON value.
Json: TypeAlias = "str | int | float | bool | Sequence[Json] | Mapping[str, Json] | None"
#: A JSON object, as ``to_json`` methods build and return it.
JsonObject: TypeAlias = dict[str, Json]
#: A numpy array of any shape and dtype.
Array: TypeAlias = npt.NDArray[Any]

__all__ = ["Array", "Json", "JsonObject"]
