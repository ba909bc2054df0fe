"""Shared pytest configuration and fixtures for LSTM Lab."""

from __future__ import annotations

import io
import os
import struct
import types
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw


@pytest.fixture
def shipped_evaluation():
    """Recompute a shipped image model's test accuracy from the data; skip when either is absent."""
    from app.config import MODELS_DIR, default_data_dir
    from app.tasks import BUILTIN_TASKS

    def evaluate(slug: str) -> dict:
        from training.images import evaluate_image_task

        spec = BUILTIN_TASKS[slug]
        data_file = default_data_dir() / spec.data_path
        if not data_file.is_file():
            pytest.skip(f"no data at {data_file}")
        if not (MODELS_DIR / slug / "card.json").is_file():
            pytest.skip(f"{slug} model not trained yet")
        return evaluate_image_task(spec, str(default_data_dir()), MODELS_DIR)

    return evaluate


# ----------------------------------------------------------------------------- the web app
def write_tiny_image_model(models_dir, spec, plots: bool = True, export: bool = False):
    """An untrained baseline model for `spec` with a minimal valid card (and two small plots),
    saved like a training run would save it; its metrics are measured on a few random images.
    With `export`, also its checked model.tflite and the card's `export` block, as training writes."""
    import io

    import keras
    import numpy as np
    from PIL import Image

    from training import fit
    from training.build import BASELINE_RECIPE, make_image_classifier

    keras.utils.set_random_seed(0)
    model = make_image_classifier(spec, "baseline")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, *spec.input_shape)).astype(np.float32)
    y = rng.integers(0, len(spec.classes), 16)
    metrics = fit.classification_metrics(y, keras.ops.convert_to_numpy(model(x)), len(spec.classes))
    card = {"slug": spec.slug, "kind": spec.kind, "task": spec.to_dict(), "architecture": "baseline",
            "layers": fit.layer_table(model), "params_total": int(model.count_params()),
            "optimizer": {"name": "none"}, "training": {"epochs_run": 0, "untrained": True},
            "data": {"source": "random pixels (test fixture)", "counts": {"test": len(y)}},
            "metrics": metrics, "history": {},
            "baseline": {"recipe": BASELINE_RECIPE, "test_accuracy": metrics["test_accuracy"]},
            "command": f"python -m training {spec.slug}"}

    def write(folder):
        model.save(folder / "model.keras")
        if export:
            from training.export import export_model, file_sha256

            card["export"] = export_model(model, spec, folder, file_sha256(folder / "model.keras"), x,
                                          "16 random images")
        fit.write_card(folder, card)
        if plots:
            for name in ("training_curves.png", "confusion_matrix.png"):
                buf = io.BytesIO()
                Image.new("RGB", (8, 6), (200, 220, 240)).save(buf, "PNG")
                (folder / name).write_bytes(buf.getvalue())

    return fit.save_atomically(models_dir, spec.slug, write)


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory):
    """models/ for the web tests: tiny untrained mnist (served by LiteRT from its model.tflite),
    nyt_headlines and kieu (others missing)."""
    from app.tasks import KIEU, MNIST, NYT_HEADLINES

    d = tmp_path_factory.mktemp("models")
    write_tiny_image_model(d, MNIST, export=True)
    try:
        from training.textgen import write_tiny_text_model
    except ImportError:  # the text pipeline has not landed: the web tests cover images only
        return d
    for spec in (NYT_HEADLINES, KIEU):
        write_tiny_text_model(d, spec)
    return d


@pytest.fixture(scope="session")
def make_app():
    """create_app for tests: `make_app(models_dir, **config)` (a fresh app each call)."""
    from app import create_app

    def make(models_dir, **config):
        return create_app({"TESTING": True, "SECRET_KEY": "test", "MODELS_DIR": str(models_dir), **config})

    return make


@pytest.fixture
def text_client(app, client):
    """The test client, or a skip when the app's text models did not load."""
    from app.modelstore import get_store
    from app.tasks import BUILTIN_TASKS, TEXT

    with app.app_context():
        if not all(e.available for e in get_store() if e.spec.kind == TEXT and e.slug in BUILTIN_TASKS):
            pytest.skip("text models not available")
    return client


@pytest.fixture(scope="session")
def app(make_app, tiny_models_dir):
    """The web app over the tiny models, built once per session (loading models costs seconds)."""
    return make_app(tiny_models_dir)


@pytest.fixture
def client(app):
    """A Flask test client with fresh cookies."""
    return app.test_client()


# ----------------------------------------------------------------------------- awkward uploads
# Builders for every awkward upload, made in memory (no fixture files in the repository); the
# tables say what the project must answer: a 4xx status for refused uploads, the right picture
# for odd but valid ones. Tests reach them through the `uploads` fixture.
EXIF_ORIENTATION = 0x0112
# The transposition Pillow's exif_transpose applies for each orientation, and its inverse, which
# turns the upright picture into what a camera would have stored with that tag.
ORIENTATION_TO_UPRIGHT = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_INVERSE = {Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90,
            Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270}


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    """The bytes of `img` saved as `fmt`."""
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def noise_rgb(h: int = 40, w: int = 40, seed: int = 0) -> Image.Image:
    """A colourful RGB picture (valid for every colour task)."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def digit_like(h: int = 40, w: int = 40) -> Image.Image:
    """Dark ink on white paper: a valid drawing for the MNIST-style tasks."""
    arr = np.full((h, w), 255, np.uint8)
    arr[h // 3: 2 * h // 3, w // 2 - max(1, w // 5): w // 2 + max(1, w // 5)] = 0
    return Image.fromarray(arr)


def asymmetric() -> np.ndarray:
    """A 24×16 RGB picture with no symmetry: each of the 8 orientations looks different."""
    arr = np.zeros((24, 16, 3), np.uint8)
    arr[:12, :8] = (255, 0, 0)
    arr[:12, 8:] = (0, 255, 0)
    arr[12:, :8] = (0, 0, 255)
    arr[12:, 8:] = (255, 255, 0)
    arr[2:5, 2:14] = (255, 255, 255)  # a bar near the top, off-centre
    return arr


def with_orientation(upright: np.ndarray, orientation: int, fmt: str = "PNG") -> bytes:
    """What a camera stores for `upright` with EXIF orientation `orientation`."""
    img = Image.fromarray(upright)
    method = ORIENTATION_TO_UPRIGHT[orientation]
    if method is not None:
        img = img.transpose(_INVERSE.get(method, method))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    kw = {"quality": 95, "subsampling": 0} if fmt == "JPEG" else {}
    return encode(img, fmt, exif=exif.tobytes(), **kw)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A few hundred bytes whose header declares gigapixels (only the first rows are present)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 4, 9)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", rows)
            + _png_chunk(b"IEND", b""))


def png_just_over_limit() -> bytes:
    """A real, complete PNG of 9000×9000 blank pixels (81 MP: over the app's limit, under Pillow's)."""
    return encode(Image.new("1", (9000, 9000)), "PNG")


def animated_gif() -> tuple[bytes, np.ndarray]:
    """A three-frame GIF whose frames differ, and the first frame as RGB."""
    frames = [noise_rgb(32, 32, seed=s).quantize(colors=16, dither=Image.Dither.NONE) for s in range(3)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return data, np.asarray(frames[0].convert("RGB"))


def cmyk_jpeg() -> bytes:
    """A CMYK JPEG: left half pure red, right half pure blue."""
    arr = np.zeros((32, 32, 3), np.uint8)
    arr[:, :16] = (255, 0, 0)
    arr[:, 16:] = (0, 0, 255)
    return encode(Image.fromarray(arr).convert("CMYK"), "JPEG", quality=95)


def png16() -> bytes:
    """A 16-bit greyscale PNG: a left-to-right ramp over the whole 0–65535 range."""
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (32, 1))
    return encode(Image.fromarray(ramp), "PNG")


def palette_transparent() -> bytes:
    """A palette PNG whose index 0 is transparent: a black square on a transparent field."""
    img = Image.new("P", (32, 32), 0)
    img.putpalette([0, 255, 0] + [0, 0, 0] * 255)  # index 0 green (transparent), 1 black
    img.paste(1, (8, 8, 24, 24))
    return encode(img, "PNG", transparency=0)


def truncated(data: bytes) -> bytes:
    """The first half of a file."""
    return data[: len(data) // 2]


# name -> (bytes, file name, status): uploads the app must refuse with this 4xx, for every image task.
def refused_uploads() -> dict[str, tuple[bytes, str, int]]:
    """Every upload that must be refused, with the status it must get."""
    png, jpg = encode(noise_rgb(), "PNG"), encode(noise_rgb(), "JPEG", quality=90)
    return {
        "empty file": (b"", "empty.png", 400),
        "text named .png": ("Xin chào, đây là chữ, không phải ảnh.\n".encode(), "notes.png", 400),
        "truncated PNG": (truncated(png), "half.png", 400),
        "truncated JPEG": (truncated(jpg), "half.jpg", 400),
        "PNG header only": (png[:33], "header.png", 400),
        "decompression bomb": (png_bomb(), "bomb.png", 413),
        "81 megapixels": (png_just_over_limit(), "big.png", 413),
    }


@pytest.fixture(scope="session")
def uploads() -> types.SimpleNamespace:
    """The upload builders above (encode, noise_rgb, digit_like, cmyk_jpeg, refused_uploads...)."""
    return types.SimpleNamespace(**{name: globals()[name] for name in UPLOAD_BUILDERS})


UPLOAD_BUILDERS = ['EXIF_ORIENTATION', 'ORIENTATION_TO_UPRIGHT', 'encode', 'noise_rgb', 'digit_like', 'asymmetric', 'with_orientation', 'png_bomb', 'png_just_over_limit', 'animated_gif', 'cmyk_jpeg', 'png16', 'palette_transparent', 'truncated', 'refused_uploads']


def pytest_generate_tests(metafunc):
    """`refused_case`: one test per refused upload of `refused_uploads()`, as (data, name, status)."""
    if "refused_case" in metafunc.fixturenames:
        cases = refused_uploads()
        metafunc.parametrize("refused_case", [cases[k] for k in sorted(cases)], ids=sorted(cases))


# ----------------------------------------------------------------------------- small inputs shared by several test files
def _png_digit() -> bytes:
    """A '1' drawn in dark ink on white, as the canvas sends it."""
    img = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(img).line((140, 40, 140, 240), fill=0, width=20)
    return encode(img, "PNG")


@pytest.fixture(scope="session")
def png_digit():
    """A '1' drawn in dark ink on white, as the canvas sends it, as PNG bytes (the function)."""
    return _png_digit


def _digits_npz(path: Path, n_train: int = 64, n_test: int = 32, seed: int = 0) -> Path:
    """A plain npz shaped like mnist.npz: a bright bar whose row is the label."""
    rng = np.random.default_rng(seed)

    def make(n):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(y):
            x[i, 2 + 2 * label: 4 + 2 * label, 4:24] = 255
        return x, y

    (x_train, y_train), (x_test, y_test) = make(n_train), make(n_test)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
             class_names=np.array([str(i) for i in range(10)]))
    return path


@pytest.fixture(scope="session")
def digits_npz():
    """A plain npz shaped like mnist.npz (the function)."""
    return _digits_npz


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def snapshot():
    """Every file under a folder, path -> bytes (the function)."""
    return _snapshot


def _old_model(models: Path, slug: str) -> dict:
    folder = models / slug
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(os.urandom(2048))
    (folder / "card.json").write_text('{"slug": "%s", "old": true}' % slug, encoding="utf-8")
    return _snapshot(folder)


@pytest.fixture(scope="session")
def old_model():
    """Write a stand-in previous model for a slug and return its files' snapshot (the function)."""
    return _old_model


# ============================================================================ INSTRUCTOR fixtures
# (issue 14: the instructor console's tests; an app with its own instance folder per test)
INSTRUCTOR_PASSWORD = "correct horse battery"


@pytest.fixture
def instructor_app(make_app, tiny_models_dir, tmp_path):
    """A fresh app over a private copy of the tiny models, with its own instance folder (records,
    queue, data sets) under tmp_path; DATASET_SERVER_ROOT is tmp_path/server."""
    import shutil

    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models)
    (tmp_path / "server").mkdir()
    return make_app(models, INSTANCE_PATH=str(tmp_path / "instance"), DATASET_SERVER_ROOT=str(tmp_path / "server"),
                    MODELS_RELOAD_SECONDS=0)


@pytest.fixture
def add_instructor():
    """`add_instructor(app, name)`: create an account through the CLI (password typed twice)."""
    def add(app, name: str = "teacher", password: str = INSTRUCTOR_PASSWORD):
        result = app.test_cli_runner().invoke(args=["instructor", "add", name], input=f"{password}\n{password}\n")
        assert result.exit_code == 0, result.output
        return name
    return add


@pytest.fixture
def signed_in(instructor_app, add_instructor):
    """A test client signed in as instructor "teacher"."""
    add_instructor(instructor_app)
    client = instructor_app.test_client()
    response = client.post("/instructor/login", data={"name": "teacher", "password": INSTRUCTOR_PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return client


def make_zip(files: dict) -> bytes:
    """A zip archive in memory: {name: bytes} (a name ending in '/' is a folder)."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def png_bytes(colour=(200, 30, 30), size=(24, 24), mode="RGB") -> bytes:
    """A small PNG of one colour with a few noisy pixels."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(sum(colour) + size[0])
    arr = np.full((size[1], size[0], 3), colour, np.uint8)
    arr = np.clip(arr.astype(int) + rng.integers(-20, 20, arr.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, "PNG")
    return buf.getvalue()


INSTRUCTOR_RUN_ID = "a1b2c3d4e5f6"


@pytest.fixture(scope="session")
def tiny_run_folder(tmp_path_factory):
    """A finished lab run's folder as the engine writes it (model.keras, model.tflite, card.json,
    plots): an untrained model for a two-class (blue, red) 16×16 grey data set."""
    from app.tasks import IMAGE, ClassName, TaskSpec

    spec = TaskSpec(slug=INSTRUCTOR_RUN_ID, kind=IMAGE, title_en="shapes", title_vi="shapes", image_size=(16, 16),
                    colour="grey", classes=(ClassName("blue", "blue"), ClassName("red", "red")),
                    architecture="rows_cols", extra={"model": {"units": 8}})
    return write_tiny_image_model(tmp_path_factory.mktemp("runs"), spec, export=True)


@pytest.fixture
def finished_lab_run(instructor_app, tiny_run_folder):
    """A finished Run record on data set "shapes" with its folder in <instance>/runs/<id>/."""
    import shutil
    from pathlib import Path

    from app.records import FINISHED, Run, db

    shutil.copytree(tiny_run_folder, Path(instructor_app.instance_path) / "runs" / INSTRUCTOR_RUN_ID)
    with instructor_app.app_context():
        db.session.add(Run(id=INSTRUCTOR_RUN_ID, dataset="shapes", nickname="An", status=FINISHED,
                           metrics={"test_accuracy": 0.5, "confusion_matrix": [[1, 1], [1, 1]]},
                           history=[{"epoch": 1, "loss": 0.7, "accuracy": 0.5, "val_loss": 0.69, "val_accuracy": 0.5}],
                           recipe={"reading": "rows", "cell": "lstm", "units": 8, "layers": 1}, settings={"seed": 3}))
        db.session.commit()
    return INSTRUCTOR_RUN_ID


@pytest.fixture
def class_zip():
    """`class_zip(n=6, extra={})`: a zip of two class folders (red, blue) of n PNGs each."""
    def build(n: int = 6, extra: dict | None = None, wrapper: str = "shapes/") -> bytes:
        files = {f"{wrapper}red/{i}.png": png_bytes((220, 40, 40)) for i in range(n)}
        files.update({f"{wrapper}blue/{i}.png": png_bytes((40, 40, 220)) for i in range(n)})
        files.update(extra or {})
        return make_zip(files)
    return build


# ============================================================================ BENCH (lab pages)
# The lab bench's pages over a throw-away instance folder (records, queue, runs), and finished
# runs written the way a consumer writes them: a record plus <instance>/runs/<id>/ with a tiny
# exported model and its card.
@pytest.fixture(scope="module")
def lab_app(make_app, tiny_models_dir, tmp_path_factory):
    """The web app with the lab bench on a fresh instance folder (SQLite records and queue)."""
    instance = tmp_path_factory.mktemp("lab-instance")
    return make_app(tiny_models_dir, INSTANCE_PATH=str(instance), LSTMLAB_QUEUE_URL="",
                    LSTMLAB_DATABASE_URL=f"sqlite:///{instance / 'records.sqlite3'}")


@pytest.fixture(scope="module")
def finished_run(lab_app, tmp_path_factory):
    """`finished_run(**fields)` -> id of a finished MNIST run record with a served model folder."""
    import datetime as dt
    import json
    import shutil
    from pathlib import Path

    from app.records import FINISHED, Run, db
    from app.tasks import MNIST

    made = {}

    def make(**fields):
        if "model" not in made:  # one tiny exported model, copied per run
            made["model"] = write_tiny_image_model(tmp_path_factory.mktemp("run-model"), MNIST, export=True)
        now = dt.datetime.now(dt.timezone.utc)
        card = json.loads((made["model"] / "card.json").read_text())
        history = fields.pop("history", [{"epoch": i, "loss": 1.0 / i, "accuracy": 0.8 + i / 100, "val_loss": 1.2 / i,
                                          "val_accuracy": 0.78 + i / 100, "seconds": 10.0} for i in (1, 2, 3)])
        values = {"dataset": "mnist", "recipe": {"reading": "rows", "cell": "lstm", "units": 64, "layers": 2,
                                                 "bidirectional": False, "dropout": 0.2},
                  "settings": {"epochs": 3, "batch_size": 128, "learning_rate": 0.001, "subset": 0, "seed": 1},
                  "nickname": "", "owner": "someone-else", "client": "127.0.0.1", "status": FINISHED,
                  "created_at": now - dt.timedelta(seconds=50), "started_at": now - dt.timedelta(seconds=45),
                  "finished_at": now, "history": history, "progress": {}, "params": card["params_total"],
                  "seconds": 30.0, "metrics": card["metrics"]}
        values.update(fields)
        with lab_app.app_context():
            run = Run(**values)
            db.session.add(run)
            db.session.commit()
            run_id = run.id
        folder = Path(lab_app.instance_path) / "runs" / run_id
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(made["model"], folder)
        return run_id

    return make


# Browser tests of the lab bench and the instructor console: Debian's chromium through Playwright.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def chromium():
    """A function launching Debian's chromium through Playwright (extra command-line flags
    allowed), each browser closed at the module's end; skips where chromium or playwright is
    absent, fails instead in CI (CI=true), where .ci/run installs both."""
    import os
    import shutil
    from pathlib import Path

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    path = shutil.which("chromium") or "/usr/bin/chromium"
    missing = "the playwright package is not installed" if sync_playwright is None else (
        "chromium is not installed" if not Path(path).is_file() else "")
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} (CI must run the browser tests)")
        pytest.skip(missing)
    (Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots").mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        launched = []

        def launch(*extra_args: str):
            launched.append(p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS + list(extra_args),
                                              headless=True))
            return launched[-1]

        yield launch
        for b in launched:
            b.close()


@pytest.fixture(scope="module")
def browser(chromium):
    """One chromium for the module's tests (each test opens its own context)."""
    return chromium()


def new_page(browser, problems: list):
    """A page that appends page errors and Content-Security-Policy refusals to `problems`."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None)
    return page


# ============================================================================ ENGINE (lab queue, real processes)
@pytest.fixture(scope="session", autouse=True)
def lab_instance_for_session(tmp_path_factory):
    """Apps built without INSTANCE_PATH keep their records and queue in a temporary folder."""
    import os

    previous = os.environ.get("LSTMLAB_INSTANCE")
    os.environ["LSTMLAB_INSTANCE"] = str(tmp_path_factory.mktemp("instance"))
    yield
    if previous is None:
        os.environ.pop("LSTMLAB_INSTANCE", None)
    else:
        os.environ["LSTMLAB_INSTANCE"] = previous


def mnist_data_or_skip():
    """The MNIST file the lab's end-to-end runs train on, or a clean skip."""
    from app.config import default_data_dir
    from app.tasks import MNIST

    path = default_data_dir() / MNIST.data_path
    if not path.is_file():
        pytest.skip(f"no data at {path}")
    return path


class LabStack:
    """Real processes for the lab bench's tests: gunicorn (web), Huey consumers, redis-server.
    Every process is started here and stopped by its pid at teardown."""

    def __init__(self, tmp_path):
        import os
        import secrets
        import sys
        from pathlib import Path

        self.root = Path(__file__).resolve().parent.parent
        self.python = sys.executable
        self.instance = tmp_path / "instance"
        self.logs = tmp_path / "logs"
        self.logs.mkdir()
        self.procs: list = []
        self.web_url = None
        self.web_proc = None
        self.env = {**os.environ, "LSTMLAB_INSTANCE": str(self.instance), "TF_CPP_MIN_LOG_LEVEL": "3",
                    "FLASK_SECRET_KEY": secrets.token_hex(16), "LAB_PROGRESS_SECONDS": "1", "LAB_SSE_POLL": "0.2",
                    "LAB_TEST_SUBSET": "500", "LSTMLAB_QUEUE_URL": "", "LSTMLAB_DATABASE_URL": "",
                    "LSTMLAB_TRAIN_WORKERS": "0", "WEB_CONCURRENCY": "1", "PYTHONUNBUFFERED": "1",
                    # the engine's tests are not about the bench's time estimate (test_lab_recipes.py is)
                    "FLASK_LAB_MAX_SECONDS": str(10**15)}

    # processes ------------------------------------------------------------------------
    def start(self, args: list[str], name: str, **env):
        """Start a process with the stack's environment (+ `env`), output to logs/<name>.log."""
        import subprocess

        log = open(self.logs / f"{name}.log", "ab")
        proc = subprocess.Popen(args, cwd=self.root, env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        proc.lab_name = name
        self.procs.append(proc)
        return proc

    def consumer(self, name: str = "consumer", **env):
        """A Huey consumer process (`python -m app.lab`, what `make worker` runs)."""
        return self.start([self.python, "-m", "app.lab"], name, **env)

    def web(self, name: str = "web", **env):
        """gunicorn serving wsgi:app on a free loopback port; waits for /healthz."""
        port = free_port()
        proc = self.start([self.python, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], name,
                          LSTMLAB_BIND=f"127.0.0.1:{port}", **env)
        self.web_url, self.web_proc = f"http://127.0.0.1:{port}", proc
        self.wait_for(lambda: self._healthy(), 60, f"{name} did not answer /healthz", proc)
        return proc

    def redis(self):
        """redis-server on a free loopback port (no persistence); returns its URL."""
        import shutil
        import os

        exe = shutil.which("redis-server")
        if not exe:
            if os.environ.get("CI") == "true":
                pytest.fail("redis-server is missing (CI installs it: .ci/run)")
            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        port = free_port()
        proc = self.start([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                          "redis")
        import redis as redis_client

        client = redis_client.Redis(host="127.0.0.1", port=port)
        self.wait_for(lambda: _ping(client), 20, "redis-server did not start", proc)
        return f"redis://127.0.0.1:{port}/0"

    def stop(self, proc, sig=None, wait: float = 20):
        """Stop one process (and its session's children) by pid: SIGTERM, or `sig`; wait up to
        `wait` seconds for it to exit, then SIGKILL."""
        import time

        self._signal(proc, sig)
        self._reap(proc, time.monotonic() + wait)

    def close(self, wait: float = 3):
        """Stop every process this stack started: SIGTERM to all at once, then SIGKILL whatever
        has not exited after `wait` seconds (a consumer logs "Consumer exiting." at once; what
        follows is the interpreter unloading TensorFlow, seconds a teardown need not wait for)."""
        import os
        import signal
        import time

        live = [p for p in reversed(self.procs) if p.poll() is None]
        spawned = [pid for p in live for pid in self.children(p.pid, b"app.lab")]  # gunicorn's own consumers
        for proc in live:
            self._signal(proc)
        deadline = time.monotonic() + wait
        for proc in live:
            self._reap(proc, deadline)
        for pid in spawned:  # in their own session: gunicorn stops them itself, this is in case it could not
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    @staticmethod
    def _signal(proc, sig=None):
        import os
        import signal

        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig or signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _reap(self, proc, deadline: float):
        import os
        import signal
        import subprocess
        import time

        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
        if proc is self.web_proc:
            self.web_proc = None

    @staticmethod
    def children(pid: int, marker: bytes = b"") -> list[int]:
        """Pids of the live child processes of `pid` whose command line contains `marker`."""
        from pathlib import Path

        out = []
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                text = status.read_text()
                cmdline = (status.parent / "cmdline").read_bytes()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
            if int(fields["PPid"].strip()) == pid and marker in cmdline and "Z" not in fields["State"]:
                out.append(int(status.parent.name))
        return out

    def log(self, name: str) -> str:
        """A process's output so far."""
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for(self, check, seconds: float, message: str, proc=None):
        """Poll `check()` until it returns something truthy; fail with `message` (and the log)."""
        import time

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            if proc is not None and proc.poll() is not None:
                pytest.fail(f"{message}: {proc.lab_name} exited\n{self.log(proc.lab_name)[-3000:]}")
            time.sleep(0.25)
        pytest.fail(f"{message} (after {seconds:.0f} s)\n{self.logs_tail()}")

    def logs_tail(self, chars: int = 2000) -> str:
        """The last `chars` of every started process's output, each under its name."""
        return "\n".join(f"--- {p.lab_name}\n{self.log(p.lab_name)[-chars:]}" for p in self.procs)

    # HTTP -------------------------------------------------------------------------------
    def _healthy(self) -> bool:
        import requests

        try:
            return requests.get(self.web_url + "/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def session(self):
        """A requests session: one browser (its own lab_owner cookie)."""
        import requests

        return requests.Session()

    def submit(self, session, **payload):
        """POST /api/v1/runs; returns the response."""
        body = {"dataset": "mnist", "recipe": {"units": 8, "layers": 1}, "epochs": 1, "subset": 256,
                "batch_size": 64, **payload}
        return session.post(self.web_url + "/api/v1/runs", json=body, timeout=30)

    def run(self, run_id: str) -> dict:
        """GET /api/v1/runs/<id>."""
        import requests

        return requests.get(f"{self.web_url}/api/v1/runs/{run_id}", timeout=10).json()

    def wait_status(self, run_id: str, statuses, seconds: float = 150) -> dict:
        """Poll a run until its status is one of `statuses`; returns the run."""
        statuses = (statuses,) if isinstance(statuses, str) else tuple(statuses)
        return self.wait_for(lambda: (lambda r: r if r["status"] in statuses else None)(self.run(run_id)),
                             seconds, f"run {run_id} never reached {statuses}")


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ping(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that used `lab_stack` reports its processes' output (gunicorn, consumers,
    redis) beside the failure, read before the fixture stops them and removes their folder."""
    report = yield
    stack = getattr(item, "funcargs", {}).get("lab_stack")
    if report.when == "call" and report.failed and isinstance(stack, LabStack):
        report.sections.append(("lab stack logs", stack.logs_tail(4000)))
    return report


@pytest.fixture
def lab_stack():
    """A LabStack on a fresh instance folder; every process it started is stopped afterwards.
    Its folder is its own (not pytest's tmp_path: concurrent pytest sessions prune those)."""
    import shutil
    import tempfile
    from pathlib import Path

    mnist_data_or_skip()
    folder = Path(tempfile.mkdtemp(prefix="lstmlab-lab-stack-"))
    stack = LabStack(folder)
    yield stack
    stack.close()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def mnist_png():
    """`mnist_png(i)` -> (PNG bytes, label) of MNIST test digit i."""
    import io

    import numpy as np
    from PIL import Image

    path = mnist_data_or_skip()

    def make(index: int = 0) -> tuple[bytes, int]:
        with np.load(path) as data:
            x, y = data["x_test"][index], int(data["y_test"][index])
        buf = io.BytesIO()
        Image.fromarray(np.asarray(x, np.uint8).reshape(28, 28), "L").save(buf, "PNG")
        return buf.getvalue(), y

    return make
