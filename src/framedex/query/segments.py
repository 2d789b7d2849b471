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

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from framedex.errors import check

SEGMENTATIONS = ("fixed", "dynamic")
SCOPES = ("clip", "asset")


@dataclass
class VideoEmbedding:
    """One embedding of a video: a clip (``scope="clip"``) or the whole video (``"asset"``)."""

    scope: str
    start_sec: float
    end_sec: float
    vector: np.ndarray  # (D,) float32, L2-normalised


def _pool(vectors: np.ndarray) -> np.ndarray:
    mean = vectors.astype(np.float64).mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


def fixed_bounds(duration: float, seconds: float) -> np.ndarray:
    """Boundaries ``[0, s, 2s, ..., duration]`` of fixed windows."""
    n = max(1, int(np.ceil(duration / seconds - 1e-9)))
    bounds = np.minimum(np.arange(n + 1, dtype=np.float64) * seconds, duration)
    bounds[-1] = duration
    return bounds


def dynamic_bounds(pts_sec: np.ndarray, vectors: np.ndarray, duration: float,
                   min_seconds: float) -> np.ndarray:
    """Boundaries of embedding-detected shots, no shot shorter than ``min_seconds`` (unless
    the video is)."""
    from framedex.query.samplers.shots import ShotsSampler

    cuts = ShotsSampler().cuts(vectors, len(vectors)) if len(vectors) > 1 else np.zeros(0, int)
    bounds = [0.0, *[float(pts_sec[c]) for c in cuts], float(duration)]
    merged = [bounds[0]]
    for b in bounds[1:-1]:
        if b - merged[-1] >= min_seconds:
            merged.append(b)
    merged.append(float(duration))
    if len(merged) > 2 and merged[-1] - merged[-2] < min_seconds:
        del merged[-2]  # a short last shot joins the one before it
    return np.asarray(merged, dtype=np.float64)


def video_embeddings(pts_sec: np.ndarray, vectors: np.ndarray, duration: float, *,
                     segmentation: str = "fixed", seconds: float = 6.0,
                     scopes: Sequence[str] = ("clip",)) -> list[VideoEmbedding]:
    """Clip and/or whole-video embeddings of one video from its frame embeddings.

    Args:
        pts_sec: (N,) indexed frame times, ascending.
        vectors: (N, D) L2-normalised frame embeddings.
        duration: the video's duration in seconds (the clips tile ``[0, duration]``).
        segmentation: ``fixed`` (windows of ``seconds``) or ``dynamic`` (shots of at least
            ``seconds``).
        seconds: window length, or shortest shot.
        scopes: ``clip`` and/or ``asset``.

    Returns:
        Clips in time order, then the asset embedding.

    Raises:
        ConfigError: a bad segmentation, length or scope.
    """
    check(segmentation in SEGMENTATIONS, "segmentation", segmentation,
          f"must be one of {', '.join(SEGMENTATIONS)}")
    check(isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
          and 0 < seconds <= 86_400, "seconds", seconds, "must be a number of seconds in (0, 86400]")
    scopes = list(scopes)
    check(bool(scopes) and all(s in SCOPES for s in scopes), "embedding_scope", scopes,
          f"must be a non-empty list of {', '.join(SCOPES)}")
    check(len(pts_sec) > 0 and len(pts_sec) == len(vectors), "frames", len(pts_sec),
          "must be at least one indexed frame")
    duration = max(float(duration), float(pts_sec[-1]))
    out: list[VideoEmbedding] = []
    if "clip" in scopes:
        if segmentation == "fixed":
            bounds = fixed_bounds(duration, float(seconds))
        else:
            bounds = dynamic_bounds(pts_sec, vectors, duration, float(seconds))
        last = len(bounds) - 2
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            upper = pts_sec <= b + 1e-9 if i == last else pts_sec < b - 1e-9
            inside = (pts_sec >= a - 1e-9) & upper
            if not inside.any():  # a window between two grid frames: the nearest frame
                inside = np.zeros(len(pts_sec), bool)
                inside[int(np.argmin(np.abs(pts_sec - (a + b) / 2)))] = True
            out.append(VideoEmbedding("clip", float(a), float(b), _pool(vectors[inside])))
    if "asset" in scopes:
        out.append(VideoEmbedding("asset", 0.0, duration, _pool(vectors)))
    return out
