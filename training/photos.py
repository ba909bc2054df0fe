"""Photo-like test sets made from the 28×28 test items: what a student's phone picture of a
garment in a shop (or of a digit on paper) looks like, made reproducibly from the data set.

Each item becomes a dark object on a light backdrop (the item's intensity is its darkness, as
Fashion-MNIST was made by negating shop photos), upscaled 4 to 10 times, placed off-centre on a
larger backdrop with uneven light, slightly blurred, with sensor noise, saved as JPEG. The same
seed gives the same bytes (Pillow and NumPy only; no randomness without the seed).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

PHOTO_SEED = 2026
PHOTO_COUNT = 2000  # the first test items, every class (the sets are in no class order)


def make_photo(item: np.ndarray, rng: np.random.Generator) -> bytes:
    """One 28×28 uint8 test item (light on black) -> JPEG bytes of a photo of it."""
    item = np.asarray(item, dtype=np.uint8).reshape(item.shape[0], item.shape[1])
    scale = float(rng.uniform(4.0, 10.0))
    side = int(round(item.shape[0] * scale))
    darkness = np.asarray(Image.fromarray(item, "L").resize((side, side), Image.Resampling.BICUBIC),
                          dtype=np.float32) / 255.0
    width = int(side * rng.uniform(1.3, 2.0))
    height = int(side * rng.uniform(1.2, 1.8))
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    backdrop = float(rng.uniform(215.0, 250.0))
    light = np.linspace(rng.uniform(0.92, 1.0), rng.uniform(0.97, 1.03), width, dtype=np.float32)
    alpha = np.zeros((height, width), np.float32)
    alpha[top:top + side, left:left + side] = np.clip(darkness, 0.0, 1.0)
    grey = backdrop * light[None, :] * (1.0 - alpha)
    tint = np.array([1.0, rng.uniform(0.97, 1.0), rng.uniform(0.92, 1.0)], np.float32)  # warm light
    rgb = grey[..., None] * tint + rng.normal(0.0, 2.5, (height, width, 3)).astype(np.float32)
    img = Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8), "RGB")
    img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.6, 1.4))))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=int(rng.integers(80, 93)))
    return buf.getvalue()


def photo_set(x_test: np.ndarray, count: int = PHOTO_COUNT, seed: int = PHOTO_SEED):
    """(index, JPEG bytes) for the first `count` test items, deterministically."""
    rng = np.random.default_rng(seed)
    for i in range(min(count, len(x_test))):
        yield i, make_photo(x_test[i], rng)


def recipe() -> str:
    """How the photos are made, for the card and the benchmark page."""
    return ("first test items as dark objects on a light backdrop (215-250, uneven light, warm tint), "
            "upscaled 4-10x, off-centre, Gaussian blur 0.6-1.4 px, noise sigma 2.5, JPEG q80-92, "
            f"seed {PHOTO_SEED}")
