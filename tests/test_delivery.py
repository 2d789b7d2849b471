"""One delivery step for every face: tiers honoured in the API as in the CLI, the video's own
decoder, the plot from the curve the selection carries, and the request as it was made."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import httpx
import pytest
from api_server import ThreadServer
from PIL import Image
from typer.testing import CliRunner

from framedex import Library
from framedex.cli import app
from framedex.errors import UnknownNameError
from framedex.synth import haystack_spec, render

NEEDLE = {"time": 20.0, "duration": 4.0, "background": "white",
          "objects": [{"shape": "star", "color": "purple"}]}
#: Size per tier of a 640 x 360 video: high is the untiered size (the default --max-side /
#: frame_max_side, 512, on every face), mid and low 1/4 and 1/8 of 640 (at least 64 px).
TIER_SIZE = {"high": (512, 288), "mid": (160, 90), "low": (80, 45)}


@pytest.fixture(scope="module")
def wide(tmp_path_factory) -> tuple[Library, str, str]:
    """A 40 s, 640 x 360 video with a purple-star needle, indexed with the shipped model."""
    root = tmp_path_factory.mktemp("wide")
    path = root / "wide.mp4"
    render(haystack_spec(40.0, [NEEDLE], seed=4, fps=5, size=[640, 360]), path)
    lib = Library(root / "db", model="synthetic-shapes", device="cpu")
    vid = lib.index([path]).by_status("indexed")[0].video_id
    return lib, str(path), vid


@pytest.fixture(scope="module")
def server(wide):
    from framedex.api.settings import Settings

    lib, _, _ = wide
    with ThreadServer(Settings(db=lib.uri, device="cpu", default_sampler="bolt")) as srv:
        yield srv


def _sizes(data_urls: list[str]) -> list[tuple[int, int]]:
    import base64

    out = []
    for url in data_urls:
        with Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) as im:
            out.append(im.size)
    return out


@pytest.mark.parametrize("sampler", ["router", "qframe"])
def test_the_api_sends_each_frame_at_its_tier(server, wide, sampler):
    _, _, vid = wide
    r = httpx.post(f"{server.base}/v1/videos/{vid}/select", timeout=60, json={
        "question": "a purple star", "sampler": sampler, "tokens": 1000,
        "include": ["frames", "payload"]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["budget"] is None and out["tokens"] == 1000
    assert out["tokens_used"] <= 1000 and len(out["tiers"]) == len(out["frames"])
    expected = [TIER_SIZE[t] for t in out["tiers"]]
    assert _sizes(out["frames"]) == expected == [tuple(s) for s in out["frame_sizes"]]
    images = [p["image_url"]["url"] for p in out["payload"]["messages"][0]["content"]
              if p["type"] == "image_url"]
    assert sorted(_sizes(images)) == sorted(expected)  # the payload carries the same pixels


def test_the_cli_writes_the_same_tiered_frames(wide, tmp_path):
    lib, path, _ = wide
    res = CliRunner().invoke(app, ["select", path, "a purple star", "--db", lib.uri,
                                   "--sampler", "router", "--tokens", "1000",
                                   "--frames-out", str(tmp_path / "f"), "--json"])
    assert res.exit_code == 0, res.stderr
    out = json.loads(res.stdout)
    sizes = []
    for f in out["frames"]:
        with Image.open(f) as im:
            sizes.append(im.size)
    assert sizes == [TIER_SIZE[t] for t in out["tiers"]]


def test_a_token_request_is_reported_and_logged_as_tokens(server, wide):
    lib, _, vid = wide
    r = httpx.post(f"{server.base}/v1/videos/{vid}/select", timeout=60,
                   json={"question": "when is the star?", "tokens": 777})
    assert r.json()["budget"] is None and r.json()["tokens"] == 777
    httpx.post(f"{server.base}/v1/videos/{vid}/select", timeout=60,
               json={"question": "when is the star?", "budget": 3})
    httpx.get(f"{server.base}/health")  # any request; the log flushes within a second
    import time

    deadline = time.monotonic() + 10
    while True:
        rows = lib.sql("SELECT budget, tokens FROM query_log WHERE query = 'when is the star?' "
                       "ORDER BY ts").to_pylist()
        if len(rows) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert rows == [{"budget": None, "tokens": 777}, {"budget": 3, "tokens": None}]


def test_samplers_reports_the_default_the_server_runs(server, wide):
    _, _, vid = wide
    listing = httpx.get(f"{server.base}/v1/samplers").json()
    assert listing["default"] == "bolt"
    bolt = next(s for s in listing["samplers"] if s["name"] == "bolt")
    assert {p["name"] for p in bolt["params"]} == {"power", "dedupe"}
    ran = httpx.post(f"{server.base}/v1/videos/{vid}/select", timeout=60,
                     json={"question": "a star"}).json()
    assert ran["sampler"] == "bolt"


def test_an_unknown_decoder_is_one_error_before_any_file(wide, tmp_path):
    _lib, path, _ = wide
    fresh = Library(tmp_path / "db", model="synthetic-shapes", device="cpu")
    with pytest.raises(UnknownNameError, match=r"unknown decoder 'bogus'.*pyav"):
        fresh.index([path, path], decoder="bogus")
    assert not (tmp_path / "db").exists()


def test_a_third_party_decoder_also_delivers_the_frames_it_indexed(tmp_path, wide):
    from framedex.indexer.decode import register_decoder, unregister_decoder
    from framedex.indexer.decode.pyav import PyAVDecoder

    opened: list[str] = []

    @register_decoder("pyav-plugin")
    class PluginDecoder(PyAVDecoder):
        def __init__(self, path, **kw):
            # delivery hands decoders its checked, open descriptor (/proc/self/fd/N): the file
            # behind it is the indexed one
            opened.append(os.path.realpath(path))
            super().__init__(path, **kw)

    try:
        _, path, _ = wide
        lib = Library(tmp_path / "db", model="synthetic-shapes", device="cpu")
        vid = lib.index([path], decoder="pyav-plugin").by_status("indexed")[0].video_id
        assert lib.video(vid).decoder == "pyav-plugin"
        opened.clear()
        out = lib.deliver(lib.select(vid, "a purple star", budget=3), include=("frames",))
        assert len(out.jpegs) == 3 and opened == [str(Path(path).resolve())]
    finally:
        unregister_decoder("pyav-plugin")


def test_the_plot_comes_from_the_selection_without_a_second_encode(wide, monkeypatch):
    lib, path, _ = wide
    res = lib.select(path, "a purple star", sampler="aks", budget=8)
    encoder = lib._query_encoder()

    def no_second_encode(texts):
        raise AssertionError("delivery encoded the question again")

    monkeypatch.setattr(encoder, "encode_text", no_second_encode)
    out = lib.deliver(res, include=("plot", "payload"))
    assert out.plot_png is not None and out.plot_png[:8] == b"\x89PNG\r\n\x1a\n"
    assert res.curve is not None and len(res.curve.scores) == res.num_frames == 40
    best = float(res.curve.pts_sec[res.curve.scores.argmax()])
    assert NEEDLE["time"] <= best < NEEDLE["time"] + NEEDLE["duration"]


#: Selects 10,000 of a 12,000-frame curve (the API's largest budget) and delivers the plot,
#: in a fresh process: prints the seconds and the peak RSS the delivery added. The frames are
#: the indexed video's, repeated (``frame_idx`` cycles through its native frames).
PLOT_AT_10K = r"""
import json, sys, time
import numpy as np
from framedex import Library
from framedex.query.samplers import create_sampler
from framedex.query.select import select_frames
from framedex.store import FrameArrays

db, vid = sys.argv[1:3]
lib = Library(db, log_queries=False)
record, cached, _ = lib.embeddings(vid)
n = 12_000
rng = np.random.default_rng(0)
vectors = rng.standard_normal((n, cached.vectors.shape[1])).astype(np.float32)
vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
frames = FrameArrays(vid, np.arange(n, dtype=np.int32),
                     cached.frame_idx[np.arange(n) % len(cached.frame_idx)],
                     np.arange(n) / 100.0, vectors)
result = select_frames(frames, record, vectors[123], create_sampler("topk"), 10_000,
                       question="when is the purple star?")
def status(key):  # VmRSS / VmHWM of this process, MB (ru_maxrss would carry the parent's
    with open("/proc/self/status") as fh:  # peak across fork + exec on Linux)
        return next(int(ln.split()[1]) for ln in fh if ln.startswith(key)) / 1024
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # reset the peak to the current RSS
before, t0 = status("VmRSS"), time.perf_counter()
out = lib.deliver(result, include=("plot",))
print(json.dumps({"seconds": time.perf_counter() - t0, "added_mb": status("VmHWM") - before,
                  "peak_mb": status("VmHWM"), "png_bytes": len(out.plot_png),
                  "chosen": len(result.indices)}))
sys.stdout.flush()
open(sys.argv[3], "wb").write(out.plot_png)
"""


def test_a_plot_at_budget_10000_is_bounded_in_time_and_memory(wide, tmp_path):
    """`POST .../select {"budget": N, "include": ["plot"]}` on a 12,000-frame video took 92.6 s
    at N = 1,000 and was still running after 11 minutes at N = 10,000, RSS 2 -> 8.1 GB (issue
    27). The plot now shows a sheet of at most MAX_SHEET frames and draws the K markers as one
    collection: bounded whatever the budget."""
    import subprocess
    import sys

    from framedex.query.plot import MAX_SHEET

    lib, _, vid = wide
    png = tmp_path / "plot.png"
    proc = subprocess.run([sys.executable, "-c", PLOT_AT_10K, lib.uri, vid, str(png)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = json.loads(proc.stdout)
    assert m["chosen"] == 10_000
    assert m["seconds"] < 20 and m["added_mb"] < 300, m  # measured: 1.7-2.1 s, 116 MB
    with Image.open(png) as im:
        width, height = im.size
    rows = -(-MAX_SHEET // 8)
    assert width <= 12 * 110 and height <= (4 + rows * 1.9) * 110, im.size  # a bounded sheet
