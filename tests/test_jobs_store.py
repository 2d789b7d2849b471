"""The ingest jobs' table (store/jobs.py): writes in batches, pages newest first by two narrow
columns, one runner per job through its lease, and retention that takes the job's lease
records with it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from framedex.store import Job, JobFilter, LanceStore
from framedex.store.jobs import JobStore, expire_jobs
from framedex.store.schema import now_utc


@pytest.fixture()
def store(tmp_path):
    return LanceStore(tmp_path / "lib.db")


def _job(i: int, **kw) -> Job:
    t = now_utc() - timedelta(seconds=1000 - i)
    return Job(job_id=f"job{i:04d}", source="path", path=f"/v/{i}.mp4", created_at=t,
               updated_at=t, **kw)


def test_states_are_written_in_batches_and_read_back(store):
    jobs = JobStore(store, flush_s=60)  # no timer flush during the test
    for i in range(50):
        jobs.save(_job(i))
        job = jobs.get(f"job{i:04d}")
        assert job is not None and job.status == "queued"  # seen before it is written
    assert store.tables.version("jobs") == 0  # nothing committed yet
    assert jobs.flush() == 50  # (the table is created and its job_id index built first)
    before = store.tables.version("jobs")
    for i in range(50, 100):
        jobs.save(_job(i))
    assert jobs.flush() == 50
    assert store.tables.version("jobs") == before + 1  # 50 jobs, one commit
    other = JobStore(store)  # another replica reads the table
    assert other.get("job0007").path == "/v/7.mp4"
    job = other.get("job0007")
    job.status, job.progress = "running", 0.5
    other.save(job, durable=True)
    assert JobStore(store).get("job0007").status == "running"
    assert other.get("missing") is None


def test_a_page_is_newest_first_and_counts_what_matches(store):
    jobs = JobStore(store)
    for i in range(30):
        jobs.save(_job(i, status="done" if i % 3 else "failed",
                       params={"tl": "task"} if i % 2 else {}))
    jobs.flush()
    page, total = jobs.page(limit=5, offset=0)
    assert total == 30 and [j.job_id for j in page] == [f"job{i:04d}" for i in (29, 28, 27, 26, 25)]
    page, total = jobs.page(limit=4, offset=2, where=JobFilter.of(tl="task"))
    assert total == 15 and [j.job_id for j in page] == ["job0025", "job0023", "job0021", "job0019"]
    failed, total = jobs.page(limit=100, where=JobFilter.of(("failed",), tl="task"))
    assert total == 5 and all(j.status == "failed" and j.params["tl"] == "task" for j in failed)
    jobs.save(_job(99))  # not written yet: listed all the same
    assert jobs.page(limit=1)[0][0].job_id == "job0099"


def test_one_runner_per_job(store):
    a, b = JobStore(store), JobStore(LanceStore(store.uri))
    lease = a.claim("job0001")
    assert lease is not None
    assert b.claim("job0001") is None and b.running("job0001")
    lease.release()
    again = b.claim("job0001")
    assert again is not None
    again.release()


def test_retention_deletes_old_finished_jobs_and_their_leases(store):
    jobs = JobStore(store)
    old = now_utc() - timedelta(days=40)
    for i, status in enumerate(["done", "failed", "running", "done"]):
        job = _job(i, status=status)
        jobs.save(job)
    jobs.flush()
    # age three of them (save stamps updated_at with now)
    rows = [dict(r, updated_at=old) for r in store.tables.read("jobs").to_pylist()
            if r["job_id"] != "job0003"]
    store.upsert("jobs", "job_id", rows)
    for i in range(4):
        lease = jobs.claim(f"job{i:04d}")
        assert lease is not None
        lease.release()
    leases = store.locks.leases
    assert expire_jobs(store, timedelta(days=30)) == 2  # done and failed, old
    assert [j.job_id for j in jobs.page(limit=10)[0]] == ["job0003", "job0002"]
    assert leases._epochs("job-job0000") == [] and leases._epochs("job-job0001") == []
    assert leases._epochs("job-job0002") and leases._epochs("job-job0003")  # kept


def test_a_burst_of_job_commits_keeps_the_table_small(store, monkeypatch):
    """Each durable save is a commit, and each version's manifest lists every fragment: a
    burst used to leave one fragment per commit and megabytes of manifests. The store that
    commits compacts the table every COMPACT_EVERY commits, off the request's thread."""
    import time

    import framedex.store.jobs as jobs_module

    monkeypatch.setattr(jobs_module, "COMPACT_EVERY", 8)
    jobs = JobStore(store, flush_s=60)
    for i in range(40):
        job = _job(i)
        jobs.save(job, durable=True)
        job.status, job.progress = "done", 1.0
        jobs.save(job, durable=True)
    deadline = time.monotonic() + 30
    while jobs._compacting.locked() and time.monotonic() < deadline:
        time.sleep(0.05)
    fragments = len(store.tables.snapshot("jobs").get_fragments())
    assert fragments < 16, f"{fragments} fragments after 80 commits"  # one per commit before
    other = JobStore(store)  # nothing lost on the way
    page, total = other.page(limit=100)
    assert total == 40 and {j.status for j in page} == {"done"}
    assert other.get("job0039").progress == 1.0
