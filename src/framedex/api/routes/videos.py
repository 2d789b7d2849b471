"""``/v1/videos``: ingest (upload or server-side path), list, get, delete, frames, embeddings."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from framedex.api.deps import JobsDep, LibraryDep, PathsDep, SettingsDep
from framedex.api.errors import body_fields
from framedex.api.jobs import new_job_id
from framedex.api.paths import PathView
from framedex.api.routes.jobs import PAGE, job_public
from framedex.api.schemas import (
    ErrorResponse,
    IngestPath,
    JobPublic,
    VideoPublic,
    VideosPublic,
    body_schema,
)
from framedex.api.uploads import json_field, read_json_body, receive_upload
from framedex.errors import (
    ConfigError,
    NotFoundError,
    PermissionDeniedError,
    VideoNotFoundError,
)
from framedex.library import VideoRecord
from framedex.rules import LIMITS

router = APIRouter(prefix="/v1/videos", tags=["videos"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 403, 404, 413, 415, 422)
}

# One route, two request bodies: FastAPI cannot declare that from the signature, so the
# OpenAPI document gets it explicitly (clients and schemathesis see both forms).
_INGEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": body_schema(IngestPath)},
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "fps": {"type": "number", **LIMITS["fps"].json_schema()},
                    "metadata": {"type": "string", "description": "A JSON object."},
                },
            }},
        },
    }
}


def video_public(record: VideoRecord, paths: PathView) -> VideoPublic:
    """The API view of a video record (its path in public form)."""
    fields = {k: v for k, v in asdict(record).items() if k in VideoPublic.model_fields}
    return VideoPublic(**{**fields, "path": paths.public(record.path)})


def resolve_allowed(raw: str, roots: tuple[Path, ...]) -> Path:
    """The real path of ``raw`` if it lies under one of ``roots`` (after resolving ``..`` and
    symlinks), else refuse.

    Raises:
        PermissionDeniedError: no roots configured, or the path escapes them (403).
        ConfigError: not an absolute path (422).
        NotFoundError: inside a root but not an existing file (404).
    """
    if not roots:
        raise PermissionDeniedError("server-side paths are disabled on this server: upload "
                                    "the file, or start the server with --allow-root DIR")
    try:
        given = Path(raw).expanduser()
        real = Path(os.path.realpath(given))
        if not given.is_absolute():
            raise ConfigError(f"path={raw[:200]!r} is invalid: must be an absolute path")
        inside = any(real == root or real.is_relative_to(root) for root in roots)
        if not inside:
            raise PermissionDeniedError(f"path {raw[:200]!r} is outside the folders this "
                                        "server may read (its --allow-root list)")
        is_file = real.is_file()
    except (ValueError, OSError, RuntimeError) as ex:  # a NUL byte, ~nosuchuser, a huge name
        if isinstance(ex, (ConfigError, PermissionDeniedError)):
            raise
        raise ConfigError(f"path={raw[:200]!r} is invalid: "
                          f"{getattr(ex, 'strerror', None) or ex}") from None
    if not is_file:
        raise NotFoundError(f"no such file: {raw[:200]!r}")
    return real


def _upload_params(upload: Any, settings: Any) -> dict[str, Any]:
    raw_fps = upload.fields.get("fps")
    metadata = json_field(upload, "metadata")
    try:
        fps = float(raw_fps) if raw_fps not in (None, "") else None
        checked = IngestPath(path="upload", fps=fps, metadata=metadata or {})
    except (ValueError, ValidationError) as ex:
        errors = ex.errors() if isinstance(ex, ValidationError) else [
            {"loc": ("fps",), "msg": "must be a number", "type": "float_parsing"}]
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) \
            from None
    fps = checked.fps if checked.fps is not None else settings.index_fps
    return {"fps": fps, "metadata": checked.metadata}


@router.post("", status_code=202, response_model=JobPublic, openapi_extra=_INGEST_BODY,
             responses=_ERRORS)
async def ingest(request: Request, settings: SettingsDep, jobs: JobsDep,
                 library: LibraryDep) -> JobPublic:
    """Start an ingest job; poll ``GET /v1/jobs/{job_id}``.

    Either ``multipart/form-data`` with a ``file`` part (and optional ``fps``, ``metadata``
    fields), streamed to the server's upload folder (413 past ``--max-upload-mb``), or JSON
    ``{"path": ...}`` naming a file under one of the server's ``--allow-root`` folders (403
    outside them, ``..`` and symlinks resolved first). A file that is not a video is accepted
    here and its job fails with the decoder's reason.
    """
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        job_id = new_job_id()
        folder = settings.resolved_upload_dir_for(library.uri)
        upload = await receive_upload(request, file_field="file", dest=folder / job_id,
                                      max_bytes=settings.max_upload_bytes)
        try:  # a rejected request must never leave its file behind
            params = _upload_params(upload, settings)
            with body_fields(IngestPath):
                library.check_index_options(fps=params["fps"])
            path = upload.path
            assert path is not None  # receive_upload raises when there is no file part
            path = path.rename(path.with_name(upload_name(job_id, upload.filename)))
            job = await run_in_threadpool(jobs.submit, "upload", str(path), params, job_id)
        except BaseException:
            for leftover in folder.glob(f"{job_id}*"):
                leftover.unlink(missing_ok=True)
            raise
    elif ctype == "application/json" or ctype.endswith("+json"):
        try:
            req = IngestPath.model_validate_json(await read_json_body(request))
        except ValidationError as ex:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e["loc"])} for e in ex.errors()]) from None
        params = {"fps": req.fps if req.fps is not None else settings.index_fps,
                  "metadata": req.metadata}
        with body_fields(IngestPath):
            library.check_index_options(fps=params["fps"])
        path = resolve_allowed(req.path, settings.resolved_roots)
        job = await run_in_threadpool(jobs.submit, "path", str(path), params)
    else:
        from starlette.exceptions import HTTPException

        raise HTTPException(415, "send multipart/form-data (a file upload) or application/json "
                                 '({"path": ...})')
    return job_public(job)


def upload_name(job_id: str, filename: str | None) -> str:
    """The stored name of an upload: the job id (unique), then the client's file name made
    safe (letters, digits, ``.-_``; at most 80 characters), so the library and the viewer
    show what the user uploaded: ``4f1c...-clip1.mp4``."""
    base = Path((filename or "").replace("\\", "/")).name
    safe = "".join(c if (c.isascii() and c.isalnum()) or c in ".-_" else "_" for c in base)
    safe = safe[-80:]
    return f"{job_id}-{safe}" if safe else job_id


@router.get("", response_model=VideosPublic)
def list_videos(library: LibraryDep, paths: PathsDep,
                limit: Annotated[int, Query(ge=PAGE.low, le=PAGE.high)] = 50,
                offset: Annotated[int, Query(ge=0)] = 0) -> VideosPublic:
    """Indexed videos, oldest first (paged; the page and the count come from one snapshot)."""
    records, count = library.videos_page(limit=limit, offset=offset)
    return VideosPublic(data=[video_public(r, paths) for r in records], count=count,
                        limit=limit, offset=offset)


@router.get("/{video_id}", response_model=VideoPublic, responses=_ERRORS)
def get_video(video_id: str, library: LibraryDep, paths: PathsDep) -> VideoPublic:
    """One indexed video (by id, unique id prefix of 4+ characters, or indexed path)."""
    return video_public(library.video(video_id), paths)


@router.delete("/{video_id}", status_code=204, responses=_ERRORS)
def delete_video(video_id: str, library: LibraryDep, settings: SettingsDep) -> Response:
    """Remove a video and its frames and segments (its ingest jobs keep their history)."""
    record = library.video(video_id)
    if record.video_id != video_id:  # deleting needs the exact id, never a prefix or a path
        raise VideoNotFoundError(f"no indexed video with id {video_id[:64]!r} (DELETE needs "
                                 f"the exact video_id, e.g. {record.video_id!r})")
    library.delete(record.video_id)
    upload_dir = settings.resolved_upload_dir_for(library.uri)
    stored = Path(record.path)
    if stored.parent == upload_dir:  # the server's own copy of an upload: nothing else uses it
        stored.unlink(missing_ok=True)
    return Response(status_code=204)


@router.get("/{video_id}/frames/{frame_idx}.jpg", responses={
    200: {"content": {"image/jpeg": {}}, "description": "The frame as JPEG."}, **_ERRORS},
    response_class=Response)
def get_frame(video_id: str, frame_idx: Annotated[int, PathParam(ge=0, le=2**53)],
              library: LibraryDep,
              width: Annotated[int | None, Query(
                  json_schema_extra=LIMITS["width"].json_schema())] = None,
              quality: Annotated[int, Query(
                  json_schema_extra=LIMITS["quality"].json_schema())] = 90) -> Response:
    """One indexed frame (native ``frame_idx``) as JPEG, optionally scaled to ``width``
    (never upscaled). Frames that were not indexed are 404."""
    with body_fields(("width", "quality"), where="query"):
        data = library.frame_jpeg(video_id, frame_idx, width=width, quality=quality)
    return Response(content=data, media_type="image/jpeg",
                    headers={"Cache-Control": "private, max-age=3600"})


@router.get("/{video_id}/embeddings", responses={
    200: {"content": {"application/json": {},
                      "application/vnd.apache.arrow.stream": {}},
          "description": "Frame and segment embeddings with timestamps."}, **_ERRORS},
    response_class=Response)
def get_embeddings(video_id: str, library: LibraryDep,
                   format: Annotated[Literal["json", "arrow"], Query()] = "json") -> Response:
    """Every frame and segment embedding of a video, with ``frame_idx``/``pts_sec`` (frames)
    and ``start_sec``/``end_sec`` (segments). ``format=arrow`` answers one Arrow IPC stream
    with a ``kind`` column (``frame`` or ``segment``)."""
    record, frames, segments = library.embeddings(video_id)
    if format == "arrow":
        return Response(content=_arrow_stream(record, frames, segments),
                        media_type="application/vnd.apache.arrow.stream")
    import json

    body = {
        "video_id": record.video_id, "dim": int(frames.vectors.shape[1]),
        "frames": {"frame_idx": frames.frame_idx.tolist(), "pts_sec": frames.pts_sec.tolist(),
                   "vectors": frames.vectors.tolist()},
        "segments": {"start_sec": segments.start_sec.tolist(),
                     "end_sec": segments.end_sec.tolist(), "kind": list(segments.kind),
                     "vectors": segments.vectors.tolist()},
    }
    return Response(content=json.dumps(body), media_type="application/json")


def _arrow_stream(record: Any, frames: Any, segments: Any) -> bytes:
    import json

    import numpy as np
    import pyarrow as pa

    nf, ns = len(frames.pos), len(segments.start_sec)
    dim = int(frames.vectors.shape[1])
    vectors = np.concatenate([frames.vectors, segments.vectors.reshape(-1, dim)]).astype(
        np.float32)
    table = pa.table({
        "kind": pa.array(["frame"] * nf + ["segment"] * ns, pa.string()),
        "frame_idx": pa.array(list(frames.frame_idx.tolist()) + [None] * ns, pa.int64()),
        "pts_sec": pa.array(np.concatenate([frames.pts_sec, segments.start_sec]), pa.float64()),
        "end_sec": pa.array(np.concatenate([frames.pts_sec, segments.end_sec]), pa.float64()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim),
    })
    meta = {b"video_id": record.video_id.encode(),
            b"framedex.encoder": json.dumps({"model": record.encoder}).encode()}
    table = table.replace_schema_metadata(meta)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()
