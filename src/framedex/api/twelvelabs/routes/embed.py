"""``/embed-v2``: embeddings of a text or an image now, and of a video as a task.

``marengo3.0`` and ``marengo3.5`` are accepted as names for this server's own encoder; each
response reports which encoder it is in an extra ``encoder`` field. A video embedding task is
an ingest job of the server's one job runner (the video joins the library, embedded once);
its result is pooled from the cached frame embeddings when it is read: ``fixed`` windows
(default 6 s) or ``dynamic`` segments (embedding-detected shots of at least
``min_duration_sec``), scope ``clip`` and/or ``asset``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from framedex.api.deps import JobsDep, LibraryDep, SettingsDep
from framedex.api.jobs import Job, JobFilter, new_job_id
from framedex.api.schemas import body_schema
from framedex.api.settings import Settings
from framedex.api.twelvelabs.common import (
    EMBED_STATUS,
    Page,
    PageLimit,
    job_page,
    parse_json,
    rfc3339,
    statuses_for,
    submit_ingest,
)
from framedex.api.twelvelabs.media import decode_base64, fetch_url
from framedex.api.twelvelabs.schemas import EmbedRequest, EmbedTaskRequest, MediaSource
from framedex.api.uploads import read_json_body
from framedex.errors import ConfigError, FramedexError, NotFoundError
from framedex.library import Library
from framedex.rules import JOB_DONE, JOB_FAILED, MAX_IMAGE_BYTES

router = APIRouter(prefix="/embed-v2", tags=["embed"])

_SYNC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": body_schema(EmbedRequest)}}}}
_TASK = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": body_schema(EmbedTaskRequest)}}}}


def _encoder(library: Library, model_name: str) -> dict[str, Any]:
    info = library.encoder_info()
    return {"model_name": model_name, "model": info.get("model"),
            "pretrained": info.get("pretrained"), "spec": info.get("spec"),
            "dim": info.get("dim")}


def _check_dimension(library: Library, wanted: int | None) -> int:
    dim = library.encoder_info()["dim"]
    assert isinstance(dim, int)
    if wanted is not None and wanted != dim:
        raise ConfigError(f"embedding_dimension={wanted} is invalid: this server's encoder "
                          f"makes {dim}-dimensional embeddings")
    return dim


def _image_bytes(source: MediaSource, library: Library, settings: Settings) -> bytes | Path:
    """The image a media source names (a path for an asset)."""
    if source.base64_string is not None:
        return decode_base64(source.base64_string, "media_source.base64_string",
                             MAX_IMAGE_BYTES)
    if source.asset_id is not None:
        return Path(library.asset(source.asset_id).path)
    assert source.url is not None
    dest = settings.resolved_upload_dir_for(library.uri) / f"embed-{new_job_id()}"
    try:
        fetch_url(source.url, dest, settings, "media_source.url")
        return dest.read_bytes()
    finally:
        dest.unlink(missing_ok=True)


def _embed_sync(library: Library, settings: Settings, req: EmbedRequest) -> dict[str, Any]:
    dim = _check_dimension(library, req.embedding_dimension)
    if req.input_type == "image":
        assert req.image is not None
        image = library.load_image(_image_bytes(req.image.media_source, library, settings),
                                   "image.media_source")
        vector = library.embed_images([image])[0]
        data = {"embedding": vector.tolist(), "embedding_option": "visual",
                "embedding_scope": "asset"}
        metadata: dict[str, Any] | None = {"input_type": "image", "embedding_dimension": dim}
    else:
        text = req.text.input_text if req.text is not None else None
        if req.input_type == "multi_input":
            assert req.multi_input is not None
            text = req.multi_input.input_text
        assert text is not None
        vector = library.embed_text([text])[0]
        data = {"embedding": vector.tolist()}
        metadata = ({"input_type": "multi_input", "embedding_dimension": dim}
                    if req.input_type == "multi_input" else None)
    return {"data": [data], "metadata": metadata, "encoder": _encoder(library, req.model_name)}


@router.post("", openapi_extra=_SYNC)
async def create_embeddings(request: Request, library: LibraryDep,
                            settings: SettingsDep) -> dict[str, Any]:
    """Embed a text (``input_type=text``), an image (``image``: base64, an asset or an
    allowed URL) or a text-only ``multi_input``."""
    limit = min(MAX_IMAGE_BYTES, settings.max_upload_bytes) * 4 // 3 + (64 << 10)
    req = parse_json(EmbedRequest, await read_json_body(request, limit))
    req.require_supported()
    return await run_in_threadpool(_embed_sync, library, settings, req)


# -- video embedding tasks ------------------------------------------------------------------


def _video_file(source: MediaSource, library: Library, settings: Settings
                ) -> tuple[str, Path, str]:
    """``(job source, file, file name)`` of a task's video, written to the upload folder
    unless it is an asset."""
    if source.asset_id is not None:
        asset = library.asset(source.asset_id)
        return "asset", Path(asset.path), asset.filename
    dest = settings.resolved_upload_dir_for(library.uri) / new_job_id()
    if source.base64_string is not None:
        data = decode_base64(source.base64_string, "video.media_source.base64_string",
                             settings.max_upload_bytes)
        dest.write_bytes(data)
        return "upload", dest, dest.name
    assert source.url is not None
    fetch_url(source.url, dest, settings, "video.media_source.url")
    return "upload", dest, source.url.rstrip("/").rsplit("/", 1)[-1] or dest.name


@router.post("/tasks", openapi_extra=_TASK)
async def create_embedding_task(request: Request, library: LibraryDep, jobs: JobsDep,
                                settings: SettingsDep) -> dict[str, Any]:
    """Embed a video (``video.media_source``: an asset, base64, or an allowed URL); poll
    ``GET /embed-v2/tasks/{_id}`` until ``ready``."""
    req = parse_json(EmbedTaskRequest,
                     await read_json_body(request, settings.max_upload_bytes * 4 // 3 + (64 << 10)))
    video = req.require_supported()
    _check_dimension(library, req.embedding_dimension)
    segmentation, seconds = (video.segmentation.resolve() if video.segmentation
                             else ("fixed", 6.0))
    scopes = [s for s in (video.embedding_scope or ["clip", "asset"])]
    source, path, filename = await run_in_threadpool(_video_file, video.media_source, library,
                                                     settings)
    embed = {"segmentation": segmentation, "seconds": seconds, "scopes": scopes,
             "start_sec": video.start_sec, "end_sec": video.end_sec,
             "model_name": req.model_name}
    try:
        job, _ = await submit_ingest(library, jobs, settings, source=source, path=path,
                                     kind="embed", filename=filename, extra={"embed": embed})
    except BaseException:
        if source == "upload":
            path.unlink(missing_ok=True)
        raise
    return {"_id": job.job_id, "status": "processing", "data": None}


def _task_result(library: Library, job: Job) -> dict[str, Any]:
    embed = job.params.get("embed") or {}
    out: dict[str, Any] = {"_id": job.job_id, "status": EMBED_STATUS[job.status],
                           "created_at": rfc3339(job.created_at),
                           "updated_at": rfc3339(job.updated_at)}
    if job.status == JOB_FAILED:
        out["error"] = {"message": job.error or "indexing failed"}
    if job.status != JOB_DONE or not job.video_id:
        return out
    try:
        record = library.video(job.video_id)
        embeddings = library.video_embeddings(
            job.video_id, segmentation=embed.get("segmentation", "fixed"),
            seconds=float(embed.get("seconds", 6.0)),
            scopes=embed.get("scopes", ["clip", "asset"]), start_sec=embed.get("start_sec"),
            end_sec=embed.get("end_sec"))
    except NotFoundError:
        out["status"] = EMBED_STATUS[JOB_FAILED]
        out["error"] = {"message": "the video of this task was deleted from the library"}
        return out
    except FramedexError as ex:
        out["status"] = EMBED_STATUS[JOB_FAILED]
        out["error"] = {"message": str(ex)}
        return out
    dim = int(embeddings[0].vector.shape[0]) if embeddings else None
    out["data"] = [{"embedding": np.asarray(e.vector, np.float32).tolist(),
                    "embedding_option": "visual", "embedding_scope": e.scope,
                    "start_sec": round(e.start_sec, 3), "end_sec": round(e.end_sec, 3)}
                   for e in embeddings]
    out["metadata"] = {
        "input_type": "video", "input_filename": job.params.get("filename"),
        "duration": round(float(record.duration), 3),
        "embedding_scopes": list(embed.get("scopes", ["clip", "asset"])),
        "embedding_options": ["visual"], "embedding_dimension": dim,
        "start_offset_sec": embed.get("start_sec"), "end_offset_sec": embed.get("end_sec")}
    if embed.get("segmentation") == "fixed":
        out["metadata"]["clip_length"] = int(embed.get("seconds", 6))
    out["encoder"] = _encoder(library, str(embed.get("model_name", "marengo3.0")))
    return out


def _embed_job(jobs: Any, task_id: str) -> Job:
    job = jobs.get(task_id)
    if job.params.get("tl") != "embed":
        raise NotFoundError(f"no embedding task {task_id[:64]!r}")
    return job


@router.get("/tasks/{task_id}")
def retrieve_embedding_task(task_id: str, library: LibraryDep, jobs: JobsDep
                            ) -> dict[str, Any]:
    """An embedding task: ``processing`` -> ``ready`` (with ``data``: one record per clip,
    then the asset) or ``failed`` (with ``error.message``)."""
    return _task_result(library, _embed_job(jobs, task_id))


@router.get("/tasks")
def list_embedding_tasks(library: LibraryDep, jobs: JobsDep, page: Page = 1,
                         page_limit: PageLimit = 10,
                         status: Annotated[str | None, Query(max_length=32)] = None
                         ) -> dict[str, Any]:
    """Embedding tasks, newest first (a page past the last has ``"data": []``)."""
    where = JobFilter.of(statuses_for(EMBED_STATUS, [status] if status else None), tl="embed")
    data, info = job_page(jobs, where, page, page_limit)
    items = []
    for job in data:
        embed = job.params.get("embed") or {}
        items.append({
            "_id": job.job_id, "model_name": embed.get("model_name", "marengo3.0"),
            "status": EMBED_STATUS[job.status], "created_at": rfc3339(job.created_at),
            "updated_at": rfc3339(job.updated_at),
            "video_embedding": {"metadata": {
                "input_filename": job.params.get("filename"),
                "video_clip_length": embed.get("seconds"),
                "video_embedding_scope": embed.get("scopes"),
                "video_embedding_option": ["visual"]}}})
    return {"data": items, "page_info": info}
