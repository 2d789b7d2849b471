"""The web viewer's parts that need no server: the curve geometry, byte ranges, the sign-in
redirect target, and "nothing from the internet". (Its layering, api/ importing only
``framedex.library``, is checked with every face in test_architecture.py.)"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "framedex"


def test_viewer_ships_its_files_and_fetches_nothing_from_the_internet():
    pkg = resources.files("framedex.api.viewer")
    shipped = [p for d in ("templates", "static") for p in pkg.joinpath(d).iterdir()]
    names = {p.name for p in shipped}
    assert {"base.html", "video.html", "compare.html", "viewer.css", "viewer.js"} <= names
    external = re.compile(r"""(?:src|href|url)\s*[=(]\s*["']?(?:https?:)?//""", re.I)
    for p in shipped:
        assert not external.search(p.read_text()), f"{p.name} loads something from elsewhere"
    pyproject = (SRC.parents[1] / "pyproject.toml").read_text()
    assert "api/viewer/templates/*.html" in pyproject and "api/viewer/static/*" in pyproject


def test_curve_keeps_a_one_frame_needle_in_a_long_video():
    from framedex.api.viewer.curve import MAX_POINTS, CurveSvg

    t = np.arange(36_000, dtype=np.float64)  # ten hours at 1 fps
    s = np.full_like(t, 0.1)
    s[20_001] = 0.9
    curve = CurveSvg(t, s, duration=36_000.0)
    points = [tuple(map(float, p.split(","))) for p in curve.points.split()]
    assert len(points) <= MAX_POINTS
    top = min(points, key=lambda p: p[1])  # smallest y = highest score
    assert top[0] == pytest.approx(curve.x(20_001), abs=curve.plot_w / MAX_POINTS * 2)
    assert curve.x(0) == curve.left and curve.x(36_000) == curve.left + curve.plot_w
    assert curve.y(0.9) < curve.y(0.1)
    assert all(label != "-0.00" for _, label in CurveSvg([0, 1], [-0.001, 0.2], 2).y_ticks)


def test_best_moment_is_the_strong_run_around_the_peak():
    from framedex.library import RelevanceCurve

    t = np.arange(40, dtype=np.float64)
    s = np.full(40, 0.05)
    s[20:25] = [0.30, 0.33, 0.36, 0.34, 0.31]
    s[8] = 0.15  # a bump, below halfway from the median to the peak
    assert RelevanceCurve(t, s).best_moment() == (20.0, 25.0)
    assert RelevanceCurve(np.array([]), np.array([])).best_moment() is None


@pytest.mark.parametrize(("header", "expected"), [
    (None, None), ("bytes=0-99", (0, 99)), ("bytes=100-", (100, 999)), ("bytes=-10", (990, 999)),
    ("bytes=900-5000", (900, 999)), ("bytes=1000-", (1000, 999)), ("bytes=0-1,5-6", None),
    ("items=0-1", None), ("bytes=-", None), ("bytes=9-3", None),
])
def test_byte_range(header, expected):
    from framedex.api.viewer.assets import byte_range

    assert byte_range(header, 1000) == expected


@pytest.mark.parametrize(("target", "expected"), [
    ("/videos/abc?q=x", "/videos/abc?q=x"), (None, "/"), ("https://evil.example/", "/"),
    ("//evil.example/", "/"), ("/\\evil.example", "/"), ("stats", "/"),
    ("/\t/evil.example", "/"), ("/\n/evil.example", "/"),
])
def test_sign_in_returns_only_to_this_server(target, expected):
    from framedex.api.viewer.auth import safe_next

    assert safe_next(target) == expected


def _request(api_key, cookies=None, headers=None, sessions=None):
    from framedex.api.viewer.auth import ViewerSessions

    state = SimpleNamespace(settings=SimpleNamespace(api_key=api_key),
                            viewer_sessions=sessions or ViewerSessions())
    return SimpleNamespace(app=SimpleNamespace(state=state), cookies=cookies or {},
                           headers=headers or {})


def test_viewer_access_is_open_without_a_key_and_needs_the_cookie_with_one():
    from framedex.api.viewer.auth import COOKIE, LoginRequired, ViewerSessions, viewer_access

    key = "a-key-of-16-chars"
    sessions = ViewerSessions()
    cookie = sessions.start(key)
    viewer_access(_request(None))  # no key configured: open, like the API
    viewer_access(_request(key, cookies={COOKIE: cookie}, sessions=sessions))
    viewer_access(_request(key, headers={"authorization": f"Bearer {key}"}))
    other = ViewerSessions().start("another-key-123")
    sid, expires, mac = cookie.split(".")
    for bad in ({COOKIE: key}, {COOKIE: other}, {}, {COOKIE: f"{sid}.{int(expires) + 1}.{mac}"},
                {COOKIE: f"{sid}.{expires}.{mac[:-1]}0"}):
        with pytest.raises(LoginRequired):
            viewer_access(_request(key, cookies=bad, sessions=sessions))
    assert key not in cookie  # the cookie never carries the key
    with pytest.raises(LoginRequired):  # another server process never saw this session
        viewer_access(_request(key, cookies={COOKIE: cookie}))


def test_a_session_ends_at_logout_for_every_thread_and_at_its_expiry():
    import threading

    from framedex.api.viewer.auth import ViewerSessions

    key = "a-key-of-16-chars"
    sessions = ViewerSessions()
    cookie = sessions.start(key)
    seen: list[bool] = []
    ended = threading.Event()

    def other_thread() -> None:
        seen.append(sessions.valid(cookie, key))
        ended.wait(10)
        seen.append(sessions.valid(cookie, key))

    t = threading.Thread(target=other_thread)
    t.start()
    while not seen:
        pass
    sessions.end(cookie)  # /logout, in a request thread
    ended.set()
    t.join()
    assert seen == [True, False]
    expired = ViewerSessions(max_age_s=0).start(key)
    assert not ViewerSessions(max_age_s=0).valid(expired, key)
    few = ViewerSessions(limit=2)
    first, second, third = (few.start(key) for _ in range(3))
    assert [few.valid(c, key) for c in (first, second, third)] == [False, True, True]


def test_frame_times_read_like_a_player_clock():
    """Half-second frames were labelled 0:00, 0:02, 0:02, 0:04 (banker's rounding)."""
    from framedex.api.viewer.curve import clock

    assert [clock(t) for t in (0.5, 1.5, 2.5, 3.5)] == ["0:00", "0:01", "0:02", "0:03"]
    assert clock(3725.0) == "1:02:05" and clock(-1) == "0:00"
