"""The store's leases (store/leases.py) and what is built on them (store/locks.py): one holder
at a time across threads and processes, expiry of a dead holder's lease with what it was
doing, heartbeats, a stalled holder losing, writers against the sweeper. Each runs on a local
folder and on S3 (moto on loopback, tests/s3_loopback.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from framedex.errors import LeaseLostError
from framedex.store.leases import LEASE_PREFIX, Leases
from framedex.store.location import StoreLocation
from framedex.store.locks import StoreLocks

pytestmark = pytest.mark.heavy  # servers, clusters or processes: not in make test-fast


@pytest.fixture(params=["local", "s3"])
def where(request, tmp_path):
    """(store URI, storage options) on a local folder or on S3."""
    if request.param == "local":
        return str(tmp_path / "lib.db"), None
    return request.getfixturevalue("s3_store")


def _leases(where, ttl: float = 5.0) -> Leases:
    uri, options = where
    return Leases(StoreLocation.parse(uri), options, ttl=ttl)


def _objects(leases: Leases) -> list[str]:
    import obstore

    return [m["path"] for batch in obstore.list(leases.objects, LEASE_PREFIX + "/")
            for m in batch]


def test_one_winner_among_racing_threads(where):
    a = _leases(where)
    winners: list[int] = []
    barrier = threading.Barrier(8)

    def grab(i: int) -> None:
        barrier.wait()
        if a.acquire("race") is not None:
            winners.append(i)

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    a.close()
    # a released lease leaves its last record (released: epochs only grow), and no marker
    objects = _objects(a)
    assert len(objects) == 1 and "/held/" not in objects[0], objects
    (record,) = [json.loads(bytes(__import__("obstore").get(a.objects, objects[0]).bytes()))]
    assert record["state"] == "released"
    again = _leases(where).acquire("race")
    assert again is not None and again.epoch == record["epoch"] + 1  # epochs only grow
    again.release()


def test_a_stale_view_of_the_top_epoch_never_acquires(where, monkeypatch):
    """The race the epochs' growth closes: an acquirer that listed epoch N, then found its
    record gone (replaced meanwhile), must look again, not create N+1 beside a newer holder."""
    a = _leases(where)
    first = a.acquire("stale")
    assert first is not None
    first.release()
    b = _leases(where)
    monkeypatch.setattr(b, "_read", lambda name, epoch: None)  # the record vanished
    assert b.acquire("stale") is None
    monkeypatch.undo()
    lease = b.acquire("stale")
    assert lease is not None
    lease.release()


HOLDER = r"""
import json, os, sys, time
sys.path.insert(0, {src!r})
from framedex.store.leases import Leases
from framedex.store.location import StoreLocation
leases = Leases(StoreLocation.parse({uri!r}), {options!r}, ttl=10.0)
with open({log!r}, "a") as log:
    for _ in range({rounds}):
        lease = leases.acquire("shared", wait=True, timeout=60)
        assert lease is not None
        log.write(json.dumps(["start", os.getpid(), time.time()]) + "\n"); log.flush()
        time.sleep(0.03)
        log.write(json.dumps(["end", os.getpid(), time.time()]) + "\n"); log.flush()
        lease.release()
"""


def test_processes_never_hold_a_lease_together(where, tmp_path):
    uri, options = where
    log = tmp_path / "holds.jsonl"
    src = str(Path(__file__).parents[1] / "src")
    code = HOLDER.format(src=src, uri=uri, options=options, log=str(log), rounds=4)
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(events) == 4 * 4 * 2
    # in file order, every start is followed by the same holder's end before the next start
    for first, second in zip(events[::2], events[1::2], strict=True):
        assert first[0] == "start" and second[0] == "end" and first[1] == second[1]


def test_a_killed_holder_is_taken_over_after_its_expiry_with_its_record(where, tmp_path):
    uri, options = where
    ready = tmp_path / "ready"
    src = str(Path(__file__).parents[1] / "src")
    code = (f"import sys, time, pathlib; sys.path.insert(0, {src!r})\n"
            "from framedex.store.leases import Leases\n"
            "from framedex.store.location import StoreLocation\n"
            f"l = Leases(StoreLocation.parse({uri!r}), {options!r}, ttl=2.0)\n"
            "lease = l.acquire('video-abc', data={'generation': 42})\n"
            f"pathlib.Path({str(ready)!r}).touch()\n"
            "time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        other = _leases(where, ttl=2.0)
        assert other.acquire("video-abc") is None  # alive: its heartbeat keeps it
        time.sleep(2.5)
        assert other.acquire("video-abc") is None  # still alive after its ttl
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        t0 = time.monotonic()
        lease = other.acquire("video-abc", wait=True, timeout=30)
        waited = time.monotonic() - t0
        assert lease is not None and lease.previous is not None
        assert lease.previous.data == {"generation": 42}
        if uri.startswith("s3://"):
            assert waited > 0.5  # only its expiry frees it (no flock across machines)
        else:
            assert waited < 1.0  # the kernel dropped its flock: known dead at once
        lease.release()
    finally:
        proc.kill()
        proc.wait()


def test_a_stalled_holder_loses_its_lease_and_cannot_commit(where):
    a, b = _leases(where, ttl=1.0), _leases(where, ttl=1.0)
    lease = a.acquire("video-x")
    assert lease is not None
    lease.check()
    # stall: no heartbeat (the process is frozen); on a local disk the flock would tell b
    # the holder is alive, so the stall is staged by closing it too
    with a._mutex:
        a._held.clear()
    if lease._fd is not None:
        os.close(lease._fd)
        lease._fd = None
    time.sleep(1.3)
    taken = b.acquire("video-x")
    assert taken is not None and taken.previous is not None
    with pytest.raises(LeaseLostError, match="another writer took over"):
        lease.check()
    taken.release()


def test_writers_and_the_sweeper_exclude_each_other(where):
    uri, options = where
    writer_side = StoreLocks(StoreLocation.parse(uri), options, ttl=5.0)
    sweeper_side = StoreLocks(StoreLocation.parse(uri), options, ttl=5.0)
    with writer_side.writer(), sweeper_side.sweeper() as idle:
        assert idle is False  # a writer (of another process) is live
    with sweeper_side.sweeper() as idle:
        assert idle is True
        entered = threading.Event()

        def write() -> None:
            with writer_side.writer():
                entered.set()

        t = threading.Thread(target=write)
        t.start()
        assert not entered.wait(0.8)  # a writer waits while the sweep runs
    t.join(10)
    assert entered.is_set()


def test_claims_record_the_generation_for_whoever_takes_over(where):
    uri, options = where
    first = StoreLocks(StoreLocation.parse(uri), options, ttl=1.0)
    claim = first.claim("v1", wait=False)
    assert claim is not None
    claim.begin(1234, replaces=None)
    assert StoreLocks(StoreLocation.parse(uri), options).claim("v1", wait=False) is None
    # the writer dies: no heartbeat, no flock
    with first.leases._mutex:
        first.leases._held.clear()
    if claim.lease._fd is not None:
        os.close(claim.lease._fd)
        claim.lease._fd = None
    time.sleep(1.2)
    second = StoreLocks(StoreLocation.parse(uri), options)
    assert second.dead_claims() == [("v1", 1234)]
    again = second.claim("v1", wait=False)
    assert again is not None and again.dead_generation == 1234
    again.release()
    assert second.dead_claims() == []
