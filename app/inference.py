"""Inference as pure functions over a loaded model: no Flask here, so tests need no server."""

from __future__ import annotations

import base64
import io
import time
from typing import Callable

import numpy as np
from PIL import Image

from app.imaging import bytes_to_array
from app.tasks import TaskSpec

TOP_K = 5


def classify(predict: Callable[[np.ndarray], np.ndarray], spec: TaskSpec, array: np.ndarray,
             k: int = TOP_K) -> dict:
    """Top-k classes of one preprocessed image (uint8 H×W×C) with both languages' labels.

    Returns {"top": [{"index", "label_en", "label_vi", "probability"}], "model_ms"}.
    """
    batch = np.asarray(array, dtype=np.float32)[None]
    t0 = time.perf_counter()
    probs = predict(batch)[0]
    model_ms = (time.perf_counter() - t0) * 1000.0
    order = np.argsort(-probs, kind="stable")[: min(k, len(probs))]
    top = [{"index": int(i), "label_en": spec.label(int(i), "en"), "label_vi": spec.label(int(i), "vi"),
            "probability": float(probs[i])} for i in order]
    return {"top": top, "model_ms": round(model_ms, 3)}


def classify_upload(predict: Callable[[np.ndarray], np.ndarray], spec: TaskSpec, data: bytes,
                    k: int = TOP_K) -> tuple[np.ndarray, dict]:
    """What POST /api/v1/tasks/<slug>/predict and the task page do with an uploaded file: bytes ->
    the model's input (or `InvalidInput`) -> `classify`. Returns (input array, result)."""
    array = bytes_to_array(data, spec)
    return array, classify(predict, spec, array, k=k)


def array_to_png(array: np.ndarray) -> bytes:
    """The model's input (uint8 H×W×1 or H×W×3) as PNG bytes, to show what the LSTM read."""
    arr = np.asarray(array, dtype=np.uint8)
    img = Image.fromarray(arr[..., 0], "L") if arr.shape[-1] == 1 else Image.fromarray(arr, "RGB")
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def png_data_url(array: np.ndarray) -> str:
    """`array_to_png` as a data: URL for an <img> (shown enlarged with pixelated scaling)."""
    return "data:image/png;base64," + base64.b64encode(array_to_png(array)).decode("ascii")
