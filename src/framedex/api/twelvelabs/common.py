"""What the ``/v1.3`` routes share: timestamps, page-number lists, bodies, ingest submission.

The SDK's rules live here once: timestamps are RFC 3339 (``2024-03-04T14:43:18.836Z``);
page-number lists end when a page has ``"data": []`` (the SDK's pagers always ask for the next
page), so a page past the last answers exactly that; job states map to Twelve Labs' statuses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Query
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from framedex.api.jobs import Job, JobFilter, JobManager
from framedex.api.settings import Settings
from framedex.api.uploads import Upload
from framedex.library import Library
from framedex.rules import JOB_STATUSES

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

#: Default and largest ``page_limit`` of page-number lists (the SDK's documented maximum).
DEFAULT_PAGE_LIMIT = 10
MAX_PAGE_LIMIT = 50

#: Job state (``framedex.rules.JOB_STATUSES``, in order) -> Twelve Labs indexing status (tasks,
#: indexed assets).
INDEX_STATUS = dict(zip(JOB_STATUSES, ("pending", "indexing", "ready", "failed"), strict=True))
#: Job state -> Twelve Labs embedding-task status.
EMBED_STATUS = dict(zip(JOB_STATUSES, ("processing", "processing", "ready", "failed"),
                        strict=True))

Page = Annotated[int, Query(ge=1, le=1_000_000, description="Page number, from 1.")]
PageLimit = Annotated[int, Query(ge=1, le=MAX_PAGE_LIMIT, description="Items per page.")]


def rfc3339(value: datetime | None) -> str | None:
    """``2024-03-04T14:43:18.836Z`` (UTC, milliseconds), or None."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def page_info(total: int, page: int, page_limit: int) -> dict[str, Any]:
    """The ``page_info`` of a listing of ``total`` items."""
    return {"limit_per_page": page_limit, "page": page,
            "total_page": max(1, math.ceil(total / page_limit)), "total_results": total}


def paginate(items: Sequence[T], page: int, page_limit: int) -> tuple[list[T], dict[str, Any]]:
    """One page of ``items`` and its ``page_info``; past the last page the page is empty."""
    start = (page - 1) * page_limit
    return list(items[start:start + page_limit]), page_info(len(items), page, page_limit)


def job_page(jobs: JobManager, where: JobFilter, page: int, page_limit: int
             ) -> tuple[list[Job], dict[str, Any]]:
    """One page of the jobs ``where`` selects, newest first (read by the store's index, not
    by listing every job), and its ``page_info``."""
    found, total = jobs.list(page_limit, (page - 1) * page_limit, where)
    return found, page_info(total, page, page_limit)


def statuses_for(mapping: dict[str, str], wanted: Sequence[str] | None) -> tuple[str, ...]:
    """The job states whose Twelve Labs status (``mapping``) is in ``wanted`` (all when None;
    a state no job has when nothing maps)."""
    if not wanted:
        return ()
    return tuple(s for s, tl in mapping.items() if tl in wanted) or ("none",)


def parse_json(model: type[M], raw: bytes) -> M:
    """Validate a JSON body; errors become the one 400 ``parameter_invalid`` answer."""
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as ex:
        raise RequestValidationError(ex.errors()) from None


def parse_form(model: type[M], upload: Upload, lists: Sequence[str] = ()) -> M:
    """Validate multipart fields; the fields named in ``lists`` keep every value sent (the SDK
    repeats a field for a list)."""
    data: dict[str, Any] = dict(upload.fields)
    for name in lists:
        if name in upload.lists:
            data[name] = upload.lists[name]
    try:
        return model.model_validate(data)
    except ValidationError as ex:
        raise RequestValidationError(ex.errors()) from None


async def submit_ingest(library: Library, jobs: JobManager, settings: Settings, *,
                        source: str, path: Path, kind: str, collection: str | None = None,
                        metadata: dict[str, Any] | None = None, filename: str | None = None,
                        extra: dict[str, Any] | None = None) -> tuple[Job, str]:
    """Start an ingest job for a file through the one job runner.

    The video id is computed first (a hash of the file's bytes, what indexing gives), so it
    can be returned at once: it is the indexed asset's id and the ``video_id`` search returns.

    Returns:
        the job and the video id it will index.
    """
    video_id = await run_in_threadpool(library.content_id, path)
    params: dict[str, Any] = {"fps": settings.index_fps, "metadata": metadata or {},
                              "tl": kind, "content_id": video_id,
                              "filename": filename or path.name, **(extra or {})}
    if collection is not None:
        params["collection"] = collection
    job = await run_in_threadpool(jobs.submit, source, str(path), params)
    return job, video_id


def media_dir(settings: Settings, library: Library) -> Path:
    """Where ``/v1.3`` keeps assets (:meth:`Settings.media_dir_for`)."""
    return settings.media_dir_for(library.uri)


