"""The official Twelve Labs SDK against a self-hosted framedex.

Start a server, then run this file (it generates its own videos, so it works offline)::

    framedex serve --db tl.db --create --model synthetic-shapes --api-key my-secret-key &
    pip install twelvelabs==1.3.6
    FRAMEDEX_API_KEY=my-secret-key python examples/twelvelabs_sdk.py

``FRAMEDEX_URL`` defaults to http://127.0.0.1:8000. Only the ``base_url`` differs from code
written for Twelve Labs' cloud.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from PIL import Image
from twelvelabs import TwelveLabs

from framedex.synth import iter_frames, parse_spec, render


def needle_video(path: Path, seed: int, objects: list[tuple[str, str]]) -> Path:
    """12 s: a gray scene, then one 6 s scene per (shape, colour) on black."""
    scenes = [{"duration": 6.0, "background": "gray", "objects": []}]
    scenes += [{"duration": 6.0, "background": "black",
                "objects": [{"shape": s, "color": c}]} for s, c in objects]
    render({"fps": 5, "size": [64, 64], "seed": seed, "scenes": scenes}, path)
    return path


def main() -> None:
    base = os.environ.get("FRAMEDEX_URL", "http://127.0.0.1:8000")
    client = TwelveLabs(api_key=os.environ["FRAMEDEX_API_KEY"], base_url=f"{base}/v1.3")
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


if __name__ == "__main__":
    main()
