"""The one delivery step: a selection -> what the VLM (or a person) receives.

The CLI (``--frames-out``, ``--plot``, ``--payload``), the HTTP API (``include``) and the web
viewer all call :func:`deliver` through ``Library.deliver``, so a frame chosen at the ``low``
tier is sent at the low tier's size everywhere (the API once sent full-size frames for
"low"-tier picks while the CLI shrank them), and the plot is drawn from the relevance curve the
selection already carries: no second store read, no second text encode.

Example::

    result = lib.select(video, "when does the dog jump?", sampler="aks", budget=8)
    out = lib.deliver(result, include=("frames", "payload", "plot"))
    out.jpegs[0][:2] == b"\\xff\\xd8"; out.payload["messages"]; out.cost["text"]
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from framedex.errors import ConfigError, VideoOpenError, check
from framedex.query.frames import decode_frames, to_data_url, to_jpeg, write_frames
from framedex.query.payload import PAYLOAD_FORMATS, build_payload, cost_line
from framedex.query.select import SelectResult
from framedex.store.schema import VideoRecord

#: What a delivery can include besides the cost line.
INCLUDE = ("frames", "payload", "plot")
#: JPEG quality of delivered frames (budget-sized sets: a few dozen frames at most).
DEFAULT_QUALITY = 85


@dataclass
class Delivery:
    """The chosen frames, decoded at their tiers, and what is made from them.

    Attributes:
        result: the selection delivered.
        jpegs: one JPEG per chosen frame, in the selection's order (empty if not asked for).
        sizes: ``(width, height)`` of each JPEG.
        cost: the token cost line (:func:`framedex.query.payload.cost_line`).
        payload: the chat request body, when asked for.
        payload_format: ``openai`` or ``gemini``.
        plot_png: the relevance-curve picture, when asked for.
    """

    result: SelectResult
    jpegs: list[bytes] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)
    cost: dict[str, Any] = field(default_factory=dict)
    payload: dict[str, Any] | None = None
    payload_format: str | None = None
    plot_png: bytes | None = None

    def data_urls(self) -> list[str]:
        """The frames as ``data:image/jpeg;base64,...`` URLs."""
        return [to_data_url(j) for j in self.jpegs]

    def plot_data_url(self) -> str | None:
        """The plot as a ``data:image/png;base64,...`` URL."""
        if self.plot_png is None:
            return None
        import base64

        return "data:image/png;base64," + base64.b64encode(self.plot_png).decode("ascii")

    def write_frames(self, out_dir: str | os.PathLike) -> list[Path]:
        """Write the JPEGs, named by position, timestamp and native frame index."""
        r = self.result
        return write_frames(out_dir, self.jpegs, r.timestamps, r.frame_idx)

    def to_json(self, include: Iterable[str] = INCLUDE) -> dict[str, Any]:
        """The selection's JSON plus ``cost`` and the included parts as JSON values."""
        wanted = set(include)
        out = self.result.to_json()
        out["cost"] = self.cost
        if "frames" in wanted and self.jpegs:
            out["frames"] = self.data_urls()
            out["frame_sizes"] = [list(s) for s in self.sizes]
        if "payload" in wanted and self.payload is not None:
            out["payload"] = self.payload
        if "plot" in wanted and self.plot_png is not None:
            out["plot"] = self.plot_data_url()
        return out


def check_include(include: Iterable[str]) -> tuple[str, ...]:
    """Validate ``include`` names.

    Raises:
        ConfigError: an unknown name.
    """
    items = tuple(include)
    for item in items:
        check(item in INCLUDE, "include", item, f"must be among {', '.join(INCLUDE)}")
    return items


def deliver(result: SelectResult, *, decoder: str, include: Sequence[str] = ("frames",),
            max_side: int | None = None, width: int | None = None,
            payload_format: str = "openai", quality: int = DEFAULT_QUALITY,
            payload_options: Mapping[str, Any] | None = None) -> Delivery:
    """Decode only the chosen frames, at their tiers, and build what ``include`` asks for.

    Args:
        result: a selection (carrying its video record and relevance curve).
        decoder: the backend to decode with (the one that indexed the video).
        include: any of ``frames`` (JPEGs), ``payload`` (a chat request) and ``plot``.
        max_side: cap on the longer side of every frame (tiers cap it further).
        width: cap on the width of every frame.
        payload_format: ``openai`` (also vLLM) or ``gemini``.
        quality: JPEG quality.
        payload_options: more arguments of the payload builder (``model``, ``system``,
            ``max_tokens`` for openai; ``system`` for gemini), e.g. what ``ask`` sends.

    Returns:
        The :class:`Delivery` (always with the cost line).

    Raises:
        ConfigError: a bad include, format or size. VideoOpenError: the source file is gone or
        changed since it was indexed. DecodeError: the file fails where a frame lies.
    """
    include = check_include(include)
    check(payload_format in PAYLOAD_FORMATS, "payload_format", payload_format,
          f"must be one of {', '.join(PAYLOAD_FORMATS)}")
    record = result.record
    if record is None:
        raise ConfigError("result is invalid: it carries no video record (use Library.select)")
    duration = max(record.duration, 1e-3)
    out = Delivery(result, cost=cost_line(len(result.indices), result.tokens_used, duration,
                                          result.tiers))
    if not include or not result.indices:
        return out
    check_source(record)
    images = decode_frames(record.path, result.frame_idx, decoder=decoder, max_side=max_side,
                           width=width, tiers=result.tiers)
    out.jpegs = [to_jpeg(im, quality) for im in images]
    out.sizes = [(int(im.shape[1]), int(im.shape[0])) for im in images]
    if "payload" in include:
        out.payload_format = payload_format
        out.payload = build_payload(payload_format, out.jpegs, result.timestamps,
                                    result.question, tiers=result.tiers, duration_sec=duration,
                                    **dict(payload_options or {}))
    if "plot" in include and result.curve is not None:
        from framedex.query.plot import plot_selection

        out.plot_png = plot_selection(
            timestamps=result.curve.pts_sec, scores=result.curve.scores,
            chosen_positions=result.indices, chosen_timestamps=result.timestamps,
            thumbnails=images, tiers=result.tiers, title=f"{result.sampler}: {result.question}",
            dpi=72 if width or max_side else 110)
    if "frames" not in include:
        out.jpegs, out.sizes = [], []
    return out


@dataclass
class SourceFile:
    """An indexed video's source file, opened and checked (:meth:`Library.open_source`).

    Attributes:
        record: the video's record.
        file: the open file (binary); the caller closes it.
        size: its size in bytes.
        media_type: its MIME type, guessed from the file name (``video/mp4``...).
    """

    record: VideoRecord
    file: BinaryIO
    size: int
    media_type: str


def open_source(record: VideoRecord) -> SourceFile:
    """Open the source file of an indexed video for reading (a player's range requests).

    Only the file a video was indexed from is opened, never a path from the caller, and only
    while it still is that file: the same checks as decoding (:func:`check_source`), then the
    open file itself is checked (no final symlink, same size), so a swap between the check and
    the open is refused too. The caller closes ``SourceFile.file``.

    Raises:
        VideoOpenError: the file is gone or changed.
    """
    import mimetypes

    check_source(record)
    try:
        fd = os.open(record.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as ex:
        raise VideoOpenError(f"the source of video {record.video_id} cannot be opened "
                             f"({ex.strerror or ex}); re-index it") from None
    handle = os.fdopen(fd, "rb")
    size = os.fstat(fd).st_size
    if record.file_size is not None and size != record.file_size:
        handle.close()
        raise VideoOpenError(f"the source of video {record.video_id} changed since it was "
                             f"indexed ({record.path}); re-index it")
    media_type = mimetypes.guess_type(record.path)[0] or "application/octet-stream"
    return SourceFile(record=record, file=handle, size=size, media_type=media_type)


def check_source(record: VideoRecord) -> None:
    """Refuse to decode a source that is not the file that was indexed.

    The stored path is the real path at index time. If it now resolves elsewhere (a file
    swapped for a symlink) or its size changed, decoding it would serve another file's frames
    under this video's id.

    Raises:
        VideoOpenError: the file is missing, now a link elsewhere, or changed size.
    """
    path = record.path
    try:
        real = os.path.realpath(path)
        size = os.stat(real).st_size
    except (OSError, ValueError) as ex:
        raise VideoOpenError(f"the source of video {record.video_id} is gone ({path}: "
                             f"{getattr(ex, 'strerror', None) or ex}); re-index it from where "
                             "it lives now") from None
    if real != path or (record.file_size is not None and size != record.file_size):
        raise VideoOpenError(f"the source of video {record.video_id} changed since it was "
                             f"indexed ({path}); re-index it")
