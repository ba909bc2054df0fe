"""Photos through the upload path: product photos of Fashion-MNIST test garments and photos of
MNIST test digits, made by `training.photos` (deterministic), classified by the app's own
upload function and served model; the baseline is the very same test items uploaded as the data
set's 28×28 PNG, in the same run.

    python benchmarks/photos.py [--count 2000] [--save DIR] [--write]

--save writes the first 20 photos of each set as JPEG files (to look at them); --write replaces
the photos section of docs/BENCHMARKS.md. The card's figure (`python -m training evaluate <slug>
--through-upload`) is the same measurement at the default count.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse, datetime as dt, sys, time  # noqa: E401,E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from app.config import default_data_dir  # noqa: E402
from app.modelstore import Engines, load_entry  # noqa: E402
from app.tasks import FASHION_MNIST, MNIST  # noqa: E402
from training.data import load_image_data, to_png_bytes  # noqa: E402
from training.served import served_predictions  # noqa: E402
from training.photos import PHOTO_COUNT, photo_set, recipe  # noqa: E402
from load import write_section  # noqa: E402

START, END = "<!-- photos:start -->", "<!-- photos:end -->"
SETS = ((FASHION_MNIST, "product photos of test garments"), (MNIST, "photos of test digits"))


def measure(spec, count: int, models_dir: Path, save: Path | None) -> dict:
    """Photo accuracy and the same items' PNG accuracy through the served path, with timing."""
    entry = load_entry(models_dir / spec.slug, spec, Engines())
    data = load_image_data(spec, default_data_dir())
    photos = list(photo_set(data.x_test, count))
    if save:
        (save / spec.slug).mkdir(parents=True, exist_ok=True)
        for i, jpeg in photos[:20]:
            (save / spec.slug / f"{i:05d}_{spec.class_names[data.y_test[i]].replace('/', '-')}.jpg").write_bytes(jpeg)
    labels = data.y_test[[i for i, _ in photos]]
    t0 = time.perf_counter()
    photo_preds, refused = served_predictions(entry, spec, (b for _, b in photos))
    seconds = time.perf_counter() - t0
    png_preds, _ = served_predictions(entry, spec, (to_png_bytes(data.x_test[i]) for i, _ in photos))
    card = entry.card.metrics.served.extra if entry.card and entry.card.metrics.served else {}
    return {"slug": spec.slug, "count": len(photos), "photos": float((photo_preds == labels).mean()),
            "png": float((png_preds == labels).mean()), "refused": refused, "engine": entry.engine,
            "precision": entry.precision, "ms": 1000 * seconds / len(photos),
            "sizes": sorted(len(b) for _, b in photos)[len(photos) // 2],
            "card": next((v["accuracy"] for k, v in card.items() if isinstance(v, dict) and "accuracy" in v), None)}


def section(rows: list[dict]) -> str:
    """The markdown section for docs/BENCHMARKS.md."""
    lines = [START, "## Photos through the upload path (benchmarks/photos.py)", "",
             f"Measured {dt.date.today().isoformat()} (load average {os.getloadavg()[0]:.1f} on this machine while it ran, "
             "so the times are upper bounds). Each photo is made from one test item: " + recipe() + ". "
             "Every file goes through `app.inference.classify_upload` (what POST /api/v1/tasks/<slug>/predict "
             "calls) and the served model; the baseline is the same items uploaded as the data set's 28×28 PNG.", "",
             "| task | photos | accuracy on the photos | same items as 28×28 PNG | refused | median JPEG | ms per photo (decode, map, model) | engine |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r, (_, name) in zip(rows, SETS):
        lines.append(f"| {r['slug']} ({name}) | {r['count']:,} | **{r['photos']:.2%}** | {r['png']:.2%} | {r['refused']} "
                     f"| {r['sizes'] / 1000:.1f} kB | {r['ms']:.1f} | {r['engine']} {r['precision']} |")
    lines += ["", "Fashion photos follow Fashion-MNIST's own recipe (backdrop fitted to the border and removed, "
              "negated when light, stretched to full range, trimmed, longest side 28, centred); digit photos "
              "MNIST's (ink found against the paper, fitted into 20×20, centred by mass). Goal for the product "
              "photos: ≥ 88% (floor 80%). The cards carry the same figures (`served.product_photos`, "
              "`served.digit_photos`).", END]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models-dir", default=str(ROOT / "models"))
    p.add_argument("--count", type=int, default=PHOTO_COUNT)
    p.add_argument("--save", type=Path, default=None, help="write the first 20 photos of each set here")
    p.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    args = p.parse_args()
    rows = [measure(spec, args.count, Path(args.models_dir), args.save) for spec, _ in SETS]
    text = section(rows)
    print(text)
    for r in rows:
        if args.count == PHOTO_COUNT and r["card"] is not None and r["card"] != r["photos"]:
            print(f"warning: {r['slug']}: the card says {r['card']:.4f}; rerun python -m training evaluate "
                  f"{r['slug']} --through-upload", file=sys.stderr)
    if args.write:
        write_section(START, END, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
