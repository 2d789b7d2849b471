"""Indexing into the store as a user sees it: what gets indexed, skipped, refused and hidden."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from killing import kill_after_rows, slow_index_script

from framedex.errors import EncoderMismatchError, VideoNotFoundError
from framedex.indexer.encoder import load_encoder
from framedex.indexer.pipeline import Indexer, IndexOptions, content_id
from framedex.store import LanceStore as Store

pytestmark = pytest.mark.heavy  # servers, clusters or processes: not in make test-fast


def _indexer(db, model, **opts):
    return Indexer(Store(db), load_encoder(model, device="cpu"), IndexOptions(**opts))


def test_folder_with_bad_files_indexes_the_rest(tmp_path, library, tiny_model):
    report = _indexer(tmp_path / "db", tiny_model).index_paths([library])
    indexed = {Path(o.path).name for o in report.by_status("indexed")}
    failed = {Path(o.path).name: o.error for o in report.by_status("failed")}
    assert indexed == {"a.mp4", "b.mp4"}
    assert set(failed) == {"corrupt.mp4", "truncated.mp4"}
    assert all("cannot open video" in e or "decode" in e for e in failed.values())
    a = next(o for o in report.by_status("indexed") if o.path.endswith("a.mp4"))
    assert a.num_frames == 70 and a.num_indexed == 7 and a.duration == pytest.approx(7.0)


def test_frames_come_back_in_time_order_with_the_grid_timestamps(tmp_path, small_video,
                                                                tiny_model):
    store = Store(tmp_path / "db")
    report = Indexer(store, load_encoder(tiny_model, device="cpu"),
                     IndexOptions(write_chunk=3, batch_size=2)).index_paths([small_video])
    vid = report.by_status("indexed")[0].video_id
    frames = store.read_frames(vid)
    # second i -> native frame round(i * 10) at 10 fps; written in chunks of 3 rows
    np.testing.assert_array_equal(frames.pos, np.arange(7))
    np.testing.assert_array_equal(frames.frame_idx, np.arange(7) * 10)
    np.testing.assert_allclose(frames.pts_sec, np.arange(7.0))
    np.testing.assert_allclose(np.linalg.norm(frames.vectors, axis=1), 1.0, atol=2e-3)
    segs = store.read_segments(vid)
    np.testing.assert_allclose(segs.start_sec, [0.0, 6.0])
    np.testing.assert_allclose(segs.end_sec, [6.0, 7.0])
    video = store.get_video(vid)
    assert video.video_id == content_id(small_video)
    assert video.frame_rate == pytest.approx(10.0) and video.index_fps == 1.0


def test_reindexing_is_a_no_op_and_same_content_elsewhere_too(tmp_path, library, tiny_model):
    db = tmp_path / "db"
    _indexer(db, tiny_model).index_paths([library / "a.mp4"])
    copy = tmp_path / "copy.mp4"
    copy.write_bytes((library / "a.mp4").read_bytes())
    report = _indexer(db, tiny_model).index_paths([library / "a.mp4", copy])
    assert len(report.by_status("unchanged")) == 2 and not report.by_status("indexed")
    assert Store(db).count_videos() == 1


def test_new_index_rate_reindexes(tmp_path, small_video, tiny_model):
    db = tmp_path / "db"
    _indexer(db, tiny_model).index_paths([small_video])
    report = _indexer(db, tiny_model, index_fps=2.0).index_paths([small_video])
    assert report.by_status("indexed")[0].num_indexed == 14
    vid = report.by_status("indexed")[0].video_id
    assert len(Store(db).read_frames(vid).pos) == 14


def test_other_encoder_is_refused(tmp_path, small_video, tiny_model, other_tiny_model):
    db = tmp_path / "db"
    _indexer(db, tiny_model).index_paths([small_video])
    with pytest.raises(EncoderMismatchError, match="--model"):
        _indexer(db, other_tiny_model)


def test_same_model_with_other_weights_is_refused_naming_the_weights():
    from framedex.store.lance_store import check_same_encoder

    old = {"spec": "synthetic-shapes", "model": "synthetic-shapes", "pretrained": None,
           "weights_digest": "65b6c66c19b241af", "dim": 128}
    new = dict(old, weights_digest="f31061bd9ef342a3")
    check_same_encoder(old, dict(old), "db")  # the same identity passes
    # "--model synthetic-shapes" would not help: the message must say the weights changed
    with pytest.raises(EncoderMismatchError, match=r"65b6c66c19b241af.*f31061bd9ef342a3.*re-index"):
        check_same_encoder(old, new, "db")


def test_missing_path_is_reported(tmp_path, tiny_model):
    report = _indexer(tmp_path / "db", tiny_model).index_paths([tmp_path / "nope.mp4"])
    assert report.by_status("failed")[0].error.startswith("no such file")


def test_crash_mid_video_leaves_nothing_visible_and_rerun_completes(tmp_path, small_video,
                                                                   tiny_model):
    db = tmp_path / "db"
    store = Store(db)
    encoder = load_encoder(tiny_model, device="cpu")
    calls = {"n": 0}

    class Crashing:
        identity, image_size = encoder.identity, encoder.image_size

        def encode_images(self, frames):
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("power cut")
            return encoder.encode_images(frames)

    with pytest.raises(RuntimeError):
        Indexer(store, Crashing(), IndexOptions(batch_size=2, write_chunk=2)).index_file(
            small_video)
    vid = content_id(small_video)
    assert store.list_videos() == []
    with pytest.raises(VideoNotFoundError):
        store.read_frames(vid)
    outcome = Indexer(store, encoder).index_file(small_video)
    assert outcome.status == "indexed"
    assert len(store.read_frames(vid).pos) == 7


def test_killed_index_run_leaves_no_partial_video(tmp_path, small_video, tiny_model):
    db = tmp_path / "db"
    kill_after_rows(slow_index_script(), db, tiny_model, str(small_video), rows=2)
    store = Store(db)
    assert store.list_videos() == []
    report = Indexer(store, load_encoder(tiny_model, device="cpu")).index_paths([small_video])
    assert len(report.by_status("indexed")) == 1
    vid = report.by_status("indexed")[0].video_id
    np.testing.assert_array_equal(store.read_frames(vid).pos, np.arange(7))
