"""The store at scale, written as the failures were met: any number of writers on a local
folder and on S3 (moto on loopback), CLI and API writers together, API replicas given the same
upload, a killed writer's claim taken over after its lease expires, a server whose store is
replaced under it, and a replica's staleness.

After each: every video's live generation is complete (frame rows == ``num_indexed``), nothing
is doubled (the frames table holds exactly the live rows), and every run exited 0.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import s3_loopback
from api_server import free_port, kill9, poll_job, start_cli_server, wait_ready

from framedex.store import LanceStore

SCENES = [{"duration": 3.0, "background": "black", "objects": [{"shape": "circle",
                                                                 "color": "red"}]},
          {"duration": 3.0, "background": "white", "objects": [{"shape": "star",
                                                                 "color": "blue"}]}]


def _render(path: Path, seed: int, seconds: float = 6.0) -> Path:
    from framedex.synth import render

    render({"fps": 10, "size": [48, 48], "seed": seed,
            "scenes": [dict(s, duration=seconds / 2) for s in SCENES]}, path)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scale") / "videos"
    root.mkdir()
    for i in range(6):
        _render(root / f"v{i}.mp4", seed=100 + i)
    return root


@pytest.fixture(params=["local", "s3"])
def db(request, tmp_path):
    """(``--db`` value, environment for a CLI process, LanceStore to inspect it)."""
    if request.param == "local":
        path = str(tmp_path / "lib.db")
        return path, dict(os.environ), lambda: LanceStore(path)
    uri, options = request.getfixturevalue("s3_store")
    endpoint = options["aws_endpoint"]
    return uri, dict(os.environ, **s3_loopback.environment(endpoint)), \
        lambda: LanceStore(uri, storage_options=options)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
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


@pytest.mark.parametrize("writers", [2, 4])
def test_concurrent_cli_writers_index_every_video_once(db, folder, tiny_model, writers):
    """The failure on s3://: two ordinary index runs retired each other's generations and
    left every video listed with 0 frames."""
    where, env, open_store = db
    procs = [_cli("index", str(folder), "--db", where, "--model", tiny_model, "--device", "cpu",
                  "--json", env=env) for _ in range(writers)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert "WARN" not in err and "lance" not in err.lower(), err  # no Rust log lines
    reports = [json.loads(out) for out, _ in outs]
    indexed = [v["video_id"] for r in reports for v in r["indexed"]]
    assert len(indexed) == len(set(indexed)) == 6  # each video indexed by exactly one run
    for r in reports:
        assert len(r["indexed"]) + len(r["unchanged"]) == 6 and not r["failed"]
        assert "warnings" not in r
    assert_whole(open_store(), 6)


def test_a_killed_writer_on_s3_is_taken_over_when_its_lease_expires(s3_store, folder,
                                                                   tiny_model, tmp_path):
    """kill -9 of a writer holding a claim on S3 (no flock there): the claim expires after the
    lease lifetime and a second writer completes the video, dropping the dead one's rows."""
    uri, options = s3_store
    env = dict(os.environ, **s3_loopback.environment(options["aws_endpoint"]),
               FRAMEDEX_LEASE_TTL_S="3")
    video = _render(tmp_path / "long.mp4", seed=7, seconds=30.0)
    from killing import slow_index_script

    script = slow_index_script().replace("Store(sys.argv[1])", f"Store(sys.argv[1], "
                                         f"storage_options={options!r}, lease_ttl=3.0)")
    proc = subprocess.Popen([sys.executable, "-c", script, uri, tiny_model, str(video)],
                            env=env)
    store = LanceStore(uri, storage_options=options)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            ds = store.tables.snapshot("frames")
            if ds is not None and ds.count_rows() >= 3:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the writer ended before it wrote rows"
        dead = store.locks.leases.records("video")
        assert len(dead) == 1 and dead[0].data.get("generation")
        proc.kill()
    finally:
        proc.wait()
    t0 = time.monotonic()
    second = _cli("index", str(video), "--db", uri, "--model", tiny_model, "--device", "cpu",
                  "--json", env=env)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert [v["path"] for v in json.loads(out)["indexed"]] == [str(video)]
    assert time.monotonic() - t0 > 1.0  # it waited for the lease to expire
    store = LanceStore(uri, storage_options=options)
    assert_whole(store, 1)  # the killed run's rows are gone, the new generation is whole
    assert store.locks.leases.records("video") == []


# -- API replicas ---------------------------------------------------------------------------


def _serve(db: str, model: str, *extra: str, env: dict[str, str] | None = None
           ) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "framedex.cli", "serve", "--db", db, "--model", model,
           "--port", str(port), "--device", "cpu", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(env or os.environ, FRAMEDEX_API_KEY=""),
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base, proc=proc)
    return proc, base


def test_two_replicas_with_two_workers_given_the_same_upload(db, folder, tiny_model,
                                                             tmp_path):
    """Two `framedex serve --workers 2` on one store, the same upload sent twice to each: it
    is indexed once, every job ends done, and both replicas list it and every job."""
    where, env, open_store = db
    # on S3 the replicas need an upload folder both can read (locally it is DB.uploads)
    extra = ["--upload-dir", str(tmp_path / "uploads")] if "://" in where else []
    a = _serve(where, tiny_model, "--workers", "2", *extra, env=env)
    b = _serve(where, tiny_model, "--workers", "2", *extra, env=env)
    try:
        data = (folder / "v0.mp4").read_bytes()
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


def test_cli_and_api_writers_together(tmp_path, folder, tiny_model):
    db = str(tmp_path / "lib.db")
    proc, base = _serve(db, tiny_model, "--workers", "2", "--allow-root", str(folder))
    try:
        cli = _cli("index", str(folder), "--db", db, "--model", tiny_model, "--device", "cpu",
                   "--json")
        with httpx.Client(base_url=base, timeout=30) as c:
            jobs = [c.post("/v1/videos", json={"path": str(p)}).json()["job_id"]
                    for p in sorted(folder.glob("*.mp4"))]
            out, err = cli.communicate(timeout=300)
            assert cli.returncode == 0, err
            done = [poll_job(c, j, timeout=120) for j in jobs]
        assert {d["status"] for d in done} == {"done"}, done
        report = json.loads(out)
        assert len(report["indexed"]) + len(report["unchanged"]) == 6
    finally:
        kill9(proc)
    assert_whole(LanceStore(db), 6)


def test_a_replica_sees_a_video_indexed_elsewhere_within_its_staleness(s3_store, folder,
                                                                      tiny_model):
    uri, options = s3_store
    env = dict(os.environ, **s3_loopback.environment(options["aws_endpoint"]))
    proc, base = _serve(uri, tiny_model, "--staleness", "1", env=env)
    try:
        with httpx.Client(base_url=base, timeout=30) as c:
            assert c.get("/v1/videos").json()["count"] == 0
            writer = _cli("index", str(folder / "v1.mp4"), "--db", uri, "--model", tiny_model,
                          "--device", "cpu", env=env)
            _out, err = writer.communicate(timeout=300)
            assert writer.returncode == 0, err
            t0 = time.monotonic()
            while c.get("/v1/videos").json()["count"] == 0:
                assert time.monotonic() - t0 < 1.0 + 1.5, "not visible within the staleness"
                time.sleep(0.05)
            hits = c.post("/v1/search", json={"text": "a red circle", "limit": 3}).json()
            assert hits["results"], hits
    finally:
        kill9(proc)


def test_a_server_whose_store_is_replaced_answers_503_then_recovers(tmp_path, folder,
                                                                   tiny_model):
    """`make demo` again beside its running `serve`: the store folder is deleted and built
    anew. Every search answered 500 until a restart; now 503 while it is gone, then the new
    store's answers, without a restart."""
    db = tmp_path / "lib.db"
    first = _cli("index", str(folder / "v0.mp4"), "--db", str(db), "--model", tiny_model,
                 "--device", "cpu")
    assert first.wait(timeout=300) == 0
    proc, base = start_cli_server(db, tiny_model)
    try:
        with httpx.Client(base_url=base, timeout=30) as c:
            body = {"text": "a red circle", "limit": 3}
            assert c.post("/v1/search", json=body).status_code == 200
            old = c.get("/v1/videos").json()["data"][0]["video_id"]
            shutil.rmtree(db)
            for route in ("/v1/videos", "/v1/search"):
                r = c.post(route, json=body) if route == "/v1/search" else c.get(route)
                assert r.status_code == 503, (route, r.status_code, r.text)
                assert r.json()["error"]["code"] == "store_unavailable"
            again = _cli("index", str(folder / "v2.mp4"), "--db", str(db), "--model",
                         tiny_model, "--device", "cpu")
            assert again.wait(timeout=300) == 0
            r = c.post("/v1/search", json=body)
            assert r.status_code == 200, r.text
            videos = c.get("/v1/videos").json()["data"]
            assert [v["video_id"] for v in videos] != [old] and len(videos) == 1
            assert {h["video_id"] for h in r.json()["results"]} == {videos[0]["video_id"]}
    finally:
        kill9(proc)


def test_a_delete_while_the_video_is_being_indexed_is_refused_at_once(tmp_path, folder,
                                                                      tiny_model):
    """45 DELETEs of a video being re-indexed each held a worker thread waiting for the
    claim; now a DELETE of a claimed video answers 409 `busy` at once."""
    from framedex import Library

    db = tmp_path / "lib.db"
    lib = Library(db, model=tiny_model, device="cpu")
    vid = lib.index([folder / "v3.mp4"]).by_status("indexed")[0].video_id
    claim = lib.store.claim(vid, wait=False)  # another writer re-indexing it
    assert claim is not None
    proc, base = start_cli_server(db, tiny_model)
    try:
        results: list[tuple[int, float]] = []

        def delete() -> None:
            t0 = time.monotonic()
            r = httpx.delete(f"{base}/v1/videos/{vid}", timeout=30)
            results.append((r.status_code, time.monotonic() - t0))

        threads = [threading.Thread(target=delete) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert {code for code, _ in results} == {409}
        assert max(s for _, s in results) < 5.0
        r = httpx.delete(f"{base}/v1/videos/{vid}", timeout=30)
        assert r.json()["error"]["code"] == "busy" and "being indexed" in r.json()["error"][
            "message"]
        claim.release()
        assert httpx.delete(f"{base}/v1/videos/{vid}", timeout=30).status_code in (200, 204)
    finally:
        kill9(proc)
