"""Render a small demo library, serve it, and take the viewer screenshots in docs/.

    python scripts/viewer_screenshots.py            # -> docs/viewer-{search,video,compare}.png

Offline: the videos are generated (``framedex.synth``), indexed with the shipped
``synthetic-shapes`` model, served by the same app as ``framedex serve`` on loopback, and shot
with the system's Chromium (``/usr/bin/chromium``, or ``--chromium PATH``) through Playwright.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
NEEDLES = [
    {"time": 60.0, "duration": 5.0, "background": "white",
     "objects": [{"shape": "star", "color": "purple"}]},
    {"time": 100.0, "duration": 5.0, "background": "black",
     "objects": [{"shape": "triangle", "color": "orange"}]},
    {"time": 140.0, "duration": 5.0, "background": "gray",
     "objects": [{"shape": "star", "color": "purple"}]},
]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def build_library(work: Path) -> Path:
    """Three generated videos, indexed; returns the store."""
    from framedex import Library
    from framedex.synth import haystack_spec, render

    media = work / "library"
    media.mkdir(parents=True)
    render(haystack_spec(180.0, NEEDLES, seed=7, size=[256, 192]), media / "needles.mp4")
    for name in ("clip1", "clip2"):
        spec = json.loads((ROOT / "examples/specs" / f"{name}.json").read_text())
        render(spec, media / f"{name}.mp4")
    db = work / "framedex.db"
    with Library(db, model="synthetic-shapes", device="cpu") as lib:
        lib.index([media])
    return db


def serve(db: Path) -> tuple[str, object]:
    """The app ``framedex serve`` runs, in a thread on a free loopback port."""
    import uvicorn

    from framedex.api.app import create_app
    from framedex.api.settings import Settings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(db=str(db), model="synthetic-shapes", device="cpu", optimize_every_s=0)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return base, server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError("the server did not start")


def shoot(base: str, out: Path, chromium: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    videos = httpx.get(base + "/v1/videos").json()["data"]
    vid = next(v["video_id"] for v in videos if v["path"].endswith("needles.mp4"))
    q = "a+purple+star"
    pages = {
        "viewer-search.png": f"/?q={q}&limit=8",
        "viewer-video.png": f"/videos/{vid}?q={q}&sampler=aks&budget=8&t=60&end=65",
        "viewer-compare.png": f"/videos/{vid}/compare?q={q}&sampler=aks&sampler=bolt"
                              "&sampler=uniform&budget=8",
    }
    written = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        for name, path in pages.items():
            page.goto(base + path)
            page.wait_for_load_state("networkidle")
            # the player has seeked to the moment and shows its frame (no spinner)
            page.wait_for_function("() => [...document.querySelectorAll('video')].every("
                                   "v => v.readyState >= 2 && !v.seeking)")
            page.wait_for_timeout(1000)  # the player's loading indicator fades out
            target = out / name
            page.screenshot(path=str(target), full_page=True)
            written.append(target)
        browser.close()
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="framedex-shots-"))
    try:
        base, server = serve(build_library(work))
        for path in shoot(base, args.out, args.chromium):
            print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
        server.should_exit = True  # type: ignore[attr-defined]
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
