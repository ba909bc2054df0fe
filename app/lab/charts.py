"""A run's curves as inline SVG: per-epoch figures from its history, drawn by app.curves.curve_svg."""

from __future__ import annotations

import math

from app.curves import curve_svg


def column(history: list[dict] | None, key: str) -> list:
    """One figure of every epoch of a run's history."""
    return [e.get(key) for e in history or [] if isinstance(e, dict)]


def chart(series: dict[str, list], **kw) -> dict:
    """curve_svg over named series of per-epoch values (the names are the legend's keys)."""
    return curve_svg({"models": {name: {"history": {"v": values}} for name, values in series.items()}}, "v", **kw)


def run_charts(history: list[dict]) -> dict:
    """Loss and accuracy curves (training, validation) of a run."""
    return {key: chart({"train": column(history, key), "validation": column(history, f"val_{key}")})
            for key in ("loss", "accuracy")}


# ----------------------------------------------------------------------------- a run's live chart
RUN_WIDTH, RUN_HEIGHT = 300, 150  # the plot area in SVG units; lab.js draws the same geometry
TICKS = 4  # about this many gridlines on the y-axis
EPOCH_LABELS = 10  # at most this many labelled epoch ticks


def nice_ticks(lo: float, hi: float, count: int = TICKS) -> list[float]:
    """Round gridline values (steps of 1, 2 or 5 times a power of ten) covering lo..hi."""
    span = hi - lo
    if span <= 0:
        span = abs(hi) or 1.0
        lo, hi = lo - span / 2, hi + span / 2
        span = hi - lo
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    step = power * next(m for limit, m in ((1.5, 1), (3, 2), (7, 5), (math.inf, 10)) if raw / power < limit)
    first, last = math.floor(lo / step), math.ceil(hi / step)
    return [round(i * step, 10) for i in range(first, last + 1)]


def epoch_ticks(epochs: int) -> list[int]:
    """The epochs labelled under the x-axis (every one, or every k-th on long runs)."""
    every = max(1, math.ceil(epochs / EPOCH_LABELS))
    return [e for e in range(1, epochs + 1) if e % every == 0 or e == epochs]


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def run_series(key: str, points: list[dict], history: list[dict]) -> tuple[list, list]:
    """(training, validation) as (x in epochs, value) pairs: training from the streamed points
    (from the per-epoch history for runs recorded without them), validation at each epoch's end."""
    train = [(p["x"], p[key]) for p in points or [] if isinstance(p, dict) and _finite(p.get("x")) and _finite(p.get(key))]
    if not train:
        train = [(e["epoch"], e[key]) for e in history if _finite(e.get("epoch")) and _finite(e.get(key))]
    val = [(e["epoch"], e[f"val_{key}"]) for e in history if _finite(e.get("epoch")) and _finite(e.get(f"val_{key}"))]
    return train, val


def run_chart(key: str, points: list[dict], history: list[dict], epochs: int) -> dict:
    """A run's loss or accuracy chart: the two series as SVG coordinates over epochs 0..`epochs`,
    y gridlines at round values, a tick at each epoch's end."""
    train, val = run_series(key, points, history)
    epochs = max(int(epochs or 0), len(history), math.ceil(max((x for x, _ in train + val), default=1)), 1)
    w, h = RUN_WIDTH, RUN_HEIGHT
    chart = {"width": w, "height": h, "epochs": epochs, "lines": [], "grid": [],
             "xticks": [{"x": round(e * w / epochs, 1), "label": e} for e in epoch_ticks(epochs)]}
    values = [v for _, v in train + val]
    if not values:
        return chart
    lo, hi = min(values), max(values)
    if key == "accuracy":
        lo, hi = max(0.0, lo), min(1.0, hi)
    ticks = nice_ticks(lo, hi)
    lo, hi = ticks[0], ticks[-1]
    span = hi - lo or 1.0

    def xy(x: float, v: float) -> str:
        return f"{x * w / epochs:.1f},{h - (v - lo) / span * h:.1f}"

    chart["grid"] = [{"y": round(h - (t - lo) / span * h, 1), "value": t} for t in ticks]
    for i, pairs in enumerate((train, val)):
        if pairs:
            chart["lines"].append({"series": i, "points": [xy(x, v) for x, v in pairs],
                                   "dots": i == 1 or len(pairs) <= epochs})
    return chart


def run_charts_live(progress: dict, history: list[dict], epochs: int) -> dict:
    """Loss and accuracy charts of a run, training points every few batches."""
    points = (progress or {}).get("points") or []
    return {key: run_chart(key, points, history, epochs) for key in ("loss", "accuracy")}
