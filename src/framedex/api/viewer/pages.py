"""The library and search page (``/``), ``/jobs``, ``/stats`` and sign-in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from framedex.api.deps import JobsDep, LibraryDep, PathsDep
from framedex.api.paths import PathView
from framedex.api.viewer import params
from framedex.api.viewer.auth import (
    COOKIE,
    COOKIE_MAX_AGE,
    ViewerSessions,
    safe_next,
    viewer_access,
)
from framedex.api.viewer.render import SECURITY_HEADERS, PageRoute, page
from framedex.errors import check
from framedex.library import (
    Job,
    Moment,
    QueryStats,
    SearchFilters,
    VideoHit,
    VideoRecord,
    parse_pairs,
)
from framedex.rules import DEFAULT_LIMIT, GROUP_BY, UNFINISHED

router = APIRouter(route_class=PageRoute, include_in_schema=False,
                   dependencies=[Depends(viewer_access)])
login_router = APIRouter(route_class=PageRoute, include_in_schema=False)

#: Videos per page of the library list.
PAGE_SIZE = 50
#: Most search results a page asks for.
MAX_LIMIT = 200


def video_view(record: VideoRecord, paths: PathView) -> dict[str, Any]:
    """What the pages show of a video (its path in public form, never the server's)."""
    return {"video_id": record.video_id, "name": paths.public(record.path),
            "duration": record.duration, "num_indexed": record.num_indexed,
            "num_frames": record.num_frames, "index_fps": record.index_fps,
            "encoder": record.encoder, "status": record.status,
            "size": f"{record.width}x{record.height}", "metadata": record.metadata,
            "created_at": record.created_at}


def moment_view(m: Moment, paths: PathView, query: str) -> dict[str, Any]:
    """One search moment, with its thumbnail (the best frame) and its link."""
    return {"video_id": m.video_id, "name": paths.public(m.path), "start": m.start,
            "end": m.end, "score": m.score, "best": m.best_pts_sec,
            "thumb": params.link(f"/viewer/thumb/{m.video_id}.jpg", t=round(m.best_pts_sec, 3),
                                 w=240),
            "href": params.link(f"/videos/{m.video_id}", q=query, t=round(m.start, 3),
                                end=round(m.end, 3))}


def _filters(q: Any) -> tuple[SearchFilters | None, dict[str, Any]]:
    """The API's search filters from the query string (and their raw form for the form)."""
    raw = {"min_duration": q.get("min_duration") or "", "max_duration": q.get("max_duration")
           or "", "path_glob": q.get("path_glob") or "", "meta": q.getlist("meta")}
    filters = SearchFilters(min_duration=params.number(q, "min_duration"),
                            max_duration=params.number(q, "max_duration"),
                            path_glob=params.text(q, "path_glob"),
                            metadata=parse_pairs(q.getlist("meta"), "meta"))
    return (filters if filters.active else None), raw


@router.get("/", response_class=HTMLResponse)
def home(request: Request, library: LibraryDep, paths: PathsDep) -> Response:
    """The search box and the library; with ``q``, the moments (or videos), best first."""
    q = request.query_params
    query = params.text(q, "q")
    group_by = q.get("group_by") or GROUP_BY[0]
    limit = params.integer(q, "limit") or DEFAULT_LIMIT
    check(1 <= limit <= MAX_LIMIT, "limit", limit, f"must be in 1..{MAX_LIMIT}")
    offset = params.integer(q, "offset") or 0
    check(offset >= 0, "offset", offset, "must be >= 0")
    filters, raw_filters = _filters(q)
    results: list[dict[str, Any]] = []
    notes: list[str] = []
    if query is not None:
        hits = library.search(query, limit=limit, group_by=group_by, filters=filters)
        for h in hits:
            if isinstance(h, VideoHit):
                moments = [moment_view(m, paths, query) for m in h.moments]
                results.append({"video_id": h.video_id, "name": paths.public(h.path),
                                "score": h.score, "moments": moments})
            else:
                results.append(moment_view(h, paths, query))
        notes = library.query_notes(query)
    records, count = library.videos_page(limit=PAGE_SIZE, offset=offset)
    return page(request, "home.html", title=query or "Library", query=query or "",
                group_by=group_by, limit=limit, filters=raw_filters,
                filters_open=filters is not None, results=results, notes=notes,
                store_notes=library.store_notes(),
                videos=[video_view(r, paths) for r in records], count=count, offset=offset,
                page_size=PAGE_SIZE,
                prev_href=params.link("/", offset=max(0, offset - PAGE_SIZE)) if offset else None,
                next_href=params.link("/", offset=offset + PAGE_SIZE)
                if offset + PAGE_SIZE < count else None)


def job_view(job: Job, paths: PathView, live: set[str]) -> dict[str, Any]:
    """What the jobs page shows of a job: its file as the user named it (an upload is stored
    as ``<job id>-<name>``: the name), and its video only while that video exists."""
    name = paths.public(job.path)
    stored = name.rsplit("/", 1)[-1]
    if job.source == "upload" and stored.startswith(f"{job.job_id}-"):
        name = stored[len(job.job_id) + 1:]
    return {"job": job, "name": name,
            "video_live": job.video_id is not None and job.video_id in live}


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, jobs: JobsDep, library: LibraryDep,
              paths: PathsDep) -> Response:
    """Ingest jobs, newest first; the page refreshes itself while one is queued or running."""
    rows, count = jobs.list(limit=100, offset=0)
    active = any(j.status in UNFINISHED for j in rows)
    live = {r.video_id for r in library.videos()}
    return page(request, "jobs.html", title="Jobs", jobs=[job_view(j, paths, live) for j in rows],
                count=count, active=active)


#: Width of the chart (its viewBox), where bars start, and the longest bar: the label after
#: the longest bar ("123.4 / 1234.5 ms", ~130 px) must fit in what is left (with 560 it was
#: cut at the right edge).
CHART_WIDTH, BAR_X, BAR_MAX = 820, 180, 480


def stats_chart(rows: Sequence[QueryStats]) -> dict[str, Any]:
    """Bar geometry of p50/p95 latency per (kind, sampler)."""
    top = max([r["p95_ms"] or 0.0 for r in rows] + [1e-9])
    bars = []
    for i, r in enumerate(rows):
        label = r["kind"] + (f" · {r['sampler']}" if r["sampler"] else "")
        bars.append({"label": label, "y": 8 + i * 26, "p50": r["p50_ms"] or 0.0,
                     "p95": r["p95_ms"] or 0.0,
                     "w50": BAR_MAX * (r["p50_ms"] or 0.0) / top,
                     "w95": BAR_MAX * (r["p95_ms"] or 0.0) / top})
    return {"bars": bars, "height": 16 + 26 * len(rows), "max": top, "width": CHART_WIDTH,
            "x": BAR_X}


@router.get("/stats", response_class=HTMLResponse)
def stats_page(request: Request, library: LibraryDep) -> Response:
    """Per-sampler latency and usage from the query log (``framedex stats``'s numbers)."""
    rows = library.stats()
    cache = library.cache_stats()
    columns = list(dict.fromkeys(k for c in cache.values() if isinstance(c, dict) for k in c))
    return page(request, "stats.html", title="Stats", rows=rows, chart=stats_chart(rows),
                cache=cache, cache_columns=columns)


# -- sign-in ------------------------------------------------------------------------------


def _signed_in_redirect(target: str, token: str | None, secure: bool) -> Response:
    response = RedirectResponse(safe_next(target), status_code=303, headers=SECURITY_HEADERS)
    if token is not None:
        response.set_cookie(COOKIE, token, max_age=COOKIE_MAX_AGE, path="/", httponly=True,
                            samesite="lax", secure=secure)
    return response


@login_router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    """Ask for the API key (once per browser)."""
    target = safe_next(request.query_params.get("next"))
    if not request.app.state.settings.api_key:
        return RedirectResponse(target, status_code=303)
    return page(request, "login.html", title="Sign in", next=target, error=None)


@login_router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Check the key; on success set the session cookie and go back to the page asked for."""
    from framedex.api.deps import key_matches

    form = await request.form()
    key = form.get("key")
    target = safe_next(str(form.get("next") or "/"))
    expected = request.app.state.settings.api_key
    if not expected:
        return RedirectResponse(target, status_code=303)
    if isinstance(key, str) and key_matches(key.strip(), expected):
        sessions: ViewerSessions = request.app.state.viewer_sessions
        return _signed_in_redirect(target, sessions.start(expected),
                                   secure=request.url.scheme == "https")
    return page(request, "login.html", status=401, title="Sign in", next=target,
                error="wrong key: use the server's --api-key (or $FRAMEDEX_API_KEY)")


@login_router.post("/logout")
def logout(request: Request) -> Response:
    """End the session on the server (a copy of the cookie stops working too) and forget
    the cookie."""
    sessions: ViewerSessions = request.app.state.viewer_sessions
    sessions.end(request.cookies.get(COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="lax")
    return response

