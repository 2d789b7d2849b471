"""Scene (shot) boundaries from frame embeddings: where the cosine between neighbours drops.

A cut sits between frames t and t+1 when ``d_t = 1 - cos(t, t+1)`` exceeds ``threshold`` (a
fixed cosine drop) or, by default, an adaptive robust threshold ``median(d) + z * 1.4826 *
MAD(d)`` that is at least ``min_drop``. The ``shots`` sampler covers these scenes, ``framedex
scenes`` lists them, and a token budget's expensive frames are spread over them
(:func:`~framedex.query.samplers.base.spread_order`).
"""

from __future__ import annotations

import numpy as np

from framedex.values import Array

#: The adaptive threshold's robust z-score and its least cosine drop (the ``shots`` defaults).
DEFAULT_Z, DEFAULT_MIN_DROP = 3.0, 0.05


def neighbour_drops(emb: Array) -> Array:
    """``1 - cos(t, t+1)`` for t in [0, N-2], float64 (embeddings are L2-normalised)."""
    return 1.0 - np.einsum("ij,ij->i", emb[:-1], emb[1:]).astype(np.float64)


def scene_cuts(emb: Array, k: int | None = None, *, threshold: float | None = None,
               z: float = DEFAULT_Z, min_drop: float = DEFAULT_MIN_DROP) -> Array:
    """Cut positions c (a scene starts at frame c), ascending; with ``k``, at most ``k - 1``
    of them (the strongest, earlier on ties)."""
    if len(emb) < 2:
        return np.zeros(0, dtype=np.int64)
    d = neighbour_drops(emb)
    if threshold is not None:
        thr = float(threshold)
    else:
        med = float(np.median(d))
        mad = float(np.median(np.abs(d - med)))
        thr = max(med + z * 1.4826 * mad, float(min_drop))
    cut = np.flatnonzero(d > thr)
    if k is not None and len(cut) > k - 1:
        # _common.top_indices' order, written out: _common imports base, which imports this
        cut = cut[np.argsort(-d[cut], kind="stable")[:max(0, k - 1)]]
    return np.sort(cut) + 1


def scene_labels(emb: Array) -> Array:
    """Each frame's scene number (0, 1, ...; int64), by :func:`scene_cuts`' defaults."""
    return np.searchsorted(scene_cuts(emb), np.arange(len(emb)), side="right").astype(np.int64)
