"""Image bytes -> model input, the same function at training and serving time.

`decode_image` turns untrusted bytes into a clean RGB or L Pillow image (first frame, EXIF
orientation applied, transparency flattened onto white, 16-bit and CMYK handled) or raises
`InvalidInput`. `image_to_array` then produces the uint8 array (height, width, channels) the model
reads; pixel scaling to [0, 1] happens inside the model itself, so training arrays from the data
sets and arrays made from uploads go through exactly the same layers.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from app.errors import InvalidInput
from app.imagefile import open_image
from app.tasks import TaskSpec

MAX_SIDE_WORKING = 1024  # large photos are shrunk first: the model reads at most 64 px anyway
PHOTO_SIDE = 64  # from this size up an image is treated as a photo (fitted paper, noise cut)


def decode_image(data: bytes) -> Image.Image:
    """Decode untrusted bytes into an 'RGB' or 'L' image, or raise `InvalidInput`."""
    img = open_image(data, max_side=MAX_SIDE_WORKING)  # format allow-list, size caps, bounded decodes
    try:
        img = ImageOps.exif_transpose(img)
    except (OSError, ValueError, TypeError, KeyError):
        pass  # a broken EXIF block is not worth refusing the picture for
    return _flatten(img)


def _flatten(img: Image.Image) -> Image.Image:
    """Any mode `open_image` gives (16-bit grey already 8-bit) -> 'RGB' (or 'L' for greyscale),
    transparency composited onto white."""
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba).convert("RGB")
    if img.mode == "1":
        img = img.convert("L")
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV…
    if max(img.size) > MAX_SIDE_WORKING:
        img.thumbnail((MAX_SIDE_WORKING, MAX_SIDE_WORKING), Image.Resampling.LANCZOS)
    return img


def image_to_array(img: Image.Image, spec: TaskSpec) -> np.ndarray:
    """A decoded image -> the uint8 array (height, width, channels) that `spec`'s model reads.

    An image already at the model's size is used as it is (only negated when its backdrop is
    light, the data sets' polarity being light on black); larger or smaller ones are mapped the
    way the data set itself was made: MNIST's fit-into-20×20-and-centre-by-mass for digits,
    Fashion-MNIST's trim, longest side to 28 and negate for clothes, a plain resize otherwise.
    """
    if spec.preprocess in ("mnist", "fashion") and img.size == (spec.image_size[1], spec.image_size[0]):
        arr = _as_is(img)
    elif spec.preprocess == "mnist":
        arr = _centre_ink(img, box=20, size=28, by_mass=True)
    elif spec.preprocess == "fashion":
        arr = _fashion_photo(img, size=spec.image_size[0])
    else:
        arr = _resize_plain(img, spec)
    arr = arr.reshape(spec.input_shape) if arr.ndim == 2 else arr
    return np.ascontiguousarray(arr, dtype=np.uint8)


def _blank() -> InvalidInput:
    return InvalidInput("No drawing found: the image is blank or has too little contrast.")


def _border(grey: np.ndarray) -> np.ndarray:
    return np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])


def _as_is(img: Image.Image) -> np.ndarray:
    """An image at the model's size, grey: kept pixel for pixel, negated only when its border
    is mostly light (the data sets are light on black); refused only when it is one flat value."""
    grey = np.asarray(img.convert("L"), dtype=np.uint8)
    if grey.min() == grey.max():
        raise _blank()
    return 255 - grey if np.median(_border(grey)) > 127 else grey


def _fashion_photo(img: Image.Image, size: int) -> np.ndarray:
    """Fashion-MNIST's own recipe applied to a photo: the backdrop (fitted to the border) becomes
    black and the garment's difference from it the intensity (a light backdrop is negated),
    stretched to full range, trimmed to the garment, the longest side resized to `size`,
    centred on a black field."""
    grey_img = img.convert("L")
    if min(grey_img.size) >= PHOTO_SIDE:
        grey_img = grey_img.filter(ImageFilter.MedianFilter(3))  # camera speckle and JPEG ringing
    grey = np.asarray(grey_img, dtype=np.float32)
    backdrop, noise = _backdrop_surface(grey)
    if float(np.median(backdrop)) > 127:
        value = (backdrop - grey) * (255.0 / np.maximum(backdrop, 1.0))
    else:
        value = (grey - backdrop) * (255.0 / np.maximum(255.0 - backdrop, 1.0))
    value = np.clip(value, 0.0, 255.0)
    mask = value > max(12.0, 4.0 * noise * 255.0 / max(float(np.median(backdrop)), 1.0))
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise _blank()
    value = value[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    mask = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    # The data set's items all reach (nearly) full white: stretch a dim or washed-out photo likewise.
    value = np.clip(value * (255.0 / max(float(np.percentile(value[mask], 99.5)), 1.0)), 0.0, 255.0)
    h, w = value.shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = Image.fromarray(np.clip(value + 0.5, 0, 255).astype(np.uint8), "L")
    small = np.asarray(small.resize((nw, nh), Image.Resampling.LANCZOS), dtype=np.uint8)
    field = np.zeros((size, size), dtype=np.uint8)
    top, left = (size - nh + 1) // 2, (size - nw + 1) // 2  # an odd margin's extra pixel on top/left, as in the data set
    field[top : top + nh, left : left + nw] = small
    return field


def bytes_to_array(data: bytes, spec: TaskSpec) -> np.ndarray:
    """Untrusted bytes -> model input for `spec`, or `InvalidInput`."""
    return image_to_array(decode_image(data), spec)


def _resize_plain(img: Image.Image, spec: TaskSpec) -> np.ndarray:
    h, w = spec.image_size
    img = img.convert("L" if spec.colour == "grey" else "RGB")
    if img.size == (w, h):
        return np.asarray(img)
    if spec.resize == "crop":
        img = ImageOps.fit(img, (w, h), Image.Resampling.LANCZOS)
    else:
        img = img.resize((w, h), Image.Resampling.LANCZOS)
    return np.asarray(img)


def _ink_map(img: Image.Image) -> np.ndarray:
    """Grey image as float ink in [0, 1]: 1 = ink, 0 = background, whatever the polarity.

    The MNIST digits are light ink on black; a drawing on a canvas or a photo of paper is dark
    ink on a light background. The border decides: a light border means invert. Then the
    paper's own brightness is subtracted: a constant (median) for small images, a smooth
    surface fitted to the paper for photos (uneven light, a shadow across the page). Camera
    noise is measured on the paper and cut off, and the typical ink level (not the single
    brightest pixel) is scaled to 1, so a photo of a thin digit on a large page looks like a
    clean scan.
    """
    small = min(img.size) < PHOTO_SIDE
    grey_img = img.convert("L")
    if not small:
        grey_img = grey_img.filter(ImageFilter.MedianFilter(3))  # camera speckle
    grey = np.asarray(grey_img, dtype=np.float32)
    if np.median(_border(grey)) > 127:
        grey = 255.0 - grey
    resid = grey - (float(np.median(grey)) if small else _paper_surface(grey))
    paper = resid[np.abs(resid) <= max(4.0, 3.0 * _robust_sigma(resid))]
    noise = _robust_sigma(paper) if paper.size else 0.0
    floor = 3.0 * noise  # residual paper texture below this is not ink
    ink = resid[resid > max(24.0, 6.0 * noise)]
    if ink.size < 3:  # nothing stands out from the background
        raise _blank()
    peak = float(np.percentile(ink, 90))
    return np.clip((resid - floor) / max(peak - floor, 1.0), 0.0, 1.0)


def _robust_sigma(x: np.ndarray) -> float:
    """Standard deviation estimated from the median absolute deviation (ignores the ink)."""
    return 1.4826 * float(np.median(np.abs(x - np.median(x)))) if x.size else 0.0


def _paper_surface(grey: np.ndarray) -> np.ndarray:
    """The paper's brightness as a smooth quadratic surface, fitted to a grid of samples and
    refitted without the samples that stand out (the ink)."""
    h, w = grey.shape
    step = max(1, min(h, w) // 48)
    ys, xs = np.mgrid[0:h:step, 0:w:step]
    values = grey[::step, ::step].ravel()
    def design(y, x):
        y, x = y / h - 0.5, x / w - 0.5
        return np.stack([np.ones_like(x), x, y, x * x, y * y, x * y], axis=-1)

    a = design(ys.ravel().astype(np.float32), xs.ravel().astype(np.float32))
    keep = np.ones(len(values), bool)
    for _ in range(3):
        coef, *_ = np.linalg.lstsq(a[keep], values[keep], rcond=None)
        resid = values - a @ coef
        keep = resid <= max(4.0, 2.5 * _robust_sigma(resid[keep]))
    return _polynomial_surface(coef, (h, w), (h, w))


def _polynomial_surface(coef: np.ndarray, shape: tuple[int, int], scale: tuple[float, float]) -> np.ndarray:
    """Evaluate c0 + c1·x + c2·y [+ c3·x² + c4·y²] + c_last·x·y over every pixel (x, y centred by
    `scale`) as row and column terms broadcast together: one float32 plane, not one per term."""
    h, w = shape
    c = [float(v) for v in coef]
    y = (np.arange(h, dtype=np.float32) / scale[0] - 0.5)[:, None]
    x = (np.arange(w, dtype=np.float32) / scale[1] - 0.5)[None, :]
    rows, cols = c[0] + c[2] * y, c[1] * x
    if len(c) == 6:
        rows, cols = rows + c[4] * y * y, cols + c[3] * x * x
    surface = y * x
    surface *= c[-1]
    surface += rows
    surface += cols
    return surface


def _backdrop_surface(grey: np.ndarray) -> tuple[np.ndarray, float]:
    """The backdrop's brightness over the whole image, fitted to the border pixels (a bilinear
    surface: light falling off across a shop photo), refitted without the border pixels the
    object itself covers; and the backdrop's noise (robust sigma of the kept border)."""
    h, w = grey.shape
    ys = np.concatenate([np.zeros(w), np.full(w, h - 1), np.arange(h), np.arange(h)]).astype(np.float32)
    xs = np.concatenate([np.arange(w), np.arange(w), np.zeros(h), np.full(h, w - 1)]).astype(np.float32)

    def design(y, x):
        y, x = y / max(h - 1, 1) - 0.5, x / max(w - 1, 1) - 0.5
        return np.stack([np.ones_like(x), x, y, x * y], axis=-1)

    values, a = _border(grey), design(ys, xs)
    keep = np.abs(values - np.median(values)) <= max(8.0, 3.0 * _robust_sigma(values))
    for _ in range(3):
        coef, *_ = np.linalg.lstsq(a[keep], values[keep], rcond=None)
        resid = values - a @ coef
        keep = np.abs(resid) <= max(6.0, 3.0 * _robust_sigma(resid[keep]))
    surface = _polynomial_surface(coef, (h, w), (max(h - 1, 1), max(w - 1, 1)))
    return np.clip(surface, 0.0, 255.0, out=surface), _robust_sigma(resid[keep])


def _centre_ink(img: Image.Image, box: int, size: int, by_mass: bool) -> np.ndarray:
    """MNIST's own recipe: crop to the ink, fit into `box`×`box` keeping the aspect ratio,
    then place in a `size`×`size` field centred by centre of mass (or by bounding box)."""
    ink = _ink_map(img)
    rows = np.flatnonzero(ink.max(axis=1) > 0.25)
    cols = np.flatnonzero(ink.max(axis=0) > 0.25)
    ink = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = ink.shape
    scale = box / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = Image.fromarray((ink * 255).astype(np.uint8), "L").resize((nw, nh), Image.Resampling.LANCZOS)
    small = np.asarray(small, dtype=np.float32)
    field = np.zeros((size, size), dtype=np.float32)
    if by_mass and small.sum() > 0:
        ys, xs = np.indices(small.shape)
        cy, cx = (ys * small).sum() / small.sum(), (xs * small).sum() / small.sum()
        top, left = round(size / 2 - cy - 0.5), round(size / 2 - cx - 0.5)
    else:
        top, left = (size - nh) // 2, (size - nw) // 2
    top = int(np.clip(top, 0, size - nh))
    left = int(np.clip(left, 0, size - nw))
    field[top : top + nh, left : left + nw] = small
    return np.clip(field + 0.5, 0, 255).astype(np.uint8)
