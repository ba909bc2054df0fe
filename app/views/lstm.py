"""Inside the LSTM: the gate equations and diagram (/lstm), the measured RNN-vs-LSTM experiment
(/lstm/why), and the trace panel (heatmaps of the gates over the time steps) that the image and
text result pages include.

The heatmaps are small PNGs (one pixel per time step and unit, drawn with NumPy) placed in one
inline SVG per layer, so the picture's rows (or the words) line up with the heatmap rows (or
columns) at any zoom, with no inline script or style (CSP).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
from flask import Blueprint, abort, current_app, render_template, send_from_directory
from PIL import Image

from app.curves import curve_svg
from app.text import EOL_ID
from app.trace import COLUMNS, WORDS, Trace, get_tracer, served_difference, trace_image, word_trace

bp = Blueprint("lstm", __name__)

COMPARE_DIR = "compare_rnn"  # written by `python -m training compare-rnn` (training/compare.py)
RESULTS, PLOT = "results.json", "comparison.png"
GATE_RGB = np.array([[255, 255, 255], [20, 60, 150]], np.float32)  # 0 -> white, 1 -> dark blue
NEG_RGB, POS_RGB = np.array([33, 102, 172], np.float32), np.array([178, 24, 43], np.float32)

# Layout of the SVG (user units): heatmaps have a fixed size whatever the number of units.
STEP = 8  # height of one time step (image) / width of one word (text, times WORD_WIDTH)
MAP_WIDTH, GAP, LABEL = 128, 14, 20
WORD_WIDTH, MAP_HEIGHT, WORD_LABEL = 44, 64, 18

# ----------------------------------------------------------------------------- heatmaps
def _png_url(rgb: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb.astype(np.uint8)), "RGB").save(buf, "PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def colour(values: np.ndarray, signed: bool) -> np.ndarray:
    """(T, U) values -> RGB: [0, 1] white→blue, or [-1, 1] blue←white→red."""
    v = np.clip(values, -1.0 if signed else 0.0, 1.0)[..., None]
    if not signed:
        return GATE_RGB[0] + (GATE_RGB[1] - GATE_RGB[0]) * v
    white = np.float32(255)
    return np.where(v < 0, white + (NEG_RGB - white) * -v, white + (POS_RGB - white) * v)


def heatmaps(values: dict[str, np.ndarray], shown: tuple[str, ...], transpose: bool) -> list[dict]:
    """One PNG data URL per shown quantity, in order (units on columns, or on rows with `transpose`)."""
    out = []
    # A few large cells would wash out the rest (only an LSTM has a cell state c).
    c_max = (float(np.percentile(np.abs(values["c"]), 99)) or 1.0) if "c" in values else 1.0
    for key in shown:
        v = values[key] / c_max if key == "c" else values[key]
        rgb = colour(v, signed=key in ("g", "c", "h"))
        out.append({"key": key, "url": _png_url(rgb.transpose(1, 0, 2) if transpose else rgb),
                    "scale": round(c_max, 3) if key == "c" else None})
    return out


def _picture(array: np.ndarray, axis: str) -> str:
    """The image the LSTM read, turned so that its time steps run down the page."""
    img = np.asarray(array, np.uint8)
    if axis == COLUMNS:
        img = img.transpose(1, 0, 2)
    rgb = np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img
    return _png_url(rgb)


def image_panel(trace: Trace, array: np.ndarray, served: np.ndarray | None = None) -> dict:
    """Template context for templates/lstm/_trace.html of an image prediction."""
    layers, pictures = [], {}
    for lt in sorted(trace.layers, key=lambda lt: lt.axis == COLUMNS):  # rows first: the usual reading
        height = lt.steps * STEP
        if (lt.axis == COLUMNS) not in pictures:  # one picture per orientation, not per layer
            pictures[lt.axis == COLUMNS] = _picture(array, lt.axis)
        pic_h, pic_w = (array.shape[1], array.shape[0]) if lt.axis == COLUMNS else array.shape[:2]
        pic_width = round(height * pic_w / pic_h)
        maps = heatmaps(lt.values, lt.shown, transpose=False)
        for k, m in enumerate(maps):
            m["x"] = pic_width + GAP + k * (MAP_WIDTH + GAP)
        layers.append({"label": lt.name, "direction": lt.direction, "axis": lt.axis, "steps": lt.steps,
                       "units": lt.units, "picture": pictures[lt.axis == COLUMNS], "picture_width": pic_width,
                       "height": height, "width": pic_width + len(maps) * (MAP_WIDTH + GAP), "maps": maps})
    return _panel("image", layers, None if served is None else served_difference(trace, served))


def text_panel(trace: Trace, words: list[str], cell: str = "lstm") -> dict:
    """Template context for templates/lstm/_trace.html of a text generation (`cell`: the model's,
    "lstm", "gru" or "simple_rnn", which picks the panel's wording)."""
    layers = []
    for lt in trace.layers:
        width = lt.steps * WORD_WIDTH
        maps = heatmaps(lt.values, lt.shown, transpose=True)
        for k, m in enumerate(maps):
            m["y"] = k * (MAP_HEIGHT + GAP)
        layers.append({"label": lt.name, "direction": lt.direction, "axis": WORDS, "steps": lt.steps,
                       "units": lt.units, "width": width + LABEL, "height": len(maps) * (MAP_HEIGHT + GAP) + WORD_LABEL,
                       "words": [{"x": LABEL + (t + 0.5) * WORD_WIDTH, "text": w[:9]} for t, w in enumerate(words)],
                       "maps": maps})
    return _panel("text", layers, None, cell)


def wants_trace(value) -> bool:
    """A request's `trace` flag: JSON true, or "1"/"true"/"on" from a form or query string."""
    return value is True or (isinstance(value, str) and value.strip().lower() in ("1", "true", "on", "yes"))


def image_trace_context(entry, array: np.ndarray) -> dict:
    """{"trace_panel": ...} for an image result page (or {"trace_error": ...} for a model the
    tracer does not support), with the served model's output to compare against."""
    try:
        served = entry.predict(np.asarray(array, np.float32)[None])[0]
        return {"trace_panel": image_panel(trace_image(get_tracer(current_app, entry), array), array, served)}
    except ValueError as exc:
        return {"trace_error": str(exc)}


def text_trace_context(text_model, path: list) -> dict:
    """{"trace_panel": ...} for a text result page, from the gates the generation recorded
    (`app.decoding.generate`'s `path`)."""
    trace, ids = word_trace(text_model, path)
    words = ["↵" if i == EOL_ID else text_model.vocab.tokens[i] for i in ids]
    return {"trace_panel": text_panel(trace, words, text_model.cell)}


def image_trace_json(entry, array: np.ndarray) -> dict:
    """The API's `trace` for an image prediction: every recorded layer's values per time step."""
    served = entry.predict(np.asarray(array, np.float32)[None])[0]
    trace = trace_image(get_tracer(current_app, entry), array)
    return {**trace.to_dict(), "difference_from_served": served_difference(trace, served)}


def text_trace_json(text_model, path: list) -> dict:
    """The API's `trace` for a generation: the tokens read and every layer's values per token."""
    trace, ids = word_trace(text_model, path)
    return {**trace.to_dict(), "tokens": [text_model.vocab.tokens[i] for i in ids]}


def _panel(kind: str, layers: list[dict], difference: float | None, cell: str = "lstm") -> dict:
    return {"kind": kind, "cell": cell, "layers": layers, "difference": difference,
            "renet": any(l["axis"] == "patch_rows" for l in layers),
            "step": STEP, "map_width": MAP_WIDTH, "map_height": MAP_HEIGHT, "label": LABEL}


# ----------------------------------------------------------------------------- pages
@bp.get("/lstm")
def lstm_page():
    """The gate equations and the architecture diagram."""
    return render_template("lstm/lstm.html")


def read_results() -> dict | None:
    """models/compare_rnn/results.json, or None when the experiment has not been run."""
    path = Path(current_app.config["MODELS_DIR"]) / COMPARE_DIR / RESULTS
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return results if isinstance(results, dict) and isinstance(results.get("experiments"), dict) else None


def gradient_rows(exp: dict) -> list[dict]:
    """Per model, untrained and trained: gradient norm at the first and last step, and their ratio."""
    rows = []
    for kind, m in exp["models"].items():
        norms = m.get("grad_norms") or []
        for when, g in (("untrained_model", norms[0] if norms else None), ("trained_model", norms[-1] if norms else None)):
            if g:
                rows.append({"kind": kind, "when": when, "first": g[0], "last": g[-1],
                             "ratio": g[0] / g[-1] if g[-1] else None})
    return rows


@bp.get("/lstm/why")
def why_page():
    """The RNN-vs-LSTM experiment from its saved results, with the explanation."""
    results = read_results()
    charts = {}
    if results:
        for name, exp in results["experiments"].items():
            charts[name] = {"accuracy": curve_svg(exp, "val_accuracy"), "loss": curve_svg(exp, "val_loss"),
                            "grad": curve_svg(exp, "grad", log=True), "grad_rows": gradient_rows(exp)}
    plot = Path(current_app.config["MODELS_DIR"]) / COMPARE_DIR / PLOT
    return render_template("lstm/why.html", results=results, charts=charts, has_plot=plot.is_file())


@bp.get("/lstm/why/comparison.png")
def comparison_plot():
    """The experiment's plot (matplotlib, written with the results)."""
    folder = Path(current_app.config["MODELS_DIR"]) / COMPARE_DIR
    if not (folder / PLOT).is_file():
        abort(404)
    return send_from_directory(folder, PLOT, mimetype="image/png", max_age=3600)
