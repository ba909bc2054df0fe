"""Line charts as SVG polylines: series of figures scaled into one plot area, for the templates."""

from __future__ import annotations

import numpy as np


def curve_svg(exp: dict, key: str, width: int = 300, height: int = 150, log: bool = False,
              shared_x: bool = False) -> dict:
    """Polylines of `key` per model (history key, or "grad" for the trained gradient norms);
    `shared_x`: step i at the same x in every series (series of different lengths compared)."""
    series = {}
    for kind, m in exp["models"].items():
        values = m["grad_norms"][-1] if key == "grad" else m["history"].get(key, [])
        values = [float(v) for v in values if v is not None and np.isfinite(v) and (not log or v > 0)]
        if values:
            series[kind] = np.log10(values) if log else np.array(values)
    if not series:
        return {"lines": [], "width": width, "height": height}
    lo = min(float(v.min()) for v in series.values())
    hi = max(float(v.max()) for v in series.values())
    span = hi - lo or 1.0
    lines = []
    n = max(len(v) for v in series.values())
    for kind, v in series.items():
        if shared_x:
            xs = np.arange(len(v)) * width / (n - 1) if n > 1 else np.array([width / 2])
        else:
            xs = np.linspace(0, width, len(v)) if len(v) > 1 else np.array([width / 2])
        ys = height - (v - lo) / span * height
        lines.append({"kind": kind, "points": " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))})
    fmt = (lambda x: f"{10 ** x:.2g}") if log else (lambda x: f"{x:.3g}")
    return {"lines": lines, "width": width, "height": height, "lo": fmt(lo), "hi": fmt(hi), "n": max(len(v) for v in series.values())}
