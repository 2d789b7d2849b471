"""What the pages load: the viewer's CSS/JS, thumbnails, the source video (HTTP range
requests, for ``<video>``) and the chat-request export.

Thumbnails come from ``Library.frame_jpeg`` (an indexed frame only); the source from
``Library.open_source`` (the indexed file of an indexed video only, still the same file,
never a path from the request); the export from the one delivery step (``Library.deliver``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import resources
from typing import BinaryIO

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from framedex.api.deps import LibraryDep
from framedex.api.viewer import params
from framedex.api.viewer.auth import viewer_access
from framedex.api.viewer.render import SECURITY_HEADERS, AssetRoute
from framedex.api.viewer.video import FRAME_MAX_SIDE, SelectQuery
from framedex.errors import NotFoundError, check
from framedex.library import DeliveryOptions
from framedex.rules import PAYLOAD_FORMATS

router = APIRouter(route_class=AssetRoute, include_in_schema=False,
                   dependencies=[Depends(viewer_access)])
static_router = APIRouter(route_class=AssetRoute, include_in_schema=False)

#: The viewer's own files (no others are served).
STATIC = {"viewer.css": "text/css; charset=utf-8",
          "viewer.js": "text/javascript; charset=utf-8",
          "favicon.svg": "image/svg+xml"}
#: Bytes read per chunk of a source response.
CHUNK = 256 << 10
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@static_router.get("/viewer/static/{name}")
def static(name: str) -> Response:
    """The viewer's CSS, JavaScript and icon, from the package (open: they hold no data)."""
    if name not in STATIC:
        raise NotFoundError(f"no viewer file {name[:64]!r}")
    data = resources.files("framedex.api.viewer").joinpath("static").joinpath(name).read_bytes()
    return Response(data, media_type=STATIC[name],
                    headers={"Cache-Control": "public, max-age=3600", **SECURITY_HEADERS})


@router.get("/viewer/thumb/{video_id}.jpg")
def thumbnail(video_id: str, request: Request, library: LibraryDep) -> Response:
    """The indexed frame nearest to ``t`` seconds as a JPEG ``w`` pixels wide at most."""
    q = request.query_params
    t = params.number(q, "t")
    check(t is not None, "t", q.get("t"), "must be a time in seconds")
    assert t is not None
    width = params.integer(q, "w") or 240
    check(16 <= width <= 1024, "w", width, "must be in 16..1024 pixels")
    frame_idx = library.frame_at(video_id, t)
    data = library.frame_jpeg(video_id, frame_idx, width=width, quality=80)
    return Response(data, media_type="image/jpeg",
                    headers={"Cache-Control": "private, max-age=3600"})


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` (inclusive) of a single ``Range: bytes=...``; None for the whole
    file (no header, several ranges, or one we do not parse: RFC 9110 lets a server ignore
    Range). A range that starts past the end is ``(size, size - 1)``: unsatisfiable."""
    m = _RANGE.match((header or "").strip().replace(" ", ""))
    if m is None or m.group(0) == "bytes=-":
        return None
    first, last = m.group(1), m.group(2)
    if first == "":  # the last N bytes
        n = int(last)
        return (max(0, size - n), size - 1) if n > 0 else (size, size - 1)
    start = int(first)
    stop = min(int(last), size - 1) if last else size - 1
    if start >= size:
        return (size, size - 1)
    return (start, stop) if stop >= start else None


def _chunks(handle: BinaryIO, first: int, length: int) -> Iterator[bytes]:
    try:
        handle.seek(first)
        left = length
        while left > 0:
            data = handle.read(min(CHUNK, left))
            if not data:
                break
            left -= len(data)
            yield data
    finally:
        handle.close()


@router.get("/viewer/source/{video_id}")
def source(video_id: str, request: Request, library: LibraryDep) -> Response:
    """The indexed source file of a video, with HTTP range requests (206), for ``<video>``."""
    src = library.open_source(video_id)
    size = src.size
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=60",
               "X-Content-Type-Options": "nosniff"}
    wanted = byte_range(request.headers.get("range"), size)
    if wanted is not None and wanted[0] >= size:
        src.file.close()
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    first, last = wanted if wanted is not None else (0, size - 1)
    length = max(0, last - first + 1)
    headers["Content-Length"] = str(length)
    status = 200
    if wanted is not None:
        status = 206
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return StreamingResponse(_chunks(src.file, first, length), status_code=status,
                             media_type=src.media_type, headers=headers)


@router.get("/viewer/payload/{video_id}.json")
def payload(video_id: str, request: Request, library: LibraryDep) -> Response:
    """The OpenAI (also vLLM) or Gemini chat request for a page's selection (``format``),
    built by the one delivery step."""
    q = request.query_params
    fmt = q.get("format") or PAYLOAD_FORMATS[0]
    options = DeliveryOptions(include=("payload",), max_side=FRAME_MAX_SIDE, payload_format=fmt)
    req = SelectQuery(q, library)
    record = library.video(video_id)
    result = req.select(library, record.video_id)
    out = library.deliver(result, options)
    name = f"framedex-{record.video_id[:12]}-{result.sampler}-{fmt}.json"
    return JSONResponse(out.payload, headers={
        "Content-Disposition": f'inline; filename="{name}"', "Cache-Control": "no-store"})
