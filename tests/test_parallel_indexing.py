"""Parallel indexing as a user sees it: the index does not depend on the number of decode
workers, a long video is shared by every worker, a bad file or a dying worker fails its file
alone, and a killed multi-worker run leaves no partial video."""

from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from killing import kill_after_rows, slow_index_script
from videos import cfr

from framedex.indexer.decode.base import register_decoder, unregister_decoder
from framedex.indexer.encoder import load_encoder
from framedex.indexer.pipeline import Indexer, IndexOptions
from framedex.indexer.workers import split_grid
from framedex.store import LanceStore as Store

pytestmark = pytest.mark.heavy  # servers, clusters or processes: not in make test-fast


def _index(db: Path, model: str, paths: list, **opts) -> tuple[Store, object]:
    store = Store(db)
    report = Indexer(store, load_encoder(model, device="cpu"), IndexOptions(**opts)) \
        .index_paths(paths)
    return store, report


@pytest.fixture(scope="module")
def parallel_library(tmp_path_factory) -> Path:
    """Three short videos and one long one, all with 12-frame GOPs (many possible cuts)."""
    lib = tmp_path_factory.mktemp("parallel_lib")
    cfr(lib / "a.mp4", Fraction(25), 3.0)
    cfr(lib / "b.mkv", Fraction(30000, 1001), 2.5, start=Fraction(1))
    cfr(lib / "c.mp4", Fraction(10), 4.0)
    cfr(lib / "long.mp4", Fraction(25), 40.0)  # 1,000 frames, 84 GOPs
    return lib


def test_split_grid_cuts_only_between_gops():
    keys = np.array([0, 12, 24, 36, 48, 60])
    grid = np.arange(0, 70, 5)  # 0, 5, ..., 65
    parts = split_grid(grid, keys, unit_frames=3)
    np.testing.assert_array_equal(np.concatenate(parts), grid)
    for left, right in itertools.pairwise(parts):
        # a keyframe lies after the left part's last frame and at or before the right's first
        assert np.any((keys > left[-1]) & (keys <= right[0]))
    assert all(len(p) >= 3 for p in parts[:-1])
    assert len(split_grid(grid, np.array([0]), 3)) == 1  # no keyframe table: one part
    assert split_grid(grid[:0], keys, 3) == []


def test_one_and_many_workers_give_identical_stores(tmp_path, parallel_library, tiny_model):
    """Same grid, timestamps, native indices and segments; vectors within 1e-5 (batches
    of other compositions may round differently in BLAS)."""
    one, rep1 = _index(tmp_path / "one", tiny_model, [parallel_library], decode_workers=1,
                       unit_frames=4, batch_size=8)
    many, rep3 = _index(tmp_path / "many", tiny_model, [parallel_library], decode_workers=3,
                        unit_frames=4, batch_size=8)
    assert len(rep1.by_status("indexed")) == len(rep3.by_status("indexed")) == 4
    videos1 = {v.video_id: v for v in one.list_videos()}
    videos3 = {v.video_id: v for v in many.list_videos()}
    assert set(videos1) == set(videos3)
    for vid, v1 in videos1.items():
        v3 = videos3[vid]
        for f in ("path", "duration", "frame_rate", "num_frames", "width", "height",
                  "start_sec", "is_vfr", "num_indexed", "decoder"):
            assert getattr(v1, f) == getattr(v3, f), (v1.path, f)
        a, b = one.read_frames(vid), many.read_frames(vid)
        np.testing.assert_array_equal(a.pos, b.pos)
        np.testing.assert_array_equal(a.frame_idx, b.frame_idx)
        np.testing.assert_array_equal(a.pts_sec, b.pts_sec)
        assert np.abs(a.vectors - b.vectors).max() <= 1e-5
        s1, s3 = one.read_segments(vid), many.read_segments(vid)
        np.testing.assert_array_equal(s1.start_sec, s3.start_sec)
        np.testing.assert_array_equal(s1.end_sec, s3.end_sec)
        assert np.abs(s1.vectors - s3.vectors).max() <= 1e-5


def test_long_video_is_split_across_workers(tmp_path, parallel_library, tiny_model):
    long_video = parallel_library / "long.mp4"
    store, report = _index(tmp_path / "db", tiny_model, [long_video], decode_workers=2,
                           unit_frames=4, index_fps=2.0)
    (outcome,) = report.by_status("indexed")
    assert outcome.units >= 10 and outcome.workers == 2
    frames = store.read_frames(outcome.video_id)
    # 2 fps on 25 fps: t = i / 2 -> round(12.5 i) with ties to the earlier frame
    np.testing.assert_array_equal(frames.frame_idx, np.ceil(np.arange(80) * 12.5 - 0.5))
    np.testing.assert_allclose(frames.pts_sec, np.arange(80) / 2.0, atol=0.021)
    np.testing.assert_array_equal(frames.pos, np.arange(80))


def test_bad_files_fail_alone_with_many_workers(tmp_path, library, tiny_model):
    _, report = _index(tmp_path / "db", tiny_model, [library], decode_workers=2)
    assert {Path(o.path).name for o in report.by_status("indexed")} == {"a.mp4", "b.mp4"}
    failed = {Path(o.path).name: o.error for o in report.by_status("failed")}
    assert set(failed) == {"corrupt.mp4", "truncated.mp4"}
    assert all("cannot open video" in e or "decode" in e for e in failed.values())


@pytest.fixture()
def crashing_decoder():
    """The ``crashing`` backend, registered for one test only."""
    from crashing_decoder import CrashingDecoder

    register_decoder("crashing")(CrashingDecoder)
    yield "crashing"
    unregister_decoder("crashing")


def test_worker_crash_fails_its_file_not_the_run(tmp_path, small_video, tiny_model,
                                                 crashing_decoder):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "crash.mp4").write_bytes(small_video.read_bytes() + b"\0")  # other content id
    (lib / "good.mp4").write_bytes(small_video.read_bytes())
    store, report = _index(tmp_path / "db", tiny_model, [lib], decode_workers=2,
                           decoder=crashing_decoder)
    (good,) = report.by_status("indexed")
    (bad,) = report.by_status("failed")
    assert Path(good.path).name == "good.mp4" and good.num_indexed == 7
    assert Path(bad.path).name == "crash.mp4"
    assert "decode worker died" in bad.error and "signal 9" in bad.error
    assert [v.path for v in store.list_videos()] == [good.path]


@pytest.mark.slow
def test_killed_multi_worker_run_leaves_no_partial_video(tmp_path, parallel_library,
                                                         tiny_model):
    db = tmp_path / "db"
    kill_after_rows(slow_index_script(decode_workers=2, unit_frames=2), db, tiny_model,
                    str(parallel_library), rows=6)
    store = Store(db)
    visible = store.list_videos()
    assert len(visible) < 4  # killed mid-run
    for v in visible:  # whatever is visible is whole
        assert len(store.read_frames(v.video_id).pos) == v.num_indexed
    _, report = _index(db, tiny_model, [parallel_library], decode_workers=2)
    assert len(report.by_status("indexed")) + len(report.by_status("unchanged")) == 4
    counts = {Path(v.path).name: v.num_indexed for v in Store(db).list_videos()}
    assert counts == {"a.mp4": 3, "b.mkv": 3, "c.mp4": 4, "long.mp4": 40}
    for v in Store(db).list_videos():
        np.testing.assert_array_equal(store.read_frames(v.video_id).pos,
                                      np.arange(v.num_indexed))


def test_decode_workers_is_validated_up_front():
    from framedex.errors import ConfigError

    for bad in (0, -1, 2.5, True, 10_000):
        with pytest.raises(ConfigError, match=r"decode_workers=.* is invalid: must be an "
                                              r"integer from 1 to 256, or None for auto"):
            IndexOptions(decode_workers=bad)
    assert IndexOptions(decode_workers=None).decode_workers is None


def test_cli_decode_workers_error_is_one_line_before_any_work(tmp_path, small_video):
    from typer.testing import CliRunner

    from framedex.cli import app

    db = tmp_path / "db"
    res = CliRunner().invoke(app, ["index", str(small_video), "--db", str(db),
                                   "--model", "synthetic-shapes", "--decode-workers", "0"])
    assert res.exit_code != 0
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "decode_workers=0 is invalid" in lines[0], res.output
    assert not db.exists()  # validated before the model loads and the store is made


# ---- GPU (NVDEC decode, CUDA encoder): skipped without one --------------------------------

def _nvdec_ready() -> bool:
    from framedex.indexer.decode import get_decoder_class

    return get_decoder_class("nvdec").is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _nvdec_ready(), reason="needs PyNvVideoCodec and a CUDA GPU")
def test_nvdec_index_has_the_pyav_grid_and_close_vectors(tmp_path, parallel_library,
                                                         tiny_model):
    """NVDEC frames stay on the GPU; the grid and timestamps are PyAV's exactly, the vectors
    close (NVDEC's colour conversion and resize differ slightly from FFmpeg's)."""
    enc = load_encoder(tiny_model, device="cuda", precision="fp32")
    cpu, gpu = Store(tmp_path / "cpu"), Store(tmp_path / "gpu")
    Indexer(cpu, enc, IndexOptions(decoder="pyav", decode_workers=2, unit_frames=4)) \
        .index_paths([parallel_library])
    rep = Indexer(gpu, enc, IndexOptions(decoder="nvdec", decode_workers=3, unit_frames=4)) \
        .index_paths([parallel_library])
    assert len(rep.by_status("indexed")) == 4
    for v in gpu.list_videos():
        assert v.decoder == "nvdec"
        a, b = cpu.read_frames(v.video_id), gpu.read_frames(v.video_id)
        np.testing.assert_array_equal(a.frame_idx, b.frame_idx)
        np.testing.assert_array_equal(a.pts_sec, b.pts_sec)
        assert float(np.min(np.sum(a.vectors * b.vectors, axis=1))) > 0.98


@pytest.mark.gpu
@pytest.mark.skipif(not _nvdec_ready(), reason="needs PyNvVideoCodec and a CUDA GPU")
def test_auto_on_a_gpu_uses_cpu_workers_and_nvdec_together(tmp_path, parallel_library,
                                                           tiny_model):
    enc = load_encoder(tiny_model, device="cuda")
    ix = Indexer(Store(tmp_path / "db"), enc, IndexOptions(decode_workers=2, unit_frames=2))
    rep = ix.index_paths([parallel_library])
    assert len(rep.by_status("indexed")) == 4
    assert ix.last_run["decode_workers"] == 2 and ix.last_run["nvdec_sessions"] > 0
    long = next(v for v in ix.store.list_videos() if v.path.endswith("long.mp4"))
    assert set(long.decoder.split("+")) <= {"pyav", "nvdec"}
