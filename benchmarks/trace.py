"""Cost of tracing one prediction, against the LiteRT float32 prediction itself, in the same run, one CPU core.

    python benchmarks/trace.py [--models-dir models] [--images 200] [--write]

For the shipped MNIST model (and, untrained, the baseline and ReNet architectures: weights do
not change the speed), per image of the MNIST test set:
- predict: LiteRT over the float32 model converted as `python -m training export` converts it
  (`app.modelstore.InterpreterPool`), the cost a request pays already (the app serves the int8
  file where the card accepted it, faster: docs/BENCHMARKS.md, Serving);
- trace: `app.trace` over the same image: every layer in NumPy, every LSTM's i, f, g, o, c, h
  recorded at every time step (budget: under 5 ms);
- trace + panel: the trace plus the heatmap PNGs of the result page (`app.views.lstm.image_panel`).
It also checks that the trace's output equals the float32 prediction. With --write the table
replaces the trace section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import os

# One CPU core for every contender, set before NumPy and TensorFlow start their thread pools.
os.environ.update(dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                 "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"), "1"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse, datetime as dt, platform, sys, time  # noqa: E401,E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
ROOT = Path(__file__).resolve().parent.parent

sys.path.insert(0, str(ROOT / "benchmarks"))
from load import machine_busy, write_section  # noqa: E402

from app.config import default_data_dir  # noqa: E402
from app.modelstore import InterpreterPool  # noqa: E402
from app.tasks import MNIST  # noqa: E402
from app.trace import image_tracer, trace_image  # noqa: E402

START, END = "<!-- trace:start -->", "<!-- trace:end -->"


def timings(fn, images: np.ndarray) -> np.ndarray:
    """Milliseconds of fn(image) for every image (after one warm-up call)."""
    fn(images[0])
    out = np.empty(len(images))
    for k, img in enumerate(images):
        t0 = time.perf_counter()
        fn(img)
        out[k] = (time.perf_counter() - t0) * 1000
    return out


def measure(name: str, model, images: np.ndarray) -> list[dict]:
    """Served predict, trace, and trace + panel for one model; checks the trace equals predict."""
    from app.views.lstm import image_panel

    from training.export import convert

    predict = InterpreterPool(convert(model), 1)
    tracer = image_tracer(model, MNIST)
    served = predict(images[:20].astype(np.float32))
    traced = np.stack([trace_image(tracer, img).output[0] for img in images[:20]])
    diff = float(np.abs(served - traced).max())
    rows = []
    contenders = {
        "predict (LiteRT, float32)": lambda img: predict(img[None].astype(np.float32)),
        "trace (NumPy, all gates)": lambda img: trace_image(tracer, img),
        "trace + heatmap panel": lambda img: image_panel(trace_image(tracer, img), img),
    }
    base = None
    for label, fn in contenders.items():
        t = timings(fn, images)
        base = base if base is not None else np.median(t)
        rows.append({"model": name, "what": label, "median": float(np.median(t)), "p90": float(np.percentile(t, 90)),
                     "ratio": float(np.median(t) / base), "diff": diff,
                     "layers": len(trace_image(tracer, images[0]).layers)})
        print(f"{name:28s} {label:26s} median {np.median(t):7.2f} ms  p90 {np.percentile(t, 90):7.2f} ms", flush=True)
    return rows


def table(rows: list[dict], n: int, busy: str = "") -> str:
    """The Markdown section for docs/BENCHMARKS.md."""
    lines = [START, "## Tracing a prediction (inside the LSTM)", "",
             f"`python benchmarks/trace.py --write` on {dt.date.today().isoformat()}, {platform.processor() or platform.machine()}, "
             f"one thread, {n} MNIST test images, medians"
             + (f"; the machine was also running a training run (`{busy}`), so absolute times are noisy"
                if busy else "; no training run was using the machine") + "; the ratios are measured in the same run.", "",
             "| model | what | median ms | p90 ms | × predict | recorded LSTM directions | max abs(trace − predict) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['what']} | {r['median']:.2f} | {r['p90']:.2f} | {r['ratio']:.2f} | "
                     f"{r['layers']} | {r['diff']:.1e} |")
    lines += ["", "The budget is under 5 ms to trace one MNIST image (the shipped model's row). The heatmap",
              "panel (six PNGs per recorded direction: 48 for rows_cols) is drawn only for the HTML page when its",
              "box is ticked; the API's `trace` returns the numbers without drawing.", END]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models-dir", default=str(ROOT / "models"))
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--write", action="store_true")
    args = p.parse_args()
    busy = machine_busy()
    import keras

    from training.build import make_image_classifier

    data = np.load(default_data_dir() / MNIST.data_path)
    images = data["x_test"][: args.images, :, :, None]
    rows = []
    shipped = Path(args.models_dir) / "mnist" / "model.keras"
    if shipped.is_file():
        rows += measure("mnist (shipped, rows_cols)", keras.saving.load_model(shipped, compile=False), images)
    keras.utils.set_random_seed(0)
    rows += measure("baseline (untrained)", make_image_classifier(MNIST, "baseline"), images)
    rows += measure("renet (untrained)", make_image_classifier(MNIST, "renet"), images)
    text = table(rows, len(images), busy or machine_busy())
    print(text)
    if args.write:
        write_section(START, END, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
