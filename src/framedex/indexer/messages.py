"""The messages of a local index run, between its decode workers (processes and threads), the
encoder thread and the run's main loop: small frozen dataclasses, one per kind, so every
sender and receiver names its fields (they were tuples of up to eight positions).

Parent -> worker: :class:`DecodeUnit` (of a :class:`WorkUnit`), :class:`Forget`, :data:`STOP`.
Worker -> encoder queue: :class:`FramePiece`; worker -> run: :class:`UnitFailed`.
Pool -> run: :class:`UnitSent`, :class:`WorkerDied`.
Encoder -> run: :class:`Vectors`, :class:`EncoderFailed`; run -> encoder queue: :data:`STOP`.

Process workers pickle them through a pipe (module-level dataclasses pickle by reference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from framedex.indexer.decode.base import VideoDecoder
from framedex.values import Array

if TYPE_CHECKING:
    from torch import Tensor

#: Decoded frames (N, H, W, 3) uint8: a numpy array, or (NVDEC) a CUDA tensor.
Images: TypeAlias = "Array | Tensor"


@dataclass(frozen=True)
class WorkUnit:
    """A GOP-aligned run of one video's index grid, decoded by one worker.

    Attributes:
        video: the run's key of the video.
        seq: the unit's position in its video (0, 1, ...).
        source: the file a worker opens (readable from any process).
        decoder: the CPU backend class (pickled by reference, so a third-party backend works
            in a worker as long as its module can be imported there).
        frame_idx: ascending native indices to decode.
        max_side: decode-time downsizing (None: full size).
    """

    video: int
    seq: int
    source: str
    decoder: type[VideoDecoder]
    frame_idx: Array
    max_side: int | None


@dataclass(frozen=True, slots=True)
class DecodeUnit:
    """Decode ``unit``; ``table`` is its video's decode table the first time this worker sees
    the video (None after that)."""

    unit: WorkUnit
    table: object


@dataclass(frozen=True, slots=True)
class Forget:
    """Close ``video`` (done or failed: no unit of it will come)."""

    video: int


@dataclass(frozen=True, slots=True)
class Stop:
    """End the receiving loop."""


#: The one stop message.
STOP = Stop()


@dataclass(frozen=True, slots=True)
class FramePiece:
    """Decoded frames of one work unit, in order.

    Attributes:
        wid: the worker.
        video: the video's key in the run.
        seq: the unit's number in its video.
        frame_idx: native frame indices (int64).
        images: the frames (N, H, W, 3) uint8, a numpy array or (NVDEC) a CUDA tensor.
        last: the unit's final piece.
        cpu_s: decode CPU seconds of the whole unit (on the last piece only; else 0).
    """

    wid: int | None
    video: int
    seq: int
    frame_idx: Array
    images: Images
    last: bool
    cpu_s: float


@dataclass(frozen=True, slots=True)
class UnitFailed:
    """Decoding a unit failed: its video fails, with ``message``."""

    wid: int
    video: int
    seq: int
    message: str


@dataclass(frozen=True, slots=True)
class UnitSent:
    """A worker sent the last frame of a unit (it is free for another)."""

    wid: int
    video: int
    seq: int


@dataclass(frozen=True, slots=True)
class WorkerDied:
    """A process worker exited (its units are handed out again)."""

    wid: int
    exitcode: int | None


@dataclass(frozen=True, slots=True)
class Vectors:
    """The embeddings of a slice of a :class:`FramePiece` (same fields, vectors for images)."""

    video: int
    seq: int
    frame_idx: Array
    vectors: Array
    last: bool
    cpu_s: float


@dataclass(frozen=True, slots=True)
class EncoderFailed:
    """The encoder thread raised ``error`` (the run raises it again)."""

    error: BaseException


#: What a worker or the pool puts on the run's event queue.
Event = FramePiece | UnitFailed | UnitSent | WorkerDied | Vectors | EncoderFailed
#: What a worker's inbox carries.
Command = DecodeUnit | Forget | Stop
