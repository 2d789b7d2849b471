"""Video embeddings from cached frame embeddings: clip segments and the whole video.

No video is decoded again: a segment's vector is the re-normalised mean of the indexed frame
vectors whose ``pts_sec`` falls in it (the same pooling the indexer uses for the stored 6 s
segments).

- ``fixed``: windows of ``seconds`` from 0 that tile ``[0, duration]`` (the last one may be
  shorter). A window without an indexed frame (windows shorter than the index grid) takes
  the vector of the nearest frame, so the tiling has no holes.
- ``dynamic``: shots cut where neighbouring frame embeddings differ (the adaptive threshold of
  the ``shots`` sampler), then shots shorter than ``seconds`` merged into a neighbour; the
  segments tile ``[0, duration]`` too.
- ``asset``: one vector for the whole video.

Example::

    embeddings = video_embeddings(frames, duration=60.0, segmentation="fixed", seconds=6)
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from framedex.errors import check
from framedex.values import Array

SEGMENTATIONS = ("fixed", "dynamic")
SCOPES = ("clip", "asset")


@dataclass
class VideoEmbedding:
    """One embedding of a video: a clip (``scope="clip"``) or the whole video (``"asset"``)."""

    scope: str
    start_sec: float
    end_sec: float
    vector: Array  # (D,) float32, L2-normalised


def _pool(vectors: Array) -> Array:
    mean = vectors.astype(np.float64).mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


def fixed_bounds(start: float, end: float, seconds: float) -> Array:
    """Boundaries ``[start, start + s, ..., end]`` of fixed windows."""
    n = max(1, int(np.ceil((end - start) / seconds - 1e-9)))
    bounds = np.minimum(start + np.arange(n + 1, dtype=np.float64) * seconds, end)
    bounds[-1] = end
    return bounds


def dynamic_bounds(pts_sec: Array, vectors: Array, start: float, end: float,
                   min_seconds: float) -> Array:
    """Boundaries of embedding-detected shots in ``[start, end]``, no shot shorter than
    ``min_seconds`` (unless the range is)."""
    from framedex.query.samplers.shots import ShotsSampler

    cuts = ShotsSampler().cuts(vectors, len(vectors)) if len(vectors) > 1 else np.zeros(0, int)
    bounds = [float(start), *[float(pts_sec[c]) for c in cuts], float(end)]
    merged = [bounds[0]]
    for b in bounds[1:-1]:
        if b - merged[-1] >= min_seconds:
            merged.append(b)
    merged.append(float(end))
    if len(merged) > 2 and merged[-1] - merged[-2] < min_seconds:
        del merged[-2]  # a short last shot joins the one before it
    return np.asarray(merged, dtype=np.float64)


def video_embeddings(pts_sec: Array, vectors: Array, duration: float, *,
                     segmentation: str = "fixed", seconds: float = 6.0,
                     scopes: Sequence[str] = ("clip",), start_sec: float | None = None,
                     end_sec: float | None = None) -> list[VideoEmbedding]:
    """Clip and/or whole-video embeddings of one video from its frame embeddings.

    Args:
        pts_sec: (N,) indexed frame times, ascending.
        vectors: (N, D) L2-normalised frame embeddings.
        duration: the video's duration in seconds (the clips tile ``[0, duration]``).
        segmentation: ``fixed`` (windows of ``seconds``) or ``dynamic`` (shots of at least
            ``seconds``).
        seconds: window length, or shortest shot.
        scopes: ``clip`` and/or ``asset``.
        start_sec: embed from here (default 0); the clips then tile ``[start_sec, end_sec]``.
        end_sec: embed up to here (default: the duration).

    Returns:
        Clips in time order, then the asset embedding (of the range).

    Raises:
        ConfigError: a bad segmentation, length, scope or range.
    """
    check(segmentation in SEGMENTATIONS, "segmentation", segmentation,
          f"must be one of {', '.join(SEGMENTATIONS)}")
    check(isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
          and 0 < seconds <= 86_400, "seconds", seconds,
          "must be a number of seconds in (0, 86400]")
    scopes = list(scopes)
    check(bool(scopes) and all(s in SCOPES for s in scopes), "embedding_scope", scopes,
          f"must be a non-empty list of {', '.join(SCOPES)}")
    check(len(pts_sec) > 0 and len(pts_sec) == len(vectors), "frames", len(pts_sec),
          "must be at least one indexed frame")
    duration = max(float(duration), float(pts_sec[-1]))
    lo = 0.0 if start_sec is None else float(start_sec)
    hi = duration if end_sec is None else min(float(end_sec), duration)
    check(0 <= lo < hi, "start_sec", start_sec,
          f"must be >= 0 and before end_sec and the video's end ({hi:g} s)")
    if lo > 0 or hi < duration:
        keep = (pts_sec >= lo - 1e-9) & (pts_sec <= hi + 1e-9)
        if not keep.any():  # a range between two grid frames: the nearest frame
            keep[int(np.argmin(np.abs(pts_sec - (lo + hi) / 2)))] = True
        pts_sec, vectors = pts_sec[keep], vectors[keep]
    out: list[VideoEmbedding] = []
    if "clip" in scopes:
        if segmentation == "fixed":
            bounds = fixed_bounds(lo, hi, float(seconds))
        else:
            bounds = dynamic_bounds(pts_sec, vectors, lo, hi, float(seconds))
        last = len(bounds) - 2
        for i, (a, b) in enumerate(itertools.pairwise(bounds)):
            upper = pts_sec <= b + 1e-9 if i == last else pts_sec < b - 1e-9
            inside = (pts_sec >= a - 1e-9) & upper
            if not inside.any():  # a window between two grid frames: the nearest frame
                inside = np.zeros(len(pts_sec), bool)
                inside[int(np.argmin(np.abs(pts_sec - (a + b) / 2)))] = True
            out.append(VideoEmbedding("clip", float(a), float(b), _pool(vectors[inside])))
    if "asset" in scopes:
        out.append(VideoEmbedding("asset", lo, hi, _pool(vectors)))
    return out
