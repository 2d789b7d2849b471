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

import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from framedex.errors import ConfigError, VideoOpenError, check
from framedex.query.frames import decode_sized, encode_jpeg, jpeg_data_url, write_frames
from framedex.query.payload import cost_of, in_time_order, request_body
from framedex.query.select import SelectResult
from framedex.rules import DEFAULT_MAX_SIDE, DEFAULT_QUALITY, INCLUDE, LIMITS, PAYLOAD_FORMATS
from framedex.store.schema import VideoRecord
from framedex.values import Json, JsonObject


@dataclass(frozen=True)
class DeliveryOptions:
    """What a delivery includes and at which sizes: checked once, when made, so a face can
    refuse a bad option before any selection runs, and the delivery step trusts it.

    Args:
        include: any of ``frames`` (JPEGs), ``payload`` (a chat request) and ``plot``
            (``framedex.rules.INCLUDE``).
        payload_format: ``openai`` (also vLLM) or ``gemini`` (``framedex.rules.PAYLOAD_FORMATS``).
        max_side: cap on the longer side of every frame (None:
            ``framedex.rules.DEFAULT_MAX_SIDE``, 512, the default of every face); the
            ``high`` tier is this size, ``mid`` and ``low`` are smaller.
        width: cap on the width of every frame.
        quality: JPEG quality.
        payload_options: more arguments of the payload builder (``model``, ``system``,
            ``max_tokens`` for openai; ``system`` for gemini), e.g. what ``ask`` sends: the
            caller checked them.

    Raises:
        ConfigError: an unknown include or format, a size or quality outside its rule
        (``framedex.rules.LIMITS``).
    """

    include: Sequence[str] = ("frames",)
    payload_format: str = PAYLOAD_FORMATS[0]
    max_side: int | None = None
    width: int | None = None
    quality: int = DEFAULT_QUALITY
    payload_options: Mapping[str, Json] = field(default_factory=dict)

    def __post_init__(self) -> None:
        items = None if isinstance(self.include, str) else tuple(self.include)
        bad = self.include if items is None else next(
            (i for i in items if i not in INCLUDE), None)
        check(items is not None and bad is None, "include", bad,
              f"must be a list of names among {', '.join(INCLUDE)}")
        object.__setattr__(self, "include", items)
        check(self.payload_format in PAYLOAD_FORMATS, "payload_format", self.payload_format,
              f"must be one of {', '.join(PAYLOAD_FORMATS)}")
        model = self.payload_options.get("model")
        check(model is None or (self.payload_format == PAYLOAD_FORMATS[0]
                                and isinstance(model, str) and LIMITS["model"].holds(len(model))),
              "vlm_model", model, f"must be a model name of {LIMITS['model'].rule()} for an "
              f"{PAYLOAD_FORMATS[0]} payload (a Gemini request names its model in the URL)")
        if self.max_side is None:
            object.__setattr__(self, "max_side", DEFAULT_MAX_SIDE)
        for name in ("max_side", "width", "quality"):
            limit, value = LIMITS[name], getattr(self, name)
            check((value is None and name != "quality") or (
                isinstance(value, int) and not isinstance(value, bool)
                and limit.holds(value)), name, value, limit.rule())


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
    cost: JsonObject = field(default_factory=dict)
    payload: JsonObject | None = None
    payload_format: str | None = None
    plot_png: bytes | None = None

    def data_urls(self) -> list[str]:
        """The frames as ``data:image/jpeg;base64,...`` URLs."""
        return [jpeg_data_url(j) for j in self.jpegs]

    def plot_data_url(self) -> str | None:
        """The plot as a ``data:image/png;base64,...`` URL."""
        if self.plot_png is None:
            return None
        import base64

        return "data:image/png;base64," + base64.b64encode(self.plot_png).decode("ascii")

    def write_frames(self, out_dir: str | os.PathLike[str]) -> list[Path]:
        """Write the JPEGs, named by position, timestamp and native frame index."""
        r = self.result
        return write_frames(out_dir, self.jpegs, r.timestamps, r.frame_idx)

    def to_json(self, include: Iterable[str] = INCLUDE) -> JsonObject:
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


def deliver(result: SelectResult, options: DeliveryOptions, *, decoder: str) -> Delivery:
    """Decode only the chosen frames, at their tiers, and build what ``options.include`` asks
    for. The selection (its tiers: a sampler's) and the options are taken as checked.

    Args:
        result: a selection (carrying its video record and relevance curve).
        options: what to include, and at which sizes.
        decoder: the backend to decode with (the one that indexed the video).

    Returns:
        The :class:`Delivery` (always with the cost line).

    Raises:
        ConfigError: a result without its video record. VideoOpenError: the source file is
        gone or changed since it was indexed. DecodeError: the file fails where a frame lies.
    """
    include = options.include
    record = result.record
    if record is None:
        raise ConfigError("result is invalid: it carries no video record (use Library.select)")
    duration = max(record.duration, 1e-3)
    out = Delivery(result, cost=cost_of(len(result.indices), result.tokens_used, duration,
                                        result.tiers))
    if not include or not result.indices:
        return out
    every = "frames" in include or "payload" in include
    plot = "plot" in include and result.curve is not None
    # A plot alone decodes only the frames its contact sheet shows (at most MAX_SHEET, however
    # large the budget); frames and payloads need every chosen frame.
    sheet = _sheet(result) if plot else []
    wanted = list(range(len(result.indices))) if every else sheet
    tiers = result.tiers
    with verified_source(record) as source:
        images = decode_sized(source, [result.frame_idx[i] for i in wanted], decoder=decoder,
                              max_side=options.max_side, width=options.width,
                              tiers=None if tiers is None else [tiers[i] for i in wanted])
    if every:
        out.jpegs = [encode_jpeg(im, options.quality) for im in images]
        out.sizes = [(int(im.shape[1]), int(im.shape[0])) for im in images]
    if "payload" in include:
        out.payload_format = options.payload_format
        items = in_time_order(out.jpegs, result.timestamps, result.tiers)
        out.payload = request_body(options.payload_format, items, result.question,
                                   duration_sec=duration, options=options.payload_options)
    if plot:
        from framedex.query.plot import draw_selection

        assert result.curve is not None
        out.plot_png = draw_selection(
            timestamps=result.curve.pts_sec, scores=result.curve.scores,
            chosen_positions=result.indices, chosen_timestamps=result.timestamps,
            thumbnails=[images[i] for i in sheet] if every else images, sheet=sheet,
            tiers=result.tiers, title=f"{result.sampler}: {result.question}",
            dpi=72 if options.width or options.max_side else 110)
    if "frames" not in include:
        out.jpegs, out.sizes = [], []
    return out


def _sheet(result: SelectResult) -> list[int]:
    from framedex.query.plot import sheet_members

    return sheet_members(result.timestamps)


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
    while it still is that file (:func:`open_checked`); the bytes are served from that open,
    checked descriptor. The caller closes ``SourceFile.file``.

    Raises:
        VideoOpenError: the file is gone or changed.
    """
    import mimetypes

    fd = open_checked(record)
    handle = os.fdopen(fd, "rb")
    media_type = mimetypes.guess_type(record.path)[0] or "application/octet-stream"
    return SourceFile(record=record, file=handle, size=os.fstat(fd).st_size,
                      media_type=media_type)


def open_checked(record: VideoRecord) -> int:
    """Open an indexed video's source and check that the open file is the one indexed.

    The checks are made on the open descriptor, so nothing can be swapped between a check and
    the read: no final symlink; the descriptor's real path is the stored path (which was the
    real path of the verified file at index time, so a folder on the way swapped for a link
    fails it); and the file's identity (device, inode, size, modification time, recorded at
    index time) is unchanged, so another file put at the same path, a hard link or a rewrite
    is refused too. Stores indexed before schema version 3 carry the size only.

    Returns:
        the open descriptor (read-only); the caller closes it.

    Raises:
        VideoOpenError: the file is missing, or not the file that was indexed.
    """
    try:
        fd = os.open(record.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError) as ex:
        raise VideoOpenError(f"the source of video {record.video_id} is gone or cannot be "
                             f"opened ({record.path}: {getattr(ex, 'strerror', None) or ex}); "
                             "re-index it from where it lives now") from None
    try:
        st = os.fstat(fd)
        proc = f"/proc/self/fd/{fd}"
        real = os.path.realpath(proc) if os.path.exists(proc) else \
            os.path.realpath(record.path)
        recorded = (record.file_dev, record.file_ino, record.file_size, record.file_mtime_ns)
        now = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        same = all(want is None or want == got for want, got in zip(recorded, now, strict=True))
        if real != record.path or not same:
            raise VideoOpenError(f"the source of video {record.video_id} changed since it was "
                                 f"indexed ({record.path}); re-index it")
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def verified_source(record: VideoRecord) -> Iterator[str]:
    """A path to read an indexed video's source from, checked (:func:`open_checked`) and held
    open for the block: ``/proc/self/fd/N``, so a decoder reads exactly the file that was
    checked. Where there is no ``/proc`` (macOS) it is the stored path, checked just before.

    Raises:
        VideoOpenError: the file is missing, or not the file that was indexed.
    """
    fd = open_checked(record)
    proc = f"/proc/self/fd/{fd}"
    try:
        if not os.path.exists(proc):
            yield record.path
            return
        try:
            yield proc
        except VideoOpenError as ex:  # a decoder's message names the path it opened
            if proc not in str(ex):
                raise
            raise type(ex)(str(ex).replace(proc, record.path)) from None
    finally:
        os.close(fd)
