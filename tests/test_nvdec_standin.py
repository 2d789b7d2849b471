"""The ``nvdec`` backend's own logic on the CPU, with a stand-in for PyNvVideoCodec.

The bitstream filter, seeks with their flushes, end-of-stream, frame identification by pts and
the pipeline's NVDEC sessions run here against ``tests/fake_nvdec.py`` (libavcodec behind
NVDEC's interface). The real library on a real GPU is covered by the ``gpu``-marked tests
(the decoder contract tests and ``test_parallel_indexing.py``).
"""

from __future__ import annotations

import sys
from fractions import Fraction

import numpy as np
import pytest
from videos import cfr, read_index, write_video

from framedex.indexer.decode import open_video


@pytest.fixture()
def standin(monkeypatch):
    import fake_nvdec

    monkeypatch.setitem(sys.modules, "PyNvVideoCodec", fake_nvdec.module())
    return "nvdec"


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("nvdec_clips")
    vfr = [Fraction(0)]
    for i in range(59):
        vfr.append(vfr[-1] + (Fraction(1, 30) if i % 2 == 0 else Fraction(1, 10)))
    return {
        "cfr25": cfr(d / "cfr25.mp4", Fraction(25), 4.0),
        "start2_mkv": cfr(d / "start2.mkv", Fraction(30000, 1001), 3.0, start=Fraction(2)),
        "ts": cfr(d / "ntsc.ts", Fraction(30000, 1001), 3.0),
        "vfr": write_video(d / "vfr.mp4", vfr),
    }


@pytest.mark.parametrize("name", ["cfr25", "start2_mkv", "ts", "vfr"])
def test_grid_is_pyavs_and_pixels_are_those_frames(standin, clips, name):
    v = clips[name]
    with open_video(v.path, "pyav") as ref:
        want = [(f.frame_idx, f.pts_sec) for f in ref.iter_index_frames(2.0)]
    with open_video(v.path, standin) as dec:
        assert dec.info.decoder == "nvdec"
        got = list(dec.iter_index_frames(2.0))
        small = list(dec.iter_index_frames(2.0, max_side=32))
    assert [(f.frame_idx, f.pts_sec) for f in got] == want
    assert [read_index(f.image) for f in got] == [w[0] for w in want]
    assert {f.image.shape for f in small} == {(24, 32, 3)}
    assert [read_index(f.image) for f in small] == [w[0] for w in want]


def test_random_access_seeks_and_flushes(standin, clips):
    v = clips["cfr25"]
    want = [v.num_frames - 1, 3, 3, 0, 17, v.num_frames // 2, 1, 95]
    with open_video(v.path, standin) as dec:
        imgs = dec.get_frames(want)
        again = dec.get_frames([2, 60])  # after an end-of-stream: a fresh session
        device = list(dec.iter_frames(np.array([5, 30]), None))
    assert [read_index(im) for im in imgs] == want
    assert [read_index(im) for im in again] == [2, 60]
    import torch

    assert all(isinstance(img, torch.Tensor) for _, img in device)  # frames stay tensors


def test_pipeline_with_nvdec_sessions(standin, clips, tmp_path, tiny_model):
    from framedex.indexer.encoder import load_encoder
    from framedex.indexer.pipeline import Indexer, IndexOptions
    from framedex.store import LanceStore as Store

    enc = load_encoder(tiny_model, device="cpu")
    files = [clips["cfr25"].path, clips["start2_mkv"].path]
    ref = Store(tmp_path / "ref")
    Indexer(ref, enc, IndexOptions(decoder="pyav", decode_workers=1, unit_frames=2)) \
        .index_paths(files)
    store = Store(tmp_path / "nv")
    ix = Indexer(store, enc, IndexOptions(decoder="nvdec", decode_workers=2, unit_frames=2))
    report = ix.index_paths(files)
    assert len(report.by_status("indexed")) == 2
    assert ix.last_run["nvdec_sessions"] == 2 and ix.last_run["decode_workers"] == 0
    for v in store.list_videos():
        assert v.decoder == "nvdec"
        a, b = ref.read_frames(v.video_id), store.read_frames(v.video_id)
        np.testing.assert_array_equal(a.frame_idx, b.frame_idx)
        np.testing.assert_array_equal(a.pts_sec, b.pts_sec)
        # same decoded pixels (libavcodec both ways), resized differently: close vectors
        assert float(np.min(np.sum(a.vectors * b.vectors, axis=1))) > 0.95
