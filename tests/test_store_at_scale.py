"""The store at scale, written as the failures were met: any number of writers on a local
scale_videos and on S3 (moto on loopback), CLI and API writers together, API replicas given the same
upload, a killed writer's claim taken over after its lease expires, a server whose store is
replaced under it, and a replica's staleness.

After each: every video's live generation is complete (frame rows == ``num_indexed``), nothing
is doubled (the frames table holds exactly the live rows), and every run exited 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest
import s3_loopback
from api_server import kill9, start_cli_server
from scale import assert_whole, cli, render_clip

from framedex.library import internals
from framedex.store import LanceStore

pytestmark = pytest.mark.heavy  # servers, clusters or processes: not in make test-fast


@pytest.mark.parametrize("writers", [2, pytest.param(4, marks=pytest.mark.slow)])
def test_concurrent_cli_writers_index_every_video_once(scale_db, scale_videos, tiny_model,
                                                       writers):
    """The failure on s3://: two ordinary index runs retired each other's generations and
    left every video listed with 0 frames."""
    where, env, open_store = scale_db
    procs = [cli("index", str(scale_videos), "--db", where, "--model", tiny_model, "--device",
                 "cpu", "--json", env=env) for _ in range(writers)]
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


@pytest.mark.slow
def test_a_killed_writer_on_s3_is_taken_over_when_its_lease_expires(s3_store, scale_videos,
                                                                   tiny_model, tmp_path):
    """kill -9 of a writer holding a claim on S3 (no flock there): the claim expires after the
    lease lifetime and a second writer completes the video, dropping the dead one's rows."""
    uri, options = s3_store
    env = dict(os.environ, **s3_loopback.environment(options["aws_endpoint"]),
               FRAMEDEX_LEASE_TTL_S="3")
    video = render_clip(tmp_path / "long.mp4", seed=7, seconds=30.0)
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
    second = cli("index", str(video), "--db", uri, "--model", tiny_model, "--device", "cpu",
                  "--json", env=env)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert [v["path"] for v in json.loads(out)["indexed"]] == [str(video)]
    assert time.monotonic() - t0 > 1.0  # it waited for the lease to expire
    store = LanceStore(uri, storage_options=options)
    assert_whole(store, 1)  # the killed run's rows are gone, the new generation is whole
    assert store.locks.leases.records("video") == []


def test_a_delete_while_the_video_is_being_indexed_is_refused_at_once(tmp_path, scale_videos,
                                                                      tiny_model):
    """45 DELETEs of a video being re-indexed each held a worker thread waiting for the
    claim; now a DELETE of a claimed video answers 409 `busy` at once."""
    from framedex import Library

    db = tmp_path / "lib.db"
    lib = Library(db, model=tiny_model, device="cpu")
    vid = lib.index([scale_videos / "v3.mp4"]).by_status("indexed")[0].video_id
    claim = internals(lib).store.claim(vid, wait=False)  # another writer re-indexing it
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
