"""The official Twelve Labs SDK against a self-hosted framedex.

Start a server, then run this file (it generates its own videos, so it works offline)::

    framedex serve --db tl.db --create --model synthetic-shapes --api-key my-secret-key &
    pip install twelvelabs==1.3.6
    FRAMEDEX_API_KEY=my-secret-key python examples/twelvelabs_sdk.py

``FRAMEDEX_URL`` defaults to http://127.0.0.1:8000. Only the ``base_url`` differs from code
written for Twelve Labs' cloud. A missing or wrong key, or no server at the URL, is one line
on stderr and exit code 1.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image
from twelvelabs import TwelveLabs
from twelvelabs.core.api_error import ApiError

from framedex.synth import iter_frames, parse_spec, render


def needle_video(path: Path, seed: int, objects: list[tuple[str, str]]) -> Path:
    """12 s: a gray scene, then one 6 s scene per (shape, colour) on black."""
    scenes = [{"duration": 6.0, "background": "gray", "objects": []}]
    scenes += [{"duration": 6.0, "background": "black",
                "objects": [{"shape": s, "color": c}]} for s, c in objects]
    render({"fps": 5, "size": [64, 64], "seed": seed, "scenes": scenes}, path)
    return path


def main(base: str, key: str) -> None:
    """The tour: an index, three videos, search (text, and text AND image), embeddings."""
    client = TwelveLabs(api_key=key, base_url=f"{base}/v1.3")
    folder = Path(tempfile.mkdtemp())
    videos = {
        "both": needle_video(folder / "both.mp4", 1, [("circle", "red"), ("star", "blue")]),
        "red": needle_video(folder / "red.mp4", 2, [("circle", "red")]),
        "blue": needle_video(folder / "blue.mp4", 3, [("star", "blue")]),
    }

    index = client.indexes.create(
        index_name=f"example-{int(time.time())}",
        models=[{"model_name": "marengo3.0", "model_options": ["visual"]}])
    ids = {}
    for name, path in videos.items():
        with open(path, "rb") as fh:
            asset = client.assets.create(method="direct", file=fh)
        ids[name] = client.indexes.indexed_assets.create(index.id, asset_id=asset.id).id
    for name, video_id in ids.items():
        while (a := client.indexes.indexed_assets.retrieve(index.id, video_id)).status \
                not in ("ready", "failed"):
            time.sleep(0.5)
        print(f"{name}: {a.status}, {a.system_metadata.duration:.1f} s")

    names = {v: k for k, v in ids.items()}
    for clip in client.search.query(index_id=index.id, search_options=["visual"],
                                    query_text="a blue star", page_limit=2):
        print(f"#{clip.rank} {names[clip.video_id]} {clip.start:.0f}-{clip.end:.0f} s")

    # operator="and" over a text part and an image part: the video showing both comes first
    red_png = folder / "red.png"
    Image.fromarray(next(iter(iter_frames(parse_spec({
        "fps": 5, "size": [64, 64], "scenes": [{"duration": 1.0, "background": "black",
                                                "objects": [{"shape": "circle",
                                                             "color": "red"}]}]}))))).save(red_png)
    with open(red_png, "rb") as fh:
        ranked = client.search.query(index_id=index.id, search_options=["visual"],
                                     query_text="a blue star", query_media_type="image",
                                     query_media_file=fh, operator="and", group_by="video")
        print("and:", [names[v.id] for v in ranked])

    text = client.embed.v_2.create(input_type="text", model_name="marengo3.0",
                                   text={"input_text": "a red circle"})
    print("text embedding:", len(text.data[0].embedding), "dimensions")
    task = client.embed.v_2.tasks.create(
        input_type="video", model_name="marengo3.0",
        video={"media_source": {"asset_id": asset.id},
               "segmentation": {"strategy": "fixed", "fixed": {"duration_sec": 6}}})
    while (done := client.embed.v_2.tasks.retrieve(task.id)).status == "processing":
        time.sleep(0.5)
    print("video embedding:", [(d.embedding_scope, d.start_sec, d.end_sec) for d in done.data])


def run() -> int:
    """:func:`main` with the three ways a first run goes wrong said in one line each."""
    base = os.environ.get("FRAMEDEX_URL", "http://127.0.0.1:8000")
    key = os.environ.get("FRAMEDEX_API_KEY")
    if not key:
        return fail("set FRAMEDEX_API_KEY to the key the server was started with "
                    "(framedex serve ... --api-key KEY)")
    try:
        main(base, key)
    except httpx.TransportError as ex:  # nothing listening, a timeout, a dropped connection
        return fail(f"no framedex server answers at {base} ({type(ex).__name__}: {ex}); start "
                    "one (see the top of this file) or set FRAMEDEX_URL")
    except ApiError as ex:
        body = ex.body if isinstance(ex.body, dict) else {}
        message = body.get("message") or body.get("error", {}).get("message") or ex.body
        if ex.status_code == 401:
            return fail(f"the server at {base} refused the key in FRAMEDEX_API_KEY ({message})")
        return fail(f"the server at {base} answered {ex.status_code}: {message}")
    return 0


def fail(message: str) -> int:
    print(f"twelvelabs_sdk.py: error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(run())
