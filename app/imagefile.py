"""The one safe image decoder: untrusted bytes (an upload, or a file of an instructor's folder) ->
a loaded Pillow image, or a bilingual `InvalidInput` (400; 413 over the size limit). Only
ALLOWED_FORMATS, sizes checked from the header, a bounded number of decodes at once.
Details: docs/DESIGN.md, "Reading untrusted images (app/imagefile.py)"."""

from __future__ import annotations

import io
import logging
import os
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from app.errors import InvalidInput

log = logging.getLogger(__name__)

ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")
MAX_PIXELS = 8_000_000  # decoded pixels (after a JPEG's draft): a 4:3 picture of 3264×2448
MAX_JPEG_PIXELS = 4 * MAX_PIXELS  # a JPEG's own size: draft() decodes it at 1/2 scale or less
MAX_PROGRESSIVE_JPEG_PIXELS = MAX_PIXELS  # progressive: libjpeg buffers every coefficient at full size
MAX_WEBP_PIXELS = 2_100_000  # 1920×1080: libwebp's decoder holds about 15 bytes a pixel while it works
MAX_ASPECT = 32  # a picture narrower than 1/32 of its length is a line, not something a model reads
MAX_FILE_BYTES = 64 * 1024 * 1024  # a file read from a path (uploads: MAX_CONTENT_LENGTH)
MAX_DECODES = max(1, int(os.environ.get("LSTMLAB_MAX_DECODES", "2")))
DECODE_WAIT_SECONDS = 30.0
SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")

_slots = threading.BoundedSemaphore(MAX_DECODES)


def open_image(source: bytes | str | Path, max_side: int | None = None) -> Image.Image:
    """Decode `source` (bytes, or a file path) into a loaded image of an allowed format: first
    frame, 16-bit grey made 8-bit, reduced when over twice `max_side`; or raise `InvalidInput`."""
    data = read_source(source)
    if not data:
        raise InvalidInput("The file is empty.")
    if not _slots.acquire(timeout=DECODE_WAIT_SECONDS):
        raise InvalidInput("The server is busy reading other pictures; try again in a moment.", status=503)
    try:
        return _decode(data, max_side)
    finally:
        _slots.release()


def read_source(source: bytes | str | Path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of `source`: itself, or the file it names (refused above `max_bytes`)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    path = Path(source)
    try:
        if path.stat().st_size > max_bytes:
            raise InvalidInput("The file is larger than %(value)s MB; not an image to read.", value=format(max_bytes / 2 ** 20, 'g'))
        return path.read_bytes()
    except OSError as exc:
        raise InvalidInput("The file cannot be read (%(value)s).", value=exc.strerror or exc.__class__.__name__) from None


def _decode(data: bytes, max_side: int | None) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            check_size(img)
            img.seek(0)  # the first frame of an animation
            if max_side and img.format in ("JPEG", "MPO") and max(img.size) > 2 * max_side:
                img.draft(img.mode, (max_side, max_side))  # libjpeg scales while decoding
            if img.width * img.height > MAX_PIXELS:
                raise too_large(img.size, MAX_PIXELS)
            img.load()
            img = eight_bit(img)
            if max_side:
                img = reduce_early(img, max_side)
    except InvalidInput:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidInput("The image decodes to too many pixels (a decompression bomb).", status=413) from None
    except Image.UnidentifiedImageError:
        raise InvalidInput("This file is not an image the app reads (PNG, JPEG, GIF, BMP or WebP).") from None
    except Exception as exc:  # noqa: BLE001 - any failure of a parser fed hostile bytes is bad input
        log.info("image refused: %s: %s", exc.__class__.__name__, exc)
        raise InvalidInput("The image is damaged or truncated (%(name)s).", name=exc.__class__.__name__) from None
    return img


def check_size(img: Image.Image) -> None:
    """`InvalidInput` for a header whose size is over the limits (nothing is decoded yet)."""
    width, height = img.size
    if width < 1 or height < 1:
        raise InvalidInput("The image has no pixels.")
    limit = MAX_PIXELS
    if img.format in ("JPEG", "MPO"):
        limit = MAX_PROGRESSIVE_JPEG_PIXELS if img.info.get("progressive") else MAX_JPEG_PIXELS
    elif img.format == "WEBP":
        limit = MAX_WEBP_PIXELS
    if width * height > limit:
        raise too_large(img.size, limit)
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise InvalidInput("The image is %(width)s×%(height)s pixels: one side may be at most %(max_aspect)s times the other. Crop it to the part the model should read.", width=width, height=height, max_aspect=MAX_ASPECT)


def too_large(size: tuple[int, int], limit: int) -> InvalidInput:
    """The 413 for a picture of `size` over `limit` pixels."""
    (width, height), mp = size, f"{limit / 1_000_000:g}"
    return InvalidInput("The image is too large (%(width)s×%(height)s pixels); the limit is %(mp)s megapixels. Make it smaller and try again.", status=413, width=width, height=height, mp=mp)


def eight_bit(img: Image.Image) -> Image.Image:
    """16-bit (or 32-bit integer) grey -> 'L' through a lookup table, a band of rows at a time
    (no float copy, no full-size integer copy): scaled from 0–65535 when any value is above 255,
    else kept as is (an 8-bit picture stored in 16 bits)."""
    if img.mode not in SIXTEEN_BIT:
        return img
    width, height = img.size
    scale = img.getextrema()[1] > 255
    out = np.empty((height, width), np.uint8)
    rows = max(1, BAND_PIXELS // width)
    for top in range(0, height, rows):
        band = np.asarray(img.crop((0, top, width, min(height, top + rows))))
        if band.dtype.itemsize > 2:  # 'I' (int32): into the 16-bit range first
            band = np.clip(band, 0, 65535)
        out[top:top + len(band)] = _TO_EIGHT_BIT[band] if scale else band
    return Image.fromarray(out, "L")


BAND_PIXELS = 1 << 18
_TO_EIGHT_BIT = ((np.arange(65536, dtype=np.uint32) + 128) // 257).astype(np.uint8)  # round(v / 257)


REDUCIBLE = ("L", "LA", "RGB", "RGBA", "CMYK", "I", "F")


def reduce_early(img: Image.Image, max_side: int) -> Image.Image:
    """A picture over twice `max_side`, box-reduced by the smallest whole factor that brings its
    long side to at most twice `max_side` (and so still at least `max_side`: the caller's own
    high-quality resize makes the final size). Done a band of rows at a time: Pillow's `reduce`
    copies an RGBA picture whole (premultiplied), and a palette one must first become RGBA."""
    width, height = img.size
    if max(width, height) <= 2 * max_side:
        return img
    factor = -(-max(width, height) // (2 * max_side))
    mode = img.mode if img.mode in REDUCIBLE else "RGBA" if img.mode in ("P", "PA") else "L" if img.mode == "1" else "RGB"
    out = Image.new(mode, (-(-width // factor), -(-height // factor)))
    rows = max(1, BAND_PIXELS // width // factor) * factor  # whole blocks: the same result as one reduce
    for top in range(0, height, rows):
        band = img.crop((0, top, width, min(height, top + rows)))
        out.paste((band if band.mode == mode else band.convert(mode)).reduce(factor), (0, top // factor))
    out.info = dict(img.info)  # EXIF orientation and the like, as `reduce` would keep them
    return out
