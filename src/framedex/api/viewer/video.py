"""The video page (player, relevance curve, chosen frames, router decision, cost, request
export) and the compare view (two to four samplers on one curve).

Each page runs the one request path: ``Library.select`` (one store read or cache hit, one text
encode or cache hit, one sampler call), then ``Library.deliver`` for the frames at their
tiers. The curve is the one the selection carries.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from framedex.api.deps import LibraryDep, PathsDep
from framedex.api.viewer import params
from framedex.api.viewer.auth import viewer_access
from framedex.api.viewer.curve import CurveSvg
from framedex.api.viewer.pages import video_view
from framedex.api.viewer.render import PageRoute, page
from framedex.errors import ConfigError, check
from framedex.library import (
    Delivery,
    Library,
    SelectResult,
    VideoRecord,
    parse_pairs,
    sampler_infos,
)
from framedex.rules import DEFAULT_MAX_SIDE, PAYLOAD_FORMATS

router = APIRouter(route_class=PageRoute, include_in_schema=False,
                   dependencies=[Depends(viewer_access)])

#: Containers browsers play in ``<video>`` (other videos get a frame strip).
PLAYABLE = {".mp4", ".m4v", ".mov", ".webm", ".ogv"}
#: Longer side of delivered frames on the video page: the API's default ``frame_max_side``,
#: so the page shows what an API client's VLM receives (a frame's tier can make it smaller).
FRAME_MAX_SIDE = DEFAULT_MAX_SIDE
#: Longer side of the frames in the compare view (four columns of them).
COMPARE_MAX_SIDE = 256
#: Most frames a page shows (a larger budget belongs in the API or the CLI).
MAX_PAGE_FRAMES = 128
#: Frames of the strip shown for a video the browser cannot play.
STRIP = 12


class SelectQuery:
    """The select request a video page or its export link describes."""

    def __init__(self, q: Any, library: Library):
        self.question = params.text(q, "q")
        self.sampler = params.text(q, "sampler")
        self.budget = params.integer(q, "budget")
        self.tokens = params.integer(q, "tokens")
        self.params = parse_pairs(q.getlist("param"), "param")
        # the sampler, budget and tokens are the facade's to check, when a question selects
        check(self.budget is None or self.budget <= MAX_PAGE_FRAMES, "budget", self.budget,
              f"must be at most {MAX_PAGE_FRAMES} frames in the viewer (use the API or the "
              "CLI for more)")

    def select(self, library: Library, video_id: str, sampler: str | None = None
               ) -> SelectResult:
        assert self.question is not None
        result = library.select(video_id, self.question, sampler=sampler or self.sampler,
                                budget=self.budget, tokens=self.tokens,
                                params=self.params if sampler is None else None)
        if len(result.indices) > MAX_PAGE_FRAMES:
            raise ConfigError(f"tokens={self.tokens!r} is invalid here: it buys "
                              f"{len(result.indices)} frames, the viewer shows at most "
                              f"{MAX_PAGE_FRAMES}; use a smaller token budget")
        return result

    def query(self, **extra: Any) -> dict[str, Any]:
        """The request as link parameters."""
        return {"q": self.question, "sampler": self.sampler, "budget": self.budget,
                "tokens": self.tokens,
                "param": [f"{k}={v}" for k, v in self.params.items()], **extra}


def chosen_frames(result: SelectResult, delivery: Delivery) -> list[dict[str, Any]]:
    """The delivered frames with their times, tiers and scores."""
    urls = delivery.data_urls()
    out = []
    for i, t in enumerate(result.timestamps):
        w, h = delivery.sizes[i]
        out.append({"t": t, "frame_idx": result.frame_idx[i], "src": urls[i], "w": w, "h": h,
                    "score": None if result.scores is None else result.scores[i],
                    "tier": None if result.tiers is None else result.tiers[i]})
    return out


def _strip(record: VideoRecord, link: Any) -> list[dict[str, Any]]:
    n = max(1, min(STRIP, record.num_indexed))
    out = []
    for i in range(n):
        t = round((i + 0.5) * record.duration / n, 3)
        out.append({"t": t, "thumb": params.link(f"/viewer/thumb/{record.video_id}.jpg", t=t,
                                                 w=200),
                    "href": link(t)})
    return out


def _curve(result: SelectResult, record: VideoRecord, lanes: int = 0) -> CurveSvg:
    assert result.curve is not None
    curve = CurveSvg(result.curve.pts_sec, result.curve.scores, record.duration, lanes=lanes)
    best = result.curve.best_moment()
    if best is not None:
        curve.set_best(*best)
    return curve


@router.get("/videos/{video_id}", response_class=HTMLResponse)
def video_page(video_id: str, request: Request, library: LibraryDep,
               paths: PathsDep) -> Response:
    """A player at a moment; with ``q``: the curve, the chosen frames, the router's decision,
    the cost line and the request export."""
    q = request.query_params
    record = library.video(video_id)
    req = SelectQuery(q, library)
    t = params.number(q, "t")
    end = params.number(q, "end")
    here = f"/videos/{record.video_id}"
    ctx: dict[str, Any] = {"result": None, "frames": [], "curve": None, "cost": None}
    if req.question is not None:
        result = req.select(library, record.video_id)
        delivery = library.deliver(result, include=("frames",), max_side=FRAME_MAX_SIDE)
        curve = _curve(result, record)
        curve.mark(result.timestamps, result.scores, result.tiers)
        if t is not None:
            curve.band = curve.span(t, end if end is not None and end > t else t + 1.0)
        frames = chosen_frames(result, delivery)
        if t is None and frames:
            best = max(frames, key=lambda f: f["score"] if f["score"] is not None else 0.0)
            t = best["t"]
        export = {fmt: params.link(f"/viewer/payload/{record.video_id}.json",
                                   **req.query(format=fmt)) for fmt in PAYLOAD_FORMATS}
        ctx = {"result": result, "frames": frames, "curve": curve, "cost": delivery.cost,
               "export": export,
               "compare_href": params.link(f"{here}/compare", q=req.question,
                                           budget=req.budget, tokens=req.tokens)}
    start = t or 0.0
    playable = PurePath(record.path).suffix.lower() in PLAYABLE
    return page(
        request, "video.html", title=paths.public(record.path), video=video_view(record, paths),
        req=req, start=start, end=end, playable=playable,
        source=f"/viewer/source/{record.video_id}#t={start:.3f}",
        strip=_strip(record, lambda s: params.link(here, **req.query(t=s))),
        frame_href=lambda s: params.link(here, **req.query(t=round(s, 3))),
        samplers=sampler_infos(), default_sampler=library.default_sampler, **ctx)


@router.get("/videos/{video_id}/compare", response_class=HTMLResponse)
def compare_page(video_id: str, request: Request, library: LibraryDep,
                 paths: PathsDep) -> Response:
    """One question, two to four samplers on the same curve: their picks, and whether each
    hit the query's best moment."""
    q = request.query_params
    record = library.video(video_id)
    req = SelectQuery(q, library)
    chosen = params.names(q, "sampler")
    if not chosen:
        other = "uniform" if library.default_sampler != "uniform" else "topk"
        chosen = [library.default_sampler, other]
    check(2 <= len(chosen) <= 4, "sampler", ",".join(chosen),
          "the compare view needs 2 to 4 different samplers")
    for name in chosen:
        sampler_infos(name)  # an unknown name fails before any selection
    columns: list[dict[str, Any]] = []
    curve = None
    best = None
    if req.question is not None:
        results = [req.select(library, record.video_id, sampler=name) for name in chosen]
        curve = _curve(results[0], record, lanes=len(results))
        best = curve.best_times
        for result in results:
            delivery = library.deliver(result, include=("frames",), max_side=COMPARE_MAX_SIDE)
            lane = curve.lane(result.sampler, result.timestamps, result.scores, result.tiers)
            hit = best is not None and any(best[0] <= t < best[1] for t in result.timestamps)
            columns.append({"name": result.sampler, "color": lane.color, "hit": hit,
                            "result": result, "cost": delivery.cost,
                            "frames": chosen_frames(result, delivery),
                            "href": params.link(f"/videos/{record.video_id}",
                                                q=req.question, sampler=result.sampler,
                                                budget=req.budget, tokens=req.tokens)})
    return page(request, "compare.html", title=f"Compare · {paths.public(record.path)}",
                video=video_view(record, paths), req=req, chosen=chosen, columns=columns,
                curve=curve, best=best, samplers=sampler_infos(),
                frame_href=lambda s: params.link(f"/videos/{record.video_id}",
                                                 **req.query(t=round(s, 3))))
