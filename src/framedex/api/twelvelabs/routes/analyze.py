"""``/analyze``: Twelve Labs' Pegasus call, answered by the user's own video LLM.

``client.analyze(video={"type": "asset_id", "asset_id": ...}, prompt=...)`` and
``client.analyze_stream(...)`` run ``Library.ask``: the server selects the frames of the video
that fit the prompt (the rollout's arm, else its default sampler), sends them to the video LLM
it was started with (``framedex serve --vlm-url URL --vlm-model NAME``) and answers in Twelve
Labs' shapes: ``{"id", "data", "finish_reason", "usage"}``, or NDJSON lines ``stream_start``,
``text_generation``..., ``stream_end`` (with ``usage``, or ``error`` when the model failed
mid-stream). Both carry an extra ``framedex`` object: the frames' timestamps, the sampler and
arm, whether the answer came from the cache, the latency split.

The video: an asset (indexed first when it is not yet: the request waits for the indexing job,
at most :data:`INDEX_WAIT_S`, then answers 409 naming the task to poll), an indexed asset's
id (the video id), an allowed ``url`` (``--allow-url``), or ``base64_string`` (within the
upload limit). ``start_time``/``end_time`` select within that span; ``max_tokens``,
``temperature`` and a ``json_schema`` ``response_format`` go to the model; ``model_name``
``pegasus*`` (or none) means the server's model, any other name another model at the same
endpoint. Images and ``prompt_v2`` are 400 ``unsupported``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from framedex.api.deps import JobsDep, LibraryDep, SettingsDep
from framedex.api.jobs import Job, JobFilter, JobManager, new_job_id
from framedex.api.schemas import body_schema
from framedex.api.settings import Settings
from framedex.api.twelvelabs.common import parse_json, submit_ingest
from framedex.api.twelvelabs.media import check_url, decode_base64, fetch_url
from framedex.api.twelvelabs.schemas import AnalyzeRequest, AnalyzeVideo
from framedex.api.uploads import read_json_body
from framedex.errors import (
    ConfigError,
    FramedexError,
    NotFoundError,
    NotReadyError,
    UnsupportedError,
)
from framedex.library import AskResult, AskStream, Library
from framedex.rules import JOB_DONE, JOB_FAILED, UNFINISHED

router = APIRouter(tags=["analyze"])

#: Seconds an analyze request waits for the indexing of a video it had to index first.
INDEX_WAIT_S = 300.0
#: What a truncated answer says (Twelve Labs' warning for ``finish_reason: length``).
TRUNCATED = ("output truncated: the generation reached the configured max_tokens. The partial "
             "output is returned; raise max_tokens if you need a longer response.")

_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": body_schema(AnalyzeRequest)}}}}


@router.post("/analyze", openapi_extra=_BODY)
async def analyze(request: Request, library: LibraryDep, jobs: JobsDep,
                  settings: SettingsDep) -> Any:
    """Answer a prompt about a video with the server's video LLM, shown the frames a
    sampler picks for it (``stream`` true: NDJSON events)."""
    limit = settings.max_upload_bytes * 4 // 3 + (64 << 10)
    req = parse_json(AnalyzeRequest, await read_json_body(request, limit))
    video = req.require_supported()
    if library.vlm is None:  # before indexing anything for nothing
        raise UnsupportedError("analyze needs a video language model: start the server with "
                               "--vlm-url URL --vlm-model NAME (an OpenAI-compatible endpoint: "
                               "vLLM, Ollama, llama.cpp, OpenAI)")
    video_id = await _indexed_video(video, library, jobs, settings)
    model = None if req.model_name is None or req.model_name.lower().startswith("pegasus") \
        else req.model_name
    assert req.prompt is not None
    options: dict[str, Any] = {
        "model": model, "max_tokens": req.max_tokens, "temperature": req.temperature,
        "response_format": req.openai_format(), "start": req.start_time, "end": req.end_time,
        "rollout_key": request.headers.get("x-framedex-rollout-key") or None}
    if not req.stream:
        result = await run_in_threadpool(lambda: library.ask(video_id, req.prompt or "",
                                                             **options))
        return _response(result)
    stream = await run_in_threadpool(lambda: library.ask_stream(video_id, req.prompt or "",
                                                                **options))
    return StreamingResponse(_events(stream), media_type="application/x-ndjson")


def _usage(result: AskResult) -> dict[str, Any] | None:
    if result.completion_tokens is None:
        return None
    return {"output_tokens": result.completion_tokens, "input_tokens": result.prompt_tokens}


def _extra(result: AskResult) -> dict[str, Any]:
    """The ``framedex`` object: what Twelve Labs' response has no field for."""
    data = result.to_json()
    for key in ("answer", "question", "usage", "finish_reason"):
        data.pop(key)
    return data


def _response(result: AskResult) -> dict[str, Any]:
    out: dict[str, Any] = {"id": result.answer_id, "data": result.answer,
                           "finish_reason": result.finish_reason or "stop"}
    usage = _usage(result)
    if usage is not None:
        out["usage"] = usage
    if result.finish_reason == "length":
        out["error"] = {"message": TRUNCATED}
    out["framedex"] = _extra(result)
    return out


def _line(event: dict[str, Any]) -> bytes:
    return (json.dumps(event) + "\n").encode()


def _events(stream: AskStream) -> Iterator[bytes]:
    """NDJSON events: ``stream_start``, one ``text_generation`` per fragment, ``stream_end``
    (a model failure after the start ends the stream with an ``error``)."""
    meta: dict[str, Any] = {"generation_id": stream.answer_id}
    yield _line({"event_type": "stream_start", "metadata": meta})
    try:
        for text in stream:
            yield _line({"event_type": "text_generation", "text": text})
    except FramedexError as ex:
        yield _line({"event_type": "stream_end", "finish_reason": None, "metadata": meta,
                     "error": {"code": ex.code, "message": str(ex)}})
        return
    result = stream.result
    assert result is not None
    end: dict[str, Any] = {"event_type": "stream_end",
                           "finish_reason": result.finish_reason or "stop", "metadata": meta}
    usage = _usage(result)
    if usage is not None:
        meta["usage"] = usage
    if result.finish_reason == "length":
        end["error"] = {"message": TRUNCATED}
    end["framedex"] = _extra(result)
    yield _line(end)


# -- the video ------------------------------------------------------------------------------


async def _indexed_video(video: AnalyzeVideo, library: Library, jobs: JobManager,
                         settings: Settings) -> str:
    """The id of the indexed video a request names, indexing it first when needed.

    Raises:
        NotFoundError: an unknown asset id. ConfigError: a refused URL, bad base64, a video
        that failed to index. NotReadyError: indexing took longer than INDEX_WAIT_S.
    """
    if video.type == "asset_id":
        assert video.asset_id is not None
        try:
            asset = await run_in_threadpool(library.asset, video.asset_id)
        except NotFoundError:
            return await run_in_threadpool(_video_by_id, library, video.asset_id)
        return await _index_and_wait(library, jobs, settings, Path(asset.path), "asset",
                                     asset.filename, {"asset_id": asset.asset_id})
    folder = settings.resolved_upload_dir_for(library.uri)
    dest = folder / new_job_id()
    try:  # the same rules as every other media source of /v1.3 (media.py)
        if video.type == "url":
            assert video.url is not None
            check_url(video.url, settings, "video.url")
            await run_in_threadpool(fetch_url, video.url, dest, settings, "video.url")
            name = video.url.rstrip("/").rsplit("/", 1)[-1] or dest.name
        else:
            assert video.base64_string is not None
            data = decode_base64(video.base64_string, "video.base64_string",
                                 settings.max_upload_bytes)
            await run_in_threadpool(dest.write_bytes, data)
            name = dest.name
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return await _index_and_wait(library, jobs, settings, dest, "upload", name, {})


def _video_by_id(library: Library, video_id: str) -> str:
    """An indexed asset's id is its video's id (exact, not a prefix or a file name)."""
    try:
        record = library.video(video_id)
    except FramedexError:
        record = None
    if record is None or record.video_id != video_id:
        raise NotFoundError(f"no asset or indexed asset {video_id[:64]!r}: upload one with "
                            "POST /v1.3/assets")
    return record.video_id


async def _index_and_wait(library: Library, jobs: JobManager, settings: Settings, path: Path,
                          source: str, filename: str, extra: dict[str, Any]) -> str:
    """The video id of a file: at once when its content is indexed; else after an ingest job
    (an unfinished job for the same content is waited for, not repeated)."""
    video_id = await run_in_threadpool(library.content_id, path)
    try:
        await run_in_threadpool(library.video, video_id)
    except FramedexError:
        pass
    else:
        if source == "upload":
            path.unlink(missing_ok=True)  # indexed from another file already
        return video_id
    unfinished = JobFilter.of(UNFINISHED, content_id=video_id)
    job = next(iter(jobs.list(1, 0, unfinished)[0]), None)
    if job is None:
        try:
            job, _ = await submit_ingest(library, jobs, settings, source=source, path=path,
                                         kind="task", filename=filename, extra=extra)
        except BaseException:
            if source == "upload":  # no job owns the file: a refused request leaves nothing
                path.unlink(missing_ok=True)
            raise
    elif source == "upload":
        path.unlink(missing_ok=True)  # the running job indexes the same content
    return await _wait(jobs, job, video_id)


async def _wait(jobs: JobManager, job: Job, video_id: str) -> str:
    deadline = time.monotonic() + INDEX_WAIT_S
    while True:
        job = await run_in_threadpool(jobs.get, job.job_id)
        if job.status == JOB_DONE:
            return job.video_id or video_id
        if job.status == JOB_FAILED:
            raise ConfigError(f"video is invalid: indexing it failed ({job.error})")
        if time.monotonic() > deadline:
            raise NotReadyError(f"the video is still being indexed after {INDEX_WAIT_S:.0f} s "
                                f"(task {job.job_id}): analyze it again when GET "
                                f"/v1.3/tasks/{job.job_id} says ready")
        await asyncio.sleep(0.2)
