"""Images, archives and data files made in memory for the tests: awkward uploads and the 4xx each
must get, small PNGs, class-folder zips and an npz shaped like mnist.npz."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# Builders for every awkward upload, made in memory (no fixture files in the repository); the
# tables say what the project must answer: a 4xx status for refused uploads, the right picture
# for odd but valid ones. Tests reach them through the `uploads` fixture.
EXIF_ORIENTATION = 0x0112
# The transposition Pillow's exif_transpose applies for each orientation, and its inverse, which
# turns the upright picture into what a camera would have stored with that tag.
ORIENTATION_TO_UPRIGHT = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_INVERSE = {Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90,
            Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270}


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    """The bytes of `img` saved as `fmt`."""
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def noise_rgb(h: int = 40, w: int = 40, seed: int = 0) -> Image.Image:
    """A colourful RGB picture (valid for every colour task)."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def digit_like(h: int = 40, w: int = 40) -> Image.Image:
    """Dark ink on white paper: a valid drawing for the MNIST-style tasks."""
    arr = np.full((h, w), 255, np.uint8)
    arr[h // 3: 2 * h // 3, w // 2 - max(1, w // 5): w // 2 + max(1, w // 5)] = 0
    return Image.fromarray(arr)


def asymmetric() -> np.ndarray:
    """A 24×16 RGB picture with no symmetry: each of the 8 orientations looks different."""
    arr = np.zeros((24, 16, 3), np.uint8)
    arr[:12, :8] = (255, 0, 0)
    arr[:12, 8:] = (0, 255, 0)
    arr[12:, :8] = (0, 0, 255)
    arr[12:, 8:] = (255, 255, 0)
    arr[2:5, 2:14] = (255, 255, 255)  # a bar near the top, off-centre
    return arr


def with_orientation(upright: np.ndarray, orientation: int, fmt: str = "PNG") -> bytes:
    """What a camera stores for `upright` with EXIF orientation `orientation`."""
    img = Image.fromarray(upright)
    method = ORIENTATION_TO_UPRIGHT[orientation]
    if method is not None:
        img = img.transpose(_INVERSE.get(method, method))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    kw = {"quality": 95, "subsampling": 0} if fmt == "JPEG" else {}
    return encode(img, fmt, exif=exif.tobytes(), **kw)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A few hundred bytes whose header declares gigapixels (only the first rows are present)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 4, 9)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", rows)
            + _png_chunk(b"IEND", b""))


def png_just_over_limit() -> bytes:
    """A real, complete PNG of 9000×9000 blank pixels (81 MP: over the app's limit, under Pillow's)."""
    return encode(Image.new("1", (9000, 9000)), "PNG")


def animated_gif() -> tuple[bytes, np.ndarray]:
    """A three-frame GIF whose frames differ, and the first frame as RGB."""
    frames = [noise_rgb(32, 32, seed=s).quantize(colors=16, dither=Image.Dither.NONE) for s in range(3)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return data, np.asarray(frames[0].convert("RGB"))


def cmyk_jpeg() -> bytes:
    """A CMYK JPEG: left half pure red, right half pure blue."""
    arr = np.zeros((32, 32, 3), np.uint8)
    arr[:, :16] = (255, 0, 0)
    arr[:, 16:] = (0, 0, 255)
    return encode(Image.fromarray(arr).convert("CMYK"), "JPEG", quality=95)


def png16() -> bytes:
    """A 16-bit greyscale PNG: a left-to-right ramp over the whole 0–65535 range."""
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (32, 1))
    return encode(Image.fromarray(ramp), "PNG")


def palette_transparent() -> bytes:
    """A palette PNG whose index 0 is transparent: a black square on a transparent field."""
    img = Image.new("P", (32, 32), 0)
    img.putpalette([0, 255, 0] + [0, 0, 0] * 255)  # index 0 green (transparent), 1 black
    img.paste(1, (8, 8, 24, 24))
    return encode(img, "PNG", transparency=0)


def truncated(data: bytes) -> bytes:
    """The first half of a file."""
    return data[: len(data) // 2]


# name -> (bytes, file name, status): uploads the app must refuse with this 4xx, for every image task.
def refused_uploads() -> dict[str, tuple[bytes, str, int]]:
    """Every upload that must be refused, with the status it must get."""
    png, jpg = encode(noise_rgb(), "PNG"), encode(noise_rgb(), "JPEG", quality=90)
    return {
        "empty file": (b"", "empty.png", 400),
        "text named .png": ("Xin chào, đây là chữ, không phải ảnh.\n".encode(), "notes.png", 400),
        "truncated PNG": (truncated(png), "half.png", 400),
        "truncated JPEG": (truncated(jpg), "half.jpg", 400),
        "PNG header only": (png[:33], "header.png", 400),
        "decompression bomb": (png_bomb(), "bomb.png", 413),
        "81 megapixels": (png_just_over_limit(), "big.png", 413),
    }



UPLOAD_BUILDERS = ['EXIF_ORIENTATION', 'ORIENTATION_TO_UPRIGHT', 'encode', 'noise_rgb', 'digit_like', 'asymmetric', 'with_orientation', 'png_bomb', 'png_just_over_limit', 'animated_gif', 'cmyk_jpeg', 'png16', 'palette_transparent', 'truncated', 'refused_uploads']



def png_digit() -> bytes:
    """A '1' drawn in dark ink on white, as the canvas sends it."""
    img = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(img).line((140, 40, 140, 240), fill=0, width=20)
    return encode(img, "PNG")



def digits_npz(path: Path, n_train: int = 64, n_test: int = 32, seed: int = 0) -> Path:
    """A plain npz shaped like mnist.npz: a bright bar whose row is the label."""
    rng = np.random.default_rng(seed)

    def make(n):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(y):
            x[i, 2 + 2 * label: 4 + 2 * label, 4:24] = 255
        return x, y

    (x_train, y_train), (x_test, y_test) = make(n_train), make(n_test)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
             class_names=np.array([str(i) for i in range(10)]))
    return path



def make_zip(files: dict) -> bytes:
    """A zip archive in memory: {name: bytes} (a name ending in '/' is a folder)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()



def png_bytes(colour=(200, 30, 30), size=(24, 24), mode="RGB") -> bytes:
    """A small PNG of one colour with a few noisy pixels."""
    rng = np.random.default_rng(sum(colour) + size[0])
    arr = np.full((size[1], size[0], 3), colour, np.uint8)
    arr = np.clip(arr.astype(int) + rng.integers(-20, 20, arr.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, "PNG")
    return buf.getvalue()
