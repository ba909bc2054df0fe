"""Peak memory of one upload: how much a server process grows while it answers a single image,
each case in a fresh process, against plain Pillow decoding the same bytes in the same run.

    python benchmarks/upload_memory.py [--models-dir models] [--tasks mnist cats_dogs] [--write]

For each upload (made here, in memory: camera photos, big PNGs, 16-bit, 32:1, GIF, WebP, BMP,
and the issue's two oversized PNGs) a fresh Python process loads the app over the shipped models
(LiteRT), answers one small warm-up upload, then resets the kernel's peak-RSS counter
(/proc/self/clear_refs) and answers the case through the app's WSGI callable
(POST /api/v1/tasks/<slug>/predict, the multipart body built before the measurement). The figure
is the peak RSS (VmHWM) minus the RSS just before. Baseline, in its own fresh process over the
same loaded app: `Image.open(bytes).load()` then `.convert("RGB")`, what a server without the
safe decoder (`app.imagefile`: format allow-list, pixel and aspect caps, reduced decoding) pays
before its preprocessing even starts. glibc's mmap threshold is fixed
(MALLOC_MMAP_THRESHOLD_) so large buffers are mapped and returned, not hidden in a reused heap.
For the largest pictures the digit tasks read whole, a third process measures the preprocessing
alone (`app.imaging.image_to_array` on the already decoded picture), to tell the decoder's share
from the preprocessing's. The issue's goal: at most 64 MB of growth for any upload the app accepts. With --write the table
replaces the upload-memory section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from load import training_processes, write_section  # noqa: E402

START, END = "<!-- upload-memory:start -->", "<!-- upload-memory:end -->"
GOAL_MB = 64


# ----------------------------------------------------------------------------- the uploads
def smooth(width: int, height: int, mode: str = "RGB", seed: int = 0, cell: int = 64):
    """A photo-like picture: a coarse random field blown up (compresses like a real one)."""
    import numpy as np
    from PIL import Image, ImageDraw

    bands = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    coarse = np.random.default_rng(seed).integers(0, 256, (max(2, height // cell), max(2, width // cell), bands),
                                                  dtype=np.uint8)
    coarse = coarse // 4 + 160  # light paper...
    img = Image.fromarray(coarse if bands > 1 else coarse[..., 0]).resize((width, height), Image.Resampling.BILINEAR)
    ink = {1: 20, 3: (20, 20, 20), 4: (20, 20, 20, 255)}[bands]
    ImageDraw.Draw(img).rectangle((width * 9 // 20, height // 4, width * 11 // 20, height * 3 // 4), fill=ink)
    return img  # ...with a dark stroke: a drawing for the digit tasks, a picture for the others


def encode(img, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def sixteen_bit(width: int, height: int) -> bytes:
    import numpy as np
    from PIL import Image

    grey = np.asarray(smooth(width, height, "L")).astype(np.uint16) * 257
    return encode(Image.fromarray(grey), "PNG")


CASES = {  # name -> (builder, accepted by the app?)
    "JPEG 4032×3024 (12 MP phone photo)": (lambda: encode(smooth(4032, 3024), "JPEG", quality=90), True),
    "JPEG 6000×4000 (24 MP camera)": (lambda: encode(smooth(6000, 4000), "JPEG", quality=85), True),
    "JPEG 3264×2448 progressive (8 MP)": (lambda: encode(smooth(3264, 2448), "JPEG", quality=90, progressive=True), True),
    "PNG RGBA 3264×2448 (8 MP)": (lambda: encode(smooth(3264, 2448, "RGBA", cell=512), "PNG"), True),
    "PNG 16-bit grey 3264×2448 (8 MP)": (lambda: sixteen_bit(3264, 2448), True),
    "PNG grey 16000×500 (8 MP, 32:1)": (lambda: encode(smooth(16000, 500, "L"), "PNG"), True),
    "GIF 3264×2448 (8 MP)": (lambda: encode(smooth(3264, 2448).quantize(64), "GIF"), True),
    "WebP 1920×1080 (2 MP, its limit)": (lambda: encode(smooth(1920, 1080), "WEBP", quality=80), True),
    "BMP 1632×1632 (8 MB file)": (lambda: encode(smooth(1632, 1632), "BMP"), True),
    "PNG RGBA 4095×4095 (the issue's)": (lambda: encode(__import__("PIL.Image").Image.new("RGBA", (4095, 4095)), "PNG"), False),
    "PNG grey 1×39,000,000 (the issue's)": (lambda: encode(__import__("PIL.Image").Image.new("L", (39_000_000, 1)), "PNG"), False),
    "JPEG 9000×6000 (54 MP)": (lambda: encode(smooth(9000, 6000), "JPEG", quality=80), False),
    "WebP 3264×2448 (8 MP)": (lambda: encode(smooth(3264, 2448), "WEBP", quality=80), False),
}


# The largest accepted picture of each kind that the digit tasks' ink map reads at full working size.
PREPROCESS_CASES = ("BMP 1632×1632 (8 MB file)", "JPEG 4032×3024 (12 MP phone photo)")


# ----------------------------------------------------------------------------- one measurement (child)
def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def child(case_file: str, slug: str, mode: str, models_dir: str) -> dict:
    """Load the app, warm it up, then measure one upload; the result as a dict."""
    import gc

    from werkzeug.test import EnvironBuilder

    from app import create_app

    data = Path(case_file).read_bytes()
    app = create_app({"TESTING": True, "SECRET_KEY": "benchmark", "MODELS_DIR": models_dir})

    def environ(body: bytes):
        return EnvironBuilder(path=f"/api/v1/tasks/{slug}/predict", method="POST",
                              data={"file": (io.BytesIO(body), "upload")}).get_environ()

    def call(env) -> int:
        status = []
        body = app.wsgi_app(env, lambda s, h, exc_info=None: status.append(s))
        b"".join(body)
        getattr(body, "close", lambda: None)()
        return int(status[0].split()[0])

    from PIL import Image

    warm = io.BytesIO()
    Image.new("L", (64, 64), 255).save(warm, "PNG")
    call(environ(warm.getvalue()))  # first request: lazy imports, interpreter buffers
    env = environ(data) if mode == "app" else None
    if mode == "preprocess":  # decoded before the measurement: only image_to_array is measured
        from app.imaging import decode_image, image_to_array
        from app.modelstore import get_store

        with app.app_context():
            spec = get_store().get(slug).spec
        decoded = decode_image(data)
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to the current RSS
    before = status_kb("VmRSS")
    t0 = time.perf_counter()
    if mode == "app":
        code = call(env)
    elif mode == "preprocess":
        image_to_array(decoded, spec)
        code = 0
    else:
        img = Image.open(io.BytesIO(data))
        img.load()
        img = img.convert("RGB")
        code = 0
    seconds = time.perf_counter() - t0
    return {"status": code, "growth_mb": (status_kb("VmHWM") - before) / 1024, "seconds": seconds}


def measure(case_file: Path, slug: str, mode: str, models_dir: str) -> dict:
    """One fresh process for one measurement."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "TF_CPP_MIN_LOG_LEVEL": "3",
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, __file__, "--child", str(case_file), slug, mode, "--models-dir", models_dir],
                         env=env, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        return {"status": "crash", "growth_mb": float("nan"), "seconds": float("nan"), "error": out.stderr[-500:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- the table
def training_runs() -> list[str]:
    """The task of every `python -m training` run on this machine now."""
    return [args[0] for _nice, args in training_processes() if args]


def table(rows: list[dict], tasks: list[str], runs: list[str]) -> str:
    today = dt.date.today().isoformat()
    beside = (f"{len(runs)} training run(s) were using the machine at the same time "
              f"({', '.join(f'`python -m training {r}`' for r in runs)}), so the seconds are slow; the memory "
              f"figures are per process and not affected") if runs else "no training run was using the machine"
    lines = [START, "## Memory per upload (benchmarks/upload_memory.py)", "",
             f"`python benchmarks/upload_memory.py --write` on {today}, {platform.machine()}; {beside}. Each figure is "
             "one fresh process: the app loaded over the shipped models, one warm-up upload, then the peak RSS "
             "growth (VmHWM after the request minus VmRSS before it, the peak counter reset first) while it answers "
             "the upload (`POST /api/v1/tasks/<slug>/predict`). Baseline, same run: plain Pillow "
             "(`Image.open(...).load()` and `.convert(\"RGB\")`) on the same bytes, no limits.", "",
             "| upload | file KB | task | status | peak RSS growth MB | seconds | plain Pillow MB | plain Pillow s |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['kb']:,} | {r['task']} | {r['status']} | {r['growth_mb']:.1f} | "
                     f"{r['seconds']:.2f} | {r['pillow_mb']:.1f} | {r['pillow_s']:.2f} |")
    preprocess = [r for r in rows if r.get("preprocess_mb") is not None]
    accepted = [r for r in rows if r["status"] != 413]
    worst = max(accepted, key=lambda r: r["growth_mb"]) if accepted else None
    lines += [""]
    if worst:
        verdict = "met" if worst["growth_mb"] <= GOAL_MB else "missed"
        lines.append(f"Largest growth for an upload the decoder accepted (any status but 413): {worst['growth_mb']:.1f} MB ({worst['case']}, "
                     f"{worst['task']}); the goal of at most {GOAL_MB} MB is {verdict}.")
    for r in preprocess:
        lines.append(f"Of the {r['case']} upload's {r['growth_mb']:.1f} MB on {r['task']}, the preprocessing alone "
                     f"(`app.imaging.image_to_array` on the already decoded picture, its own fresh process) grows the "
                     f"process by {r['preprocess_mb']:.1f} MB.")
    lines += ["Limits behind these figures (`app/imagefile.py`): 8 MP decoded, a baseline JPEG up to 32 MP (decoded "
              "at 1/2 scale or less with `draft()`), a progressive JPEG up to 8 MP, a WebP up to 2.1 MP (libwebp "
              "holds about 15 bytes a pixel), sides at most 32:1, 16-bit grey "
              "converted through a lookup table in bands of rows, pictures over twice the working size box-reduced "
              "a band of rows at a time as soon as they are decoded, at most two decodes at once per worker (`LSTMLAB_MAX_DECODES`). "
              "Refused uploads answer 413 from the header alone.", END]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models-dir", default=str(ROOT / "models"))
    p.add_argument("--tasks", nargs="+", default=["mnist", "cats_dogs"])
    p.add_argument("--write", action="store_true")
    p.add_argument("--child", nargs=3, metavar=("CASE_FILE", "SLUG", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.models_dir)))
        return 0
    runs = training_runs()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, (build, _)) in enumerate(CASES.items()):
            case_file = Path(tmp) / f"case{i}"
            case_file.write_bytes(build())
            pillow = measure(case_file, args.tasks[0], "pillow", args.models_dir)
            for slug in args.tasks:
                r = measure(case_file, slug, "app", args.models_dir)
                rows.append({"case": name, "kb": case_file.stat().st_size // 1024, "task": slug, **r,
                             "pillow_mb": pillow["growth_mb"], "pillow_s": pillow["seconds"]})
                if name in PREPROCESS_CASES:
                    rows[-1]["preprocess_mb"] = measure(case_file, slug, "preprocess", args.models_dir)["growth_mb"]
                print(f"{name:40s} {slug:10s} {r['status']} {r['growth_mb']:7.1f} MB {r['seconds']:.2f} s"
                      f" | Pillow {pillow['growth_mb']:7.1f} MB {pillow['seconds']:.2f} s", flush=True)
    text = table(rows, args.tasks, sorted(set(runs) | set(training_runs())))
    print(text)
    if args.write:
        write_section(START, END, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
