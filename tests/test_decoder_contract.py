"""The decode-backend contract, run against every installed backend.

Videos are generated here (tests/videos.py): frames spell their own index, so each check is
"the decoder returned the frame the grid promised, at that frame's real pts".
"""

from __future__ import annotations

import math
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from videos import VideoTruth, cfr, read_index, write_audio_only, write_video

from framedex.errors import ConfigError, DecodeError, UnknownNameError, VideoOpenError
from framedex.indexer.decode import get_decoder_class, list_decoders, open_video, resolve_decoder


def _backends() -> list:
    """Every registered backend; GPU ones are marked ``gpu``, missing ones skipped."""
    params = []
    for name in list_decoders(available_only=False):
        cls = get_decoder_class(name)
        marks = [pytest.mark.gpu] if cls.device_frames else []
        if not cls.is_available():
            marks.append(pytest.mark.skip(reason=f"{name} is not installed or has no device"))
        params.append(pytest.param(name, marks=marks))
    return params


pytestmark = pytest.mark.parametrize("decoder", _backends())

NTSC = Fraction(30000, 1001)


def _vfr_pts() -> list[Fraction]:
    """Alternating 1/30 s and 1/10 s gaps, then a rate change to steady 1/15 s gaps."""
    pts, t = [], Fraction(0)
    for i in range(40):
        pts.append(t)
        t += Fraction(1, 30) if i % 2 == 0 else Fraction(1, 10)
    for _ in range(20):
        pts.append(t)
        t += Fraction(1, 15)
    return pts


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, VideoTruth]:
    d = tmp_path_factory.mktemp("decode_videos")
    return {
        "cfr25": cfr(d / "cfr25.mp4", Fraction(25), 4.0),
        "ntsc": cfr(d / "ntsc.mp4", NTSC, 3.5),
        "vfr": write_video(d / "vfr.mp4", _vfr_pts()),
        "start2": cfr(d / "start2.mp4", Fraction(25), 3.0, start=Fraction(2)),
        "start2_mkv": cfr(d / "start2.mkv", NTSC, 3.0, start=Fraction(2)),
    }


def expected_grid(v: VideoTruth, index_fps: Fraction) -> list[int]:
    """The grid, written out independently of the library, in exact arithmetic."""
    out: list[int] = []
    i = 0
    while Fraction(i) / index_fps < v.duration:
        t = Fraction(i) / index_fps
        if v.frame_rate is not None:
            x = t * v.frame_rate
            idx = math.ceil(x - Fraction(1, 2))  # round, exact .5 ties to the earlier frame
        else:
            idx = min(range(v.num_frames), key=lambda k: (abs(v.pts[k] - t), k))
        if idx < v.num_frames and (not out or idx != out[-1]):
            out.append(idx)
        i += 1
    return out


ALL = ["cfr25", "ntsc", "vfr", "start2", "start2_mkv"]


@pytest.mark.parametrize("name", ALL)
def test_info_matches_generator(decoder: str, videos: dict, name: str) -> None:
    v = videos[name]
    with open_video(v.path, decoder) as dec:
        info = dec.info
    assert info.decoder == decoder
    assert info.path == str(v.path)
    assert info.num_frames == v.num_frames
    assert (info.width, info.height) == (v.width, v.height)
    assert info.codec == "h264"
    assert info.start_sec == pytest.approx(float(v.start), abs=1e-3)
    assert info.is_vfr == (v.frame_rate is None)
    if v.frame_rate is not None:
        assert info.frame_rate == pytest.approx(float(v.frame_rate), rel=1e-6)
        assert info.duration == pytest.approx(v.duration, abs=1e-3)
    else:  # VFR: duration = last pts + last gap; average rate = num_frames / duration
        assert info.duration == pytest.approx(v.duration, abs=1e-3)
        assert info.frame_rate == pytest.approx(v.num_frames / v.duration, rel=1e-4)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("index_fps", [Fraction(1), Fraction(2)])
def test_index_grid_frames_and_pts(decoder: str, videos: dict, name: str,
                                   index_fps: Fraction) -> None:
    v = videos[name]
    with open_video(v.path, decoder) as dec:
        frames = list(dec.iter_index_frames(index_fps=float(index_fps)))
    want = expected_grid(v, index_fps)
    assert [f.frame_idx for f in frames] == want
    assert [f.pts_sec for f in frames] == pytest.approx([float(v.pts[i]) for i in want], abs=1e-3)
    assert [read_index(f.image) for f in frames] == want  # the pixels are that frame
    for f in frames:
        assert f.image.shape == (v.height, v.width, 3) and f.image.dtype == np.uint8


def test_index_grid_cfr_convention(decoder: str, videos: dict) -> None:
    """Second i maps to round(i * fps): 29.97 fps -> 0, 30, 60, 90 (BOLT's convention)."""
    with open_video(videos["ntsc"].path, decoder) as dec:
        assert [f.frame_idx for f in dec.iter_index_frames(1.0)] == [0, 30, 60, 90]
    with open_video(videos["cfr25"].path, decoder) as dec:  # 12.5 -> 12, 37.5 -> 37
        assert [f.frame_idx for f in dec.iter_index_frames(2.0)][:4] == [0, 12, 25, 37]


def test_index_grid_max_side_downsizes(decoder: str, videos: dict) -> None:
    v = videos["start2"]
    with open_video(v.path, decoder) as dec:
        frames = list(dec.iter_index_frames(index_fps=2.0, max_side=32))
    assert {f.image.shape for f in frames} == {(24, 32, 3)}
    assert [read_index(f.image) for f in frames] == [f.frame_idx for f in frames]


@pytest.mark.parametrize("name", ["cfr25", "vfr", "start2_mkv"])
def test_get_frames_any_order_with_duplicates(decoder: str, videos: dict, name: str) -> None:
    v = videos[name]
    want = [v.num_frames - 1, 3, 3, 0, 17, v.num_frames // 2, 1]
    with open_video(v.path, decoder) as dec:
        imgs = dec.get_frames(want)
        small = dec.get_frames([5, 2], max_side=16)
        assert dec.get_frames([]) == []
    assert [read_index(im) for im in imgs] == want
    assert [im.shape for im in small] == [(12, 16, 3)] * 2
    assert [read_index(im) for im in small] == [5, 2]


def test_get_frames_out_of_range(decoder: str, videos: dict) -> None:
    v = videos["cfr25"]
    with open_video(v.path, decoder) as dec:
        for bad in (v.num_frames, -1):
            with pytest.raises(ConfigError, match=rf"frame_idx={bad}.*\[0, {v.num_frames}\)"):
                dec.get_frames([0, bad])
        with pytest.raises(ConfigError, match="index_fps"):
            next(dec.iter_index_frames(index_fps=0))


def test_backends_agree(decoder: str, videos: dict) -> None:
    others = [d for d in list_decoders() if d != decoder]
    if not others:
        pytest.skip("only one backend installed")
    for name in ALL:
        results = {}
        for d in [decoder, *others]:
            with open_video(videos[name].path, d) as dec:
                info = dec.info
                grid = [(f.frame_idx, f.pts_sec) for f in dec.iter_index_frames(2.0, max_side=32)]
            results[d] = (info, grid)
        ref_info, ref_grid = results[decoder]
        for d in others:
            info, grid = results[d]
            assert [g[0] for g in grid] == [g[0] for g in ref_grid], (name, d)
            assert [g[1] for g in grid] == pytest.approx([g[1] for g in ref_grid], abs=1e-3)
            for field in ("num_frames", "width", "height", "is_vfr", "codec"):
                assert getattr(info, field) == getattr(ref_info, field), (name, d, field)
            assert info.frame_rate == pytest.approx(ref_info.frame_rate, rel=1e-3)


def _bad(tmp_path: Path, videos: dict, kind: str) -> Path:
    src = videos["cfr25"].path
    if kind == "missing":
        return tmp_path / "nope.mp4"
    p = tmp_path / f"{kind}.mp4"
    if kind == "text":
        p.write_text("this is not a video\n" * 50)
    elif kind == "truncated":
        data = src.read_bytes()
        p.write_bytes(data[: int(len(data) * 0.3)])
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "audio":
        p = write_audio_only(tmp_path / "audio.m4a")
    return p


@pytest.mark.parametrize(("kind", "reason"), [
    ("missing", "does not exist"), ("text", "not a readable media file|ERROR opening|cannot"),
    ("truncated", "truncated|corrupt|moov|cannot"), ("empty", "empty"),
    ("audio", "no video stream|video stream"),
])
def test_bad_files_raise_clear_errors(decoder: str, videos: dict, tmp_path: Path,
                                      kind: str, reason: str) -> None:
    path = _bad(tmp_path, videos, kind)
    with pytest.raises(VideoOpenError, match=reason) as ei, open_video(path, decoder) as dec:
        list(dec.iter_index_frames(1.0))
    assert str(path) in str(ei.value)


def test_truncated_mid_stream_fails_cleanly(decoder: str, tmp_path: Path) -> None:
    """Index up front, data cut at 60%: open or decode must raise, never hang or return junk."""
    v = cfr(tmp_path / "fs.mp4", Fraction(25), 4.0, faststart=True)
    cut = tmp_path / "fs_cut.mp4"
    data = v.path.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            with open_video(cut, decoder) as dec:
                outcome["frames"] = [read_index(f.image) for f in dec.iter_index_frames(5.0)]
        except VideoOpenError as ex:  # DecodeError is a VideoOpenError
            outcome["error"] = ex

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout=20)
    assert not t.is_alive(), f"{decoder} hung on a truncated file"
    assert "error" in outcome, f"{decoder} returned {outcome.get('frames')} for a truncated file"
    assert str(cut) in str(outcome["error"])
    assert isinstance(outcome["error"], (VideoOpenError, DecodeError))


def test_unknown_decoder_name(decoder: str, videos: dict) -> None:
    with pytest.raises(UnknownNameError, match=f"Did you mean '{decoder}'"):
        open_video(videos["cfr25"].path, decoder + "x")
    assert resolve_decoder(decoder) == decoder
    assert resolve_decoder("auto") in list_decoders()


def test_mpegts_right_frames_or_clear_refusal(decoder: str, tmp_path: Path) -> None:
    """MPEG-TS: timestamp seeks are inexact and decord mis-reads it; never return wrong frames."""
    v = cfr(tmp_path / "ntsc.ts", NTSC, 3.0)
    try:
        dec = open_video(v.path, decoder)
    except VideoOpenError as ex:
        assert "MPEG-TS" in str(ex) and str(v.path) in str(ex)
        return
    with dec:
        frames = list(dec.iter_index_frames(2.0))
        picked = dec.get_frames([v.num_frames - 1, 0, 13, 40])
    want = expected_grid(v, Fraction(2))
    assert [f.frame_idx for f in frames] == want
    assert [read_index(f.image) for f in frames] == want
    assert [f.pts_sec for f in frames] == pytest.approx([float(v.pts[i]) for i in want], abs=1e-3)
    assert [read_index(im) for im in picked] == [v.num_frames - 1, 0, 13, 40]
