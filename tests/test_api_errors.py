"""Bad input against the real server: every answer is a 4xx in the one JSON error shape.

Decision (documented in ``POST /v1/videos``): an upload that is not a video is accepted (202)
and its job fails with the decoder's reason; the server does not sniff content types, the
decoder is the judge, exactly as for a server-side path.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import httpx
import pytest
import schemathesis
from api_server import ThreadServer, model_spec, poll_job
from hypothesis import HealthCheck, settings

from framedex.api.app import create_app
from framedex.api.settings import Settings

pytestmark = pytest.mark.heavy  # servers, clusters or processes: not in make test-fast

KEY = "errors-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
LIMIT = 100_000  # bytes


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> dict[str, Path]:
    from framedex.synth import render

    base = tmp_path_factory.mktemp("errs")
    root, outside = base / "root", base / "outside"
    root.mkdir()
    outside.mkdir()
    scene = {"duration": 3.0, "background": "gray",
             "objects": [{"shape": "square", "color": "green"}]}
    spec = {"fps": 10, "size": [32, 32], "scenes": [scene]}
    render(spec, root / "ok.mp4")
    render(spec, outside / "secret.mp4")
    os.symlink(outside / "secret.mp4", root / "link.mp4")
    os.symlink(outside, root / "linkdir")
    return {"base": base, "root": root, "outside": outside}


@pytest.fixture(scope="module")
def server(layout, tiny_model):
    s = Settings(db=str(layout["base"] / "lib.db"), model=model_spec(tiny_model), device="cpu",
                 api_key=KEY, allow_roots=(str(layout["root"]),), max_upload_bytes=LIMIT,
                 upload_dir=str(layout["base"] / "uploads"))
    with ThreadServer(s) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.base, headers=AUTH, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def video_id(client, layout) -> str:
    job = client.post("/v1/videos", json={"path": str(layout["root"] / "ok.mp4")}).json()
    done = poll_job(client, job["job_id"])
    assert done["status"] == "done", done
    return done["video_id"]


def error_of(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) <= {"code", "message", "detail"} and err["message"]
    assert "Traceback" not in r.text
    return err


# -- authentication -------------------------------------------------------------------------


def test_missing_and_wrong_key_are_401(server):
    r = httpx.get(f"{server.base}/v1/videos")
    assert error_of(r, 401)["code"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"
    r = httpx.get(f"{server.base}/v1/videos", headers={"Authorization": "Bearer nope"})
    assert "wrong API key" in error_of(r, 401)["message"]
    r = httpx.get(f"{server.base}/v1/videos", headers={"x-api-key": KEY + "x"})
    error_of(r, 401)
    assert httpx.get(f"{server.base}/v1/videos", headers={"x-api-key": KEY}).status_code == 200
    assert httpx.get(f"{server.base}/health").status_code == 200  # always open


# -- server-side paths ----------------------------------------------------------------------


@pytest.mark.parametrize("where", ["outside", "dotdot", "symlink", "symlinked_dir"])
def test_paths_escaping_the_roots_are_403(client, layout, where):
    root, outside = layout["root"], layout["outside"]
    path = {"outside": outside / "secret.mp4",
            "dotdot": f"{root}/../outside/secret.mp4",
            "symlink": root / "link.mp4",
            "symlinked_dir": root / "linkdir" / "secret.mp4"}[where]
    err = error_of(client.post("/v1/videos", json={"path": str(path)}), 403)
    assert err["code"] == "forbidden" and "--allow-root" in err["message"]


def test_relative_and_missing_paths(client, layout):
    err = error_of(client.post("/v1/videos", json={"path": "ok.mp4"}), 422)
    assert "absolute" in err["message"]
    err = error_of(client.post("/v1/videos", json={"path": str(layout["root"] / "nope.mp4")}),
                   404)
    assert err["code"] == "not_found"


# -- uploads --------------------------------------------------------------------------------


def test_oversized_upload_is_413_and_leaves_no_file(client, layout):
    big = b"\0" * (LIMIT + 200_000)
    err = error_of(client.post("/v1/videos", files={"file": ("big.mp4", big)}), 413)
    assert err["code"] == "payload_too_large" and str(LIMIT) in err["message"]

    def chunks():  # no Content-Length: the limit is enforced while streaming
        boundary = b"--xyz"
        yield boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="b.mp4"'
        yield b"\r\nContent-Type: video/mp4\r\n\r\n"
        for _ in range(40):
            yield b"\1" * 8192
        yield b"\r\n" + boundary + b"--\r\n"

    r = client.post("/v1/videos", content=chunks(),
                    headers={"content-type": "multipart/form-data; boundary=xyz"})
    error_of(r, 413)
    assert list((layout["base"] / "uploads").glob("*")) == []


def test_non_video_upload_job_fails_with_a_reason(client, layout):
    r = client.post("/v1/videos", files={"file": ("notes.mp4", b"not a video " * 100)})
    assert r.status_code == 202, r.text
    job = poll_job(client, r.json()["job_id"])
    assert job["status"] == "failed" and job["error"] and job["video_id"] is None
    assert list((layout["base"] / "uploads").glob("*")) == []  # the bad upload is removed


def test_upload_without_file_part_and_wrong_content_type(client):
    r = client.post("/v1/videos", files={"other": ("a.mp4", b"x")})
    assert "no file part" in error_of(r, 422)["message"]
    r = client.post("/v1/videos", content=b"x", headers={"content-type": "text/plain"})
    assert error_of(r, 415)["code"] == "unsupported_media_type"


# -- select, search, JSON -------------------------------------------------------------------


def test_budget_zero_names_the_field(client, video_id):
    err = error_of(client.post(f"/v1/videos/{video_id}/select",
                               json={"question": "q", "budget": 0}), 422)
    assert err["detail"][0]["field"] == "body.budget"


def test_unknown_sampler_lists_known_ones(client, video_id):
    err = error_of(client.post(f"/v1/videos/{video_id}/select",
                               json={"question": "q", "sampler": "bolts"}), 422)
    assert "Did you mean 'bolt'" in err["message"] and "uniform" in err["message"]


def test_bad_sampler_params_and_both_budgets(client, video_id):
    err = error_of(client.post(f"/v1/videos/{video_id}/select",
                               json={"question": "q", "sampler": "bolt",
                                     "params": {"no_such_param": 1}}), 422)
    assert "no_such_param" in err["message"]
    err = error_of(client.post(f"/v1/videos/{video_id}/select",
                               json={"question": "q", "budget": 4, "tokens": 500}), 422)
    assert "not both" in err["message"]


def test_unknown_video_and_job_are_404(client, video_id):
    err = error_of(client.post("/v1/videos/ffffffffffff/select", json={"question": "q"}), 404)
    assert err["code"] == "video_not_found"
    error_of(client.get("/v1/videos/ffffffffffff/frames/0.jpg"), 404)
    error_of(client.get("/v1/videos/ffffffffffff/embeddings"), 404)
    error_of(client.delete("/v1/videos/ffffffffffff"), 404)
    error_of(client.get("/v1/jobs/nope"), 404)
    error_of(client.get("/v1/nothing-here"), 404)


def test_malformed_json_is_400(client, video_id):
    for url in (f"/v1/videos/{video_id}/select", "/v1/search", "/v1/videos", "/v1/embed"):
        r = client.post(url, content=b'{"question": ', headers={"content-type":
                                                                   "application/json"})
        assert error_of(r, 400)["code"] == "malformed_json", url


#: JSON nested 10,000 levels (50 KB), as the attack sent it in every JSON text field.
DEEP_JSON = '{"a":' * 10_000 + "1" + "}" * 10_000


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), "green").save(buf, format="PNG")
    return buf.getvalue()


def test_deeply_nested_json_is_400_on_every_route_that_parses_json(client, layout, video_id):
    """It raised RecursionError (a 500) in the ingest's ``metadata`` field; JSON bodies nested
    as deep are malformed JSON too."""
    before = _uploads(layout)
    with open(layout["root"] / "ok.mp4", "rb") as fh:
        data = fh.read()
    r = client.post("/v1/videos", files={"file": ("ok.mp4", data)}, data={"metadata": DEEP_JSON})
    err = error_of(r, 400)
    assert err["code"] == "malformed_json" and "metadata" in err["message"]
    assert "nests 10000 levels" in err["message"]
    r = client.post("/v1/search", files={"image": ("q.png", _png())},
                    data={"filters": DEEP_JSON})
    assert error_of(r, 400)["code"] == "malformed_json"
    assert _uploads(layout) == before
    deep_body = '{"text": "x", "filters": ' + DEEP_JSON + "}"
    for url in ("/v1/search", "/v1/videos", "/v1/embed", f"/v1/videos/{video_id}/select"):
        r = client.post(url, content=deep_body.encode(),
                        headers={"content-type": "application/json"})
        assert error_of(r, 400)["code"] == "malformed_json", url


def test_search_validation(client, video_id):
    err = error_of(client.post("/v1/search", json={"text": "x", "group_by": "scene"}), 422)
    assert err["detail"][0]["field"] == "body.group_by"
    err = error_of(client.post("/v1/search", json={"text": "x", "filters": {
        "min_duration": 5, "max_duration": 1}}), 422)
    assert "max_duration" in err["message"]
    error_of(client.post("/v1/embed", json={"text": ""}), 422)
    error_of(client.post("/v1/embed", files={"image": ("x.png", b"not an image")}), 422)
    # a rule a request model checks itself reads as the rule, without pydantic's
    # "Value error, " in front of it
    err = error_of(client.post("/v1/search", json={"limit": 3}), 422)
    assert err["message"] == "body: give text, image_base64 or entity (or several)", err
    assert err["detail"][0]["message"] == "give text, image_base64 or entity (or several)"


# -- fuzzing: schemathesis against the app's own OpenAPI document -----------------------------

schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi())


def _resolve(doc: dict, pointer: str) -> object:
    """The node a local ``$ref`` (``#/a/b``) names in ``doc``; KeyError when it names none."""
    node: object = doc
    for part in pointer.removeprefix("#/").split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]  # type: ignore[index]
    return node


def _refs(node: object, at: str = "#"):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield at, v
            else:
                yield from _refs(v, f"{at}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _refs(v, f"{at}/{i}")


def test_every_ref_in_both_openapi_documents_resolves():
    """A reference that points nowhere made schema fuzzers skip the request bodies that used
    it (``#/$defs/Filters`` on /v1/search, and the nested models of three /v1.3 bodies)."""
    from framedex.api.twelvelabs import twelvelabs_app

    app = create_app(Settings())
    for name, doc in (("/v1", app.openapi()), ("/v1.3", twelvelabs_app(app).openapi())):
        refs = list(_refs(doc))
        assert refs, name
        broken = []
        for where, ref in refs:
            try:
                assert ref.startswith("#/")
                _resolve(doc, ref)
            except (AssertionError, KeyError, IndexError, TypeError, ValueError):
                broken.append(f"{where}: {ref}")
        assert not broken, f"{name}: {broken}"
    bodies = app.openapi()["paths"]["/v1/search"]["post"]["requestBody"]["content"]
    filters = bodies["application/json"]["schema"]["properties"]["filters"]
    assert "min_duration" in str(filters)  # the nested model is in the body itself


def test_the_fuzzers_generate_every_declared_request_body():
    """With the broken references schemathesis sent /v1/search only as multipart, and the
    /v1.3 embed, embed-task and index bodies not at all (cases without a body): the JSON
    bodies were never fuzzed. Now every declared media type of every body is generated."""
    from hypothesis import given

    from framedex.api.twelvelabs import twelvelabs_app

    app = create_app(Settings())
    for doc in (app.openapi(), twelvelabs_app(app).openapi()):
        fuzzed = schemathesis.openapi.from_dict(doc)
        for path, methods in doc["paths"].items():
            for method, spec in methods.items():
                declared = set((spec.get("requestBody") or {}).get("content", {}))
                if not declared:
                    continue
                seen: set[str | None] = set()
                draw = given(fuzzed[path][method.upper()].as_strategy())(_recorder(seen))
                settings(max_examples=12, deadline=None, derandomize=True,
                         suppress_health_check=list(HealthCheck))(draw)()
                assert seen == declared, (method, path, seen, declared)


def _recorder(seen: set):
    def record(case) -> None:
        seen.add(case.media_type)

    return record


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=True)
def test_fuzz_never_5xx(case, server, video_id):
    params = case.path_parameters or {}
    if "video_id" in params and case.method != "DELETE" and len(params["video_id"]) % 2:
        params["video_id"] = video_id  # half the time a real video: reach past the 404
    response = case.call(base_url=server.base, headers=AUTH, timeout=60)
    assert response.status_code < 500, (case.method, case.formatted_path, response.text[:300])


def test_serve_refuses_bad_options_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from framedex.cli import app

    result = CliRunner().invoke(app, ["serve", "--db", str(tmp_path / "db"), "--allow-root",
                                      str(tmp_path / "missing"), "--port", "0"])
    assert result.exit_code == 1
    assert "allow_root=" in result.output and "must be an existing folder" in result.output
    assert "Traceback" not in result.output
    result = CliRunner().invoke(app, ["serve", "--db", str(tmp_path / "db"), "--api-key", "x"])
    assert result.exit_code == 1 and "api_key" in result.output


# -- the attack on ingest and paths (issue: nothing lost, nothing doubled) --------------------


def _uploads(layout) -> set[Path]:
    return set((layout["base"] / "uploads").glob("*"))


def test_a_rejected_upload_leaves_no_file(client, layout):
    before = _uploads(layout)  # other tests (and the fuzzer) may have left indexed uploads
    with open(layout["root"] / "ok.mp4", "rb") as fh:
        data = fh.read()
    r = client.post("/v1/videos", files={"file": ("ok.mp4", data)}, data={"fps": "abc"})
    assert error_of(r, 422)["detail"][0]["field"] == "body.fps"
    r = client.post("/v1/videos", files={"file": ("ok.mp4", data)}, data={"metadata": "{oops"})
    assert error_of(r, 400)["code"] == "malformed_json"
    assert _uploads(layout) == before


def test_form_fields_are_capped(client, layout):
    before = _uploads(layout)
    many = {f"f{i}": "x" for i in range(40)}
    r = client.post("/v1/videos", files={"file": ("a.mp4", b"x" * 100)}, data=many)
    assert "parts" in error_of(r, 413)["message"]

    def chunks():  # no Content-Length: many 60 KB fields, each under the per-field limit
        for i in range(8):
            yield (f'--xyz\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\n'.encode()
                   + b"y" * 60_000 + b"\r\n")
        yield b"--xyz--\r\n"

    r = client.post("/v1/videos", content=chunks(),
                    headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert "together" in error_of(r, 413)["message"]
    assert _uploads(layout) == before


@pytest.mark.parametrize("ref", ["%00", "%00abc", "a" * 4000])
def test_odd_video_ids_are_4xx(client, ref):
    for method, url in (("GET", f"/v1/videos/{ref}"), ("GET", f"/v1/videos/{ref}/embeddings"),
                        ("GET", f"/v1/videos/{ref}/frames/0.jpg")):
        r = client.request(method, url)
        assert 400 <= r.status_code < 500, (url[:60], r.status_code, r.text[:200])
    r = client.post(f"/v1/videos/{ref}/select", json={"question": "a star"})
    assert 400 <= r.status_code < 500


@pytest.mark.parametrize("path", ["~nosuchuser/x.mp4", "/" + "c" * 4000 + ".mp4",
                                  "/tmp/\x00x.mp4"])
def test_odd_ingest_paths_are_4xx(client, path):
    r = client.post("/v1/videos", json={"path": path})
    assert 400 <= r.status_code < 500, r.text[:200]
    assert r.json()["error"]["message"]


def test_no_server_path_is_shown(client, server, layout, video_id):
    base = str(layout["base"])
    health = httpx.get(f"{server.base}/health").text
    listing = client.get("/v1/videos").json()
    assert base not in health
    paths = {v["video_id"]: v["path"] for v in listing["data"]}
    assert paths[video_id] == "root/ok.mp4"  # a file under the allow-root named "root"
    # others are uploads (the fuzzer's): shown under uploads/, never the server's folder
    assert all(p == "root/ok.mp4" or p.startswith("uploads/") for p in paths.values())
    hits = client.post("/v1/search", json={"text": "a green square"}).json()["results"]
    assert hits and {h["path"] for h in hits} <= set(paths.values())
    sel = client.post(f"/v1/videos/{video_id}/select", json={"question": "a green square"})
    assert sel.json()["path"] == "root/ok.mp4" and base not in sel.text
    bad = client.post("/v1/videos", files={"file": ("x.mp4", b"not a video " * 50)}).json()
    job = poll_job(client, bad["job_id"])
    assert job["status"] == "failed" and base not in job["error"] and "uploads/" in job["error"]


def test_a_file_swapped_for_a_symlink_after_submission_is_not_indexed(tmp_path, tiny_model,
                                                                      layout):
    """The attack: submit a file under the root, then swap it for a link to a file outside
    before the worker opens it. The job must fail and nothing outside may be indexed."""
    from framedex import Library
    from framedex.api.jobs import JobManager

    root = tmp_path / "root"
    root.mkdir()
    target = root / "clip.mp4"
    shutil.copy(layout["root"] / "ok.mp4", target)
    lib = Library(tmp_path / "db", model=model_spec(tiny_model), device="cpu")
    manager = JobManager(lib, workers=1, roots=(root.resolve(),))
    job = manager.submit("path", str(target.resolve()), {"fps": 1.0})  # checked: inside
    target.unlink()
    os.symlink(layout["outside"] / "secret.mp4", target)  # swapped before the worker runs
    manager.start()
    try:
        deadline = time.monotonic() + 60
        while manager.get(job.job_id).status in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        manager.stop()
    done = manager.get(job.job_id)
    assert done.status == "failed" and "replaced" in done.error
    assert lib.videos() == []


def test_a_folder_swapped_for_a_link_at_the_open_cannot_serve_a_file_outside(
        tmp_path, tiny_model, layout, monkeypatch):
    """The attack of issue 27, made deterministic with a hook at the worker's open: submit
    ``ROOT/r/x.mp4``; the moment the worker has opened it, ``mv ROOT/r ROOT/r_old; ln -s
    /outside/secret ROOT/r``. The job ended ``done`` with ``/outside/secret/x.mp4`` stored
    (the name resolved after the open), and the source route and the frames then served the
    outside file, whose size matched. Now the path stored is where the opened file really is,
    and every later open checks the file's identity, so later swaps are refused too."""
    from framedex import Library
    from framedex.api.jobs import JobManager
    from framedex.errors import VideoOpenError

    root, secret_dir = (tmp_path / "root").resolve(), (tmp_path / "outside" / "secret").resolve()
    (root / "r").mkdir(parents=True)
    secret_dir.mkdir(parents=True)
    clip = root / "r" / "x.mp4"
    shutil.copy(layout["root"] / "ok.mp4", clip)
    data = clip.read_bytes()
    secret = data[:-16] + b"SECRET-OUTSIDE!!"  # another file of the same size
    (secret_dir / "x.mp4").write_bytes(secret)

    real_open, swapped = os.open, []

    def open_then_swap(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        if str(path) == str(clip) and not swapped:  # the worker's open of the submitted file
            os.rename(root / "r", root / "r_old")
            os.symlink(secret_dir, root / "r")
            swapped.append(path)
        return fd

    lib = Library(tmp_path / "db", model=model_spec(tiny_model), device="cpu")
    manager = JobManager(lib, workers=1, roots=(root,))
    monkeypatch.setattr(os, "open", open_then_swap)
    manager.start()
    try:
        job = manager.submit("path", str(clip), {"fps": 1.0})  # checked at submission: inside
        deadline = time.monotonic() + 60
        while manager.get(job.job_id).status in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        manager.stop()
    assert swapped, "the hook never saw the worker's open"
    done = manager.get(job.job_id)
    assert done.status == "done", done.error
    kept = root / "r_old" / "x.mp4"
    record = lib.video(done.video_id)
    assert record.path == str(kept)  # where the opened file is: under the root
    assert (record.file_size, record.file_ino) == (len(data), kept.stat().st_ino)

    def served() -> bytes:
        src = lib.open_source(done.video_id)  # what /viewer/source/{id} streams
        try:
            return src.file.read()
        finally:
            src.file.close()

    frame = int(lib.embeddings(done.video_id)[1].frame_idx[0])
    assert served() == data and lib.frame_jpeg(done.video_id, frame)[:2] == b"\xff\xd8"

    # later: the recorded folder swapped for a link to the outside folder
    os.rename(root / "r_old", root / "r_moved")
    os.symlink(secret_dir, root / "r_old")
    for read in (served, lambda: lib.frame_jpeg(done.video_id, frame)):
        with pytest.raises(VideoOpenError, match="changed since it was indexed"):
            read()
    os.unlink(root / "r_old")
    os.rename(root / "r_moved", root / "r_old")
    assert served() == data
    # the same inode rewritten in place with other bytes of the same size (a new mtime)
    st = kept.stat()
    with open(kept, "r+b") as fh:
        fh.write(secret)
    os.utime(kept, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with pytest.raises(VideoOpenError, match="changed since it was indexed"):
        served()
    # the file at the recorded path replaced by a hard link to the outside file
    kept.unlink()
    os.link(secret_dir / "x.mp4", kept)
    with pytest.raises(VideoOpenError, match="changed since it was indexed"):
        served()
