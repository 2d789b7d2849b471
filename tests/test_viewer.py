"""The web viewer end to end: ``framedex serve --api-key`` on loopback, driven by headless
Chromium (Playwright, the system's ``/usr/bin/chromium``) and by httpx.

One server for the module, on a store that starts empty: the empty-library pages are seen
first, then two generated videos with a known needle (a purple star at 20-25 s of a 40 s
haystack) are ingested through the API. Browser tests are marked ``browser`` and skipped with
the reason when Chromium or Playwright is missing (``.ci/run`` installs both and sets
``FRAMEDEX_REQUIRE_BROWSER=1``, which turns the skip into a failure).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from pathlib import Path

import httpx
import pytest
from api_server import SHIPPED, kill9, poll_job, start_cli_server

from framedex.errors import EmptyLibraryError

pytestmark = pytest.mark.heavy  # servers, clusters or processes: not in make test-fast

KEY = "viewer-test-key-0123"
NEEDLE = (20.0, 25.0)  # the purple star's span in haystack.mp4
QUESTION = "a purple star"
CHROMIUM = os.environ.get("FRAMEDEX_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
OTHER = {"fps": 10, "size": [96, 64], "seed": 2, "scenes": [
    {"duration": 6.0, "background": "black", "objects": [{"shape": "circle", "color": "red"}]},
    {"duration": 6.0, "background": "white", "objects": [{"shape": "square", "color": "green"}]},
]}


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if importlib.util.find_spec("playwright") is None:
        return "playwright is not installed (pip install -e '.[dev]')"
    if not os.access(CHROMIUM, os.X_OK):
        return (f"no Chromium at {CHROMIUM} (apt-get install chromium chromium-driver; "
                ".ci/run does)")
    return None


# -- the server and its library -------------------------------------------------------------


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    from framedex.synth import haystack_spec, render

    root = tmp_path_factory.mktemp("viewer-media")
    needle = {"time": NEEDLE[0], "duration": NEEDLE[1] - NEEDLE[0], "background": "white",
              "objects": [{"shape": "star", "color": "purple"}]}
    render(haystack_spec(40.0, [needle], seed=1, size=[128, 96]), root / "haystack.mp4")
    render(OTHER, root / "shapes.mkv")  # a container browsers do not play: a frame strip
    render(dict(OTHER, seed=9), root / "late.mp4")  # ingested while /jobs watches
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory, media, request):
    model = "synthetic-shapes" if (SHIPPED / "open_clip_model.safetensors").is_file() \
        else request.getfixturevalue("tiny_model")
    db = tmp_path_factory.mktemp("viewer-db") / "lib.db"
    proc, base = start_cli_server(db, model, "--api-key", KEY, "--allow-root", str(media))
    try:
        yield {"base": base, "db": db}
    finally:
        kill9(proc)


@pytest.fixture(scope="module")
def api(server):
    """An API client with the key in the header (what scripts and the tests' setup use)."""
    with httpx.Client(base_url=server["base"], headers={"Authorization": f"Bearer {KEY}"},
                      timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium, or None when it cannot run here (the ``page`` fixture skips)."""
    reason = browser_missing()
    if reason is not None:
        if os.environ.get("FRAMEDEX_REQUIRE_BROWSER") == "1":
            pytest.fail(f"FRAMEDEX_REQUIRE_BROWSER=1 but {reason}")
        yield None
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def sign_in(context, base: str, key: str = KEY, start: str = "/"):
    """Open ``start``, answer the key prompt, return the page (now on ``start``)."""
    page = context.new_page()
    page.goto(base + start)
    page.fill("input[name=key]", key)
    page.click("form[data-testid=login-form] button[type=submit]")
    page.wait_for_load_state()
    return page


@pytest.fixture(scope="module")
def signed_in(browser, server):
    """A browser context that has signed in once through the key prompt."""
    if browser is None:
        yield None
        return
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    sign_in(context, server["base"]).close()
    yield context
    context.close()


@pytest.fixture()
def page(signed_in):
    if signed_in is None:
        pytest.skip(browser_missing() or "no browser")
    p = signed_in.new_page()
    yield p
    p.close()


@pytest.fixture(scope="module")
def empty_library(server, api, signed_in) -> dict:
    """What the library pages showed while the store was empty (``indexed`` needs this
    first, so the order of the tests does not matter)."""
    base = server["base"]
    seen = {}
    if signed_in is not None:
        p = signed_in.new_page()
        response = p.goto(base + "/?q=" + QUESTION.replace(" ", "+"))
        seen["search"] = {"status": response.status, "html": p.content(),
                          "reason": p.inner_text("[data-testid=error-reason]")}
        p.click("[data-testid=home]")  # the way back
        seen["home"] = {"status": 200, "html": p.content()}
        seen["browser"] = True
        p.close()
    else:
        r = api.get("/", params={"q": QUESTION})
        seen["search"] = {"status": r.status_code, "html": r.text,
                          "reason": re.sub("<[^>]+>", "", r.text)}
        seen["home"] = {"status": api.get("/").status_code, "html": api.get("/").text}
        seen["browser"] = False
    return seen


@pytest.fixture(scope="module")
def indexed(api, media, empty_library) -> dict:
    """Both videos ingested through the API (by server-side path)."""
    ids = {}
    for name in ("haystack.mp4", "shapes.mkv"):
        r = api.post("/v1/videos", json={"path": str(media / name), "fps": 1})
        assert r.status_code == 202, r.text
        job = poll_job(api, r.json()["job_id"])
        assert job["status"] == "done", job
        ids[name] = job["video_id"]
    return ids


def loaded(page, selector: str) -> list[bool]:
    """Whether each ``<img>`` under ``selector`` finished loading with real pixels."""
    page.wait_for_function("sel => [...document.querySelectorAll(sel)].every(i => i.complete)",
                           arg=selector)
    return page.eval_on_selector_all(selector, "els => els.map(i => i.naturalWidth > 0)")


# -- browser tests --------------------------------------------------------------------------


@pytest.mark.browser
def test_key_prompt_sets_a_cookie_that_cannot_change_state(browser, server, indexed):
    if browser is None:
        pytest.skip(browser_missing() or "no browser")
    base = server["base"]
    context = browser.new_context()
    try:
        p = context.new_page()
        p.goto(base + "/stats")
        assert p.url.startswith(base + "/login?next=")  # asked for the key, once
        p.fill("input[name=key]", "not-the-key-000")
        p.click("form[data-testid=login-form] button[type=submit]")
        assert "wrong key" in p.inner_text("[data-testid=login-error]")
        assert context.cookies() == []
        p.fill("input[name=key]", KEY)
        p.click("form[data-testid=login-form] button[type=submit]")
        p.wait_for_url(base + "/stats")  # back where it started
        (cookie,) = context.cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
        assert KEY not in cookie["value"]
        assert p.evaluate("document.cookie") == ""  # HttpOnly: invisible to scripts
        p.goto(base + f"/videos/{indexed['haystack.mp4']}")  # no second prompt
        assert p.locator("h1").inner_text().endswith("/haystack.mp4")
        # State-changing API calls carrying only the cookie are refused (the same request
        # contexts carry the cookie: a viewer page through them is 200).
        assert p.request.get(base + "/stats").status == 200
        assert p.evaluate("fetch('/stats').then(r => r.status)") == 200
        r = p.request.post(base + "/v1/videos", data={"path": "/etc/hosts"})
        assert r.status == 401
        status = p.evaluate("""id => fetch('/v1/videos/' + id, {method: 'DELETE',
            credentials: 'include'}).then(r => r.status)""", indexed["haystack.mp4"])
        assert status == 401
        assert p.request.get(base + "/v1/videos").status == 401  # the API never takes it
        assert httpx.get(f"{base}/v1/videos/{indexed['haystack.mp4']}",
                         headers={"x-api-key": KEY}).status_code == 200  # still there
    finally:
        context.close()


@pytest.mark.browser
def test_search_finds_the_needle_and_its_thumbnail_loads(page, server, indexed):
    page.goto(server["base"] + "/")
    page.fill("input[name=q]", QUESTION)
    page.press("input[name=q]", "Enter")
    page.wait_for_selector("[data-testid=moment]")
    top = page.locator("[data-testid=moment]").first
    assert top.get_attribute("data-video-id") == indexed["haystack.mp4"]
    start, end = float(top.get_attribute("data-start")), float(top.get_attribute("data-end"))
    assert NEEDLE[0] <= start < end <= NEEDLE[1] + 1.0  # + one grid step at 1 fps
    assert all(loaded(page, "[data-testid=moment] img"))
    scores = [float(s) for s in page.eval_on_selector_all(
        "[data-testid=moment]", "els => els.map(e => e.dataset.score)")]
    assert scores == sorted(scores, reverse=True)  # best first
    top.locator("a").click()  # to the video page, at that moment
    page.wait_for_selector("[data-testid=relevance-curve]")
    assert f"/videos/{indexed['haystack.mp4']}?" in page.url
    src = page.get_attribute("video[data-testid=player]", "src")
    assert src.startswith(f"/viewer/source/{indexed['haystack.mp4']}#t={start:.3f}")


@pytest.mark.browser
def test_video_page_shows_an_aks_selection_at_k8(page, server, indexed):
    vid = indexed["haystack.mp4"]
    page.goto(f"{server['base']}/videos/{vid}?q=a+purple+star&sampler=aks&budget=8")
    frames = page.locator("[data-testid=chosen-frame]")
    assert frames.count() == 8
    times = [float(t) for t in page.eval_on_selector_all(
        "[data-testid=chosen-frame]", "els => els.map(e => e.dataset.t)")]
    assert times == sorted(times) and len(set(times)) == 8
    assert any(NEEDLE[0] <= t < NEEDLE[1] for t in times)
    assert all(loaded(page, "[data-testid=chosen-frame] img"))
    captions = frames.locator("figcaption").all_inner_texts()
    assert all(re.search(r"\d:\d\d", c) for c in captions)  # each frame shows its time
    curve = page.locator("svg[data-testid=relevance-curve]")
    assert curve.is_visible()
    assert len(curve.locator("polyline").get_attribute("points").split()) == 40  # 40 s @ 1 fps
    assert curve.locator("[data-testid=curve-pick]").count() == 8
    assert "8 frames = " in page.inner_text("[data-testid=cost-line]")
    assert "aks does not route" in page.inner_text("[data-testid=decision]")
    page.click("[data-testid=copy-openai]")  # copy as OpenAI request
    page.wait_for_selector(".copy-out:not([hidden])")
    body = json.loads(page.input_value(".copy-out"))
    parts = body["messages"][0]["content"]
    assert sum(1 for part in parts if part.get("type") == "image_url") == 8


@pytest.mark.browser
def test_router_page_shows_its_decision_and_reason(page, server, indexed):
    vid = indexed["haystack.mp4"]
    page.goto(f"{server['base']}/videos/{vid}?q=a+purple+star&sampler=router&tokens=2048")
    decision = page.inner_text("[data-testid=decision]")
    assert re.search(r"router decision\s+\w+", decision) and "does not route" not in decision
    assert page.inner_text("[data-testid=reason] dd").strip() not in ("", "—")
    assert page.locator("[data-testid=chosen-frame][data-tier]").count() >= 1


@pytest.mark.browser
def test_compare_view_puts_two_samplers_on_one_curve(page, server, indexed):
    vid = indexed["haystack.mp4"]
    page.goto(f"{server['base']}/videos/{vid}?q=a+purple+star&sampler=aks&budget=8")
    page.click("text=Compare samplers")
    page.uncheck("input[name=sampler][value=uniform]")
    page.check("input[name=sampler][value=aks]")
    page.check("input[name=sampler][value=bolt]")
    page.click("form.compare-form button[type=submit]")
    page.wait_for_selector("[data-testid=sampler-column]")
    columns = page.locator("[data-testid=sampler-column]")
    assert [columns.nth(i).get_attribute("data-sampler") for i in range(2)] == ["aks", "bolt"]
    for i in range(2):
        assert columns.nth(i).locator("[data-testid=chosen-frame]").count() == 8
    assert page.locator("svg[data-testid=relevance-curve]").count() == 1  # the same curve
    assert page.locator("svg [data-testid=lane-pick]").count() == 16
    best = page.locator("svg [data-testid=best-moment]")
    assert best.count() == 1
    rows = page.locator("[data-testid=compare-row]")
    assert rows.count() == 2
    assert rows.nth(0).get_attribute("data-hit") == "true"  # AKS hits the needle at K = 8
    assert all(loaded(page, "[data-testid=chosen-frame] img"))


@pytest.mark.browser
def test_error_pages_say_why_and_lead_back(page, server, indexed):
    base, vid = server["base"], indexed["haystack.mp4"]
    cases = [
        ("/videos/no-such-video", 404, "no indexed video 'no-such-video'"),
        (f"/videos/{vid}?q=a+star&sampler=bolx", 422, "Did you mean 'bolt'?"),
        (f"/videos/{vid}?q=a+star&budget=abc", 422, "budget='abc' is invalid"),
        (f"/videos/{vid}?q=a+star&budget=0", 422, "budget=0 is invalid"),
        (f"/videos/{vid}/compare?q=a+star&sampler=aks", 422, "2 to 4 different samplers"),
    ]
    for path, status, reason in cases:
        response = page.goto(base + path)
        assert response.status == status, path
        assert reason in page.inner_text("[data-testid=error-reason]"), path
        assert "Traceback" not in page.content()
        assert page.locator("[data-testid=home]").get_attribute("href") == "/"
    page.click("[data-testid=back]")  # the last error offers the video page back
    page.wait_for_url(f"{base}/videos/{vid}")
    assert page.locator("h1").inner_text().endswith("/haystack.mp4")


def test_empty_library_pages_say_why_and_lead_back(server, empty_library):
    # Seen before anything was indexed (in the browser when there is one, else over HTTP).
    assert empty_library["search"]["status"] == EmptyLibraryError.http_status
    assert "has no indexed video" in empty_library["search"]["reason"]
    assert 'data-testid="home" href="/"' in empty_library["search"]["html"]
    assert str(server["db"]) not in empty_library["search"]["html"]  # no server path shown
    assert empty_library["home"]["status"] == 200
    assert "No video is indexed yet" in empty_library["home"]["html"]


@pytest.mark.browser
def test_pages_work_without_javascript(browser, signed_in, server, indexed):
    if browser is None:
        pytest.skip(browser_missing() or "no browser")
    context = browser.new_context(java_script_enabled=False)
    context.add_cookies(signed_in.cookies())
    try:
        p = context.new_page()
        p.goto(server["base"] + "/?q=a+purple+star")
        assert p.locator("[data-testid=moment]").count() >= 1
        p.goto(f"{server['base']}/videos/{indexed['haystack.mp4']}?q=a+purple+star&budget=8")
        assert p.locator("svg[data-testid=relevance-curve] polyline").count() == 1
        assert p.locator("[data-testid=chosen-frame]").count() == 8
        srcs = p.eval_on_selector_all("[data-testid=chosen-frame] img", "els => els.map(i => "
                                      "i.getAttribute('src'))")
        assert all(s.startswith("data:image/jpeg;base64,") for s in srcs)
    finally:
        context.close()


@pytest.mark.browser
def test_unplayable_container_gets_a_frame_strip(page, server, indexed):
    page.goto(f"{server['base']}/videos/{indexed['shapes.mkv']}")
    assert page.locator("video").count() == 0
    strip = page.locator("[data-testid=frame-strip]")
    assert strip.is_visible() and strip.locator("img").count() == 12
    assert all(loaded(page, "[data-testid=frame-strip] img"))


@pytest.mark.browser
def test_jobs_page_follows_an_ingest_live(page, server, api, media, indexed):
    page.goto(server["base"] + "/jobs")
    assert page.locator("[data-testid=job][data-status=done]").count() >= 2
    r = api.post("/v1/videos", json={"path": str(media / "late.mp4"), "fps": 1})
    job_id = r.json()["job_id"]
    # The row appears and turns done without a reload (the page follows the jobs).
    page.wait_for_selector(f"[data-testid=job][data-job-id='{job_id}'][data-status=done]",
                           timeout=60_000)
    assert poll_job(api, job_id)["status"] == "done"


@pytest.mark.browser
def test_stats_page_shows_the_query_log(page, server, indexed):
    page.goto(server["base"] + "/stats")
    rows = page.locator("[data-testid=stats-row]")
    assert rows.count() >= 1
    assert page.locator("svg[data-testid=stats-chart] rect").count() == 2 * rows.count()
    # each bar's label ends inside the chart (the longest bar's was cut at the right edge)
    chart = page.locator("svg[data-testid=stats-chart]").bounding_box()
    for box in (label.bounding_box() for label in
                page.locator("[data-testid=stats-bar-label]").all()):
        assert box is not None and chart is not None
        assert box["x"] + box["width"] <= chart["x"] + chart["width"] + 0.5, (box, chart)
    text_cache = page.locator("[data-testid=cache-row][data-cache=text]").inner_text()
    assert "1024" in text_cache  # its max_entries, in the max_entries column


# -- over HTTP, without a browser -----------------------------------------------------------


def test_source_answers_range_requests_on_the_indexed_file_only(server, api, media, indexed):
    vid = indexed["haystack.mp4"]
    data = (media / "haystack.mp4").read_bytes()
    r = api.get(f"/viewer/source/{vid}", headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == data[100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{len(data)}"
    assert r.headers["content-type"] == "video/mp4" and r.headers["accept-ranges"] == "bytes"
    r = api.get(f"/viewer/source/{vid}", headers={"Range": "bytes=-16"})
    assert r.status_code == 206 and r.content == data[-16:]
    r = api.get(f"/viewer/source/{vid}", headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(data)}"
    r = api.get(f"/viewer/source/{vid}")
    assert r.status_code == 200 and r.content == data
    assert api.get("/viewer/source/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert httpx.get(f"{server['base']}/viewer/source/{vid}").status_code == 401  # no cookie


def test_cookie_opens_the_viewer_pages_and_nothing_else(server, indexed):
    base, vid = server["base"], indexed["haystack.mp4"]
    r = httpx.get(f"{base}/?q=a+star")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2F%3Fq%3Da%2Bstar"
    r = httpx.post(f"{base}/login", data={"key": KEY, "next": "/stats"})
    assert r.status_code == 303 and r.headers["location"] == "/stats"
    set_cookie = r.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=lax" in set_cookie and "path=/" in set_cookie
    with httpx.Client(base_url=base, cookies=r.cookies, timeout=60) as browser_like:
        for path in ("/", "/jobs", "/stats", f"/videos/{vid}",
                     f"/viewer/thumb/{vid}.jpg?t=21", "/viewer/static/viewer.css"):
            assert browser_like.get(path).status_code == 200, path
        for method, path in (("POST", "/v1/videos"), ("DELETE", f"/v1/videos/{vid}"),
                             ("POST", "/v1/search"), ("GET", "/v1/videos")):
            r = browser_like.request(method, path, json={"path": "/etc/hosts", "text": "x"})
            assert r.status_code == 401, (method, path)
            assert r.json()["error"]["code"] == "unauthorized"
    assert httpx.post(f"{base}/login", data={"key": "wrong-key-000"}).status_code == 401


def test_logout_ends_the_session_and_the_same_cookie_is_refused(server, indexed):
    """The cookie was a MAC of a constant: after /logout a copy of it still opened every page
    (issue 27). Now /logout ends the session on the server."""
    base, vid = server["base"], indexed["haystack.mp4"]
    r = httpx.post(f"{base}/login", data={"key": KEY, "next": "/"})
    cookie = r.cookies["framedex_viewer"]
    again = httpx.post(f"{base}/login", data={"key": KEY, "next": "/"}).cookies["framedex_viewer"]
    assert cookie != again  # each sign-in is its own session
    jar = {"framedex_viewer": cookie}
    assert httpx.get(f"{base}/stats", cookies=jar).status_code == 200
    assert httpx.get(f"{base}/viewer/source/{vid}", cookies=jar).status_code == 200
    r = httpx.post(f"{base}/logout", cookies=jar)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    r = httpx.get(f"{base}/stats", cookies=jar)  # the same cookie, kept by an attacker
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    assert httpx.get(f"{base}/viewer/source/{vid}", cookies=jar).status_code == 401
    assert httpx.get(f"{base}/stats", cookies={"framedex_viewer": again}).status_code == 200


def test_pages_fetch_nothing_from_elsewhere(api, indexed):
    vid = indexed["haystack.mp4"]
    for path in ("/", "/?q=a+purple+star", f"/videos/{vid}?q=a+purple+star",
                 f"/videos/{vid}/compare?q=a+purple+star", "/jobs", "/stats", "/videos/nope"):
        r = api.get(path)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp, path
        assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", r.text), path
        assert r.headers["content-type"].startswith("text/html")


def test_jobs_page_names_the_files_and_links_only_live_videos(api, tmp_path):
    """The jobs page showed no file names, and linked to videos that had been deleted."""
    from framedex.synth import render

    clip = tmp_path / "upload-me.mp4"
    render(dict(OTHER, seed=31), clip)
    with clip.open("rb") as fh:
        r = api.post("/v1/videos", files={"file": ("upload-me.mp4", fh, "video/mp4")})
    job = poll_job(api, r.json()["job_id"])
    vid = job["video_id"]

    def row() -> str:
        html = api.get("/jobs").text
        return re.search(rf'<tr data-testid="job" data-job-id="{job["job_id"]}".*?</tr>', html,
                         re.S).group(0)

    assert '<td data-testid="job-file">upload-me.mp4</td>' in row()
    assert f'href="/videos/{vid}"' in row()
    assert api.delete(f"/v1/videos/{vid}").status_code in (200, 204)
    assert f'href="/videos/{vid}"' not in row() and "(deleted)" in row()


def test_stats_page_has_the_numbers_of_framedex_stats(server, api, indexed):
    api.get(f"/videos/{indexed['haystack.mp4']}", params={"q": QUESTION, "sampler": "bolt"})
    html = api.get("/stats").text
    shown = {(m[0], m[1]): int(m[2]) for m in re.findall(
        r'data-kind="(\w+)" data-sampler="(\w*)" data-count="(\d+)"', html)}
    from framedex.library import Library

    logged = Library(server["db"], log_queries=False).stats()  # what `framedex stats` prints
    assert shown == {(r["kind"], r["sampler"] or ""): r["count"] for r in logged}
    assert shown[("select", "bolt")] >= 1


def test_request_export_is_the_delivery_payload(api, indexed):
    vid = indexed["haystack.mp4"]
    r = api.get(f"/viewer/payload/{vid}.json",
                params={"q": QUESTION, "sampler": "uniform", "budget": 3, "format": "gemini"})
    assert r.status_code == 200, r.text
    parts = r.json()["contents"][0]["parts"]
    assert sum(1 for p in parts if "inline_data" in p) == 3
    r = api.get(f"/viewer/payload/{vid}.json", params={"q": QUESTION, "format": "xml"})
    assert r.status_code == 422 and "payload_format" in r.text


def test_viewer_routes_are_not_in_the_openapi_document(api):
    paths = api.get("/openapi.json").json()["paths"]
    assert all(p.startswith(("/v1/", "/health")) for p in paths), sorted(paths)
