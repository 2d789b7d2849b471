"""The HTTP API end to end: a real uvicorn server on loopback, driven with httpx.

Ingest a generated video (upload and server-side path), poll the job, search, select with
three samplers, fetch and decode frames, read embeddings, embed text and an image, delete; and
a server killed with SIGKILL during an ingest recovers the job on restart without ever showing
a partial video.
"""

from __future__ import annotations

import base64
import io
import shutil
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from api_server import ThreadServer, kill9, model_spec, poll_job, start_cli_server

pytestmark = pytest.mark.heavy  # servers, clusters or processes: not in make test-fast

KEY = "test-key-0123456789"
SPEC = {
    "fps": 10, "size": [64, 48], "seed": 0,
    "scenes": [
        {"duration": 4.0, "background": "black", "objects": [{"shape": "circle", "color": "red"}]},
        {"duration": 3.0, "background": "white", "objects": [{"shape": "star", "color": "blue"}]},
    ],
}


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    from framedex.synth import render

    root = tmp_path_factory.mktemp("media")
    render(SPEC, root / "shapes.mp4")
    render(dict(SPEC, seed=5, scenes=SPEC["scenes"][::-1]), root / "other.mp4")
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model, media):
    from framedex.api.settings import Settings

    settings = Settings(db=str(tmp_path_factory.mktemp("db") / "lib.db"),
                        model=model_spec(tiny_model), device="cpu", api_key=KEY,
                        allow_roots=(str(media),), max_upload_bytes=5 << 20)
    with ThreadServer(settings) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {KEY}"},
                      timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def indexed(client, media) -> dict:
    """Upload one video, ingest the other by path; both jobs done."""
    with open(media / "shapes.mp4", "rb") as fh:
        r = client.post("/v1/videos", files={"file": ("shapes.mp4", fh, "video/mp4")},
                        data={"fps": "2", "metadata": '{"camera": "a"}'})
    assert r.status_code == 202, r.text
    assert r.json()["status"] in ("queued", "running", "done")
    up = poll_job(client, r.json()["job_id"])
    r = client.post("/v1/videos", json={"path": str(media / "other.mp4"), "fps": 1})
    assert r.status_code == 202, r.text
    by_path = poll_job(client, r.json()["job_id"])
    assert up["status"] == by_path["status"] == "done", (up, by_path)
    assert up["progress"] == 1.0
    return {"upload": up["video_id"], "path": by_path["video_id"], "job": up["job_id"]}


def test_health_is_open_and_names_the_encoder(server):
    r = httpx.get(f"{server.base}/health")  # no key
    assert r.status_code == 200
    body = r.json()
    assert body["version"] and body["encoder"]["dim"] > 0
    assert body["store"]["name"] == "lib.db"  # the folder's name, never the server path
    assert httpx.get(f"{server.base}/docs").status_code == 200
    # the text cache is bounded by a count: it said "bytes" for its number of entries
    text, frames = body["cache"]["text"], body["cache"]["frames"]
    assert "bytes" not in text and text["max_entries"] == 1024 and "entries" in text
    assert frames["max_bytes"] == 256 << 20 and "max_entries" not in frames


def test_ingest_lists_videos_with_their_metadata(client, indexed):
    page = client.get("/v1/videos", params={"limit": 1}).json()
    assert page["count"] == 2 and len(page["data"]) == 1
    video = client.get(f"/v1/videos/{indexed['upload']}").json()
    assert video["num_indexed"] == 14  # 7 s at fps=2
    assert video["duration"] == pytest.approx(7.0, abs=0.15)
    assert video["metadata"] == {"camera": "a"}
    assert (video["width"], video["height"]) == (64, 48)
    assert client.get(f"/v1/videos/{indexed['path']}").json()["num_indexed"] == 7
    # an upload keeps the name it was sent with (after its job id): `videos` and the viewer
    # show the user's file, not `4f1c....mp4`
    assert video["path"] == f"uploads/{indexed['job']}-shapes.mp4"


def test_search_returns_moments_inside_indexed_videos(client, indexed):
    r = client.post("/v1/search", json={"text": "a red circle", "limit": 5})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results and {m["video_id"] for m in results} <= {indexed["upload"], indexed["path"]}
    assert all(0 <= m["start"] <= m["end"] <= 7.1 for m in results)
    r = client.post("/v1/search", json={"text": "a red circle", "group_by": "video",
                                        "filters": {"metadata": {"camera": "a"}}})
    assert [v["video_id"] for v in r.json()["results"]] == [indexed["upload"]]


@pytest.mark.parametrize("sampler", ["uniform", "topk", "bolt"])
def test_select_with_three_samplers(client, indexed, sampler):
    r = client.post(f"/v1/videos/{indexed['upload']}/select",
                    json={"question": "when is the blue star?", "sampler": sampler, "budget": 4})
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["sampler"] == sampler and len(res["indices"]) == 4
    assert res["indices"] == sorted(set(res["indices"]))
    assert all(0 <= t < 7.0 for t in res["timestamps"])
    # frame_idx is the native frame at 10 fps of each chosen pts_sec
    assert res["frame_idx"] == [round(t * 10) for t in res["timestamps"]]


def test_select_scores_match_embeddings_and_embed(client, indexed):
    question = "a white background"
    res = client.post(f"/v1/videos/{indexed['upload']}/select",
                      json={"question": question, "sampler": "topk", "budget": 3}).json()
    emb = client.get(f"/v1/videos/{indexed['upload']}/embeddings").json()
    q = np.array(client.post("/v1/embed", json={"text": question}).json()["vectors"][0])
    frames = np.array(emb["frames"]["vectors"])
    expected = frames[res["indices"]] @ q
    np.testing.assert_allclose(res["scores"], expected, atol=1e-2)
    # topk picks the best-scoring frames: no unchosen frame beats the worst chosen one
    others = np.delete(frames @ q, res["indices"])
    assert others.max() <= min(res["scores"]) + 1e-2


def test_select_includes_frames_payload_and_plot(client, indexed):
    from PIL import Image

    r = client.post(f"/v1/videos/{indexed['upload']}/select",
                    json={"question": "the red circle", "sampler": "uniform", "tokens": 600,
                          "include": ["frames", "payload", "plot"], "frame_max_side": 32})
    assert r.status_code == 200, r.text
    res = r.json()
    assert len(res["indices"]) == 600 // 66  # frames at the cheapest tier that fit
    assert len(res["frames"]) == len(res["indices"])
    first = Image.open(io.BytesIO(base64.b64decode(res["frames"][0].split(",", 1)[1])))
    assert first.format == "JPEG" and max(first.size) == 32
    images = [p for p in res["payload"]["messages"][-1]["content"] if p["type"] == "image_url"]
    assert len(images) == len(res["indices"])
    assert res["plot"].startswith("data:image/png;base64,")


def test_frame_jpeg_is_the_right_frame(client, indexed):
    from PIL import Image

    vid = indexed["upload"]
    dark = client.get(f"/v1/videos/{vid}/frames/10.jpg")  # t=1.0 s: black scene
    assert dark.status_code == 200 and dark.headers["content-type"] == "image/jpeg"
    img = Image.open(io.BytesIO(dark.content))
    assert img.size == (64, 48)
    light = client.get(f"/v1/videos/{vid}/frames/55.jpg", params={"width": 32})  # t=5.5 s
    small = Image.open(io.BytesIO(light.content))
    assert small.size == (32, 24)
    assert np.asarray(img).mean() < 80 < np.asarray(small).mean()
    missing = client.get(f"/v1/videos/{vid}/frames/11.jpg")  # exists natively, not indexed
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_embeddings_json_and_arrow_agree(client, indexed):
    import pyarrow as pa

    vid = indexed["upload"]
    js = client.get(f"/v1/videos/{vid}/embeddings").json()
    assert len(js["frames"]["pts_sec"]) == 14
    assert js["frames"]["pts_sec"] == sorted(js["frames"]["pts_sec"])
    norms = np.linalg.norm(np.array(js["frames"]["vectors"]), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-2)
    r = client.get(f"/v1/videos/{vid}/embeddings", params={"format": "arrow"})
    assert r.headers["content-type"] == "application/vnd.apache.arrow.stream"
    table = pa.ipc.open_stream(r.content).read_all()
    kinds = table.column("kind").to_pylist()
    assert kinds.count("frame") == 14 and kinds.count("segment") == len(js["segments"]["kind"])
    got = np.stack(table.column("vector").to_pylist()[:14])
    np.testing.assert_allclose(got, np.array(js["frames"]["vectors"]), atol=1e-6)


def test_embed_text_and_image(client, server):
    from PIL import Image

    dim = httpx.get(f"{server.base}/health").json()["encoder"]["dim"]
    r = client.post("/v1/embed", json={"text": ["a red circle", "a red circle", "blue star"]})
    assert r.status_code == 200, r.text
    v = np.array(r.json()["vectors"])
    assert v.shape == (3, dim) and r.json()["encoder"]["dim"] == dim
    assert np.allclose(v[0], v[1]) and not np.allclose(v[0], v[2])
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (255, 0, 0)).save(buf, format="PNG")
    r = client.post("/v1/embed", files={"image": ("red.png", buf.getvalue(), "image/png")})
    assert r.status_code == 200 and r.json()["kind"] == "image"
    assert np.linalg.norm(r.json()["vectors"][0]) == pytest.approx(1.0, abs=1e-3)


def test_delete_removes_video_but_keeps_job_history(client, indexed, media):
    vid = indexed["path"]
    assert client.delete(f"/v1/videos/{vid[:8]}").status_code == 404  # exact id only
    assert client.delete(f"/v1/videos/{vid}").status_code == 204
    r = client.get(f"/v1/videos/{vid}")
    assert r.status_code == 404 and r.json()["error"]["code"] in ("video_not_found",)
    assert client.post(f"/v1/videos/{vid}/select", json={"question": "x"}).status_code == 404
    assert client.get(f"/v1/jobs/{indexed['job']}").json()["status"] == "done"
    assert (media / "other.mp4").exists()  # a server-side path is never deleted


# -- restart during a running ingest ----------------------------------------------------------


@pytest.mark.slow
def test_kill9_during_ingest_recovers_the_job(tmp_path, tiny_model):
    from framedex.synth import random_spec, render

    roots = tmp_path / "media"
    roots.mkdir()
    video = roots / "long.mp4"
    render(random_spec(150, seed=2, fps=10, size=[64, 48]), video)  # 150 s -> 1500 frames
    db, spec = tmp_path / "lib.db", model_spec(tiny_model)
    proc, base = start_cli_server(db, spec, "--allow-root", str(roots))
    try:
        with httpx.Client(base_url=base, timeout=30) as c:
            job_id = c.post("/v1/videos", json={"path": str(video), "fps": 10}).json()["job_id"]
            deadline = time.monotonic() + 60
            running_since = None
            while True:
                assert c.get("/v1/videos").json()["count"] == 0  # nothing visible mid-ingest
                job = c.get(f"/v1/jobs/{job_id}").json()
                assert job["status"] in ("queued", "running") and time.monotonic() < deadline
                if job["status"] == "running":
                    running_since = running_since or time.monotonic()
                    if time.monotonic() - running_since > 0.5:  # well inside the run
                        break
                time.sleep(0.05)
    finally:
        kill9(proc)
    assert job["status"] == "running"

    proc, base = start_cli_server(db, spec, "--allow-root", str(roots))
    seen: list[tuple[int, list[int]]] = []
    try:
        with httpx.Client(base_url=base, timeout=30) as c:
            stop = threading.Event()

            def watch() -> None:  # every view of the library: empty, or the complete video
                while not stop.is_set():
                    page = c.get("/v1/videos").json()
                    seen.append((page["count"], [v["num_indexed"] for v in page["data"]]))
                    time.sleep(0.02)

            watcher = threading.Thread(target=watch)
            watcher.start()
            try:
                done = poll_job(c, job_id, timeout=120)
            finally:
                stop.set()
                watcher.join()
            assert done["status"] == "done", done
            assert done["attempts"] == 2  # one interrupted run, one complete run
            emb = c.get(f"/v1/videos/{done['video_id']}/embeddings").json()
            assert len(emb["frames"]["frame_idx"]) == 1500
            assert emb["frames"]["frame_idx"] == list(range(1500))
    finally:
        kill9(proc)
    assert seen and all(s in ((0, []), (1, [1500])) for s in seen), set(map(str, seen))


def test_job_interrupted_three_times_fails_with_a_reason(tmp_path, tiny_model, media):
    from framedex.api.jobs import Job
    from framedex.api.settings import Settings
    from framedex.store import LanceStore as Store

    db = tmp_path / "lib.db"
    store = Store(db)
    stale = Job(job_id="stale", source="path", path=str(media / "shapes.mp4"),
                params={"fps": 1.0}, status="running", attempts=3)
    store.upsert("jobs", "job_id", [stale.to_row()])
    copy = tmp_path / "copy.mp4"
    shutil.copy(media / "shapes.mp4", copy)
    requeue = Job(job_id="again", source="path", path=str(copy), params={"fps": 1.0},
                  status="running", attempts=1)
    store.upsert("jobs", "job_id", [requeue.to_row()])
    settings = Settings(db=str(db), model=model_spec(tiny_model), device="cpu")
    with ThreadServer(settings) as srv, httpx.Client(base_url=srv.base, timeout=30) as c:
        failed = c.get("/v1/jobs/stale").json()
        assert failed["status"] == "failed" and "interrupted 3 times" in failed["error"]
        assert poll_job(c, "again")["status"] == "done"
        assert c.get("/v1/jobs/again").json()["attempts"] == 2
