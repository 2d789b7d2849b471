"""Query images: decode an uploaded or local image once, with limits, into an RGB array.

Image queries (``framedex search --image``, ``POST /v1/search`` with an image, Twelve Labs
image search, image embeddings) all come through :func:`read_image`, so a bad or oversized
image gets the same error everywhere.

Example::

    rgb = read_image(Path("query.png"))     # (H, W, 3) uint8
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from framedex.errors import ConfigError

#: Largest image file accepted as a query (Twelve Labs' own limit is 5 MB; we allow more).
MAX_IMAGE_BYTES = 32 << 20
#: Largest decoded image, in pixels (Pillow's decompression-bomb guard is 89 MP).
MAX_IMAGE_PIXELS = 40_000_000
#: Smallest side accepted (an image smaller than a few pixels carries nothing to match).
MIN_IMAGE_SIDE = 8


def read_image(source: bytes | str | os.PathLike, name: str = "image") -> np.ndarray:
    """Decode an image (bytes or a file path) into an RGB uint8 array.

    Args:
        source: the encoded image (JPEG, PNG, WebP, GIF, BMP...) or a path to one.
        name: the parameter's name, for the error message.

    Returns:
        (H, W, 3) uint8.

    Raises:
        ConfigError: not a readable image, too large, or too small.
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, (bytes, bytearray)):
        size = len(source)
        opener = io.BytesIO(bytes(source))
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
        except OSError as ex:
            raise ConfigError(f"{name}={str(path)!r} is invalid: cannot read it "
                              f"({ex.strerror or ex})") from None
        opener = path  # type: ignore[assignment]
    if size > MAX_IMAGE_BYTES:
        raise ConfigError(f"{name} is invalid: {size} bytes is over the limit of "
                          f"{MAX_IMAGE_BYTES} bytes")
    try:
        with Image.open(opener) as im:
            if im.width * im.height > MAX_IMAGE_PIXELS:
                raise ConfigError(f"{name} is invalid: {im.width}x{im.height} is over "
                                  f"{MAX_IMAGE_PIXELS} pixels")
            rgb = np.asarray(im.convert("RGB"))
    except ConfigError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError,
            SyntaxError) as ex:
        raise ConfigError(f"{name} is invalid: not a readable image ({ex})") from None
    check_image(rgb, name)
    return rgb


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
