"""``/search``: text, image, composed and entity search in an index, paged with tokens.

The form (multipart, as the SDK sends it) becomes one :meth:`Library.search` call. Without
``operator`` the query is *composed*, as on Twelve Labs: the ``query_text`` (with any
``<@ENTITY_ID>`` in it) and the images (up to 10 ``query_media_file`` parts and allowed
``query_media_url`` values) are fused into one query vector that searches every indexed frame
of the index's videos. With ``operator``, each text and image is a part (framedex's multi-part
search: ``and``, LanceDB MaxSim over each video's segments, the sum of each part's best
segment; ``or``, the best part). ``filter`` takes ``id``, ``duration`` (a number or
``{"gte", "lte"}``) and user metadata.

Results (at most :data:`MAX_RESULTS`) are kept in memory for an hour and paged:
``page_info.next_page_token`` names the next page (``GET /search/{token}``) and is absent on
the last one. Items are ``{video_id, start, end, rank}`` plus ``score`` (cosine; for several
parts, see docs), ``confidence`` (``high``, ``medium`` or ``low``, as Twelve Labs' v1.2 had;
``threshold`` leaves out the results below a level, ``low`` by default) and ``thumbnail_url``
(the best frame's JPEG from ``/v1``).
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool

from framedex.api.deps import LibraryDep, SettingsDep
from framedex.api.jobs import new_job_id
from framedex.api.twelvelabs.common import parse_form, rfc3339
from framedex.api.twelvelabs.media import fetch_url
from framedex.api.twelvelabs.schemas import SearchForm
from framedex.api.uploads import json_object, receive_upload
from framedex.errors import ConfigError, NotFoundError, UnsupportedError
from framedex.library import Library, Moment, SearchFilters, VideoHit
from framedex.rules import (
    DEFAULT_THRESHOLD,
    MAX_IMAGE_BYTES,
    MAX_QUERY_IMAGES,
    OPERATORS,
    THRESHOLDS,
)

router = APIRouter(prefix="/search", tags=["search"])

#: Most results one search keeps for paging (clips, or videos with group_by=video).
MAX_RESULTS = 200
#: How long a search's pages can be fetched.
PAGE_TTL_S = 3600.0
#: Searches kept in memory at once (the oldest go first).
MAX_SEARCHES = 256

_FORM = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["index_id", "search_options"], "properties": {
        "index_id": {"type": "string"},
        "search_options": {"type": "array", "items": {"type": "string", "enum": ["visual"]}},
        "query_text": {"type": "string"},
        "query_media_type": {"type": "string", "enum": ["image"]},
        "query_media_file": {"type": "string", "format": "binary"},
        "query_media_url": {"type": "string"},
        "group_by": {"type": "string", "enum": ["clip", "video"]},
        "operator": {"type": "string", "enum": list(OPERATORS),
                     "description": "Absent: the text and images are one composed query. "
                                    "Given: each text and image is a part it combines."},
        "page_limit": {"type": "integer", "minimum": 1, "maximum": 50},
        "threshold": {"type": "string", "enum": list(THRESHOLDS),
                      "description": "The least confidence a result must have (default "
                                     f"{DEFAULT_THRESHOLD}; none: every result)."},
        "filter": {"type": "string", "description": "A JSON object: id, duration, user "
                                                    "metadata."},
        "include_user_metadata": {"type": "boolean"},
    }}}}}}

_SYSTEM_FIELDS = ("width", "height", "size", "fps", "filename")


@dataclass
class _Search:
    items: list[dict[str, Any]]
    page_limit: int
    pool: dict[str, Any]
    expires: float


class SearchPages:
    """Searches whose pages can still be fetched (in memory, bounded, expiring)."""

    def __init__(self, ttl_s: float = PAGE_TTL_S, max_searches: int = MAX_SEARCHES):
        self.ttl_s, self.max_searches = ttl_s, max_searches
        self._searches: OrderedDict[str, _Search] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, items: list[dict[str, Any]], page_limit: int,
              pool: dict[str, Any]) -> dict[str, Any]:
        """Keep a search's results; returns its first page."""
        sid = secrets.token_hex(12)
        with self._lock:
            self._searches[sid] = _Search(items, page_limit, pool, time.time() + self.ttl_s)
            while len(self._searches) > self.max_searches:
                self._searches.popitem(last=False)
        return self.page(f"{sid}-1")

    def page(self, token: str) -> dict[str, Any]:
        """The page a token names; past the last page, ``"data": []``.

        Raises:
            NotFoundError: an unknown or expired token.
        """
        sid, _, number = token.rpartition("-")
        now = time.time()
        with self._lock:
            for old in [k for k, s in self._searches.items() if s.expires < now]:
                del self._searches[old]
            search = self._searches.get(sid)
        if search is None or not number.isdigit() or int(number) < 1:
            raise NotFoundError(f"no search page {token[:80]!r}: page tokens expire after "
                                f"{int(self.ttl_s // 60)} minutes; search again")
        n, size = int(number), search.page_limit
        data = search.items[(n - 1) * size: n * size]
        pages = max(1, math.ceil(len(search.items) / size))
        expires = datetime.fromtimestamp(search.expires, timezone.utc)
        info: dict[str, Any] = {"limit_per_page": size, "total_results": len(search.items),
                                "page_expires_at": rfc3339(expires)}
        if n < pages:
            info["next_page_token"] = f"{sid}-{n + 1}"
        if n > 1:
            info["prev_page_token"] = f"{sid}-{n - 1}"
        return {"search_pool": search.pool, "data": data, "page_info": info}


def install_pages(app: FastAPI) -> None:
    """Give the app its store of search pages (once, when the app is built)."""
    app.state.tl_search_pages = SearchPages()


def parse_filter(raw: str | None) -> SearchFilters | None:
    """Twelve Labs' ``filter`` JSON -> :class:`SearchFilters`.

    Raises:
        ConfigError: not a JSON object, or a value of the wrong type.
        UnsupportedError: a system field framedex does not filter on.
    """
    spec = json_object(raw, "filter")
    if spec is None:
        return None
    ids: frozenset[str] | None = None
    low = high = None
    metadata: dict[str, Any] = {}
    for key, value in spec.items():
        if key == "id":
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise ConfigError("filter.id is invalid: a video id or a list of them")
            ids = frozenset(values)
        elif key == "duration":
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                low = high = float(value)
            elif isinstance(value, dict) and set(value) <= {"gte", "lte"} and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool)
                    for v in value.values()):
                low, high = value.get("gte"), value.get("lte")
            else:
                raise ConfigError("filter.duration is invalid: a number or "
                                  '{"gte": number, "lte": number}')
        elif key in _SYSTEM_FIELDS:
            raise UnsupportedError(f"filter on {key!r} is not supported: framedex filters on "
                                   "id, duration and user metadata")
        elif isinstance(value, (str, int, float, bool)):
            metadata[key] = value
        else:
            raise ConfigError(f"filter.{key} is invalid: user metadata filters take a string, "
                              "number or boolean")
    return SearchFilters(min_duration=low, max_duration=high, metadata=metadata,
                         video_ids=ids)


def _clip(m: Moment, rank: int, origin: str, metadata: dict[str, Any] | None
          ) -> dict[str, Any]:
    out: dict[str, Any] = {"video_id": m.video_id, "start": round(m.start, 3),
                           "end": round(m.end, 3), "rank": rank, "score": round(m.score, 6),
                           "confidence": m.confidence,
                           "thumbnail_url": (f"{origin}/v1/videos/{m.video_id}/frames/"
                                             f"{m.frame_idx}.jpg" if m.frame_idx is not None
                                             else None)}
    if m.part is not None:
        out["part"] = m.part
    if metadata is not None:
        out["user_metadata"] = metadata
    return out


def build_items(hits: Sequence[Moment | VideoHit], origin: str,
                metadata: dict[str, dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Search hits as the SDK's ``SearchItem`` list (ranks from 1)."""
    items = []
    for rank, hit in enumerate(hits, start=1):
        meta = metadata.get(hit.video_id) if metadata is not None else None
        if isinstance(hit, VideoHit):
            clips = [_clip(m, i, origin, None) for i, m in enumerate(hit.moments, start=1)]
            item = {"id": hit.video_id, "video_id": hit.video_id, "rank": rank,
                    "score": round(hit.score, 6), "confidence": hit.confidence,
                    "start": clips[0]["start"],
                    "end": clips[0]["end"], "thumbnail_url": clips[0]["thumbnail_url"],
                    "clips": clips}
            if meta is not None:
                item["user_metadata"] = meta
            items.append(item)
        else:
            items.append(_clip(hit, rank, origin, meta))
    return items


def _search(library: Library, form: SearchForm, images: list[Any], filters: Any,
            origin: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    info = library.collection(form.index_id)
    hits = library.search(form.query_text, image=images,
                          operator=form.operator or OPERATORS[0],
                          compose=form.operator is None, limit=MAX_RESULTS,
                          group_by="video" if form.group_by == "video" else "moment",
                          filters=filters, collection=form.index_id,
                          threshold=form.threshold)
    metadata = None
    if form.include_user_metadata:
        metadata = {v.video_id: v.metadata for _, v in library.collection_videos(form.index_id)}
    pool = {"total_count": info.video_count, "total_duration": round(info.total_duration, 3),
            "index_id": form.index_id}
    return build_items(hits, origin, metadata), pool


@router.post("", openapi_extra=_FORM)
async def create_search(request: Request, library: LibraryDep,
                        settings: SettingsDep) -> dict[str, Any]:
    """Search an index with ``query_text`` (``<@ENTITY_ID>`` finds an entity) and/or up to
    10 images (``query_media_type=image`` with repeated ``query_media_file`` or
    ``query_media_url``); ``search_options=[visual]``. Without ``operator`` the text and the
    images are one composed query."""
    folder = settings.resolved_upload_dir_for(library.uri)
    dest = folder / f"search-{new_job_id()}"
    upload = await receive_upload(
        request, file_field="query_media_file", dest=dest, require_file=False,
        max_files=MAX_QUERY_IMAGES, max_bytes=min(MAX_QUERY_IMAGES * MAX_IMAGE_BYTES,
                                                  settings.max_upload_bytes))
    files = [p for _, p in upload.files]
    try:
        form = parse_form(SearchForm, upload, lists=("search_options", "query_text",
                                                     "query_media_url",
                                                     "transcription_options"))
        count = len(files) + len(form.query_media_url)
        form.require_supported(media=count)
        if count > MAX_QUERY_IMAGES:  # before any URL is fetched (the facade checks it too)
            raise ConfigError(f"query_media_file is invalid: {count} images (query_media_file "
                              f"and query_media_url together), at most {MAX_QUERY_IMAGES} per "
                              "query")
        filters = parse_filter(form.filter)
        names = [f"query_media_file[{i}]" if len(files) > 1 else "query_media_file"
                 for i in range(len(files))]
        for i, url in enumerate(form.query_media_url):
            fetched = Path(f"{dest}-url{i}")
            files.append(fetched)
            names.append(f"query_media_url[{i}]" if len(form.query_media_url) > 1
                         else "query_media_url")
            await run_in_threadpool(fetch_url, url, fetched, settings, "query_media_url")
        # all the request's images at once: their pixels are bounded together, and decoded
        # straight to the model's input size (Library.load_images)
        images = await run_in_threadpool(library.load_images, list(files), names)
    finally:
        for p in [dest, *files]:
            p.unlink(missing_ok=True)
    origin = f"{request.url.scheme}://{request.url.netloc}"
    items, pool = await run_in_threadpool(_search, library, form, images, filters, origin)
    pages: SearchPages = request.app.state.tl_search_pages
    return pages.start(items, form.page_limit, pool)


@router.get("/{page_token}")
def retrieve_search_page(page_token: str, request: Request) -> dict[str, Any]:
    """A further page of a search (``page_info.next_page_token``); past the last page,
    ``"data": []``."""
    pages: SearchPages = request.app.state.tl_search_pages
    return pages.page(page_token)


