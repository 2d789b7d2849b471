"""NVDEC decode backend: PyAV demuxes, the GPU's video decoder decodes (PyNvVideoCodec).

Install with ``pip install framedex[gpu]``. Nothing here imports PyNvVideoCodec or torch until
a video is opened, so ``import framedex.indexer.decode`` stays light and works without a GPU.

Why PyAV's demuxer and PyNvVideoCodec's low-level ``Decoder`` rather than its
``SimpleDecoder``: SimpleDecoder identifies frames by counting them after a seek, with
container-specific workarounds (it accepts a nearby frame near the end of FLV/WebM/MOV files
and silently skips indices its index table does not cover). framedex identifies every frame by
its pts against the packet table PyAV scanned once (the same table the ``pyav`` backend and
the decode workers use), so the grid, ``frame_idx`` and ``pts_sec`` are the ``pyav`` backend's
exactly; only the pixels come from NVDEC. Seeking, the MPEG-TS retry and the "frame was not
produced" checks are the ``pyav`` backend's code (this class subclasses it).

Frames stay on the GPU: NVDEC writes interleaved RGB into device memory, the frame is copied
out of the decoder's reusable surface (``clone``) and, with ``max_side``, resized on the GPU.
``iter_frames`` yields CUDA ``uint8`` tensors (``H x W x 3``) for the encoder;
``iter_index_frames`` and ``get_frames`` copy them to numpy like every other backend.

Pixels differ slightly from ``pyav``'s: NVDEC converts YUV to RGB with the stream's matrix
coefficients on the GPU, and the resize is torch's antialiased bilinear rather than FFmpeg's
AREA filter, so an index built with ``nvdec`` is not bit-identical to one built with ``pyav``
(the grid and timestamps are).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from framedex.errors import DecodeError, VideoOpenError
from framedex.indexer.decode.base import register_decoder
from framedex.indexer.decode.pyav import PyAVDecoder

#: FFmpeg codec name -> (PyNvVideoCodec cudaVideoCodec member, bitstream filter or None).
#: NVDEC wants Annex B H.264/HEVC; MP4 and Matroska store length-prefixed NAL units.
_CODECS: dict[str, tuple[str, str | None]] = {
    "h264": ("H264", "h264_mp4toannexb"),
    "hevc": ("HEVC", "hevc_mp4toannexb"),
    "av1": ("AV1", None),
    "vp9": ("VP9", None),
    "vp8": ("VP8", None),
    "mpeg2video": ("MPEG2", None),
    "mpeg4": ("MPEG4", None),
    "mpeg1video": ("MPEG1", None),
    "vc1": ("VC1", None),
}

def _cuda_devices() -> int:
    """CUDA devices the driver reports (0 without a driver)."""
    import ctypes

    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return int(count.value)


#: CUVID packet flag: drop the reference state after a seek, without ending the stream.
_CUVID_PKT_DISCONTINUITY = 0x04


@register_decoder("nvdec")
class NvdecDecoder(PyAVDecoder):
    """Decode on the GPU with NVDEC (PyNvVideoCodec), demuxing with PyAV.

    Args:
        path: the video file.
        threads: PyAV demuxer threads (unused by NVDEC; kept for a uniform signature).
        gpu_id: the CUDA device to decode on.

    Raises:
        VideoOpenError: what the ``pyav`` backend raises, or a codec NVDEC cannot decode.
    """

    device_frames = True

    @classmethod
    def is_available(cls) -> bool:
        """Whether PyNvVideoCodec can be imported and a CUDA device is present (asked of the
        driver directly: the CLI lists backends at start-up, too early to import torch)."""
        import importlib.util

        return importlib.util.find_spec("PyNvVideoCodec") is not None and _cuda_devices() > 0

    def __init__(self, path: str | os.PathLike, threads: int = 0, gpu_id: int = 0):
        super().__init__(path, threads)
        self._setup(gpu_id)

    @classmethod
    def from_table(cls, path: str | os.PathLike, table: object | None,
                   **options: Any) -> NvdecDecoder:
        """Reopen ``path`` with a scanned packet table (see :class:`PyAVDecoder`)."""
        gpu_id = int(options.pop("gpu_id", 0))
        self = super().from_table(path, table, **options)
        assert isinstance(self, NvdecDecoder)
        if self._info.decoder != self.name:
            from dataclasses import replace

            self._info = replace(self._info, decoder=self.name)
        self._setup(gpu_id)
        return self

    def _setup(self, gpu_id: int) -> None:
        codec = self._stream.codec_context.codec.name
        if codec not in _CODECS:
            raise VideoOpenError(f"cannot open video {self.path!r} with nvdec: codec {codec!r} "
                                 f"is not decoded by NVDEC here; use decoder='pyav'")
        self._gpu_id = gpu_id
        self._nv_codec, self._bsf_name = _CODECS[codec]
        self._nv: Any = None  # the NVDEC session, created on first decode (in the decoding thread)
        self._bsf: Any = None

    # ---- the NVDEC parts of PyAVDecoder's decode loop -------------------------------------
    def _session(self) -> Any:
        if self._nv is None:
            import PyNvVideoCodec as nvc
            import torch

            stream = (torch.cuda.current_stream(self._gpu_id).cuda_stream
                      if torch.cuda.is_available() else 0)
            try:
                self._nv = nvc.CreateDecoder(
                    gpuid=self._gpu_id, codec=getattr(nvc.cudaVideoCodec, self._nv_codec),
                    cudacontext=0, cudastream=stream, usedevicememory=True,
                    outputColorType=nvc.OutputColorType.RGB)
            except Exception as ex:  # PyNvVideoCodec raises its own exception types
                raise DecodeError(f"cannot start an NVDEC session for {self.path!r}: "
                                  f"{str(ex).splitlines()[0][:200]}") from ex
        return self._nv

    def _frames(self) -> Iterator:
        """Demux from the current position, filter to Annex B, decode on NVDEC; yield frames
        (PyNvVideoCodec ``DecodedFrame``, valid until the next decode call) in display order."""
        import av
        import PyNvVideoCodec as nvc

        nv = self._session()
        if self._bsf_name is not None:
            self._bsf = av.BitStreamFilterContext(self._bsf_name, in_stream=self._stream)
        flush = nvc.PacketData()
        flush.decode_flag = _CUVID_PKT_DISCONTINUITY  # forget the frames before the seek
        nv.Decode(flush)
        try:
            for raw in self._container.demux(self._stream):
                end = raw.size == 0  # (read first: the filter takes the packet's data)
                packets = self._bsf.filter(None if end else raw) if self._bsf else [raw]
                for pkt in packets:
                    if pkt.size == 0:
                        continue
                    data = nvc.PacketData()
                    data.bsl_data, data.bsl = pkt.buffer_ptr, pkt.buffer_size
                    data.pts = pkt.pts if pkt.pts is not None else pkt.dts
                    yield from nv.Decode(data)  # pkt stays referenced during the call
                if end:
                    break
        except av.error.FFmpegError as ex:
            raise DecodeError(f"decoding {self.path!r} failed: corrupt or truncated stream "
                              f"({ex.strerror or ex})") from ex
        except Exception as ex:
            if isinstance(ex, DecodeError):
                raise
            raise DecodeError(f"NVDEC failed on {self.path!r}: "
                              f"{str(ex).splitlines()[0][:200]}") from ex
        yield from nv.Decode(nvc.PacketData())  # end of stream: the frames still in flight
        self._nv = None  # a session that saw end-of-stream is not reused

    def _frame_index(self, frame: Any) -> int:
        import numpy as np

        return int(np.searchsorted(self._pts_int, int(frame.timestamp)))

    def _to_rgb(self, frame: Any, target: int, size: tuple[int, int] | None) -> Any:
        """Copy the frame out of NVDEC's surface (reused by the next decode) as a CUDA
        ``H x W x 3`` uint8 tensor, resized on the GPU to ``size`` if given."""
        import torch
        import torch.nn.functional as F

        img = torch.from_dlpack(frame)
        if img.ndim != 3 or img.shape[-1] != 3:
            raise DecodeError(f"NVDEC returned a frame of shape {tuple(img.shape)} for frame "
                              f"{target} of {self.path!r} (expected H x W x 3 RGB)")
        if size is None:
            return img.clone()
        x = img.permute(2, 0, 1)[None].float()
        x = F.interpolate(x, size=(size[1], size[0]), mode="bilinear", antialias=True,
                          align_corners=False)
        return x.round_().clamp_(0, 255)[0].permute(1, 2, 0).to(torch.uint8).contiguous()

    def close(self) -> None:
        """Close the container and end the NVDEC session; idempotent."""
        self._nv = None
        self._bsf = None
        super().close()
