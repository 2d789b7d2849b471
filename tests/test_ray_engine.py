"""The Ray engine as a user sees it: ``framedex index --engine ray`` prints the local engine's
report and writes its index (same videos, grid and vectors within 1e-5), a re-run is a no-op,
a killed driver leaves only whole videos (its staged files go with the next optimize, and a
re-run completes), the store's encoder is refused as locally, and an S3 store works from the
workers (moto's server on loopback, when installed).

One local Ray cluster (4 logical CPUs) serves the module; the killed driver, a process of its own,
joins it with ``ray_address``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner
from videos import cfr

import framedex
from framedex.cli import app
from framedex.errors import ConfigError, EncoderMismatchError, UnknownNameError
from framedex.library import Library
from framedex.store import LanceStore as Store

pytestmark = pytest.mark.heavy  # servers, clusters or processes: not in make test-fast

pytest.importorskip("ray", reason="the ray engine needs the framedex[ray] extra")

TESTS = Path(__file__).resolve().parent
SRC = Path(framedex.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_cluster():
    """A local cluster of 4 logical CPUs for the module, private as the engine's own (token
    authentication, loopback only); its workers import this checkout's framedex and the tests'
    helper modules (the raylet passes its environment on to every job's workers).

    Yields:
        the cluster's address, for drivers that join it (the token stays in this process's
        environment for the module: a joining driver inherits it).
    """
    import ray

    from framedex.indexer.ray_engine import LOOPBACK, private_cluster

    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(SRC), str(TESTS), *([saved] if saved else [])])
    restore = private_cluster()
    try:
        with warnings.catch_warnings():  # this process imported Lance long before (the
            warnings.filterwarnings("ignore", "lance is not fork-safe")  # engine never does)
            ray.init(num_cpus=4, include_dashboard=False, logging_level=logging.WARNING,
                     log_to_driver=False, _node_ip_address=LOOPBACK)
    except BaseException:
        restore()
        raise
    finally:
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
    restore()


@pytest.fixture(scope="module")
def ray_lib(tmp_path_factory, small_video) -> Path:
    """Two short videos, a 40 s one (cut into two units of whole segments) and a corrupt file."""
    from conftest import SMALL_SPEC

    from framedex.synth.render import render

    lib = tmp_path_factory.mktemp("ray_lib")
    shutil.copy(small_video, lib / "a.mp4")
    render(dict(SMALL_SPEC, seed=3, scenes=SMALL_SPEC["scenes"][::-1]), lib / "b.mp4")
    cfr(lib / "long.mp4", Fraction(25), 40.0)
    (lib / "corrupt.mp4").write_bytes(b"this is not a video at all" * 100)
    return lib


def _index(db: Path, lib: Path, model: str, *extra: str) -> tuple[int, dict]:
    res = CliRunner().invoke(app, ["index", str(lib), "--db", str(db), "--model", model,
                                   "--json", *extra])
    return res.exit_code, (json.loads(res.stdout) if res.stdout.strip() else {})


@pytest.fixture(scope="module")
def local_index(tmp_path_factory, ray_lib, tiny_model) -> tuple[Path, dict]:
    """The library indexed by the local engine: (store, ``--json`` report)."""
    db = tmp_path_factory.mktemp("local") / "db"
    code, report = _index(db, ray_lib, tiny_model)
    assert code == 0
    return db, report


def assert_same_index(a: Store, b: Store) -> None:
    """Same videos, grid, timestamps and segments; vectors within 1e-5."""
    va = {v.video_id: v for v in a.list_videos()}
    vb = {v.video_id: v for v in b.list_videos()}
    assert set(va) == set(vb) and va
    for vid, x in va.items():
        y = vb[vid]
        for f in ("path", "duration", "frame_rate", "num_frames", "width", "height",
                  "start_sec", "is_vfr", "index_fps", "num_indexed", "decoder", "encoder"):
            assert getattr(x, f) == getattr(y, f), (x.path, f)
        fa, fb = a.read_frames(vid), b.read_frames(vid)
        np.testing.assert_array_equal(fa.pos, fb.pos)
        np.testing.assert_array_equal(fa.frame_idx, fb.frame_idx)
        np.testing.assert_array_equal(fa.pts_sec, fb.pts_sec)
        assert np.abs(fa.vectors - fb.vectors).max() <= 1e-5
        sa, sb = a.read_segments(vid), b.read_segments(vid)
        np.testing.assert_array_equal(sa.start_sec, sb.start_sec)
        np.testing.assert_array_equal(sa.end_sec, sb.end_sec)
        assert sa.kind == sb.kind
        assert np.abs(sa.vectors - sb.vectors).max() <= 1e-5
        where = f"video_id = '{vid}'"
        for table, key in (("segments", "seg"), ("video_vectors", "generation")):
            ra = a.tables.read(table, None, where).sort_by(key)
            rb = b.tables.read(table, None, where).sort_by(key)
            assert ra.num_rows == rb.num_rows > 0, table
        for column in ("seg", "num_frames"):
            assert (a.tables.read("segments", [column, "start_sec"], where).sort_by("start_sec")
                    .column(column).to_pylist()
                    == b.tables.read("segments", [column, "start_sec"], where)
                    .sort_by("start_sec").column(column).to_pylist())


def test_ray_engine_indexes_as_the_local_engine_and_a_rerun_is_a_no_op(
        tmp_path, ray_cluster, ray_lib, tiny_model, local_index):
    local_db, local_report = local_index
    db = tmp_path / "db"
    code, report = _index(db, ray_lib, tiny_model, "--engine", "ray", "--ray-address",
                          ray_cluster)
    assert code == 0
    assert report == local_report  # same ids, paths, frame counts, durations and errors
    assert {Path(o["path"]).name for o in report["indexed"]} == {"a.mp4", "b.mp4", "long.mp4"}
    (bad,) = report["failed"]
    assert Path(bad["path"]).name == "corrupt.mp4" and "cannot open video" in bad["error"]
    store = Store(db)
    assert_same_index(Store(local_db), store)

    tables = ("frames", "segments", "videos", "video_vectors")
    versions = {t: store.tables.version(t) for t in tables}
    code, again = _index(db, ray_lib, tiny_model, "--engine", "ray")
    assert code == 0 and again["indexed"] == [] and again["failed"] == report["failed"]
    assert sorted(o["video_id"] for o in again["unchanged"]) == \
        sorted(o["video_id"] for o in report["indexed"])
    assert {t: Store(db).tables.version(t) for t in tables} == versions


def _unreferenced(table: Path) -> set[str]:
    """Data files of a Lance table that no version of it references (staged, never
    committed; a compaction's superseded files stay referenced by the versions kept).

    Only whole ``*.lance`` files: a file being written is a ``.tmp*`` file first, renamed
    when complete, and removed when its writer dies (CI killed the driver on seeing one, and
    then found no orphan)."""
    import lance

    if not (table / "data").is_dir():
        return set()
    files = {p.name for p in (table / "data").iterdir() if p.suffix == ".lance"}
    ds = lance.dataset(str(table))
    used = {Path(f.path).name for v in ds.versions()
            for frag in ds.checkout_version(v["version"]).get_fragments()
            for f in frag.data_files()}
    return files - used


KILL_SCRIPT = """
import sys
from framedex.indexer.decode import register_decoder
from framedex.indexer.engines import create_engine
from framedex.indexer.pipeline import IndexOptions
from framedex.store import LanceStore
from slow_decoder import SlowDecoder

address, db, model, lib = sys.argv[1:5]
register_decoder("slow")(SlowDecoder)
opts = IndexOptions(decoder="slow", unit_frames=6, batch_size=6, write_chunk=6,
                    decode_workers=2)  # a CPU of the 4 stays free for the write tasks
with create_engine("ray", opts, ray_address=address) as engine:
    engine.prepare(LanceStore(db), model, "cpu", lambda: None)
    print(engine.index([lib], metadata={}).to_json())
"""


@pytest.mark.slow
def test_a_killed_driver_leaves_no_partial_video_and_a_rerun_completes(
        tmp_path, ray_cluster, small_video, tiny_model):
    lib = tmp_path / "lib"
    lib.mkdir()
    # slow.mp4 alone in the killed run: every file it stages stays uncommitted (its last
    # units stall). With a.mp4 beside it, a file seen staged could be a.mp4's, committed by
    # the driver in the moment before the kill.
    cfr(lib / "slow.mp4", Fraction(25), 20.0)  # 20 grid frames; from the 17th, each stalls
    db = tmp_path / "db"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(TESTS)]))
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, ray_cluster, str(db),
                             tiny_model, str(lib)], env=env)
    try:
        deadline = time.monotonic() + 300  # a loaded 2-core CI machine starts workers slowly
        staged: set[str] = set()
        while time.monotonic() < deadline and proc.poll() is None and not staged:
            time.sleep(0.1)  # slow.mp4's first units are staged, its last ones stall
            staged = _unreferenced(db / "frames.lance")
        assert staged, f"the driver never staged a fragment (exit code {proc.poll()})"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    _wait_until_quiet(db / "frames.lance" / "data")
    _wait_until_quiet(db / "segments.lance" / "data")

    store = Store(db)
    assert "slow.mp4" not in {Path(v.path).name for v in store.list_videos()}
    for v in store.list_videos():  # whatever is visible is whole
        assert len(store.read_frames(v.video_id).pos) == v.num_indexed
        assert len(store.read_segments(v.video_id).start_sec) > 0
    orphans = _unreferenced(db / "frames.lance")
    assert orphans, "the killed job's staged files should be left to optimize"
    res = CliRunner().invoke(app, ["optimize", "--db", str(db), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["orphans_swept"] is True
    assert not _unreferenced(db / "frames.lance") and not _unreferenced(db / "segments.lance")

    shutil.copy(small_video, lib / "a.mp4")
    report = Library(db, model=tiny_model).index([lib], engine="ray")
    assert len(report.by_status("indexed")) == 2
    store = Store(db)
    assert {Path(v.path).name: v.num_indexed for v in store.list_videos()} == \
        {"a.mp4": 7, "slow.mp4": 20}
    for v in store.list_videos():
        np.testing.assert_array_equal(store.read_frames(v.video_id).pos,
                                      np.arange(v.num_indexed))


def _wait_until_quiet(folder: Path, settle: float = 2.0, limit: float = 30.0) -> None:
    """Until no file has appeared in ``folder`` for ``settle`` seconds (the cluster stops a
    dead driver's tasks within moments)."""
    deadline = time.monotonic() + limit
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= settle:
            return
        time.sleep(0.1)


def test_the_store_encoder_is_refused_as_locally(tmp_path, ray_cluster, small_video,
                                                 tiny_model, other_tiny_model):
    db = tmp_path / "db"
    Library(db, model=tiny_model).index([small_video])
    with pytest.raises(EncoderMismatchError) as local:
        Library(db, model=other_tiny_model).index([small_video])
    with pytest.raises(EncoderMismatchError) as ray_:
        Library(db, model=other_tiny_model).index([small_video], engine="ray")
    assert str(ray_.value) == str(local.value)


def test_engine_options_are_checked_before_any_work(tmp_path, small_video):
    lib = Library(tmp_path / "db", model="synthetic-shapes")
    with pytest.raises(UnknownNameError, match=r"unknown index engine 'rey'.*local, ray"):
        lib.index([small_video], engine="rey")
    with pytest.raises(ConfigError, match=r"ray_address=.* applies to engine='ray' only"):
        lib.index([small_video], ray_address="auto")
    with pytest.raises(ConfigError, match=r"decoder='nvdec' is invalid: .*engine='ray'"):
        lib.index([small_video], engine="ray", decoder="nvdec")
    assert not (tmp_path / "db").exists()
    res = CliRunner().invoke(app, ["index", str(small_video), "--db", str(tmp_path / "db"),
                                   "--engine", "rey"])
    assert res.exit_code != 0
    assert [ln for ln in res.output.splitlines() if ln.strip()][-1].startswith(
        "framedex: error: unknown index engine 'rey'")


# ---- object storage: moto's S3 server on loopback --------------------------------------------

@pytest.mark.slow
def test_an_s3_store_is_written_from_the_workers(ray_cluster, s3_endpoint, ray_lib,
                                                tiny_model, local_index):
    """One ``storage_options`` mapping reaches LanceDB on the driver and the writers on the
    workers (which have no AWS settings of their own)."""
    urllib.request.urlopen(urllib.request.Request(f"{s3_endpoint}/framedex",
                                                  method="PUT")).close()
    options = {"aws_endpoint": s3_endpoint, "aws_access_key_id": "testing",
               "aws_secret_access_key": "testing", "aws_region": "us-east-1",
               "allow_http": "true"}
    lib = Library("s3://framedex/lib", model=tiny_model, storage_options=options)
    report = lib.index([ray_lib], engine="ray")
    local_db, local_report = local_index
    assert report.to_json() == local_report
    assert_same_index(Store(local_db), Store("s3://framedex/lib", storage_options=options))


def test_a_long_tmpdir_does_not_break_the_local_cluster(monkeypatch, tmp_path):
    """Ray's sockets live under $TMPDIR; a long one (a pytest tmp dir, a CI workspace) made
    `--engine ray` fail with `AF_UNIX path length cannot exceed 107 bytes`."""
    from framedex.indexer.ray_engine import local_ray_temp_dir

    monkeypatch.delenv("RAY_TMPDIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path / ("x" * 60)))
    (tmp_path / ("x" * 60)).mkdir()
    assert local_ray_temp_dir() == "/tmp/ray"
    monkeypatch.setenv("TMPDIR", "/tmp")
    assert local_ray_temp_dir() is None


@pytest.mark.slow
def test_a_ray_job_and_a_cli_writer_together(ray_cluster, ray_lib, tiny_model, tmp_path):
    """A Ray job and a local `framedex index` on one store at once: every video once, each
    live generation whole (the claims are leases in the store, whoever the writer is)."""
    import subprocess
    import sys

    from scale import assert_whole

    db = tmp_path / "db"
    cli = subprocess.Popen([sys.executable, "-m", "framedex", "index", str(ray_lib), "--db",
                            str(db), "--model", tiny_model, "--device", "cpu", "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    report = Library(db, model=tiny_model).index([ray_lib], engine="ray",
                                                 ray_address=ray_cluster).to_json()
    out, err = cli.communicate(timeout=300)
    assert cli.returncode == 0, err
    other = json.loads(out)
    indexed = [v["video_id"] for r in (report, other) for v in r["indexed"]]
    assert len(indexed) == len(set(indexed)) == 3  # a, b and long, each by one writer
    for r in (report, other):
        assert len(r["indexed"]) + len(r["unchanged"]) == 3 and len(r["failed"]) == 1
    assert_whole(Store(db), 3)
# ---- security: a private cluster keeps token authentication and loopback ---------------------

def listening_addresses(root_pid: int) -> list[tuple[str, int, str]]:
    """(address, port, process name) of every TCP socket listening in ``root_pid`` or any of
    its descendants, from /proc (what ``ss -ltnp`` shows)."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    stat = fh.read()
                parent[int(entry)] = int(stat[stat.rfind(")") + 2:].split()[1])
            except OSError:
                continue
    tree, grew = {root_pid}, True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    owner = {}
    for pid in tree:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    owner[link[8:-1]] = pid
        except OSError:
            continue
    found = []
    for family, table in ((socket.AF_INET, "/proc/net/tcp"), (socket.AF_INET6, "/proc/net/tcp6")):
        with open(table) as fh:
            next(fh)
            for line in fh:
                cols = line.split()
                if cols[3] != "0A" or cols[9] not in owner:  # 0A: LISTEN
                    continue
                hexaddr, hexport = cols[1].split(":")
                raw = bytes.fromhex(hexaddr)
                raw = raw[::-1] if family == socket.AF_INET else b"".join(
                    raw[i:i + 4][::-1] for i in range(0, 16, 4))
                pid = owner[cols[9]]
                with open(f"/proc/{pid}/comm") as fh2:
                    name = fh2.read().strip()
                found.append((socket.inet_ntop(family, raw), int(hexport, 16), name))
    return found


def _loopback(address: str) -> bool:
    return address.startswith("127.") or address in ("::1", "::ffff:127.0.0.1") or \
        address.startswith("::ffff:127.")


#: Starts the engine's own private cluster (``framedex index --engine ray`` without an
#: address) in a fresh process, then reports what listens and whether Ray's GCS answers a
#: client without the token, with a wrong one, and with the job's.
PRIVATE = r"""
import json, os, subprocess, sys
from framedex.indexer.engines import create_engine
from framedex.indexer.pipeline import IndexOptions
from test_ray_engine import listening_addresses

probe = ("import ray._raylet as r; c = r.GcsClient(address=%r); "
         "print(c.internal_kv_get(b'x', namespace=None, timeout=10))")
with create_engine("ray", IndexOptions()) as engine:
    import ray
    address = ray.get_runtime_context().gcs_address
    out = {"address": address, "listening": listening_addresses(os.getpid()),
           "notes": engine.notes, "token_mode": os.environ.get("RAY_AUTH_MODE")}
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    for name, extra in (("none", {"RAY_AUTH_MODE": "disabled"}),
                        ("wrong", {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64}),
                        ("token", {"RAY_AUTH_MODE": "token",
                                   "RAY_AUTH_TOKEN": os.environ["RAY_AUTH_TOKEN"]})):
        run = subprocess.run([sys.executable, "-c", probe % address], env={**clean, **extra},
                             capture_output=True, text=True, timeout=120)
        out[name] = [run.returncode, run.stderr.strip().splitlines()[-1:]]
print(json.dumps({**out, "after": os.environ.get("RAY_AUTH_MODE")}))
"""


def test_a_private_cluster_listens_on_loopback_and_refuses_clients_without_the_token(tmp_path):
    """`framedex index --engine ray` started its cluster with RAY_AUTH_MODE=disabled, the GCS
    and the raylets listening on every interface: anyone who could reach the machine could
    run code on it while the job ran (issue 27)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)]),
           "HOME": str(tmp_path)}
    env.pop("RAY_AUTH_MODE", None)
    env.pop("RAY_AUTH_TOKEN", None)
    env.pop("RAY_ADDRESS", None)
    run = subprocess.run([sys.executable, "-c", PRIVATE], env=env, capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["address"].startswith("127.0.0.1:")
    names = {name for _, _, name in out["listening"]}
    assert {"gcs_server", "raylet"} <= names, out["listening"]
    outside = [x for x in out["listening"] if not _loopback(x[0])]
    assert not outside, f"listening beyond loopback: {outside}"
    assert out["token_mode"] == "token" and out["notes"] == []
    for refused in ("none", "wrong"):
        code, last = out[refused]
        assert code != 0 and "AuthenticationError" in "".join(last), (refused, last)
    assert out["token"][0] == 0, out["token"]  # the job's own token is accepted
    assert out["after"] is None  # the process's settings are restored after the job
    assert not (tmp_path / ".ray" / "auth_token").exists()  # the token never touched disk


def test_the_tests_cluster_is_loopback_only_too(ray_cluster):
    listening = listening_addresses(os.getpid())
    assert {"gcs_server", "raylet"} <= {name for _, _, name in listening}
    assert all(_loopback(address) for address, _, _ in listening), listening
    assert ray_cluster.startswith("127.0.0.1:")


def test_joining_a_cluster_without_authentication_warns_in_one_line(monkeypatch, tmp_path):
    """A cluster given with --ray-address is the operator's to secure; a job that joins one
    without token authentication says so, once."""
    import ray

    from framedex.indexer import ray_engine
    from framedex.indexer.engines import create_engine
    from framedex.indexer.pipeline import IndexOptions

    joined: list[dict] = []
    monkeypatch.setattr(ray_engine, "check_reachable", lambda address: None)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: joined.append(kw))
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    for auth, notes in ((False, 1), (True, 0)):
        monkeypatch.setattr(ray_engine, "token_auth_on", lambda a=auth: a)
        with create_engine("ray", IndexOptions(), ray_address="10.1.2.3:6379") as engine:
            assert engine.notes == ([ray_engine.NO_AUTH_NOTE.format(address="10.1.2.3:6379")]
                                    * notes)
    assert [kw["address"] for kw in joined] == ["10.1.2.3:6379"] * 2
    assert "no token authentication" in ray_engine.NO_AUTH_NOTE


def test_an_unreachable_cluster_is_one_line_within_the_documented_time(tmp_path, small_video):
    """`--ray-address 127.0.0.1:1` hung past 120 s, printing raw Ray GCS warnings."""
    import time

    from typer.testing import CliRunner

    from framedex.cli import app
    from framedex.indexer import ray_engine

    t0 = time.monotonic()
    res = CliRunner().invoke(app, ["index", str(small_video), "--db", str(tmp_path / "db"),
                                   "--engine", "ray", "--ray-address", "127.0.0.1:1"])
    assert res.exit_code == 1, res.stderr
    assert res.stderr.splitlines() == [
        "framedex: error: ray_address='127.0.0.1:1' is invalid: cannot reach a Ray cluster at "
        "127.0.0.1:1 (connection refused); start one with `ray start --head`, or leave "
        "--ray-address out for a local one"]
    assert time.monotonic() - t0 < ray_engine.RAY_CONNECT_TIMEOUT_S
    assert not (tmp_path / "db").exists()
    # an address that never answers (TEST-NET-1, routed nowhere) is bounded by the timeout
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match=r"cannot reach a Ray cluster at 192\.0\.2\.1:6379"):
        ray_engine.check_reachable("ray://192.0.2.1:6379", timeout=0.5)
    assert time.monotonic() - t0 < 5
