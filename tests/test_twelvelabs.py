"""The official ``twelvelabs`` SDK (1.3.6) against a real framedex server on loopback.

``TwelveLabs(api_key=KEY, base_url=".../v1.3")``: create an index, upload generated videos
with known needles (assets + indexed assets, and the legacy ``tasks.create``), wait until
ready, search by text and by image (the top hit lies in the needle's span), ``and`` across
parts (the video with both needles first), page through results and lists, embed a text and an
image, run a video embedding task whose clips tile the video, and get clear 4xx answers for
what framedex does not offer (``analyze`` without a video LLM, analyze tasks, audio, a wrong
key). The ``/v1`` image and
multi-part search and a schemathesis run over ``/v1.3`` close the module.
"""

from __future__ import annotations

import base64
import functools
import http.server
import itertools
import os
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import numpy as np
import pytest
from api_server import ThreadServer, model_spec
from entity_world import DISTRACTORS, ON_WHITE, overlaps, png, reference_image, tiny_png
from needles import BLUE, BLUE_SPAN, RED, RED_SPAN, VIDEOS, needle_png, needle_spec

twelvelabs = pytest.importorskip("twelvelabs")
from twelvelabs import TwelveLabs  # noqa: E402
from twelvelabs.core.api_error import ApiError  # noqa: E402

from framedex.indexer.encoder import BUILTIN_MODELS  # noqa: E402
from framedex.library import internals  # noqa: E402

pytestmark = pytest.mark.heavy  # servers, clusters or processes: not in make test-fast

KEY = "tl-key-0123456789abcdef"
HAVE_SHIPPED = (Path(BUILTIN_MODELS["synthetic-shapes"]) / "open_clip_config.json").exists()
needs_shipped = pytest.mark.skipif(not HAVE_SHIPPED,
                                   reason="synthetic-shapes weights are not trained yet")
MARENGO = [{"model_name": "marengo3.0", "model_options": ["visual"]}]


def wait_for(fetch, done, timeout: float = 120.0, every: float = 0.1) -> Any:
    """Poll ``fetch()`` until ``done(value)``."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"not done after {timeout}s: {value}"
        time.sleep(every)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    from framedex.synth import render

    root = tmp_path_factory.mktemp("tl_media")
    for seed, (name, (red, blue)) in enumerate(VIDEOS.items()):
        render(needle_spec(seed, red, blue), root / f"{name}.mp4")
    (root / "blue.png").write_bytes(needle_png(BLUE))
    (root / "red.png").write_bytes(needle_png(RED))
    render(DISTRACTORS, root / "distractors.mp4")
    for i in range(3):
        (root / f"ref{i}.png").write_bytes(png(reference_image(i)))
    (root / "tiny.png").write_bytes(tiny_png())
    return root


@pytest.fixture(scope="module")
def media_url(media):
    """The media folder over HTTP on loopback (for ``method=url`` assets)."""
    handler = functools.partial(_Quiet, directory=str(media))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model, media_url):
    from framedex.api.settings import Settings

    settings = Settings(db=str(tmp_path_factory.mktemp("tl_db") / "lib.db"),
                        model=model_spec(tiny_model), device="cpu", api_key=KEY,
                        max_upload_bytes=8 << 20, allow_urls=(media_url,))
    with ThreadServer(settings) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server) -> TwelveLabs:
    return TwelveLabs(api_key=KEY, base_url=f"{server.base}/v1.3")


@pytest.fixture(scope="module")
def world(client, media) -> dict[str, Any]:
    """An index holding the four needle videos: three through assets and indexed assets,
    ``none`` through the legacy ``tasks.create`` + ``wait_for_done``."""
    index = client.indexes.create(index_name="needles", models=MARENGO)
    ids, assets = {}, {}
    for name in ("both", "red", "blue"):
        with open(media / f"{name}.mp4", "rb") as fh:
            asset = client.assets.create(method="direct", file=fh)
        assert asset.status == "ready" and asset.filename == f"{name}.mp4"
        created = client.indexes.indexed_assets.create(index.id, asset_id=asset.id)
        ids[name], assets[name] = created.id, asset.id
    with open(media / "none.mp4", "rb") as fh:
        task = client.tasks.create(index_id=index.id, video_file=fh)
    done = client.tasks.wait_for_done(task.id, sleep_interval=0.1)
    assert done.status == "ready" and done.video_id == task.video_id
    assert done.system_metadata.duration == pytest.approx(24.0, abs=0.3)
    ids["none"] = task.video_id
    for name in ("both", "red", "blue"):
        ready = wait_for(lambda n=name: client.indexes.indexed_assets.retrieve(index.id,
                                                                               ids[n]),
                         lambda a: a.status in ("ready", "failed"))
        assert ready.status == "ready", ready
    return {"index": index.id, "ids": ids, "assets": assets}


def search_items(client, world, **kw) -> list:
    pager = client.search.query(index_id=world["index"], search_options=["visual"], **kw)
    return list(pager)


# -- indexes, assets, indexing ----------------------------------------------------------------


def test_indexed_assets_are_ready_with_system_metadata(client, world, media):
    a = client.indexes.indexed_assets.retrieve(world["index"], world["ids"]["both"])
    assert a.status == "ready" and a.asset_id == world["assets"]["both"]
    meta = a.system_metadata
    assert (meta.filename, meta.width, meta.height) == ("both.mp4", 64, 64)
    assert meta.duration == pytest.approx(24.0, abs=0.3) and meta.fps == pytest.approx(5.0)
    assert meta.size == (media / "both.mp4").stat().st_size
    assert a.created_at.endswith("Z") and "T" in a.created_at  # RFC 3339
    listed = list(client.indexes.indexed_assets.list(world["index"], page_limit=3))
    assert sorted(x.id for x in listed) == sorted(world["ids"].values())
    assert all(x.status == "ready" for x in listed)
    legacy = list(client.indexes.videos.list(world["index"], page_limit=3))  # indexes.videos
    assert sorted(v.id for v in legacy) == sorted(world["ids"].values())
    index = client.indexes.retrieve(world["index"])
    assert index.video_count == 4 and index.total_duration == pytest.approx(96.0, abs=1)
    assert index.models[0].model_name == "marengo3.0"


def test_indexed_asset_embeddings_are_its_segments(client, world):
    a = client.indexes.indexed_assets.retrieve(world["index"], world["ids"]["red"],
                                              embedding_option=["visual"])
    segments = a.embedding.video_embedding.segments
    assert [(s.start_offset_sec, s.end_offset_sec) for s in segments] == \
        [(0, 6), (6, 12), (12, 18), (18, 24)]
    assert all(s.embedding_option == "visual" and len(s.float_) > 0 for s in segments)


def test_index_lists_page_until_an_empty_page(client, server):
    made = [client.indexes.create(index_name=f"extra-{i}", models=MARENGO).id for i in range(3)]
    names = [ix.index_name for ix in client.indexes.list(page_limit=2)]
    assert len(names) == len(set(names)) and {f"extra-{i}" for i in range(3)} <= set(names)
    past = httpx.get(f"{server.base}/v1.3/indexes", params={"page": 99},
                     headers={"x-api-key": KEY}).json()
    assert past["data"] == [] and past["page_info"]["total_results"] == len(names)
    client.indexes.update(made[0], index_name="renamed")
    assert client.indexes.retrieve(made[0]).index_name == "renamed"
    for ix in made:
        client.indexes.delete(ix)


def test_deleting_an_index_keeps_its_videos(client, world, server):
    other = client.indexes.create(index_name="subset", models=MARENGO).id
    client.indexes.indexed_assets.create(other, asset_id=world["assets"]["red"])
    wait_for(lambda: client.indexes.indexed_assets.retrieve(other, world["ids"]["red"]),
             lambda a: a.status == "ready")
    assert client.indexes.retrieve(other).video_count == 1
    client.indexes.delete(other)
    with pytest.raises(ApiError) as err:
        client.indexes.retrieve(other)
    assert err.value.status_code == 404
    v1 = httpx.get(f"{server.base}/v1/videos", headers={"x-api-key": KEY}).json()
    assert world["ids"]["red"] in {v["video_id"] for v in v1["data"]}
    assert client.indexes.retrieve(world["index"]).video_count == 4


def test_url_assets_only_under_an_allowed_prefix(client, media_url, world):
    asset = client.assets.create(method="url", url=f"{media_url}red.mp4")
    assert asset.method == "url" and asset.status == "ready"
    assert client.assets.retrieve(asset.id).size == asset.size
    with pytest.raises(ApiError) as err:
        client.assets.create(method="url", url="http://127.0.0.1:9/elsewhere.mp4")
    assert err.value.status_code == 400 and "--allow-url" in err.value.body["message"]
    with pytest.raises(ApiError) as err:  # no climbing out of the prefix
        client.assets.create(method="url", url=f"{media_url}%2e%2e/secret.mp4")
    assert err.value.status_code == 400 and "'..'" in err.value.body["message"]
    with pytest.raises(ApiError) as err:
        client.assets.create(method="multipart", filename="x.mp4")
    assert err.value.status_code == 400 and err.value.body["code"] == "unsupported"


def test_assets_are_deleted_expired_and_swept(client, server, media, tmp_path):
    """`DELETE /v1.3/assets/{id}` answered 405, assets were kept for good and the media folder
    was never swept: 20 uploads left 20 MB, and a killed server's partial upload stayed until
    the next restart (issue 27)."""
    import dataclasses
    from datetime import timedelta

    from framedex.synth import render

    state = server.server.config.app.state
    library, upkeep = state.library, state.upkeep
    folder = state.settings.media_dir_for(library.uri)
    uploads = state.settings.resolved_upload_dir_for(library.uri)

    def upload(path: Path):
        with open(path, "rb") as fh:
            return client.assets.create(method="direct", file=fh)

    # a plain asset: gone, with its file
    plain = upload(media / "blue.mp4")
    plain_file = Path(library.asset(plain.id).path)
    assert plain_file.parent == folder and plain_file.exists()
    client.assets.delete(plain.id)
    with pytest.raises(ApiError) as err:
        client.assets.retrieve(plain.id)
    assert err.value.status_code == 404 and not plain_file.exists()
    with pytest.raises(ApiError) as err:
        client.assets.delete(plain.id)
    assert err.value.status_code == 404

    # an asset a video was indexed from: 409, then force; the video keeps its source
    clip = tmp_path / "yellow.mp4"
    render({"fps": 5, "size": [64, 64], "seed": 77, "scenes": [
        {"duration": 6.0, "background": "gray",
         "objects": [{"shape": "square", "color": "yellow"}]}]}, clip)
    used = upload(clip)
    ix = client.indexes.create(index_name="asset-deletion", models=MARENGO).id
    vid = client.indexes.indexed_assets.create(ix, asset_id=used.id).id
    wait_for(lambda: client.indexes.indexed_assets.retrieve(ix, vid),
             lambda a: a.status in ("ready", "failed"))
    source = Path(library.video(vid).path)
    with pytest.raises(ApiError) as err:
        client.assets.delete(used.id)
    assert err.value.status_code == 409 and err.value.body["code"] == "resource_in_use"
    assert "force" in err.value.body["message"]
    client.assets.delete(used.id, force=True)
    with pytest.raises(ApiError):
        client.assets.retrieve(used.id)
    frame = httpx.get(f"{server.base}/v1/videos/{vid}/frames/0.jpg", headers={"x-api-key": KEY})
    assert frame.status_code == 200 and source.exists()

    # retention: an asset created 31 days ago goes at the next upkeep run (the default
    # --asset-retention-days is 30), the assets of the indexes stay
    old = upload(media / "red.mp4")
    record = library.asset(old.id)
    internals(library).store.save_asset(dataclasses.replace(
        record, created_at=record.created_at - timedelta(days=31)))
    kept_before = {a.asset_id for a in library.assets()} - {old.id}
    # a killed server's partial uploads (no record, not written for an hour), a fresh one
    hour_ago = time.time() - 3600
    partials = [folder / "0123456789abcdef", uploads / "0123456789abcdef-clip.mp4"]
    for p in partials:
        p.write_bytes(b"\0" * 1000)
        os.utime(p, (hour_ago, hour_ago))
    fresh = folder / "fedcba9876543210"
    fresh.write_bytes(b"\0" * 1000)
    done = upkeep.run_once(optimize=False)
    assert done["assets_expired"] == 1 and done["uploads_swept"] >= 1
    assert not any(p.exists() for p in partials) and fresh.exists()  # young: may be written
    with pytest.raises(ApiError):
        client.assets.retrieve(old.id)
    assert {a.asset_id for a in library.assets()} == kept_before
    # without the age rule, the media folder keeps exactly what an asset or a video uses
    age, upkeep.min_age_s = upkeep.min_age_s, 0
    try:
        upkeep.run_once(optimize=False)
    finally:
        upkeep.min_age_s = age
    wanted = {a.path for a in library.assets()} | {
        v.path for v in library.videos() if Path(v.path).parent == folder}
    assert {str(p) for p in folder.iterdir()} == wanted and str(source) in wanted


def test_the_assets_list_pages_newest_first(client, server):
    every = httpx.get(f"{server.base}/v1.3/assets", params={"page_limit": 50},
                      headers={"x-api-key": KEY}).json()
    total = every["page_info"]["total_results"]
    assert total >= 3 and len(every["data"]) == min(total, 50)
    created = [a["created_at"] for a in every["data"]]
    assert created == sorted(created, reverse=True)
    paged = [a.id for a in client.assets.list(page_limit=2)]  # the SDK pages to the end
    assert paged == [a["_id"] for a in every["data"]]


# -- search -------------------------------------------------------------------------------------


@needs_shipped
def test_text_search_top_hit_lies_in_the_needle(client, world):
    for text, span, owners in (("a blue star", BLUE_SPAN, ("both", "blue")),
                               ("a red circle", RED_SPAN, ("both", "red"))):
        items = search_items(client, world, query_text=text, page_limit=5)
        top = items[0]
        assert top.video_id in {world["ids"][o] for o in owners}
        assert span[0] - 0.5 <= top.start < top.end <= span[1] + 0.5, (text, top)
        assert top.rank == 1 and top.score > items[-1].score
        assert top.thumbnail_url.endswith(".jpg")


@needs_shipped
def test_image_search_top_hit_lies_in_the_needle(client, world, media, server):
    with open(media / "blue.png", "rb") as fh:
        items = search_items(client, world, query_media_type="image", query_media_file=fh,
                             page_limit=3)
    top = items[0]
    assert top.video_id in (world["ids"]["both"], world["ids"]["blue"])
    assert BLUE_SPAN[0] - 0.5 <= top.start < top.end <= BLUE_SPAN[1] + 0.5
    thumb = httpx.get(top.thumbnail_url, headers={"x-api-key": KEY})  # our frame JPEG
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"


@needs_shipped
def test_and_search_ranks_the_video_with_both_needles_first(client, world, media):
    both = world["ids"]["both"]
    with open(media / "blue.png", "rb") as fh:  # a text part and an image part
        videos = search_items(client, world, query_text="a red circle",
                              query_media_type="image", query_media_file=fh,
                              operator="and", group_by="video")
    # the video with neither needle is left out (below the default threshold, low)
    assert videos[0].id == both and world["ids"]["none"] not in {v.id for v in videos}
    assert videos[0].confidence in ("high", "medium", "low")
    spans = sorted((c.start, c.end) for c in videos[0].clips)
    assert spans == [RED_SPAN, BLUE_SPAN]
    with open(media / "red.png", "rb") as red, open(media / "blue.png", "rb") as blue:
        clips = search_items(client, world, query_media_type="image",
                             query_media_files=[red, blue], operator="and")
    assert clips[0].video_id == both
    # or: the best single part; the one-needle videos come close to "both"
    with open(media / "blue.png", "rb") as fh:
        ors = search_items(client, world, query_text="a red circle", query_media_type="image",
                           query_media_file=fh, operator="or", group_by="video")
    assert {v.id for v in ors[:3]} == {both, world["ids"]["red"], world["ids"]["blue"]}


@needs_shipped
def test_search_filters_by_id_duration_and_metadata(client, world):
    only = search_items(client, world, query_text="a blue star",
                        filter=f'{{"id": ["{world["ids"]["blue"]}"]}}')
    assert {i.video_id for i in only} == {world["ids"]["blue"]}
    assert search_items(client, world, query_text="a blue star",
                        filter='{"duration": {"gte": 100}}') == []
    with pytest.raises(ApiError) as err:
        search_items(client, world, query_text="x", filter='{"width": 64}')
    assert err.value.status_code == 400 and "width" in err.value.body["message"]


def test_search_pages_with_tokens_until_the_last(client, world, server):
    first = client.search.create(index_id=world["index"], search_options=["visual"],
                                 query_text="a blue star", page_limit=1)
    total = first.page_info.total_results
    assert total >= 2 and len(first.data) == 1  # the two videos with a blue star
    items = list(client.search.query(index_id=world["index"], search_options=["visual"],
                                     query_text="a blue star", page_limit=1))
    assert [i.rank for i in items] == list(range(1, total + 1))
    token = first.page_info.next_page_token
    pages = 1
    while token:
        page = client.search.retrieve(token)
        pages += 1
        token = page.page_info.next_page_token
    assert pages == total
    sid = first.page_info.next_page_token.rsplit("-", 1)[0]
    past = client.search.retrieve(f"{sid}-{pages + 1}")
    assert past.data == [] and past.page_info.next_page_token is None
    with pytest.raises(ApiError) as err:
        client.search.retrieve("nosuchtoken-1")
    assert err.value.status_code == 404


def test_search_refuses_audio_transcription_and_bad_limits(client, world):
    for kw, word in ((dict(search_options=["audio"]), "audio"),
                     (dict(search_options=["visual", "transcription"]), "transcription")):
        with pytest.raises(ApiError) as err:
            client.search.query(index_id=world["index"], **{"query_text": "x", **kw})
        assert err.value.status_code == 400 and word in err.value.body["message"]
    with pytest.raises(ApiError) as err:
        client.search.query(index_id=world["index"], search_options=["visual"],
                            query_text="x", page_limit=51)
    body = err.value.body
    assert err.value.status_code == 400 and body["code"] == "parameter_invalid"
    assert body["error"]["code"] == "parameter_invalid" and "page_limit" in body["message"]


# -- entities, composed queries, several images ------------------------------------------------


@pytest.fixture(scope="module")
def entities(client, media, world) -> dict[str, Any]:
    """An index of the distractor video (tests/entity_world.py) and the ``blue`` needle video
    (added from its asset: it is not embedded again), and an entity made from three
    reference images of a blue star uploaded as assets."""
    index = client.indexes.create(index_name="entities", models=MARENGO)
    with open(media / "distractors.mp4", "rb") as fh:
        asset = client.assets.create(method="direct", file=fh)
    ids = {"distractors": client.indexes.indexed_assets.create(index.id, asset_id=asset.id).id,
           "blue": client.indexes.indexed_assets.create(
               index.id, asset_id=world["assets"]["blue"]).id}
    assert ids["blue"] == world["ids"]["blue"]
    for video in ids.values():
        ready = wait_for(lambda v=video: client.indexes.indexed_assets.retrieve(index.id, v),
                         lambda a: a.status in ("ready", "failed"))
        assert ready.status == "ready", ready
    refs = []
    for i in range(3):
        with open(media / f"ref{i}.png", "rb") as fh:
            refs.append(client.assets.create(method="direct", file=fh).id)
    collection = client.entity_collections.create(name="shapes", description="coloured shapes")
    entity = client.entity_collections.entities.create(
        collection.id, name="blue star", asset_ids=refs, metadata={"kind": "shape"})
    return {"index": index.id, "ids": ids, "refs": refs, "collection": collection.id,
            "entity": entity.id}


def _clips(client, entities, **kw) -> list:
    return list(client.search.query(index_id=entities["index"], search_options=["visual"],
                                    **kw))


def _named(clip, entities) -> tuple[str, float, float]:
    names = {v: k for k, v in entities["ids"].items()}
    return names[clip.video_id], clip.start, clip.end


def test_entity_collections_and_entities_through_the_sdk(client, entities):
    ec = client.entity_collections
    made = ec.retrieve(entities["collection"])
    assert (made.name, made.description) == ("shapes", "coloured shapes")
    assert made.created_at is not None and made.updated_at is not None
    other = ec.create(name="players")
    assert [c.id for c in ec.list(name="players")] == [other.id]
    assert {c.id for c in ec.list(sort_by="name", sort_option="asc", page_limit=1)} >= \
        {other.id}  # pages until the empty page: every collection, one per page
    assert ec.update(other.id, name="team").name == "team"
    entity = ec.entities.retrieve(entities["collection"], entities["entity"])
    assert entity.status == "ready" and entity.asset_ids == entities["refs"]
    assert entity.entity_collection_id == entities["collection"]
    assert entity.metadata == {"kind": "shape"}
    listed = list(ec.entities.list(entities["collection"], status="ready"))
    assert [e.id for e in listed] == [entities["entity"]]
    by_asset = list(ec.entities.list_by_asset(entities["refs"][0]))
    assert [e.id for e in by_asset] == [entities["entity"]]
    # a second entity in the other collection: changed, its references changed, deleted
    temp = ec.entities.create(other.id, name="temp", asset_ids=entities["refs"][:1])
    assert ec.entities.update(other.id, temp.id, description="short-lived").description == \
        "short-lived"
    grown = ec.entities.create_assets(other.id, temp.id, asset_ids=entities["refs"][1:])
    assert grown.asset_ids == entities["refs"]
    shrunk = ec.entities.delete_assets(other.id, temp.id, asset_ids=entities["refs"][:2])
    assert shrunk.asset_ids == entities["refs"][2:]
    bulk = ec.entities.create_bulk(other.id, entities=[
        {"name": "ok", "asset_ids": entities["refs"][:1]},
        {"name": "missing", "asset_ids": ["0" * 24]}])
    assert (bulk.success_count, bulk.failed_count) == (1, 1)
    assert bulk.entities[0].name == "ok" and bulk.entities[0].status == "ready"
    assert bulk.errors[0].entity_index == 1 and "no asset" in bulk.errors[0].error_reason
    ec.entities.delete(other.id, temp.id)
    with pytest.raises(ApiError) as err:
        ec.entities.retrieve(other.id, temp.id)
    assert err.value.status_code == 404 and err.value.body["code"] == "resource_not_exists"
    ec.delete(other.id)  # and its entities; the assets stay
    assert other.id not in {c.id for c in ec.list()}
    assert client.assets.retrieve(entities["refs"][0]).id == entities["refs"][0]


@needs_shipped
def test_entity_search_ranks_its_scenes_before_colour_and_shape_distractors(client, entities):
    ref = f"<@{entities['entity']}>"
    clips = _clips(client, entities, query_text=ref, page_limit=6)
    top = [_named(c, entities) for c in clips[:2]]  # the two scenes that show a blue star
    assert {n for n, *_ in top} == {"distractors", "blue"}, top
    for name, start, end in top:
        assert overlaps(start, end, ON_WHITE if name == "distractors" else BLUE_SPAN), top
    assert clips[1].score > max(c.score for c in clips[2:])  # then the distractors
    # with text: the scene it describes, first
    white = _clips(client, entities, query_text=f"{ref} on a white background", page_limit=3)
    assert _named(white[0], entities)[0] == "distractors"
    assert overlaps(white[0].start, white[0].end, ON_WHITE)
    # an entity search is a composed query: the same through framedex's /v1
    r = httpx.post(f"{client._client_wrapper.get_base_url()[:-5]}/v1/search",
                   headers={"x-api-key": KEY},
                   json={"text": "on a white background", "entity": entities["entity"],
                         "limit": 1})
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["video_id"] == white[0].video_id


@needs_shipped
def test_composed_and_several_image_queries(client, entities, media, media_url, server):
    # text + image without operator: one composed query ("this, on that")
    with open(media / "blue.png", "rb") as fh:  # a blue star on black
        composed = _clips(client, entities, query_text="on a white background",
                          query_media_type="image", query_media_file=fh, page_limit=2)
    assert _named(composed[0], entities)[0] == "distractors"
    assert overlaps(composed[0].start, composed[0].end, ON_WHITE)
    assert "part" not in (composed[0].model_extra or {})  # one part, every frame searched
    with open(media / "blue.png", "rb") as fh:  # as parts: the image's best scene alone
        parted = _clips(client, entities, query_text="on a white background",
                        query_media_type="image", query_media_file=fh, operator="or",
                        page_limit=2)
    assert not overlaps(parted[0].start, parted[0].end, ON_WHITE) or \
        _named(parted[0], entities)[0] != "distractors"
    # several images, files and URLs together, composed: the blue star scenes first
    files = [open(media / f"ref{i}.png", "rb") for i in range(3)]  # noqa: SIM115
    try:
        several = _clips(client, entities, query_media_type="image", query_media_files=files,
                         query_media_urls=[f"{media_url}ref0.png", f"{media_url}blue.png"],
                         page_limit=2)
    finally:
        for fh in files:
            fh.close()
    assert {_named(c, entities)[0] for c in several} == {"distractors", "blue"}
    # ten images are fine, eleven are a clear 400 (in Twelve Labs' shape)
    ref = (media / "ref1.png").read_bytes()
    form = [("index_id", (None, entities["index"])), ("search_options", (None, "visual")),
            ("query_media_type", (None, "image"))]
    for n, status in ((10, 200), (11, 400)):
        r = httpx.post(f"{server.base}/v1.3/search", headers={"x-api-key": KEY}, timeout=60,
                       files=[*form, *[("query_media_file", (f"{i}.png", ref, "image/png"))
                                       for i in range(n)]])
        assert r.status_code == status, r.text[:300]
    body = r.json()
    assert body["code"] == "parameter_invalid" and "at most 10" in body["message"]
    r = httpx.post(f"{server.base}/v1.3/search", headers={"x-api-key": KEY}, timeout=60,
                   files=[*form, *[("query_media_file", (f"{i}.png", ref, "image/png"))
                                   for i in range(6)],
                          *[("query_media_url", (None, f"{media_url}ref0.png"))] * 5])
    assert r.status_code == 400 and "11 images" in r.json()["message"]


def test_image_and_entity_errors_have_twelve_labs_shapes(client, entities, media, server):
    def fails(call, status: int, code: str, *words: str) -> None:
        with pytest.raises(ApiError) as err:
            call()
        body = err.value.body
        assert err.value.status_code == status, body
        assert body["code"] == code and body["error"] == {"code": code,
                                                          "message": body["message"]}
        for word in words:
            assert word in body["message"], body["message"]

    with open(media / "tiny.png", "rb") as fh:  # under the smallest side
        tiny = client.assets.create(method="direct", file=fh).id
        fh.seek(0)
        fails(lambda: client.search.create(
            index_id=entities["index"], search_options=["visual"], query_media_type="image",
            query_media_file=fh), 400, "parameter_invalid", "query_media_file", "4x4",
            "at least 8 pixels")
    ec = client.entity_collections.entities
    fails(lambda: ec.create(entities["collection"], name="x",
                            asset_ids=[entities["refs"][0], tiny]),
          400, "parameter_invalid", "asset_ids[1]", "at least 8 pixels")
    fails(lambda: ec.create(entities["collection"], name="x", asset_ids=[]),
          400, "parameter_invalid", "asset_ids")
    fails(lambda: ec.delete_assets(entities["collection"], entities["entity"],
                                   asset_ids=entities["refs"]),
          400, "parameter_invalid", "at least one")
    fails(lambda: ec.create("0" * 24, name="x", asset_ids=entities["refs"]),
          404, "resource_not_exists", "entity collection")
    fails(lambda: client.search.create(index_id=entities["index"], search_options=["visual"],
                                       query_text="<@nosuchentity> walks"),
          404, "resource_not_exists", "no entity 'nosuchentity'")
    fails(lambda: client.search.create(index_id=entities["index"], search_options=["visual"],
                                       query_text="<@not an id> walks"),
          400, "parameter_invalid", "entity reference")
    # an image over the upload limit (8 MB here): 413, in both shapes
    big = b"\x89PNG\r\n\x1a\n" + bytes(9 << 20)
    r = httpx.post(f"{server.base}/v1.3/search", headers={"x-api-key": KEY}, timeout=60,
                   files=[("index_id", (None, entities["index"])),
                          ("search_options", (None, "visual")),
                          ("query_media_type", (None, "image")),
                          ("query_media_file", ("big.png", big, "image/png"))])
    assert r.status_code == 413 and r.json()["code"] == "file_too_large"
    assert r.json()["error"]["code"] == "file_too_large"


# -- embeddings ---------------------------------------------------------------------------------


def test_embed_text_and_image(client, server, media):
    out = client.embed.v_2.create(input_type="text", model_name="marengo3.0",
                                  text={"input_text": "a red circle"})
    v = np.array(out.data[0].embedding)
    ours = httpx.post(f"{server.base}/v1/embed", json={"text": "a red circle"},
                      headers={"x-api-key": KEY}).json()
    np.testing.assert_allclose(v, ours["vectors"][0], atol=1e-5)
    assert out.model_extra["encoder"]["dim"] == len(v)  # which encoder answered
    png = (media / "red.png").read_bytes()
    img = client.embed.v_2.create(input_type="image", model_name="marengo3.5",
                                  image={"media_source": {
                                      "base64_string": base64.b64encode(png).decode()}})
    w = np.array(img.data[0].embedding)
    assert w.shape == v.shape and np.linalg.norm(w) == pytest.approx(1.0, abs=1e-3)
    multi = client.embed.v_2.create(input_type="multi_input", model_name="marengo3.0",
                                    multi_input={"input_text": "a red circle"})
    np.testing.assert_allclose(multi.data[0].embedding, v, atol=1e-5)
    with pytest.raises(ApiError) as err:
        client.embed.v_2.create(input_type="audio", model_name="marengo3.0",
                                audio={"media_source": {"url": "http://x/a.mp3"}})
    assert err.value.status_code == 400 and "audio" in err.value.body["message"]
    with pytest.raises(ApiError) as err:
        client.embed.v_2.create(input_type="text", model_name="pegasus1.2",
                                text={"input_text": "x"})
    assert err.value.status_code == 400 and "/v1.3/analyze" in err.value.body["message"]


def test_video_embedding_task_clips_tile_the_video(client, world, media):
    task = client.embed.v_2.tasks.create(
        input_type="video", model_name="marengo3.0",
        video={"media_source": {"asset_id": world["assets"]["both"]},
               "segmentation": {"strategy": "fixed", "fixed": {"duration_sec": 5}},
               "embedding_scope": ["clip", "asset"]})
    assert task.status == "processing"
    done = wait_for(lambda: client.embed.v_2.tasks.retrieve(task.id),
                    lambda t: t.status != "processing")
    assert done.status == "ready", done.error
    clips = [d for d in done.data if d.embedding_scope == "clip"]
    assert [(c.start_sec, c.end_sec) for c in clips] == \
        [(0, 5), (5, 10), (10, 15), (15, 20), (20, 24)]
    assert all(c.embedding_option == "visual" for c in done.data)
    assert [d.embedding_scope for d in done.data].count("asset") == 1
    meta = done.metadata
    assert meta.duration == pytest.approx(24.0, abs=0.3)
    assert meta.embedding_scopes == ["clip", "asset"] and meta.embedding_options == ["visual"]
    # base64 video, dynamic segments (embedding-detected shots of at least 4 s)
    data = base64.b64encode((media / "red.mp4").read_bytes()).decode()
    task = client.embed.v_2.tasks.create(
        input_type="video", model_name="marengo3.0",
        video={"media_source": {"base64_string": data},
               "segmentation": {"strategy": "dynamic", "dynamic": {"min_duration_sec": 4}},
               "embedding_scope": ["clip"]})
    done = wait_for(lambda: client.embed.v_2.tasks.retrieve(task.id),
                    lambda t: t.status != "processing")
    assert done.status == "ready", done.error
    spans = [(d.start_sec, d.end_sec) for d in done.data]
    assert spans[0][0] == 0 and spans[-1][1] == pytest.approx(24.0, abs=0.3)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert all(b - a >= 4 for a, b in spans)
    listed = list(client.embed.v_2.tasks.list(page_limit=1))
    assert task.id in {t.id for t in listed}


# -- what framedex does not offer, and errors -----------------------------------------------------


def test_analyze_without_a_video_llm_is_a_clear_4xx(client, world):
    # analyze works with --vlm-url (tests/test_ask_api.py); this server has no video LLM
    with pytest.raises(ApiError) as err:
        client.analyze(video={"type": "asset_id", "asset_id": world["assets"]["both"]},
                       prompt="what happens?")
    assert err.value.status_code == 400
    assert err.value.body["code"] == "unsupported" and "--vlm-url" in err.value.body["message"]


@pytest.mark.parametrize("method, path, word", [
    ("POST", "/v1.3/analyze/tasks", "POST /v1.3/analyze"),
    ("GET", "/v1.3/analyze/batches", "analyze"),
    ("POST", "/v1.3/assets/multipart-uploads", "presigned"),
    ("GET", "/v1.3/assets/abc/transcription", "transcri"),
    ("POST", "/v1.3/embed/tasks", "embed-v2"),
])
def test_unsupported_endpoints_name_what_is_unsupported(server, method, path, word):
    r = httpx.request(method, f"{server.base}{path}", headers={"x-api-key": KEY})
    body = r.json()
    assert r.status_code == 400 and body["code"] == "unsupported" and word in body["message"]
    assert body["error"] == {"code": "unsupported", "message": body["message"]}


def test_index_with_audio_or_pegasus_is_refused(client):
    with pytest.raises(ApiError) as err:
        client.indexes.create(index_name="a", models=[{"model_name": "marengo3.0",
                                                       "model_options": ["visual", "audio"]}])
    assert err.value.status_code == 400 and "audio" in err.value.body["message"]
    with pytest.raises(ApiError) as err:
        client.indexes.create(index_name="p", models=[{"model_name": "pegasus1.2",
                                                       "model_options": ["visual"]}])
    assert err.value.status_code == 400 and err.value.body["code"] == "unsupported"


def test_wrong_or_missing_key_is_401(server, world):
    bad = TwelveLabs(api_key="not-the-key", base_url=f"{server.base}/v1.3")
    with pytest.raises(ApiError) as err:
        bad.indexes.retrieve(world["index"])
    assert err.value.status_code == 401
    assert err.value.body["code"] == "api_key_invalid"
    assert err.value.body["error"]["code"] == "api_key_invalid"
    r = httpx.get(f"{server.base}/v1.3/indexes")
    assert r.status_code == 401 and r.json()["code"] == "api_key_invalid"


def test_errors_have_both_shapes_and_validation_is_400(server, client):
    with pytest.raises(ApiError) as err:
        client.indexes.retrieve("0" * 24)
    body = err.value.body
    assert err.value.status_code == 404 and body["code"] == "resource_not_exists"
    assert body["error"]["message"] == body["message"]
    r = httpx.post(f"{server.base}/v1.3/indexes", content=b"{", headers={
        "x-api-key": KEY, "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "parameter_invalid"
    r = httpx.get(f"{server.base}/v1.3/indexes", params={"page_limit": 0},
                  headers={"x-api-key": KEY})
    assert r.status_code == 400 and r.json()["error"]["code"] == "parameter_invalid"
    r = httpx.get(f"{server.base}/v1.3/no-such-thing", headers={"x-api-key": KEY})
    assert r.status_code == 404 and r.json()["code"] == "resource_not_exists"
    # a model's own rule reads as the rule, without pydantic's "Value error, " before it
    r = httpx.post(f"{server.base}/v1.3/indexes", headers={"x-api-key": KEY}, json={
        "index_name": "x", "models": [{"model_name": "nope", "model_options": ["visual"]}]})
    assert r.status_code == 400 and "model_name='nope' is invalid" in r.json()["message"]
    assert "Value error" not in r.text
    # user_metadata that is not JSON, on every route that takes it: a 400 naming it
    ix = client.indexes.create(index_name="metadata-check", models=MARENGO).id
    for path, data in (("/v1.3/tasks", {"index_id": ix, "video_url": "http://x/v.mp4"}),
                       ("/v1.3/assets", {"method": "url", "url": "http://x/v.mp4"})):
        for bad in ("{not json", DEEP_JSON):
            fields = {**data, "user_metadata": bad}
            r = httpx.post(f"{server.base}{path}", headers={"x-api-key": KEY},
                           files=[(k, (None, v)) for k, v in fields.items()])  # multipart
            assert r.status_code == 400 and "user_metadata" in r.json()["message"], \
                (path, r.text[:300])
            assert r.json()["code"] == "parameter_invalid"
    # a search filter nested 10,000 deep (50 KB) raised RecursionError: a 500
    r = httpx.post(f"{server.base}/v1.3/search", headers={"x-api-key": KEY},
                   files=[(k, (None, v)) for k, v in (
                       ("index_id", ix), ("query_text", "a red circle"),
                       ("search_options", "visual"), ("filter", DEEP_JSON))])
    assert r.status_code == 400 and r.json()["code"] == "parameter_invalid", r.text[:300]
    assert "filter" in r.json()["message"] and "nests 10000 levels" in r.json()["message"]
    for path in ("/v1.3/indexes", "/v1.3/embed-v2", "/v1.3/embed-v2/tasks",
                 f"/v1.3/indexes/{ix}/indexed-assets"):  # JSON bodies nested as deep
        r = httpx.post(f"{server.base}{path}", content=('{"x": ' + DEEP_JSON + "}").encode(),
                       headers={"x-api-key": KEY, "content-type": "application/json"})
        assert r.status_code == 400 and r.json()["code"] == "parameter_invalid", (path, r.text)


def test_a_deleted_video_leaves_its_index(client, server, media):
    ix = client.indexes.create(index_name="short-lived", models=MARENGO).id
    with open(media / "none.mp4", "rb") as fh:
        task = client.tasks.create(index_id=ix, video_file=fh)
    client.tasks.wait_for_done(task.id, sleep_interval=0.1)
    copy = client.indexes.retrieve(ix)
    assert copy.video_count == 1
    # the same content is in the main index too: deleting the video empties both
    r = httpx.delete(f"{server.base}/v1/videos/{task.video_id}", headers={"x-api-key": KEY})
    assert r.status_code == 204
    assert client.indexes.retrieve(ix).video_count == 0
    assert list(client.indexes.indexed_assets.list(ix)) == []
    client.indexes.delete(ix)


# -- /v1: image and multi-part search (same moments, same filters) --------------------------------


@needs_shipped
def test_v1_search_by_image_and_and(server, media):
    headers = {"x-api-key": KEY}
    png = (media / "blue.png").read_bytes()
    by_json = httpx.post(f"{server.base}/v1/search", headers=headers, json={
        "image_base64": base64.b64encode(png).decode(), "limit": 2}).json()["results"]
    by_form = httpx.post(f"{server.base}/v1/search", headers=headers,
                         files={"image": ("blue.png", png, "image/png")},
                         data={"limit": "2"}).json()["results"]
    assert by_json == by_form and all(BLUE_SPAN[0] - 1 <= m["start"] for m in by_json)
    anded = httpx.post(f"{server.base}/v1/search", headers=headers, json={
        "text": ["a red circle", "a blue star"], "operator": "and", "group_by": "video"})
    assert anded.status_code == 200, anded.text
    top = anded.json()["results"][0]
    assert sorted(m["part"] for m in top["moments"]) == [0, 1]
    assert sorted((m["start"], m["end"]) for m in top["moments"]) == [RED_SPAN, BLUE_SPAN]
    bad = httpx.post(f"{server.base}/v1/search", headers=headers, json={"limit": 2})
    assert bad.status_code == 422


#: JSON text nested 10,000 levels (50 KB), as the attack sent it in every JSON text field.
DEEP_JSON = '{"a":' * 10_000 + "1" + "}" * 10_000


# -- fuzzing: schemathesis over the /v1.3 routes: never a 5xx ------------------------------------


def _tl_schema():
    import schemathesis

    from framedex.api.app import create_app
    from framedex.api.settings import Settings
    from framedex.api.twelvelabs import twelvelabs_app

    return schemathesis.openapi.from_dict(twelvelabs_app(create_app(Settings())).openapi())


tl_schema = _tl_schema()


@tl_schema.parametrize()
@hypothesis.settings(max_examples=15, deadline=None, derandomize=True,
                     suppress_health_check=list(hypothesis.HealthCheck))
def test_fuzz_v13_never_5xx(case, server, world):
    params = case.path_parameters or {}
    if "index_id" in params and case.method != "DELETE" and len(params["index_id"]) % 2:
        params["index_id"] = world["index"]  # half the time a real index: past the 404
    response = case.call(base_url=f"{server.base}/v1.3", headers={"x-api-key": KEY},
                         timeout=60)
    assert response.status_code < 500, (case.method, case.formatted_path, response.text[:300])


def test_the_example_says_what_is_wrong_in_one_line(server, capsys, monkeypatch):
    """examples/twelvelabs_sdk.py printed tracebacks when the key was unset or wrong, or the
    server was down."""
    import runpy

    from api_server import free_port

    example = runpy.run_path(str(Path(__file__).resolve().parents[1] / "examples" /
                                 "twelvelabs_sdk.py"))
    cases = [({"FRAMEDEX_URL": server.base}, "set FRAMEDEX_API_KEY"),
             ({"FRAMEDEX_URL": server.base, "FRAMEDEX_API_KEY": "wrong-key-123"},
              f"the server at {server.base} refused the key in FRAMEDEX_API_KEY"),
             ({"FRAMEDEX_URL": f"http://127.0.0.1:{free_port()}", "FRAMEDEX_API_KEY": KEY},
              "no framedex server answers at http://127.0.0.1:")]
    for env, expected in cases:
        monkeypatch.delenv("FRAMEDEX_API_KEY", raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert example["run"]() == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("twelvelabs_sdk.py: error: "), err
        assert expected in err and "Traceback" not in err
