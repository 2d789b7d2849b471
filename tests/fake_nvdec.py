"""A CPU stand-in for the part of PyNvVideoCodec the ``nvdec`` backend uses.

It behaves as NVDEC's low-level decoder does for the backend (PyNvVideoCodec 2.x): Annex B
packets in through ``PacketData`` (a raw pointer and a size), frames out in display order
carrying the pts they came in with, a data-less packet flagged DISCONTINUITY drops the state
after a seek, a data-less packet without flags ends the stream and returns the frames still
in flight; RGB frames are exported through DLPack. Decoding is libavcodec's (through PyAV), on
the CPU, into torch CPU tensors. It lets the backend's own logic (bitstream filter, seeks,
flushes, frame identification by pts) run in the default test suite; the real library and
the GPU run only in the ``gpu``-marked tests.
"""

from __future__ import annotations

import ctypes
import types
from typing import Any

_DISCONTINUITY = 0x04


class PacketData:
    def __init__(self) -> None:
        self.bsl_data, self.bsl, self.pts, self.decode_flag = 0, 0, 0, 0


class _Frame:
    """A decoded frame: ``timestamp`` and DLPack export of an H x W x 3 uint8 tensor."""

    def __init__(self, tensor: Any, timestamp: int):
        self._t, self.timestamp = tensor, timestamp

    def __dlpack__(self, stream: Any = None) -> Any:
        return self._t.__dlpack__()

    def __dlpack_device__(self) -> Any:
        return self._t.__dlpack_device__()


class _Decoder:
    def __init__(self, codec: str):
        import av

        self._ctx = av.CodecContext.create(codec, "r")
        self.sessions_flushed = 0

    def Decode(self, packet: PacketData) -> list[_Frame]:
        import av

        if not packet.bsl:
            frames = list(self._ctx.decode(None))  # drain
            self._ctx.flush_buffers()
            if packet.decode_flag & _DISCONTINUITY:
                return []  # after a seek: the old frames are dropped
            return [self._out(f) for f in frames]
        data = ctypes.string_at(packet.bsl_data, packet.bsl)  # what NVDEC reads at the pointer
        pkt = av.Packet(data)
        pkt.pts = packet.pts
        return [self._out(f) for f in self._ctx.decode(pkt)]

    @staticmethod
    def _out(frame: Any) -> _Frame:
        import torch

        return _Frame(torch.from_numpy(frame.to_ndarray(format="rgb24")), int(frame.pts))


def module() -> types.ModuleType:
    """The stand-in, to put in ``sys.modules["PyNvVideoCodec"]``."""
    m = types.ModuleType("PyNvVideoCodec")
    m.PacketData = PacketData
    m.OutputColorType = types.SimpleNamespace(RGB="RGB", NATIVE="NATIVE")
    m.cudaVideoCodec = types.SimpleNamespace(H264="h264", HEVC="hevc", AV1="av1", VP9="vp9",
                                            VP8="vp8", MPEG2="mpeg2video", MPEG4="mpeg4",
                                            MPEG1="mpeg1video", VC1="vc1")

    def create_decoder(gpuid: int = 0, codec: str = "h264", cudacontext: int = 0,
                       cudastream: int = 0, usedevicememory: bool = True,
                       outputColorType: str = "NATIVE") -> _Decoder:
        assert outputColorType == "RGB" and usedevicememory
        return _Decoder(codec)

    m.CreateDecoder = create_decoder
    return m
