"""``POST /v1/videos/{video_id}/select``: the frames of one video a VLM should see."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from framedex.api.deps import LibraryDep
from framedex.api.schemas import ErrorResponse, SamplersPublic, SelectRequest, SelectResponse
from framedex.errors import ConfigError, FramedexError

router = APIRouter(tags=["select"])

#: Frames are budget-sized (a few dozen at most), so one JPEG quality for all is fine.
JPEG_QUALITY = 85


@router.get("/v1/samplers", response_model=SamplersPublic)
def samplers(library: LibraryDep) -> SamplersPublic:
    """Registered sampler names (what ``sampler`` accepts)."""
    from framedex.query.samplers import list_samplers

    default = getattr(library, "default_sampler", None)
    return SamplersPublic(data=sorted(list_samplers()),
                          default=default if isinstance(default, str) else None)


@router.post("/v1/videos/{video_id}/select", response_model=SelectResponse,
             responses={c: {"model": ErrorResponse} for c in (404, 409, 422)})
def select(video_id: str, req: SelectRequest, library: LibraryDep) -> dict[str, Any]:
    """Choose frames of one indexed video for a question, with ``budget`` frames or a
    ``tokens`` budget; ``include`` adds the frames (JPEG data-URLs), a chat ``payload``
    (``payload_format`` openai or gemini) or the ``plot`` (PNG data-URL)."""
    try:
        result = library.select(video_id, req.question, sampler=req.sampler,
                                budget=req.budget or 8, tokens=req.tokens,
                                params=req.params or None)
    except (TypeError, ValueError) as ex:
        if isinstance(ex, FramedexError) or not req.params:
            raise
        # A sampler parameter of the wrong type that slipped past its checks (a list where a
        # number belongs) surfaces deep in numpy: it is still the client's input.
        raise ConfigError(f"params={req.params!r} is invalid for sampler "
                          f"{req.sampler!r}: {ex}") from None
    out = result.to_json()
    include = set(req.include)
    images = None
    if include & {"frames", "payload", "plot"}:
        images = library.frames(result.video_id, result.frame_idx, max_side=req.frame_max_side)
    if "frames" in include:
        from framedex.query.frames import to_data_url, to_jpeg

        out["frames"] = [to_data_url(to_jpeg(im, JPEG_QUALITY)) for im in images]
    if "payload" in include:
        from framedex.query.payload import build_payload

        out["payload"] = build_payload(req.payload_format, images, result.timestamps,
                                       req.question, tiers=result.tiers)
    if "plot" in include:
        out["plot"] = _plot(library, result, req.question, images)
    return out


def _plot(library: Any, result: Any, question: str, images: list[Any]) -> str:
    """The selection plot (relevance curve, chosen frames, contact sheet) as a PNG data-URL."""
    import base64
    import tempfile
    from pathlib import Path

    from framedex.query.plot import plot_selection

    frames = library.store.read_frames(result.video_id)
    query = library.embed_text([question])[0]
    curve = frames.vectors @ query.astype(frames.vectors.dtype)  # the relevance the plot shows
    with tempfile.TemporaryDirectory(prefix="framedex-plot-") as tmp:
        png = plot_selection(
            Path(tmp) / "plot.png", timestamps=frames.pts_sec, scores=curve,
            chosen_positions=[int(i) for i in result.indices],
            chosen_timestamps=result.timestamps, thumbnails=images, tiers=result.tiers,
            title=f"{result.sampler}: {question}", dpi=72)
        data = Path(png).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")
