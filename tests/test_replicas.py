"""API replicas on one store, written as the failures were met: two `framedex serve --workers 2`
given the same upload, a CLI writer beside a server, a replica's staleness, and a server whose
store is deleted and rebuilt under it (it answered 500 until restarted).

After each: every video's live generation is complete and nothing is doubled
(``test_store_at_scale.assert_whole``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import httpx
import pytest
import s3_loopback
from api_server import free_port, kill9, poll_job, start_cli_server, wait_ready
from scale import assert_whole, cli

from framedex.store import LanceStore

pytestmark = pytest.mark.heavy  # servers, clusters or processes: not in make test-fast


def _serve(db: str, model: str, *extra: str, env: dict[str, str] | None = None
           ) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "framedex.cli", "serve", "--db", db, "--model", model,
           "--port", str(port), "--device", "cpu", "--create", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(env or os.environ, FRAMEDEX_API_KEY=""),
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, proc=proc)
    return proc, base


def test_two_replicas_with_two_workers_given_the_same_upload(scale_db, scale_videos, tiny_model,
                                                             tmp_path):
    """Two `framedex serve --workers 2` on one store, the same upload sent twice to each: it
    is indexed once, every job ends done, and both replicas list it and every job."""
    where, env, open_store = scale_db
    # on S3 the replicas need an upload scale_videos both can read (locally it is DB.uploads)
    extra = ["--upload-dir", str(tmp_path / "uploads")] if "://" in where else []
    a = _serve(where, tiny_model, "--workers", "2", *extra, env=env)
    b = _serve(where, tiny_model, "--workers", "2", *extra, env=env)
    try:
        data = (scale_videos / "v0.mp4").read_bytes()
        jobs = []
        for base in (a[1], b[1], a[1], b[1]):
            r = httpx.post(f"{base}/v1/videos", files={"file": ("v0.mp4", data)}, timeout=30)
            assert r.status_code == 202, r.text
            jobs.append(r.json()["job_id"])
        with httpx.Client(base_url=a[1], timeout=30) as ca, \
                httpx.Client(base_url=b[1], timeout=30) as cb:
            done = [poll_job(ca if i % 2 == 0 else cb, j, timeout=120)
                    for i, j in enumerate(jobs)]
            assert {d["status"] for d in done} == {"done"}, done
            assert len({d["video_id"] for d in done}) == 1
            time.sleep(1.5)  # the replicas' staleness
            for c in (ca, cb):
                assert c.get("/v1/videos").json()["count"] == 1
                listed = {j["job_id"] for j in c.get("/v1/jobs?limit=10").json()["data"]}
                assert listed == set(jobs)  # every job visible from every replica
                for j in jobs:
                    assert c.get(f"/v1/jobs/{j}").json()["status"] == "done"
    finally:
        kill9(a[0])
        kill9(b[0])
    assert_whole(open_store(), 1)


@pytest.mark.slow
def test_cli_and_api_writers_together(tmp_path, scale_videos, tiny_model):
    db = str(tmp_path / "lib.db")
    proc, base = _serve(db, tiny_model, "--workers", "2", "--allow-root", str(scale_videos))
    try:
        writer = cli("index", str(scale_videos), "--db", db, "--model", tiny_model, "--device",
                     "cpu", "--json")
        with httpx.Client(base_url=base, timeout=30) as c:
            jobs = [c.post("/v1/videos", json={"path": str(p)}).json()["job_id"]
                    for p in sorted(scale_videos.glob("*.mp4"))]
            out, err = writer.communicate(timeout=300)
            assert writer.returncode == 0, err
            done = [poll_job(c, j, timeout=120) for j in jobs]
        assert {d["status"] for d in done} == {"done"}, done
        report = json.loads(out)
        assert len(report["indexed"]) + len(report["unchanged"]) == 6
    finally:
        kill9(proc)
    assert_whole(LanceStore(db), 6)


@pytest.mark.slow
def test_a_replica_sees_a_video_indexed_elsewhere_within_its_staleness(s3_store, scale_videos,
                                                                      tiny_model):
    uri, options = s3_store
    env = dict(os.environ, **s3_loopback.environment(options["aws_endpoint"]))
    proc, base = _serve(uri, tiny_model, "--staleness", "1", env=env)
    try:
        with httpx.Client(base_url=base, timeout=30) as c:
            assert c.get("/v1/videos").json()["count"] == 0
            writer = cli("index", str(scale_videos / "v1.mp4"), "--db", uri, "--model", tiny_model,
                          "--device", "cpu", env=env)
            _out, err = writer.communicate(timeout=300)
            assert writer.returncode == 0, err
            t0 = time.monotonic()
            while c.get("/v1/videos").json()["count"] == 0:
                assert time.monotonic() - t0 < 1.0 + 1.5, "not visible within the staleness"
                time.sleep(0.05)
            hits = c.post("/v1/search", json={"text": "a red circle", "limit": 3,
                                                 "threshold": "none"}).json()
            assert hits["results"], hits
    finally:
        kill9(proc)


@pytest.mark.slow  # 20-36 s of `make test`: runs with the slow ones in CI
def test_a_server_whose_store_is_replaced_answers_503_then_recovers(tmp_path, scale_videos,
                                                                   tiny_model):
    """`make demo` again beside its running `serve`: the store scale_videos is deleted and built
    anew. Every search answered 500 until a restart; now 503 while it is gone, then the new
    store's answers, without a restart."""
    db = tmp_path / "lib.db"
    first = cli("index", str(scale_videos / "v0.mp4"), "--db", str(db), "--model", tiny_model,
                 "--device", "cpu")
    assert first.wait(timeout=300) == 0
    proc, base = start_cli_server(db, tiny_model)
    try:
        with httpx.Client(base_url=base, timeout=30) as c:
            body = {"text": "a red circle", "limit": 3, "threshold": "none"}  # a random model
            assert c.post("/v1/search", json=body).status_code == 200
            old = c.get("/v1/videos").json()["data"][0]["video_id"]
            shutil.rmtree(db)
            for route in ("/v1/videos", "/v1/search"):
                r = c.post(route, json=body) if route == "/v1/search" else c.get(route)
                assert r.status_code == 503, (route, r.status_code, r.text)
                assert r.json()["error"]["code"] == "store_unavailable"
            again = cli("index", str(scale_videos / "v2.mp4"), "--db", str(db), "--model",
                         tiny_model, "--device", "cpu")
            assert again.wait(timeout=300) == 0
            r = c.post("/v1/search", json=body)
            assert r.status_code == 200, r.text
            videos = c.get("/v1/videos").json()["data"]
            assert [v["video_id"] for v in videos] != [old] and len(videos) == 1
            assert {h["video_id"] for h in r.json()["results"]} == {videos[0]["video_id"]}
    finally:
        kill9(proc)


