"""``/tasks``: the legacy video-indexing tasks (``tasks.create(index_id, video_file)``).

A task is an ingest job of the server's one job runner; its completion adds the video to the
index. Jobs always end ``ready`` or ``failed`` (an interrupted job is retried at start-up and
given up with a reason after a few attempts), which the SDK's ``wait_for_done`` relies on: it
polls until one of the two, forever.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from framedex.api.deps import JobsDep, LibraryDep, SettingsDep
from framedex.api.jobs import Job, JobFilter, new_job_id
from framedex.api.twelvelabs.common import (
    INDEX_STATUS,
    Page,
    PageLimit,
    job_page,
    parse_form,
    rfc3339,
    statuses_for,
    submit_ingest,
)
from framedex.api.twelvelabs.media import fetch_url
from framedex.api.twelvelabs.routes.indexed_assets import system_metadata
from framedex.api.twelvelabs.schemas import TaskForm
from framedex.api.uploads import json_object, receive_upload
from framedex.errors import ConfigError, FramedexError
from framedex.library import Library
from framedex.rules import JOB_DONE

router = APIRouter(prefix="/tasks", tags=["tasks"])

_FORM = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["index_id"], "properties": {
        "index_id": {"type": "string"},
        "video_file": {"type": "string", "format": "binary"},
        "video_url": {"type": "string"},
        "user_metadata": {"type": "string", "description": "A JSON object."},
    }}}}}}


def task_public(job: Job, library: Library) -> dict[str, Any]:
    """A job as the SDK's ``TasksRetrieveResponse`` reads it."""
    video = None
    if job.status == JOB_DONE and job.video_id:
        video = _video(library, job.video_id)
    out = {"_id": job.job_id, "video_id": job.video_id or job.params.get("content_id"),
           "index_id": job.params.get("collection"), "status": INDEX_STATUS[job.status],
           "created_at": rfc3339(job.created_at), "updated_at": rfc3339(job.updated_at),
           "system_metadata": system_metadata(video, job.params.get("filename"))}
    if job.error:
        out["error"] = {"message": job.error}
    return out


def _video(library: Library, video_id: str) -> Any:
    try:
        return library.video(video_id)
    except FramedexError:  # deleted since (or the library is empty now)
        return None


@router.post("", status_code=201, openapi_extra=_FORM)
async def create_task(request: Request, library: LibraryDep, jobs: JobsDep,
                      settings: SettingsDep) -> dict[str, Any]:
    """Upload a video (``video_file``) or name an allowed ``video_url``, to index into
    ``index_id``; poll ``GET /tasks/{_id}`` until ``ready`` or ``failed``."""
    job_id = new_job_id()
    folder = settings.resolved_upload_dir_for(library.uri)
    dest = folder / job_id
    upload = await receive_upload(request, file_field="video_file", dest=dest,
                                  max_bytes=settings.max_upload_bytes, require_file=False)
    try:  # a refused request never leaves its file behind
        form = parse_form(TaskForm, upload)
        await run_in_threadpool(library.collection, form.index_id)
        metadata = json_object(form.user_metadata, "user_metadata")
        if upload.path is not None:
            name = upload.filename or job_id
        elif form.video_url:
            name = form.video_url.rstrip("/").rsplit("/", 1)[-1] or job_id
            await run_in_threadpool(fetch_url, form.video_url, dest, settings, "video_url")
        else:
            raise ConfigError("video_file is invalid: give video_file or video_url")
        suffix = Path(name).suffix.lower()
        path = dest
        if suffix and suffix.isascii() and suffix[1:].isalnum() and len(suffix) <= 8:
            path = dest.rename(dest.with_name(job_id + suffix))
        job, _ = await submit_ingest(library, jobs, settings, source="upload", path=path,
                                     kind="task", collection=form.index_id,
                                     metadata=metadata, filename=name)
    except json.JSONDecodeError as ex:
        for leftover in folder.glob(f"{job_id}*"):
            leftover.unlink(missing_ok=True)
        raise ConfigError(f"user_metadata is invalid: not JSON ({ex.msg})") from None
    except BaseException:
        for leftover in folder.glob(f"{job_id}*"):
            leftover.unlink(missing_ok=True)
        raise
    return {"_id": job.job_id, "video_id": job.params["content_id"]}


@router.get("")
def list_tasks(library: LibraryDep, jobs: JobsDep, page: Page = 1, page_limit: PageLimit = 10,
               index_id: Annotated[str | None, Query(max_length=64)] = None,
               status: Annotated[list[str] | None, Query(max_length=6)] = None
               ) -> dict[str, Any]:
    """Indexing tasks, newest first (a page past the last has ``"data": []``)."""
    where = JobFilter.of(statuses_for(INDEX_STATUS, status), tl=("task", "indexed_asset"),
                         collection=index_id)
    data, info = job_page(jobs, where, page, page_limit)
    return {"data": [task_public(j, library) for j in data], "page_info": info}


@router.get("/{task_id}")
def retrieve_task(task_id: str, library: LibraryDep, jobs: JobsDep) -> dict[str, Any]:
    """One task: ``pending`` -> ``indexing`` -> ``ready`` | ``failed`` (always one of the last
    two in the end)."""
    return task_public(jobs.get(task_id), library)
