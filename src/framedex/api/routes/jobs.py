"""``/v1/jobs``: the state of ingest jobs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from framedex.api.deps import JobsDep
from framedex.api.jobs import Job
from framedex.api.schemas import ErrorResponse, JobPublic, JobsPublic
from framedex.rules import LIMITS

#: Items per page of a list (a rule of the API alone: the library takes any page).
PAGE = LIMITS["page"]

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def job_public(job: Job) -> JobPublic:
    """The API view of a job (the server-side path of its file is not shown)."""
    return JobPublic(job_id=job.job_id, status=job.status, progress=job.progress,
                     source=job.source, video_id=job.video_id, error=job.error,
                     attempts=job.attempts, created_at=job.created_at,
                     updated_at=job.updated_at)


@router.get("", response_model=JobsPublic)
def list_jobs(jobs: JobsDep, limit: Annotated[int, Query(ge=PAGE.low, le=PAGE.high)] = 50,
              offset: Annotated[int, Query(ge=0)] = 0) -> JobsPublic:
    """Jobs, newest first."""
    page, count = jobs.list(limit, offset)
    return JobsPublic(data=[job_public(j) for j in page], count=count)


@router.get("/{job_id}", response_model=JobPublic,
            responses={404: {"model": ErrorResponse}})
def get_job(job_id: str, jobs: JobsDep) -> JobPublic:
    """One job: status (``framedex.rules.JOB_STATUSES``), progress 0..1, video_id, error."""
    return job_public(jobs.get(job_id))
