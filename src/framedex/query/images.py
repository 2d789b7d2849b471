"""Query images: decode an uploaded or local image once, with limits, into an RGB array.

Image queries (``framedex search --image``, ``POST /v1/search`` with an image, Twelve Labs
image search, image embeddings) all come through :func:`read_image`, so a bad or oversized
image gets the same error everywhere.

Example::

    rgb = read_image(Path("query.png"), short_side=224)     # (H, W, 3) uint8
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from framedex.errors import ConfigError, PayloadTooLargeError
from framedex.rules import MAX_IMAGE_BYTES, MIN_IMAGE_SIDE
from framedex.values import Array

if TYPE_CHECKING:
    from PIL import Image

#: Largest decoded image, in pixels (Pillow's decompression-bomb guard is 89 MP).
MAX_IMAGE_PIXELS = 40_000_000
#: Most pixels the images of one request may have together (a search takes up to 10 images).
#: Decoding is what costs: a 131 KB PNG can be 6300 x 6300 (39.7 MP, ~0.5 s and 160 MB to
#: decode), and ten of them in one request added 1.45 GB of RSS (issue 27).
MAX_REQUEST_PIXELS = 128_000_000
#: Images decoded at once by one library (the server's request threads share it): with the
#: per-image limit, this bounds the memory image queries can take, whatever the traffic.
MAX_IMAGE_DECODES = 2


class QueryImage:
    """An image query opened from bytes or a path: its header is read, no pixel yet.

    Args:
        source: the encoded image (JPEG, PNG, WebP, GIF, BMP...) or a path to one.
        name: the parameter's name, for error messages.

    Raises:
        ConfigError: not a readable image, too many pixels, or a side under
            ``framedex.rules.MIN_IMAGE_SIDE``. PayloadTooLargeError: over
            ``framedex.rules.MAX_IMAGE_BYTES``.
    """

    def __init__(self, source: bytes | str | os.PathLike[str], name: str = "image"):
        from PIL import Image, UnidentifiedImageError

        self.name = name
        if isinstance(source, (bytes, bytearray)):
            size = len(source)
            opener: BinaryIO | str | os.PathLike[str] = io.BytesIO(bytes(source))
        else:
            path = Path(source)
            try:
                size = path.stat().st_size
            except OSError as ex:
                raise ConfigError(f"{name}={str(path)!r} is invalid: cannot read it "
                                  f"({ex.strerror or ex})") from None
            opener = path
        if size > MAX_IMAGE_BYTES:  # a 413, as Twelve Labs answers a media source too large
            raise PayloadTooLargeError(f"{name} is too large: {size:,} bytes is over the limit "
                                       f"of {MAX_IMAGE_BYTES:,} bytes per image")
        try:
            self.image = Image.open(opener)  # the header only
        except UnidentifiedImageError:  # Pillow's message names the file: a server path
            raise ConfigError(f"{name} is invalid: not a readable image (JPEG, PNG, WebP, GIF "
                              "or BMP)") from None
        except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as ex:
            raise ConfigError(f"{name} is invalid: not a readable image ({ex})") from None
        w, h = self.image.size
        if w * h > MAX_IMAGE_PIXELS:
            self.close()
            raise ConfigError(f"{name} is invalid: {w}x{h} is over {MAX_IMAGE_PIXELS} pixels")
        if min(w, h) < MIN_IMAGE_SIDE:
            self.close()
            raise ConfigError(f"{name} is invalid: {w}x{h} must have sides of at least "
                              f"{MIN_IMAGE_SIDE} pixels")

    @property
    def pixels(self) -> int:
        """Width x height, from the header."""
        return int(self.image.size[0] * self.image.size[1])

    def decode(self, short_side: int | None = None) -> Array:
        """The RGB pixels, with the shorter side shrunk to ``short_side`` (never enlarged).

        The image is decoded straight to that size where the format allows it (JPEG's DCT
        scaling, 1/2 to 1/8, through Pillow's ``draft``), else decoded once and reduced
        before anything is converted, so a query costs the model's input size in memory,
        not a full-size RGB copy per step (and the encoder resizes a small array).

        Raises:
            ConfigError: the data is corrupt.
        """
        from PIL import Image

        im: Image.Image = self.image
        try:
            target = _fit(im.size, short_side)
            if target is not None:
                im.draft("RGB", target)  # JPEG: decode at >= target; other formats: no-op
            im.load()
            if im.mode not in ("RGB", "RGBA", "L", "LA"):  # palette, 1-bit, 16-bit, CMYK
                im = im.convert("RGB")
            target = _fit(im.size, short_side)
            if target is not None:
                im = im.resize(target, Image.Resampling.BICUBIC, reducing_gap=2.0)
            rgb = np.asarray(im.convert("RGB") if im.mode != "RGB" else im)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as ex:
            raise ConfigError(f"{self.name} is invalid: not a readable image ({ex})") from None
        finally:
            self.close()
        check_image(rgb, self.name)
        return rgb

    def close(self) -> None:
        """Release the file (also done by :meth:`decode`)."""
        self.image.close()


def _fit(size: tuple[int, int], short_side: int | None) -> tuple[int, int] | None:
    """``size`` with its shorter side at ``short_side``, or None when it is already there."""
    w, h = size
    if short_side is None or min(w, h) <= short_side:
        return None
    scale = short_side / min(w, h)
    return max(short_side, round(w * scale)), max(short_side, round(h * scale))


def read_image(source: bytes | str | os.PathLike[str], name: str = "image",
               short_side: int | None = None) -> Array:
    """Decode an image (bytes or a file path) into an RGB uint8 array.

    Args:
        source: the encoded image (JPEG, PNG, WebP, GIF, BMP...) or a path to one.
        name: the parameter's name, for the error message.
        short_side: shrink so the shorter side is this many pixels (the model's input size:
            the encoder would resize to it anyway); None keeps the full size.

    Returns:
        (H, W, 3) uint8.

    Raises:
        ConfigError: not a readable image, too large, or too small.
    """
    return QueryImage(source, name).decode(short_side)


def check_request_pixels(images: Sequence[QueryImage]) -> None:
    """Refuse a request whose images have more than :data:`MAX_REQUEST_PIXELS` together.

    Raises:
        ConfigError: names the images' parameter, their total and the limit.
    """
    total = sum(im.pixels for im in images)
    if total > MAX_REQUEST_PIXELS:
        name = images[0].name if images else "image"
        raise ConfigError(f"{name} is invalid: {len(images)} images of {total:,} pixels in "
                          f"all are over the limit of {MAX_REQUEST_PIXELS:,} pixels per request")


def check_image(image: object, name: str = "image") -> None:
    """Validate an in-memory query image.

    Raises:
        ConfigError: not an (H, W, 3) uint8 array of a sensible size.
    """
    ok = (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
          and image.shape[2] == 3)
    if not ok:
        shape = getattr(image, "shape", type(image).__name__)
        raise ConfigError(f"{name}={shape!r} is invalid: must be an RGB uint8 array "
                          "(H, W, 3)")
    assert isinstance(image, np.ndarray)
    h, w = image.shape[:2]
    if min(h, w) < MIN_IMAGE_SIDE or h * w > MAX_IMAGE_PIXELS:
        raise ConfigError(f"{name} is invalid: {w}x{h} must have sides of at least "
                          f"{MIN_IMAGE_SIDE} pixels and at most {MAX_IMAGE_PIXELS} pixels")
