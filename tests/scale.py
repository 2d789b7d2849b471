"""What the store-at-scale tests share (tests/test_store_at_scale.py, test_replicas.py,
test_ray_engine.py): short clips, a CLI process, and the check that a store is whole."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from framedex.store import LanceStore

SCENES = [{"duration": 3.0, "background": "black", "objects": [{"shape": "circle",
                                                                 "color": "red"}]},
          {"duration": 3.0, "background": "white", "objects": [{"shape": "star",
                                                                 "color": "blue"}]}]


def render_clip(path: Path, seed: int, seconds: float = 6.0) -> Path:
    from framedex.synth import render

    render({"fps": 10, "size": [48, 48], "seed": seed,
            "scenes": [dict(s, duration=seconds / 2) for s in SCENES]}, path)
    return path


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "framedex", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def assert_whole(store: LanceStore, expected: int) -> None:
    """Every live generation complete, nothing doubled, no rows of another generation."""
    videos = store.list_videos()
    assert len(videos) == expected
    total = 0
    for v in videos:
        frames = store.read_frames(v.video_id)
        assert len(frames.pos) == v.num_indexed > 0, v
        assert len(set(frames.frame_idx.tolist())) == v.num_indexed  # no frame twice
        assert len(store.read_segments(v.video_id).start_sec) > 0
        total += v.num_indexed
    assert store.tables.read("frames", ["video_id"]).num_rows == total
    live = {(v.video_id, v.generation) for v in videos}
    vectors = store.tables.read("video_vectors", ["video_id", "generation"])
    assert set(zip(vectors.column("video_id").to_pylist(),
                   vectors.column("generation").to_pylist(), strict=True)) == live
