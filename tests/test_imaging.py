"""MNIST-style preprocessing on drawn, photographed, EXIF-rotated, RGBA and greyscale inputs
(all generated with Pillow here; no data set needed)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from app.imaging import bytes_to_array
from app.tasks import MNIST


def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def seven(size: int = 280, ink: int = 0, paper: int = 255, mode: str = "L") -> Image.Image:
    """An asymmetric digit '7', dark ink on light paper (as drawn on the canvas)."""
    img = Image.new(mode, (size, size), paper)
    d = ImageDraw.Draw(img)
    w = size // 14
    d.line((size * 0.25, size * 0.2, size * 0.75, size * 0.2), fill=ink, width=w)
    d.line((size * 0.75, size * 0.2, size * 0.4, size * 0.85), fill=ink, width=w)
    return img


def centre_of_mass(arr: np.ndarray) -> tuple[float, float]:
    a = arr[..., 0].astype(np.float64)
    ys, xs = np.indices(a.shape)
    return (ys * a).sum() / a.sum(), (xs * a).sum() / a.sum()


def bbox(arr: np.ndarray) -> tuple[int, int]:
    a = arr[..., 0] > 64
    rows, cols = np.flatnonzero(a.any(1)), np.flatnonzero(a.any(0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


@pytest.fixture(scope="module")
def drawn():
    return bytes_to_array(encode(seven()), MNIST)


def test_drawing_becomes_an_mnist_digit(drawn):
    assert drawn.shape == (28, 28, 1) and drawn.dtype == np.uint8
    cy, cx = centre_of_mass(drawn)
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1  # centred by mass
    h, w = bbox(drawn)
    assert max(h, w) <= 21 and max(h, w) >= 17  # fitted into the 20×20 box
    assert drawn[..., 0].max() >= 200 and np.median(drawn) == 0  # light ink on black, as MNIST


def photo_of(img: Image.Image, seed: int = 0) -> bytes:
    """The drawing photographed: small and off-centre on a large grey page, light falling off
    across it, sensor noise, lens blur, JPEG."""
    rng = np.random.default_rng(seed)
    page = Image.new("L", (1600, 1200), 210)
    page.paste(img.resize((300, 300)).point(lambda v: 40 + v * 170 // 255), (1150, 150))
    arr = np.asarray(page, np.float32) * np.linspace(0.7, 1.1, 1600)[None, :]
    arr += rng.normal(0, 8, arr.shape)
    out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).convert("RGB").filter(ImageFilter.GaussianBlur(1.2))
    return encode(out, "JPEG", quality=80)


def test_photo_on_paper_reads_like_the_drawing(drawn):
    photo = bytes_to_array(photo_of(seven()), MNIST)
    assert similarity(photo, drawn) > 0.85
    cy, cx = centre_of_mass(photo)
    assert abs(cy - 13.5) <= 1 and abs(cx - 13.5) <= 1


def test_thin_digit_on_a_large_page_is_found():
    page = Image.new("L", (1200, 900), 230)
    ImageDraw.Draw(page).line((900, 100, 900, 260), fill=30, width=4)  # a thin '1', 0.1 % of the pixels
    arr = bytes_to_array(encode(page, "JPEG", quality=90), MNIST)
    h, w = bbox(arr)
    assert h >= 18 and w <= 6


@pytest.mark.parametrize("orientation, transpose", [(3, Image.Transpose.ROTATE_180),
                                                    (6, Image.Transpose.ROTATE_90),
                                                    (8, Image.Transpose.ROTATE_270)])
def test_exif_rotation_is_undone(drawn, orientation, transpose):
    # Stored rotated, with the EXIF tag that tells viewers how to turn it back upright.
    stored = seven().convert("RGB").transpose(transpose)
    exif = Image.Exif()
    exif[0x0112] = orientation
    arr = bytes_to_array(encode(stored, "JPEG", quality=95, exif=exif.tobytes()), MNIST)
    assert similarity(arr, drawn) > 0.9


def test_rgba_with_transparent_background_is_flattened_on_white(drawn):
    rgba = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    ink = seven().point(lambda v: 255 - v)  # alpha = ink
    rgba.putalpha(ink)
    assert similarity(bytes_to_array(encode(rgba), MNIST), drawn) > 0.95


def test_greyscale_and_colour_give_the_same_digit(drawn):
    colour = seven(mode="RGB", ink=(20, 20, 160), paper=(250, 250, 245))
    assert similarity(bytes_to_array(encode(colour), MNIST), drawn) > 0.95
    mnist_style = seven(ink=255, paper=0)  # already light on black: not inverted
    assert similarity(bytes_to_array(encode(mnist_style), MNIST), drawn) > 0.95


# ----------------------------------------------------------------------------- images already in the model's format
def fashion_item() -> np.ndarray:
    """A 28×28 Fashion-MNIST-like garment (a light shirt shape on black) with texture."""
    img = Image.new("L", (28, 28), 0)
    d = ImageDraw.Draw(img)
    d.polygon([(4, 2), (10, 0), (18, 0), (24, 2), (27, 10), (22, 12), (22, 27), (6, 27), (6, 12), (0, 10)], fill=200)
    d.line((14, 2, 14, 27), fill=255, width=2)
    return np.asarray(img)


def test_an_image_in_the_models_format_is_used_as_is():
    from app.tasks import FASHION_MNIST

    item = fashion_item()
    for spec in (MNIST, FASHION_MNIST):
        assert (bytes_to_array(encode(Image.fromarray(item)), spec)[..., 0] == item).all()
        # the same picture drawn dark on white is only negated, not re-centred or rescaled
        assert (bytes_to_array(encode(Image.fromarray(255 - item)), spec)[..., 0] == item).all()


def test_a_product_photo_reads_like_the_data_set_item():
    from app.tasks import FASHION_MNIST

    rng = np.random.default_rng(1)
    item = fashion_item()
    from training.photos import make_photo

    photo = bytes_to_array(make_photo(item, rng), FASHION_MNIST)[..., 0]
    assert similarity(photo, item) > 0.9
    assert photo.max() >= 250 and photo[0, 0] == 0  # full range, backdrop black like the data set
