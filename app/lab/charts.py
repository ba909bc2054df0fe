"""A run's curves as inline SVG: per-epoch figures from its history, drawn by app.views.lstm.curve_svg."""

from __future__ import annotations

from app.views.lstm import curve_svg


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
