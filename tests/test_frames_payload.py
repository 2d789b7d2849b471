"""Frame delivery, VLM payloads, the cost line and the selection plot.

One generated video (640x360, 10 fps) with three 2-second scenes on black, white and gray
backgrounds: the background a decoded frame shows tells which time it came from.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from framedex.errors import ConfigError, UnknownNameError, VideoOpenError
from framedex.indexer.decode import get_decoder_class, list_decoders
from framedex.query.frames import (
    MIN_TIER_SIDE,
    decode_frames,
    frame_filename,
    target_size,
    tier_max_side,
    to_data_url,
    to_jpeg,
    write_frames,
)
from framedex.query.payload import build_payload, cost_line, gemini_payload, openai_payload
from framedex.query.plot import plot_selection

W, H, FPS = 640, 360, 10
SCENES = [("black", 0), ("white", 255), ("gray", 128)]  # background, its grey level; 2 s each
SPEC = {
    "fps": FPS, "size": [W, H], "seed": 0, "crf": 18,
    "scenes": [{"duration": 2.0, "background": bg,
                "objects": [{"shape": "circle", "color": "red", "size": 0.1}]}
               for bg, _ in SCENES],
}
BACKENDS = [n for n in list_decoders() if get_decoder_class(n).is_available()]


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    from framedex.synth import render

    out = tmp_path_factory.mktemp("frames") / "scenes.mp4"
    render(SPEC, out)
    return out


def level(img: np.ndarray) -> float:
    """Median grey level: the background (the small circle does not move the median)."""
    return float(np.median(img))


# ---- frames ------------------------------------------------------------------------------

@pytest.mark.parametrize("decoder", BACKENDS)
def test_decode_returns_the_requested_frames_in_requested_order(video, decoder):
    # 0.5 s is black, 2.5 s white, 4.5 s gray; any order, duplicates allowed.
    imgs = decode_frames(video, [45, 5, 25, 5], decoder=decoder)
    assert [level(im) for im in imgs] == pytest.approx([128, 0, 255, 0], abs=12)
    assert all(im.shape == (H, W, 3) and im.dtype == np.uint8 for im in imgs)


def test_tiers_follow_qframe_scales(video):
    imgs = decode_frames(video, [5, 25, 45, 45], tiers=["high", "mid", "low", None])
    # high: the untiered size (no max_side here: native); mid, low: 1/4, 1/8 of 640x360
    assert [im.shape[:2] for im in imgs] == [(360, 640), (90, 160), (45, 80), (360, 640)]
    assert [level(im) for im in imgs] == pytest.approx([0, 255, 128, 128], abs=12)


def test_max_side_and_width_cap_the_size(video):
    (a,) = decode_frames(video, [5], max_side=100)
    assert max(a.shape[:2]) == 100 and abs(a.shape[0] - 56) <= 1
    (b,) = decode_frames(video, [5], width=200)
    assert b.shape[1] == 200 and abs(b.shape[0] - 112.5) <= 1
    (c,) = decode_frames(video, [5], max_side=2000)  # never upscales
    assert c.shape[:2] == (H, W)
    # the tier and max_side both cap; the smaller wins
    (d,) = decode_frames(video, [5], max_side=100, tiers=["high"])
    assert max(d.shape[:2]) == 100


def test_tier_max_side_values_and_floor():
    # high is the untiered size, the one delivery sends (a 128 px video's high frames were
    # 64 px when the helper said 1/2 and delivery sent 128)
    assert [tier_max_side(1920, 1080, t) for t in ("high", "mid", "low")] == [1920, 480, 240]
    assert tier_max_side(128, 128, "high") == target_size(128, 128, tier="high")[0] == 128
    assert tier_max_side(320, 240, "low") == MIN_TIER_SIDE == 64  # 40 px would be unreadable
    assert tier_max_side(48, 40, "low") == 48  # the floor never upscales past native
    with pytest.raises(ConfigError, match="tier='hi' is invalid: must be one of high, mid, low"):
        tier_max_side(640, 360, "hi")


def test_decode_errors_name_the_problem(video, tmp_path):
    rule = r"frame_idx=60 is invalid: must be an integer in \[0, 60\)"  # 6 s x 10 fps
    with pytest.raises(ConfigError, match=rule):
        decode_frames(video, [3, 60])
    with pytest.raises(ConfigError, match="tiers"):
        decode_frames(video, [3, 4], tiers=["high"])
    with pytest.raises(VideoOpenError, match="does not exist"):
        decode_frames(tmp_path / "missing.mp4", [0])
    assert decode_frames(video, []) == []


def test_jpeg_round_trip_and_data_url(video):
    (img,) = decode_frames(video, [25], tiers=["mid"])
    data = to_jpeg(img, quality=85)
    back = Image.open(io.BytesIO(data))
    assert back.format == "JPEG" and back.size == (160, 90)
    assert level(np.asarray(back.convert("RGB"))) == pytest.approx(255, abs=12)
    url = to_data_url(data)
    assert url.startswith("data:image/jpeg;base64,")
    assert base64.b64decode(url.split(",", 1)[1], validate=True) == data
    assert len(to_jpeg(img, quality=30)) < len(to_jpeg(img, quality=95))


def test_jpeg_rejects_bad_inputs():
    with pytest.raises(ConfigError, match="quality=0 is invalid"):
        to_jpeg(np.zeros((8, 8, 3), np.uint8), quality=0)
    with pytest.raises(ConfigError, match="H x W x 3 uint8"):
        to_jpeg(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ConfigError, match="use to_jpeg"):
        to_data_url(b"\x89PNG....")


def test_write_frames_names_carry_timestamps(video, tmp_path):
    imgs = decode_frames(video, [5, 45], max_side=128)
    paths = write_frames(tmp_path / "out", imgs, [0.5, 123.5], [5, 3705])
    assert [p.name for p in paths] == ["0001_t000000.500s_f5.jpg", "0002_t000123.500s_f3705.jpg"]
    assert frame_filename(3, 123.5, 3705) == "0003_t000123.500s_f3705.jpg"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in paths]
    with Image.open(paths[1]) as im:
        assert im.size == (128, 72)
    with pytest.raises(ConfigError, match="one entry per image"):
        write_frames(tmp_path / "x", imgs, [0.5], [5, 45])


# ---- payloads ----------------------------------------------------------------------------

def validate_openai(body: dict) -> None:
    """Validate a request body with the openai package's own types, all the way down.

    pydantic validates ``Iterable[...]`` fields lazily, so the messages and each message's
    content parts are consumed here; otherwise a bad part would pass unnoticed.
    """
    from openai.types.chat import ChatCompletionContentPartParam, ChatCompletionMessageParam
    from openai.types.chat.completion_create_params import CompletionCreateParamsNonStreaming
    from pydantic import TypeAdapter

    TypeAdapter(CompletionCreateParamsNonStreaming).validate_python(body)
    messages = TypeAdapter(ChatCompletionMessageParam)
    parts = TypeAdapter(ChatCompletionContentPartParam)
    for msg in body["messages"]:
        list(messages.validate_python(msg).get("content") or [])
        if isinstance(msg["content"], list):
            for part in msg["content"]:
                parts.validate_python(part)
    json.dumps(body)  # JSON-ready


@pytest.fixture(scope="module")
def jpegs(video) -> list[bytes]:
    return [to_jpeg(im) for im in decode_frames(video, [5, 25, 45], max_side=96)]


def test_openai_payload_validates_and_orders_frames_by_time(jpegs):
    # Given out of time order: the payload must send them sorted, images with their times.
    body = openai_payload([jpegs[2], jpegs[0], jpegs[1]], [4.5, 0.5, 2.5], "What changes?",
                          model="qwen2.5-vl", tiers=["low", "high", None], max_tokens=64,
                          duration_sec=6.0, system="Answer briefly.")
    validate_openai(body)
    assert body["model"] == "qwen2.5-vl" and body["max_tokens"] == 64
    assert body["messages"][0] == {"role": "system", "content": "Answer briefly."}
    content = body["messages"][1]["content"]
    images = [p for p in content if p["type"] == "image_url"]
    assert len(images) == 3
    assert [p["image_url"]["url"] for p in images] == [to_data_url(j) for j in jpegs]
    assert [p["image_url"]["detail"] for p in images] == ["high", "auto", "low"]
    texts = [p["text"] for p in content if p["type"] == "text"]
    assert texts[0].startswith("Below are 3 frames of a 6.0s video")
    assert texts[1:-1] == ["Frame 1 at 0.5s:", "Frame 2 at 2.5s:", "Frame 3 at 4.5s:"]
    assert content[-1] == {"type": "text", "text": "What changes?"}
    # each label comes right before its image
    for i, part in enumerate(content):
        if part["type"] == "image_url":
            assert content[i - 1]["text"].startswith("Frame ")


def test_openai_validation_catches_a_bad_shape(jpegs):
    from pydantic import ValidationError

    body = openai_payload(jpegs[:1], [0.5], "q?")
    body["messages"][0]["content"][2]["image_url"]["detail"] = "medium"
    with pytest.raises(ValidationError):
        validate_openai(body)


def test_openai_payload_accepts_arrays_and_urls_and_long_clock(video):
    (img,) = decode_frames(video, [5], max_side=64)
    body = openai_payload([img, "https://example.com/f.jpg"], [3725.25, 61.0], "q?", intro="")
    validate_openai(body)
    content = body["messages"][0]["content"]
    assert content[0]["text"] == "Frame 1 at 61.0s (1:01):"
    assert content[1]["image_url"]["url"] == "https://example.com/f.jpg"
    assert content[2]["text"] == "Frame 2 at 3725.2s (1:02:05):"
    assert content[3]["image_url"]["url"].startswith("data:image/jpeg;base64,")


def test_payload_errors():
    with pytest.raises(ConfigError, match="need at least one frame"):
        openai_payload([], [], "q?")
    with pytest.raises(ConfigError, match="timestamps"):
        openai_payload([b"\xff\xd8x"], [1.0, 2.0], "q?")
    with pytest.raises(ConfigError, match="question"):
        openai_payload([b"\xff\xd8x"], [1.0], "  ")
    with pytest.raises(UnknownNameError, match="Did you mean 'gemini'"):
        build_payload("gemeni", [b"\xff\xd8x"], [1.0], "q?")


def test_gemini_payload_shape(jpegs):
    body = gemini_payload([jpegs[1], jpegs[0]], [2.5, 0.5], "Which colour?", system="Be brief.")
    json.dumps(body)
    assert set(body) == {"contents", "system_instruction"}
    assert body["system_instruction"] == {"parts": [{"text": "Be brief."}]}
    (turn,) = body["contents"]
    assert turn["role"] == "user"
    parts = turn["parts"]
    inline = [p["inline_data"] for p in parts if "inline_data" in p]
    assert len(inline) == 2 and all(d["mime_type"] == "image/jpeg" for d in inline)
    assert [base64.b64decode(d["data"], validate=True) for d in inline] == jpegs[:2]
    assert [p["text"] for p in parts if "text" in p][1:] == [
        "Frame 1 at 0.5s:", "Frame 2 at 2.5s:", "Which colour?"]
    assert all(set(p) in ({"text"}, {"inline_data"}) for p in parts)
    # a data URL is unpacked to its base64, the same bytes
    again = build_payload("gemini", [to_data_url(jpegs[0])], [0.5], "q?", intro="")
    assert again["contents"][0]["parts"][1]["inline_data"]["data"] == inline[0]["data"]


# ---- cost line ---------------------------------------------------------------------------

def test_cost_line_thirty_minute_video():
    c = cost_line(8, None, 1800.0)
    assert c["whole_video_tokens_gemini"] == 1800 * 258 == 464_400
    assert c["selection_tokens_gemini"] == 8 * 258
    assert c["whole_video_tokens_qwen"] == 3600 * 128  # 2 fps, 448x448, 2-frame merge
    assert c["selection_tokens_qwen"] == 8 * 256
    assert c["savings_x_gemini"] == pytest.approx(225.0)
    assert c["fraction_gemini"] == pytest.approx(2064 / 464_400)
    assert "464,400" in c["text"] and "225x fewer" in c["text"] and "30:00" in c["text"]
    json.dumps(c)


def test_cost_line_uses_tokens_used_and_tiers():
    c = cost_line(3, 500, 10.5, tiers=["high", "mid", "low"])
    assert c["selection_tokens_gemini"] == 500  # the sampler's own count wins
    assert c["selection_tokens_qwen"] == 256 + 64 + 16
    assert c["whole_video_tokens_gemini"] == 11 * 258  # frames at 0..10 s
    assert c["whole_video_tokens_qwen"] == 22 * 128  # 21 frames padded to 22
    assert cost_line(3, None, 10.0, ["high", "mid", "low"])["selection_tokens_gemini"] == 454
    with pytest.raises(ConfigError, match="duration_sec"):
        cost_line(3, None, 0.0)
    with pytest.raises(ConfigError, match="tiers"):
        cost_line(3, None, 10.0, ["high"])


# ---- plot --------------------------------------------------------------------------------

def test_plot_selection_writes_a_png(video, tmp_path):
    ts = np.arange(0, 6.0, 0.5)
    scores = np.where((ts >= 2) & (ts < 4), 0.3, 0.2)
    chosen = [1, 5, 6, 10]
    tiers = ["low", "high", "high", "low"]
    thumbs = decode_frames(video, [int(ts[p] * FPS) for p in chosen], tiers=tiers)
    png = plot_selection(timestamps=ts, scores=scores, chosen_positions=chosen,
                         boundaries=[2.0, 4.0], thumbnails=thumbs, tiers=tiers,
                         title="white scenes", dpi=50)
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG" and im.size[0] == 600  # 12 in x 50 dpi
        with_sheet = im.size[1]
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.std() > 10  # something was drawn
    bare = plot_selection(timestamps=ts, scores=None, chosen_positions=chosen, dpi=50)
    with Image.open(io.BytesIO(bare)) as im:
        assert im.size[0] == 600 and im.size[1] < with_sheet
    with pytest.raises(ConfigError, match="thumbnails"):
        plot_selection(timestamps=ts, scores=scores,
                       chosen_positions=chosen, thumbnails=thumbs[:2])
