"""Video decoding behind one small backend interface (PySceneDetect's ``VideoStream`` idea).

Backends: ``pyav`` (default), ``decord`` and ``nvdec`` (GPU; PyNvVideoCodec, the optional
``framedex[gpu]`` extra). Importing this package registers them through ``@register_decoder``;
no decoding library (nor torch) is imported until a video is opened.

Example::

    from framedex.indexer.decode import open_video
    with open_video("clip.mp4") as dec:          # decoder="auto" | "pyav" | "decord"
        print(dec.info)
        for fr in dec.iter_index_frames(index_fps=1.0, max_side=256):
            ...
"""

from __future__ import annotations

import os
from typing import Any

from framedex.errors import UnknownNameError
from framedex.indexer.decode import decord as _decord  # noqa: F401 - registers "decord"
from framedex.indexer.decode import nvdec as _nvdec  # noqa: F401 - registers "nvdec"
from framedex.indexer.decode import pyav as _pyav  # noqa: F401 - registers "pyav"
from framedex.indexer.decode.base import IndexedFrame as IndexedFrame
from framedex.indexer.decode.base import VideoDecoder as VideoDecoder
from framedex.indexer.decode.base import VideoInfo as VideoInfo
from framedex.indexer.decode.base import get_decoder_class as get_decoder_class
from framedex.indexer.decode.base import list_decoders as list_decoders
from framedex.indexer.decode.base import register_decoder as register_decoder
from framedex.indexer.decode.base import unregister_decoder as unregister_decoder

#: ``auto``'s preference order. PyAV is the default from scripts/bench_decode.py on a 10-min
#: 720p H.264 video (2 shared cores): fewer CPU seconds for the 1 fps grid (14.5 vs 26.2: decord
#: converts every decoded frame to RGB, PyAV only the wanted ones), the resized grid (17.2 vs
#: 19.8) and 32 random frames (4.0 vs 4.5); flat memory (93 vs 528 MiB peak RSS, decord grows
#: with video length); and decord returns wrong frames on MPEG-TS and fails to resize to some
#: sizes. decord is used by ``auto`` only when PyAV is not installed. ``nvdec`` is not in this
#: order: for one video ``auto`` means a CPU decoder, and the indexer adds NVDEC sessions beside
#: its CPU decode workers when it encodes on a GPU that has them (indexer/workers.py).
AUTO_ORDER: tuple[str, ...] = ("pyav", "decord")


def resolve_decoder(decoder: str = "auto") -> str:
    """The backend name ``decoder`` stands for (``auto`` = first installed of AUTO_ORDER).

    Raises:
        UnknownNameError: unknown name, or ``auto`` with no backend installed.
    """
    if decoder == "auto":
        for name in AUTO_ORDER:
            if get_decoder_class(name).is_available():
                return name
        raise UnknownNameError("decoder", "auto", list_decoders())
    get_decoder_class(decoder)  # raises UnknownNameError with the known names
    return decoder


def open_video(path: str | os.PathLike, decoder: str = "auto", **options: object) -> VideoDecoder:
    """Open ``path`` with a decode backend.

    ``auto`` picks the benchmark winner and falls back to the other backend only when the
    winner is not installed; it never retries a file that failed to open with another backend
    (no silent fallbacks). ``VideoInfo.decoder`` records the backend that ran.

    Args:
        path: the video file.
        decoder: ``"auto"``, ``"pyav"`` or ``"decord"`` (or a registered third-party name).
        **options: backend constructor options (e.g. ``threads``).

    Returns:
        an opened :class:`VideoDecoder` (use it as a context manager).

    Raises:
        UnknownNameError: unknown decoder name.
        VideoOpenError: the file is missing, empty, not a video, has no video stream or no
            frames, has a corrupt/truncated header, or uses an unsupported codec.
    """
    cls: Any = get_decoder_class(resolve_decoder(decoder))  # backends take their own options
    return cls(path, **options)


__all__ = [
    "AUTO_ORDER", "IndexedFrame", "VideoDecoder", "VideoInfo", "get_decoder_class",
    "list_decoders", "open_video", "register_decoder", "resolve_decoder", "unregister_decoder",
]
