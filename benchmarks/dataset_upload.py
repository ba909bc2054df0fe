"""A large class data set through the instructor console's upload route: time and peak memory.

    python benchmarks/dataset_upload.py            # ~2-4 min; prints the table
    python benchmarks/dataset_upload.py --write    # ... and writes it into docs/BENCHMARKS.md

The zip is made here and deleted afterwards (never committed): 20,000 random-noise JPEGs of
about 10 KB each in 10 class folders, about 200 MB, stored (JPEG does not deflate). A child process
then builds the app (empty models folder, fresh instance folder), signs in an instructor and
POSTs the zip to /instructor/datasets/upload through Flask's test client: the same route, form
parsing (werkzeug spools the file part to a temporary file) and checks a browser upload gets.
It times the upload + indexing (every file decoded by app.imaging.decode_image, preview
written) and the save (the stratified split moved into place), and reports the child's peak
resident memory (ru_maxrss) against its resident memory just before the upload. The goal
(issue 14): accepted and indexed in at most 60 s, with memory bounded (not growing with the zip).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

DOC = ROOT / "docs" / "BENCHMARKS.md"
START, END = "<!-- dataset-upload:start -->", "<!-- dataset-upload:end -->"
PASSWORD = "benchmark passphrase"


def make_zip(path: Path, files: int, classes: int, side: int, quality: int, seed: int = 0) -> dict:
    """Write the benchmark's zip (one folder per class of random-noise JPEGs); returns its sizes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    total = 0
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(files):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, "JPEG", quality=quality)
            data = buf.getvalue()
            total += len(data)
            zf.writestr(f"noise/class_{i % classes:02d}/{i:06d}.jpg", data)
    return {"files": files, "classes": classes, "zip_bytes": path.stat().st_size, "mean_file_bytes": total / files}


def rss_kb() -> int:
    """This process's resident memory now (kB, from /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds() -> float:
    """CPU time this process (all its threads) has used, user + system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(zip_path: str, work: str) -> None:
    """Upload, index and save the zip in this (fresh) process; print the measurements as JSON."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from app import create_app

    models = Path(work) / "models"
    models.mkdir(exist_ok=True)
    app = create_app({"TESTING": True, "SECRET_KEY": "benchmark", "MODELS_DIR": str(models),
                      "INSTANCE_PATH": str(Path(work) / "instance")})
    runner = app.test_cli_runner()
    assert runner.invoke(args=["instructor", "add", "bench"], input=f"{PASSWORD}\n{PASSWORD}\n").exit_code == 0
    client = app.test_client()
    assert client.post("/instructor/login", data={"name": "bench", "password": PASSWORD}).status_code == 302
    before = rss_kb()
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    with open(zip_path, "rb") as fh:
        response = client.post("/instructor/datasets/upload", content_type="multipart/form-data",
                               data={"file": (fh, "noise.zip")})
    t_index = time.perf_counter() - t0
    cpu_index = cpu_seconds() - cpu0
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    token = response.headers["Location"].rsplit("/", 1)[1]
    with app.test_request_context():
        from app.instructor.datasets import read_preview

        preview = read_preview(token)
    t1 = time.perf_counter()
    saved = client.post(response.headers["Location"], data={"slug": "noise", "title_en": "Noise", "title_vi": "Nhiễu",
                                                             "image_size": "32", "colour": "rgb"})
    t_save = time.perf_counter() - t1
    assert saved.status_code == 303, saved.get_data(as_text=True)[:500]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"index_seconds": t_index, "save_seconds": t_save, "index_cpu_seconds": cpu_index, "rss_before_kb": before, "peak_rss_kb": peak,
                      "indexed": preview["total"], "skipped": preview["skipped"]["count"],
                      "classes": len(preview["classes"])}))


def section(sizes: dict, result: dict, busy: str, load: float) -> str:
    """The docs/BENCHMARKS.md section."""
    total = result["index_seconds"] + result["save_seconds"]
    met = result["index_seconds"] <= 60 and result["indexed"] == sizes["files"]
    growth = (result["peak_rss_kb"] - result["rss_before_kb"]) / 1024
    lines = [
        START,
        "## Instructor data set upload (benchmarks/dataset_upload.py)",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; "
        + (f"a training run shared the machine ({busy})" if busy else "no training run on the machine")
        + f"; load average {load:.1f} during the measurement.",
        "",
        f"A zip made by the benchmark: {sizes['files']:,} random-noise JPEGs "
        f"(mean {sizes['mean_file_bytes'] / 1024:.1f} KB) in {sizes['classes']} class folders, "
        f"{sizes['zip_bytes'] / 2**20:.0f} MB, POSTed to /instructor/datasets/upload (Flask's test client: the "
        "same route, multipart parsing and checks as a browser upload) in a fresh process.",
        "",
        "| step | seconds |",
        "| --- | ---: |",
        f"| upload + check + index ({result['indexed']:,} images decoded, thumbnails, preview) | "
        f"{result['index_seconds']:.1f} |",
        f"| ... of which CPU time used by the process (all threads, user + system) | "
        f"{result['index_cpu_seconds']:.1f} |",
        f"| save (stratified split moved into place, record written) | {result['save_seconds']:.1f} |",
        f"| total | {total:.1f} |",
        "",
        f"Peak resident memory of the process: {result['peak_rss_kb'] / 1024:.0f} MB "
        f"({result['rss_before_kb'] / 1024:.0f} MB before the upload, so {growth:.0f} MB for a "
        f"{sizes['zip_bytes'] / 2**20:.0f} MB zip: the zip is spooled to a temporary file and read one member "
        "at a time). Goal: accepted and indexed in ≤ 60 s with memory bounded: "
        + ("met." if met else "NOT met.") + f" Skipped files: {result['skipped']}.",
        END,
    ]
    return "\n".join(lines)


def main() -> int:
    """Make the zip, measure in a child process, print (and with --write, record) the result."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=20_000)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--side", type=int, default=120, help="pixels per side of each noise JPEG")
    p.add_argument("--quality", type=int, default=80, help="JPEG quality (120 px at 80: about 10 KB)")
    p.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    p.add_argument("--child", nargs=2, metavar=("ZIP", "WORK"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(*args.child)
        return 0
    from load import machine_busy

    busy = machine_busy()
    # Under the project's .cache/, on the disk the instance folder uses (this VM's /tmp creates
    # files ~20x slower, which would measure /tmp instead of the import).
    (ROOT / ".cache").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="upload-bench-", dir=ROOT / ".cache") as work:
        zip_path = Path(work) / "noise.zip"
        t0 = time.perf_counter()
        sizes = make_zip(zip_path, args.files, args.classes, args.side, args.quality)
        print(f"zip: {sizes['zip_bytes'] / 2**20:.0f} MB, {args.files} files, made in {time.perf_counter() - t0:.0f} s",
              flush=True)
        out = subprocess.run([sys.executable, __file__, "--child", str(zip_path), work], cwd=ROOT, check=True,
                             capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        result = json.loads(out.stdout.strip().splitlines()[-1])
    load = os.getloadavg()[0]
    busy = busy or machine_busy()
    text = section(sizes, result, busy, load)
    print(text)
    if args.write:
        doc = DOC.read_text(encoding="utf-8") if DOC.is_file() else "# Benchmarks\n"
        if START in doc and END in doc:
            doc = doc[: doc.index(START)] + text + doc[doc.index(END) + len(END):]
        else:
            doc = doc.rstrip("\n") + "\n\n" + text + "\n"
        DOC.write_text(doc, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
