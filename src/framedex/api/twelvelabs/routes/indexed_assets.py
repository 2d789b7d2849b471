"""``/indexes/{index_id}/indexed-assets``: index an asset into an index, and follow it.

Creating one starts an ingest job (the one job runner of the server) whose completion adds the
video to the index. The indexed asset's id is the video's framedex id (a hash of the file's
bytes, known before indexing), which is the ``video_id`` search returns. Status:
``pending`` (queued) -> ``indexing`` -> ``ready`` (a committed member of the index) or
``failed``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from framedex.api.deps import JobsDep, LibraryDep, SettingsDep
from framedex.api.jobs import Job, JobFilter, JobManager
from framedex.api.schemas import body_schema
from framedex.api.twelvelabs.common import (
    INDEX_STATUS,
    Page,
    PageLimit,
    paginate,
    parse_json,
    rfc3339,
    submit_ingest,
)
from framedex.api.twelvelabs.schemas import IndexedAssetCreate, require_visual
from framedex.api.uploads import read_json_body
from framedex.errors import NotFoundError, UnsupportedError
from framedex.library import Library, MemberRecord, VideoRecord
from framedex.rules import JOB_DONE

router = APIRouter(prefix="/indexes/{index_id}/indexed-assets", tags=["indexed-assets"])

_CREATE = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": body_schema(IndexedAssetCreate)}}}}


def system_metadata(video: VideoRecord | None, filename: str | None) -> dict[str, Any]:
    """``system_metadata`` of an indexed asset or a task (what is known so far)."""
    out: dict[str, Any] = {"filename": filename}
    if video is not None:
        out.update(duration=round(video.duration, 3), fps=round(video.frame_rate, 3),
                   width=video.width, height=video.height, size=video.file_size)
    return out


def index_jobs(jobs: JobManager, index_id: str, content_id: str | None = None) -> list[Job]:
    """The jobs that index into ``index_id`` (of one content, if given), newest first."""
    return jobs.list(1 << 30, 0, JobFilter.of(collection=index_id, content_id=content_id))[0]


def asset_state(member: tuple[MemberRecord, VideoRecord] | None, job: Job | None,
                video_id: str) -> dict[str, Any]:
    """An indexed asset as the SDK's ``IndexedAsset`` reads it, from its membership (ready)
    or else its newest job."""
    params = job.params if job is not None else {}
    created = job.created_at if job is not None else (member[0].added_at if member else None)
    if member is not None:
        status, updated, video = "ready", member[0].added_at, member[1]
    else:
        assert job is not None
        status, updated, video = INDEX_STATUS[job.status], job.updated_at, None
    out = {"_id": video_id, "asset_id": params.get("asset_id"), "status": status,
           "created_at": rfc3339(created), "updated_at": rfc3339(updated),
           "indexed_at": rfc3339(member[0].added_at) if member else None,
           "system_metadata": system_metadata(video, params.get("filename"))}
    if member is None and job is not None and job.error:
        out["error"] = {"message": job.error}
    return out


def find_asset(library: Library, jobs: JobManager, index_id: str, video_id: str
               ) -> tuple[tuple[MemberRecord, VideoRecord] | None, Job | None]:
    """The membership (or None) and the newest job of one indexed asset.

    Raises:
        NotFoundError: neither exists (never indexed here, or removed from the index).
    """
    member = library.collection_member(index_id, video_id)
    job = next(iter(index_jobs(jobs, index_id, video_id)), None)
    if member is None and (job is None or job.status == JOB_DONE):
        raise NotFoundError(f"no indexed asset {video_id[:64]!r} in index {index_id[:64]!r}")
    return member, job


@router.post("", status_code=202, openapi_extra=_CREATE)
async def create_indexed_asset(index_id: str, request: Request, library: LibraryDep,
                               jobs: JobsDep, settings: SettingsDep) -> dict[str, Any]:
    """Index an asset into the index (``{"asset_id", "user_metadata"?}``); poll
    ``GET .../indexed-assets/{_id}`` until ``ready``."""
    req = parse_json(IndexedAssetCreate, await read_json_body(request))
    await run_in_threadpool(library.collection, index_id)  # 404 before any work
    asset = await run_in_threadpool(library.asset, req.asset_id)
    _, video_id = await submit_ingest(
        library, jobs, settings, source="asset", path=Path(asset.path), kind="indexed_asset",
        collection=index_id, metadata=req.user_metadata or asset.metadata,
        filename=asset.filename, extra={"asset_id": asset.asset_id})
    return {"_id": video_id, "asset_id": asset.asset_id}


@router.get("")
def list_indexed_assets(index_id: str, library: LibraryDep, jobs: JobsDep, page: Page = 1,
                        page_limit: PageLimit = 10,
                        status: Annotated[list[str] | None, Query(max_length=6)] = None
                        ) -> dict[str, Any]:
    """The index's assets, newest first: ready members, then those still indexing or failed
    (a page past the last has ``"data": []``)."""
    members = library.collection_videos(index_id)
    pending = index_jobs(jobs, index_id)
    newest: dict[str, Job] = {}
    for j in pending:
        newest.setdefault(str(j.params.get("content_id")), j)
    items = [asset_state(m, newest.get(m[0].video_id), m[0].video_id) for m in members]
    ready = {m[0].video_id for m in members}
    items += [asset_state(None, j, vid) for vid, j in newest.items()
              if vid not in ready and j.status != JOB_DONE]
    if status:
        items = [i for i in items if i["status"] in status]
    items.sort(key=lambda i: i["created_at"] or "", reverse=True)
    data, info = paginate(items, page, page_limit)
    return {"data": data, "page_info": info}


@router.get("/{indexed_asset_id}")
def retrieve_indexed_asset(index_id: str, indexed_asset_id: str, library: LibraryDep,
                           jobs: JobsDep,
                           embedding_option: Annotated[list[str] | None,
                                                       Query(max_length=3)] = None,
                           transcription: bool | None = None) -> dict[str, Any]:
    """One indexed asset; ``embedding_option=visual`` adds its stored 6 s segment
    embeddings."""
    library.collection(index_id)
    member, job = find_asset(library, jobs, index_id, indexed_asset_id)
    out = asset_state(member, job, indexed_asset_id)
    if transcription:
        raise UnsupportedError("transcription is not supported: framedex does not transcribe "
                               "speech")
    if member is not None:
        out["user_metadata"] = member[1].metadata or None
        if embedding_option:
            require_visual(embedding_option, "embedding_option")
            _, _, segments = library.embeddings(indexed_asset_id)
            out["embedding"] = {"model_name": "marengo3.0", "video_embedding": {"segments": [
                {"float": v.tolist(), "start_offset_sec": float(a), "end_offset_sec": float(b),
                 "embedding_option": "visual", "embedding_scope": "clip"}
                for a, b, v in zip(segments.start_sec, segments.end_sec, segments.vectors,
                                   strict=True)]}}
    return out


@router.delete("/{indexed_asset_id}", status_code=204)
def delete_indexed_asset(index_id: str, indexed_asset_id: str, library: LibraryDep) -> Response:
    """Take the video out of the index (it stays in the library and in other indexes)."""
    library.remove_from_collection(index_id, indexed_asset_id)
    return Response(status_code=204)


# -- the legacy ``indexes.videos`` view: the ready videos of an index -----------------------

videos_router = APIRouter(prefix="/indexes/{index_id}/videos", tags=["indexed-assets"])


@videos_router.get("")
def list_index_videos(index_id: str, library: LibraryDep, jobs: JobsDep, page: Page = 1,
                      page_limit: PageLimit = 10) -> dict[str, Any]:
    """The index's ready videos (legacy ``indexes.videos.list``), newest first."""
    return list_indexed_assets(index_id, library, jobs, page, page_limit, ["ready"])


@videos_router.get("/{video_id}")
def retrieve_index_video(index_id: str, video_id: str, library: LibraryDep, jobs: JobsDep,
                         embedding_option: Annotated[list[str] | None,
                                                     Query(max_length=3)] = None
                         ) -> dict[str, Any]:
    """One ready video of the index (legacy ``indexes.videos.retrieve``)."""
    out = retrieve_indexed_asset(index_id, video_id, library, jobs, embedding_option)
    if out["status"] != "ready":
        raise NotFoundError(f"video {video_id[:64]!r} is not indexed in {index_id[:64]!r} yet "
                            f"(status {out['status']})")
    return out


@videos_router.delete("/{video_id}", status_code=204)
def delete_index_video(index_id: str, video_id: str, library: LibraryDep) -> Response:
    """Take the video out of the index (legacy ``indexes.videos.delete``)."""
    return delete_indexed_asset(index_id, video_id, library)
