"""Nothing lost, nothing doubled: the store under concurrent writers, failed re-indexes, odd
paths and bad stores, written as the attack on it was made."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from framedex import Library
from framedex.errors import VideoNotFoundError
from framedex.library import internals
from framedex.store import LanceStore

pytestmark = pytest.mark.heavy  # servers, clusters or processes: not in make test-fast

SCENE = {"duration": 4.0, "background": "black", "objects": [{"shape": "circle", "color": "red"}]}


def _render(path: Path, seed: int, seconds: float = 8.0) -> Path:
    from framedex.synth import render

    spec = {"fps": 10, "size": [48, 48], "seed": seed,
            "scenes": [dict(SCENE, duration=seconds / 2),
                       {"duration": seconds / 2, "background": "white",
                        "objects": [{"shape": "star", "color": "blue"}]}]}
    render(spec, path)
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("integrity") / "videos"
    root.mkdir()
    for i in range(5):
        _render(root / f"v{i}.mp4", seed=i)
    return root


def _cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "framedex", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_a_failed_reindex_leaves_the_old_index_live(tmp_path, folder, tiny_model):
    from framedex.indexer.encoder import load_encoder
    from framedex.indexer.pipeline import Indexer, IndexOptions

    lib = Library(tmp_path / "db", model=tiny_model, device="cpu")
    video = folder / "v0.mp4"
    vid = lib.index([video]).by_status("indexed")[0].video_id
    encoder = load_encoder(tiny_model, device="cpu")

    class PowerCut:
        identity, image_size = encoder.identity, encoder.image_size
        calls = 0

        def encode_images(self, frames):
            PowerCut.calls += 1
            if PowerCut.calls == 3:
                raise RuntimeError("power cut")
            return encoder.encode_images(frames)

    reindex = Indexer(internals(lib).store, PowerCut(), IndexOptions(index_fps=2.0, batch_size=2,
                                                          write_chunk=2))
    with pytest.raises(RuntimeError, match="power cut"):
        reindex.index_file(video)
    assert lib.video(vid).index_fps == 1.0
    assert len(lib.select(vid, "a red circle", budget=4).indices) == 4
    assert len(internals(lib).store.read_frames(vid).pos) == 8
    # The failed run's rows were taken out again: only the live generation remains.
    assert internals(lib).store.tables.read("frames", ["video_id"]).num_rows == 8


def test_selects_during_a_reindex_always_find_the_video(tmp_path, folder, tiny_model):
    lib = Library(tmp_path / "db", model=tiny_model, device="cpu", cache_bytes=0)
    long_video = _render(tmp_path / "long.mp4", seed=9, seconds=40.0)
    vid = lib.index([long_video]).by_status("indexed")[0].video_id
    seen: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            try:
                seen.append(lib.select(vid, "a blue star", sampler="topk", budget=3).num_frames)
            except BaseException as ex:
                errors.append(ex)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        report = lib.index([long_video], fps=4.0)
    finally:
        done.set()
        thread.join()
    assert report.by_status("indexed")
    assert not errors, errors[:3]
    assert seen and set(seen) <= {40, 160}  # the old index or the new one, never neither
    assert lib.select(vid, "a blue star", budget=3).num_frames == 160


def test_a_bad_fps_is_refused_before_anything_is_deleted(tmp_path, folder, tiny_model):
    db = tmp_path / "db"
    video = folder / "v1.mp4"
    lib = Library(db, model=tiny_model, device="cpu")
    vid = lib.index([video]).by_status("indexed")[0].video_id
    p = _cli("index", str(video), "--db", str(db), "--fps", "1e-12")
    _out, err = p.communicate(timeout=120)
    assert p.returncode == 1 and err.count("\n") == 1 and "fps=1e-12 is invalid" in err, err
    assert Library(db).video(vid).num_indexed == 8


def test_deleted_and_crashed_rows_are_swept_by_optimize(tmp_path, folder, tiny_model):
    lib = Library(tmp_path / "db", model=tiny_model, device="cpu")
    vid = lib.index([folder / "v2.mp4"]).by_status("indexed")[0].video_id
    store = internals(lib).store
    live = store.get_video(vid).generation
    # what a run killed after writing frames leaves: rows of a generation nobody names
    vec = np.ones((3, store.dim), np.float32) / np.sqrt(store.dim)
    store.add_frames(vid, live + 1, np.arange(3), np.arange(3), np.arange(3.0), vec)
    store.add_frames("never-committed", 7, np.arange(3), np.arange(3), np.arange(3.0), vec)
    assert store.tables.read("frames", ["video_id"]).num_rows == 8 + 6
    report = lib.optimize()
    assert report["dead_videos_swept"] == 2
    assert store.tables.read("frames", ["video_id"]).num_rows == 8
    assert len(store.read_frames(vid).pos) == 8


def test_a_partial_data_file_of_a_killed_writer_is_swept_when_no_writer_is_active(
        tmp_path, folder, tiny_model):
    """Lance writes a data file under a `.tmp*` name, then renames it; a writer killed in
    between left the file forever (its cleanup only knows finished data files)."""
    lib = Library(tmp_path / "db", model=tiny_model, device="cpu")
    lib.index([folder / "v2.mp4"])
    partial = tmp_path / "db" / "frames.lance" / "data" / ".tmpAbC123"
    partial.write_bytes(b"half a data file")
    with internals(lib).store.writing():  # another writer is active: nothing is deleted under it
        assert lib.optimize()["orphans_swept"] is False
    assert partial.exists()
    assert lib.optimize()["orphans_swept"] is True
    assert not partial.exists()
    assert len(internals(lib).store.read_frames(lib.videos()[0].video_id).pos) == 8


def test_a_claimed_video_is_not_swept(tmp_path, folder, tiny_model):
    lib = Library(tmp_path / "db", model=tiny_model, device="cpu")
    lib.index([folder / "v3.mp4"])
    store = internals(lib).store
    vec = np.ones((2, store.dim), np.float32) / np.sqrt(store.dim)
    with store.claim("being-indexed", wait=True):  # another writer is mid-way
        store.add_frames("being-indexed", 5, np.arange(2), np.arange(2), np.arange(2.0), vec)
        assert lib.optimize()["dead_videos_swept"] == 0
    assert lib.optimize()["dead_videos_swept"] == 1


# -- bounded disk ---------------------------------------------------------------------------


def test_the_query_log_is_written_in_batches_and_compacted(tmp_path, folder, tiny_model):
    lib = Library(tmp_path / "db", model=tiny_model, device="cpu")
    vid = lib.index([folder / "v4.mp4"]).by_status("indexed")[0].video_id
    for i in range(60):
        lib.select(vid, f"question {i % 7}", sampler="uniform", budget=2)
    query_log = internals(lib).query_log
    assert query_log is not None and query_log.pending + query_log.written == 60
    query_log.flush()
    versions = internals(lib).store.tables.version("query_log")
    assert versions <= 4, versions  # one commit per flush, not one per query
    log_dir = Path(lib.uri) / "query_log.lance" / "_versions"
    before = len(list(log_dir.iterdir()))
    from datetime import timedelta

    with pytest.warns(UserWarning, match="removes every version"):
        lib.optimize(keep_versions=timedelta(0))
    assert len(list(log_dir.iterdir())) <= min(before, 2)
    assert lib.sql("SELECT count(*) AS n FROM query_log").to_pylist() == [{"n": 60}]


def test_log_retention_deletes_old_rows(tmp_path, folder, tiny_model):
    from datetime import timedelta

    lib = Library(tmp_path / "db", model=tiny_model, device="cpu")
    vid = lib.index([folder / "v4.mp4"]).by_status("indexed")[0].video_id
    lib.select(vid, "a red circle", budget=2)
    internals(lib).query_log.flush()
    assert lib.optimize(log_retention=timedelta(days=1))["log_rows_deleted"] == 0
    assert lib.optimize(log_retention=timedelta(0))["log_rows_deleted"] == 1
    assert lib.stats() == []


# -- odd paths and bad stores ------------------------------------------------------------------


@pytest.mark.parametrize("ref", ["\x00", "~nosuchuser/x.mp4", "a" * 4000 + ".mp4",
                                 "/" + "b" * 300 + "/c.mp4"])
def test_odd_video_references_are_clear_errors(tmp_path, folder, tiny_model, ref):
    from framedex.errors import FramedexError

    lib = Library(tmp_path / "db", model=tiny_model, device="cpu")
    lib.index([folder / "v0.mp4"])
    with pytest.raises(FramedexError) as info:
        lib.select(ref, "a red circle")
    assert isinstance(info.value, (VideoNotFoundError, ValueError))
    assert len(str(info.value)) < 400


def test_quotes_in_a_path_are_literal_in_every_filter(tmp_path, folder, tiny_model):
    """Every string a filter carries goes through one quoting rule (``sql_str``): a file named
    with quotes is found by its path, its alias and its file name, and deleted whole."""
    from framedex.store.schema import sql_str, sql_strs, sql_timestamp

    assert sql_str("o'brien") == "'o''brien'" and sql_str("' OR '1'='1") == "''' OR ''1''=''1'"
    assert sql_strs(["a", "b'"]) == "('a', 'b''')"
    from datetime import datetime, timedelta, timezone

    at = datetime(2026, 1, 2, 4, 4, 5, 6, tzinfo=timezone(timedelta(hours=1)))
    assert sql_timestamp(at) == "TIMESTAMP '2026-01-02 03:04:05.000006'"
    odd = tmp_path / "it's \"odd\" ' OR '1'='1.mp4"
    shutil.copy(folder / "v1.mp4", odd)
    alias = tmp_path / "o'brien.mp4"
    shutil.copy(folder / "v1.mp4", alias)
    lib = Library(tmp_path / "db", model=tiny_model, device="cpu")
    lib.index([folder / "v0.mp4", odd, alias])
    vid = lib.video(str(odd)).video_id
    assert lib.video(str(alias)).video_id == vid  # the same content, seen at a second path
    assert lib.video(odd.name).video_id == vid
    assert lib.video(str(folder / "v0.mp4")).video_id != vid
    lib.delete(vid)
    with pytest.raises(VideoNotFoundError):
        lib.video(str(alias))
    assert len(lib.videos()) == 1


def _one_line(p: subprocess.Popen, timeout: float = 120) -> str:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 1, (out, err)
    err = "".join(line for line in err.splitlines(keepends=True)
                  if not line.startswith("framedex: model "))  # the one note index prints
    assert err.startswith("framedex: error:") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


def _one_line_here(*args: str) -> str:
    """The same CLI command run in this process (no new interpreter): one line, exit 1."""
    from typer.testing import CliRunner

    from framedex.cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 1, (result.output, result.exception)
    err = "".join(line for line in result.stderr.splitlines(keepends=True)
                  if not line.startswith("framedex: model "))
    assert err.startswith("framedex: error:") and err.count("\n") == 1, err
    assert "Traceback" not in result.output
    return err


@pytest.mark.parametrize("where", ["/proc/x.db", "FILE/x.db", "/sys/x.db", "~nosuchuser/x.db",
                                   "FILE"])
def test_a_bad_db_is_one_line_for_writes_and_reads(tmp_path, folder, where):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    db = where.replace("FILE", str(blocker))
    err = _one_line_here("index", str(folder / "v0.mp4"), "--db", db,
                         "--model", "synthetic-shapes")
    assert "store" in err
    _one_line_here("videos", "--db", db)
    _one_line_here("serve", "--db", db, "--port", "0")
    if where == "/proc/x.db":  # and as a real process: the exit code and stderr a shell sees
        _one_line(_cli("videos", "--db", db))


def test_a_mistyped_store_is_not_an_empty_library(tmp_path):
    missing = tmp_path / "does" / "not" / "exist.db"
    for command in (["videos"], ["stats"], ["search", "a star"], ["sql", "select 1"]):
        err = _one_line_here(*command, "--db", str(missing))
        assert "no store at" in err and str(missing) in err
    assert not missing.exists() and not missing.parent.exists()


def test_a_failed_first_index_leaves_no_store(tmp_path, folder):
    db = tmp_path / "new.db"
    err = _one_line(_cli("index", str(folder / "v0.mp4"), "--db", str(db), "--model",
                         str(tmp_path / "no-such-model")))
    assert "model" in err
    assert not db.exists()


@pytest.mark.parametrize("what", ["missing", "not a video"])
def test_a_first_index_that_indexes_nothing_leaves_no_store(tmp_path, tiny_model, what):
    """`index nosuch.mp4` (or a text file named .mp4) into a new --db left an empty store,
    and `videos` then said `no indexed video` with exit 0 instead of `no store at`."""
    target = tmp_path / "clip.mp4"
    if what == "not a video":
        target.write_text("this is not a video")
    db = tmp_path / "new.db"
    from typer.testing import CliRunner

    from framedex.cli import app

    run = CliRunner().invoke(app, ["index", str(target), "--db", str(db), "--model",
                                   tiny_model])
    assert run.exit_code == 1 and "failed" in run.stderr, run.output
    assert not db.exists()
    assert "no store at" in _one_line_here("videos", "--db", str(db))


def _freeze(path: Path) -> bool:
    """Make ``path`` read-only for this process (root ignores permission bits; chattr +i
    binds root too). False where neither works."""
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", str(path)], check=True)
        return True
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", "-R", "+i", str(path)],
                          capture_output=True).returncode == 0


def _thaw(path: Path) -> None:
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "u+w", str(path)], check=False)
    else:
        subprocess.run(["chattr", "-R", "-i", str(path)], check=False, capture_output=True)


def test_a_read_only_store_is_one_line_and_reads_still_work(tmp_path, folder, tiny_model):
    db = tmp_path / "db"
    lib = Library(db, model=tiny_model, device="cpu")
    vid = lib.index([folder / "v0.mp4"]).by_status("indexed")[0].video_id
    lib.close()
    if not _freeze(db):
        pytest.skip("cannot make a folder read-only here (root without chattr)")
    try:
        err = _one_line(_cli("index", str(folder / "v1.mp4"), "--db", str(db), "--model",
                             tiny_model))
        assert "cannot" in err and str(db) in err
        # Reads work; the query log cannot be written, which is logged, never an error.
        p = _cli("select", vid, "a red circle", "--db", str(db), "--json")
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "Traceback" not in err
    finally:
        _thaw(db)


def test_a_read_only_store_refuses_delete_and_optimize_in_one_line(tmp_path, folder,
                                                                   tiny_model):
    """On a read-only store `DELETE /v1/videos/{id}` answered 500 (EROFS on its lock file) and
    `framedex optimize` was an internal error (exit 2)."""
    import httpx
    from api_server import ThreadServer

    from framedex.api.settings import Settings

    db = tmp_path / "db"
    lib = Library(db, model=tiny_model, device="cpu")
    vid = lib.index([folder / "v0.mp4"]).by_status("indexed")[0].video_id
    lib.close()
    if not _freeze(db):
        pytest.skip("cannot make a folder read-only here (root without chattr)")
    try:
        err = _one_line(_cli("optimize", "--db", str(db)))
        assert "cannot" in err and str(db) in err and "read-only" in err, err
        settings = Settings(db=str(db), model=tiny_model, device="cpu",
                            upload_dir=str(tmp_path / "uploads"), optimize_every_s=0)
        with ThreadServer(settings) as srv:
            r = httpx.delete(f"{srv.base}/v1/videos/{vid}", timeout=30)
            assert r.status_code == 409, r.text
            assert "read-only" in r.json()["error"]["message"]
            assert httpx.get(f"{srv.base}/v1/videos/{vid}", timeout=30).status_code == 200
    finally:
        _thaw(db)
def test_a_schema_2_store_is_upgraded_and_its_old_videos_still_served(tmp_path, folder,
                                                                       tiny_model):
    """Schema 3 records each source's identity (device, inode, mtime); a store written before
    gets the columns on first open, its videos keep being served (checked by path and size),
    and what is indexed from then on carries the identity."""
    import lance

    from framedex.store.schema import SCHEMA_VERSION_KEY

    db = tmp_path / "db"
    lib = Library(db, model=tiny_model, device="cpu")
    lib.index([folder / "v0.mp4"])
    (old_id,) = [v.video_id for v in lib.videos()]
    videos = lance.dataset(str(db / "videos.lance"))
    videos.drop_columns(["file_dev", "file_ino", "file_mtime_ns"])  # as schema 2 wrote it
    lance.dataset(str(db / "frames.lance")).update_schema_metadata(
        {SCHEMA_VERSION_KEY.decode(): "2"})

    lib = Library(db, model=tiny_model, device="cpu")
    lib.index([folder / "v1.mp4"])
    assert {"file_dev", "file_ino", "file_mtime_ns"} <= set(
        lance.dataset(str(db / "videos.lance")).schema.names)
    meta = lance.dataset(str(db / "frames.lance")).schema.metadata
    assert meta[SCHEMA_VERSION_KEY] == b"3"
    records = {v.video_id: v for v in Library(db, model=tiny_model).videos()}
    old = records.pop(old_id)
    (new,) = records.values()
    assert old.file_ino is None and old.file_size == (folder / "v0.mp4").stat().st_size
    assert new.file_ino == (folder / "v1.mp4").stat().st_ino
    for vid in (old_id, new.video_id):
        frame = int(lib.embeddings(vid)[1].frame_idx[0])
        assert lib.frame_jpeg(vid, frame)[:2] == b"\xff\xd8"


def test_upkeep_failing_after_the_commits_is_a_warning_not_a_failed_run(tmp_path, folder,
                                                                       tiny_model, monkeypatch):
    """One lost race or a full disk in the post-run optimize made `framedex index` exit 1
    with empty --json output, although its videos were committed and live."""
    import json

    from typer.testing import CliRunner

    from framedex.cli import app
    from framedex.errors import StoreError

    def full_disk(self, **options):
        raise StoreError(f"cannot optimize the store at {self.uri}: the disk is full")

    monkeypatch.setattr(LanceStore, "optimize", full_disk)
    db = tmp_path / "db"
    run = CliRunner().invoke(app, ["index", str(folder / "v2.mp4"), "--db", str(db),
                                   "--model", tiny_model, "--json"])
    assert run.exit_code == 0, run.output
    report = json.loads(run.stdout)
    assert len(report["indexed"]) == 1 and "the disk is full" in report["warnings"][0]
    assert "framedex: warning: the videos are indexed" in run.stderr
    assert Library(db).videos()[0].num_indexed == 8  # committed and live
