"""Helpers the benchmark scripts share: a cached video of synthetic vectors written through the
store's own write protocol, and percentile formatting.

A benchmark of the query path does not need a decoded video: select and search cost the same
on scene-like random vectors as on real embeddings of the same shape. The vectors go in with
the encoder identity of the model the benchmark queries with, so ``Library`` accepts them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def scene_vectors(n: int, dim: int, seed: int = 0, scene: tuple[int, int] = (4, 13),
                  noise: float = 0.6) -> np.ndarray:
    """``n`` unit vectors in runs of ``scene`` frames around shared centres (shots)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(scene[0], scene[1], size=n)
    owner = np.repeat(np.arange(n), lengths)[:n]
    centres = rng.standard_normal((owner[-1] + 1, dim))
    x = centres[owner] + noise * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def write_video(store: Any, identity: Mapping[str, Any], video_id: str, vectors: np.ndarray,
                *, path: str = "/bench/video.mp4", frame_rate: float = 30.0,
                segment_frames: int = 6) -> None:
    """Commit one video of ``vectors`` (1 fps grid) with its 6-s segments, as the indexer
    would: claim, new generation, frames, segments, the ``videos`` row last."""
    from framedex.store.base import SegmentArrays
    from framedex.store.schema import VideoRecord

    n, dim = vectors.shape
    store.ensure_encoder(identity)
    with store.claim(video_id, wait=True) as claim, store.writing():
        gen = store.begin_video(claim)
        pos = np.arange(n, dtype=np.int32)
        store.add_frames(video_id, gen, pos, (pos * frame_rate).astype(np.int64),
                         pos.astype(np.float64), vectors)
        usable = n // segment_frames * segment_frames
        seg = vectors[:usable].reshape(-1, segment_frames, dim).mean(1)
        seg /= np.linalg.norm(seg, axis=1, keepdims=True)
        starts = np.arange(len(seg), dtype=np.float64) * segment_frames
        store.add_segments(video_id, gen, starts, starts + segment_frames,
                           np.full(len(seg), segment_frames), seg)
        segments = SegmentArrays(video_id, starts, starts + segment_frames,
                                 ["fixed"] * len(seg), seg)
        store.commit_video(VideoRecord(
            video_id=video_id, path=path, duration=float(n), frame_rate=frame_rate,
            num_frames=int(n * frame_rate), width=1280, height=720, start_sec=0.0,
            is_vfr=False, index_fps=1.0, num_indexed=n, decoder="pyav",
            encoder=str(identity.get("model")), generation=gen), segments)
        store.retire_generation(video_id, claim.replaces)


def pct(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100)."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))
