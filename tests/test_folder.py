"""Instructor image folders: `python -m training folder` turns a folder of classes into a served task.

The folder trees are generated here in tmp_path: coloured shapes, plus the files an instructor's
folder really holds (a damaged JPEG, a text file named .jpg, an RGBA PNG, a greyscale JPEG, a
photo whose EXIF tag says it must be rotated).
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from app.imaging import bytes_to_array
from app.tasks import BUILTIN_TASKS, discover_tasks, get_task
from training import fit
from training import data as data_module
from training import imagefolder
from training.__main__ import main
from training.data import load_image_data
from training.dataset import DataError
from app.splits import stratified_split
from training.imagefolder import load_folder

SHAPES = {"circle": (220, 30, 30), "square": (30, 160, 40), "triangle": (30, 60, 220)}
TINY = ["--quick", "--epochs", "1", "--baseline-epochs", "0", "--verbose", "0",
        "--model-kwargs", '{"units": 8}']


@pytest.fixture(autouse=True)
def private_runs(tmp_path, monkeypatch):
    """Checkpoints and decode caches go to tmp_path, never to the project's runs/."""
    monkeypatch.setattr(fit, "RUNS_DIR", tmp_path / "runs")
    monkeypatch.setattr(data_module, "CACHE_DIR", tmp_path / "runs" / "cache")


def shape_image(kind: str, rng: np.random.Generator, size: int = 40) -> Image.Image:
    """One coloured shape at a random place and size on a light background."""
    img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(200, 256, 3)))
    d = ImageDraw.Draw(img)
    r = int(rng.integers(size // 5, size // 3))
    cx, cy = (int(v) for v in rng.integers(r, size - r, 2))
    box = (cx - r, cy - r, cx + r, cy + r)
    if kind == "circle":
        d.ellipse(box, fill=SHAPES[kind])
    elif kind == "square":
        d.rectangle(box, fill=SHAPES[kind])
    else:
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=SHAPES[kind])
    return img


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92, **kw)
    return buf.getvalue()


def write_classes(root: Path, n: int, seed: int, classes=tuple(SHAPES)) -> None:
    """`n` shape images per class under root/<class>/."""
    rng = np.random.default_rng(seed)
    for cls in classes:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / cls / f"{cls}_{i:03d}.jpg").write_bytes(jpeg_bytes(shape_image(cls, rng)))


def write_awkward_files(folder: Path) -> dict:
    """The files real folders hold; returns {file name: readable?}."""
    rng = np.random.default_rng(7)
    good = jpeg_bytes(shape_image(folder.name, rng))
    (folder / "zz_damaged.jpg").write_bytes(good[: len(good) // 2])  # truncated mid-scan
    (folder / "zz_notes.jpg").write_text("not a picture, just notes", encoding="utf-8")
    rgba = shape_image(folder.name, rng).convert("RGBA")
    alpha = Image.new("L", rgba.size, 0)
    ImageDraw.Draw(alpha).rectangle((5, 5, 34, 34), fill=255)  # transparent border
    rgba.putalpha(alpha)
    rgba.save(folder / "zz_rgba.png")
    (folder / "zz_grey.jpg").write_bytes(jpeg_bytes(shape_image(folder.name, rng).convert("L")))
    # Stored sideways (red left, blue right) with EXIF orientation 8: shown upright, blue on top.
    side = Image.new("RGB", (40, 20), (220, 30, 30))
    ImageDraw.Draw(side).rectangle((20, 0, 39, 19), fill=(30, 60, 220))
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90° counter-clockwise to display: the left half goes to the bottom
    (folder / "zz_exif.jpg").write_bytes(jpeg_bytes(side, exif=exif.tobytes()))
    return {"zz_damaged.jpg": False, "zz_notes.jpg": False, "zz_rgba.png": True,
            "zz_grey.jpg": True, "zz_exif.jpg": True}


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory) -> Path:
    """Three classes of 14 shapes each, with the awkward files in circle/ (read-only in tests)."""
    root = tmp_path_factory.mktemp("folder") / "shapes"
    write_classes(root, 14, seed=1)
    write_awkward_files(root / "circle")
    return root


@pytest.fixture(scope="module")
def shapes_models(shapes_dir, tmp_path_factory) -> Path:
    """One quick model trained from `shapes_dir`, shared by the card, evaluate and app tests."""
    models = tmp_path_factory.mktemp("models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fit, "RUNS_DIR", models.parent / "runs-shapes")
        assert train_folder(shapes_dir, models, "shapes", "--baseline-epochs", "1", "--colour", "rgb",
                            "--title-vi", "Hình khối", "--title-en", "Shapes") == 0
    return models


def run(argv: list[str]) -> int:
    return main(argv)


def train_folder(data_dir: Path, models_dir: Path, slug="shapes", *extra) -> int:
    return run(["folder", "--slug", slug, "--data-dir", str(data_dir), "--image-size", "16",
                "--models-dir", str(models_dir), *TINY, *extra])


# ----------------------------------------------------------------------------- loading
def test_load_folder_uses_serving_preprocessing_and_counts_bad_files(tmp_path):
    root = tmp_path / "layout"
    write_classes(root / "train", 3, seed=2)
    write_classes(root / "test", 2, seed=3)
    expected = write_awkward_files(root / "train" / "circle")
    spec = BUILTIN_TASKS["cifar10"].with_overrides(slug="t", classes=(), image_size=(16, 16))
    data = load_folder(root, spec)
    assert data.class_names == sorted(SHAPES)
    assert data.split["method"] == "folders"
    # train/ is read in folder order, files sorted: each array is exactly what an upload gives
    files = [f for c in sorted(SHAPES) for f in sorted((root / "train" / c).iterdir())
             if expected.get(f.name, True)]
    assert len(files) == len(data.y_train) == 3 * 3 + 3
    for f, x in zip(files, data.x_train):
        np.testing.assert_array_equal(x, bytes_to_array(f.read_bytes(), spec))
    assert len(data.y_test) == 3 * 2
    assert data.skipped["count"] == 2
    assert sorted(Path(s["file"]).name for s in data.skipped["files"]) == ["zz_damaged.jpg", "zz_notes.jpg"]
    assert sum(data.skipped["by_reason"].values()) == 2
    # EXIF orientation applied: the sideways picture is upright, blue above red on every column
    exif = data.x_train[[f.name for f in files].index("zz_exif.jpg")].astype(int)
    for col in (3, 12):
        assert exif[2, col, 2] > 150 and exif[2, col, 0] < 100
        assert exif[13, col, 0] > 150 and exif[13, col, 2] < 100
    # alpha flattened onto white: the transparent border of the RGBA picture is white
    rgba = data.x_train[[f.name for f in files].index("zz_rgba.png")]
    assert rgba[0, 0].min() > 240


def test_stratified_split_is_fixed_and_keeps_every_class():
    y = np.repeat([0, 1, 2], [50, 10, 3])
    tr, te = stratified_split(y, 0.2, seed=5)
    tr2, te2 = stratified_split(y, 0.2, seed=5)
    np.testing.assert_array_equal(te, te2)
    np.testing.assert_array_equal(tr, tr2)
    assert not set(tr) & set(te) and len(tr) + len(te) == len(y)
    assert np.bincount(y[te]).tolist() == [10, 2, 1]


def test_builtin_folder_task_maps_folder_names_to_its_classes(tmp_path, monkeypatch):
    """`python -m training cats_dogs --data DIR` with PetImages' Cat/ and Dog/ folders."""
    root = tmp_path / "PetImages"
    rng = np.random.default_rng(0)
    for name in ("Dog", "Cat"):
        (root / name).mkdir(parents=True)
        for i in range(4):
            shape_image("circle" if name == "Cat" else "square", rng, 80).save(root / name / f"{i}.jpg")
    (root / "Cat" / "Thumbs.db").write_bytes(b"\x00\x01 not an image")
    (root / "Dog" / "clip.mp4").write_bytes(b"\0" * 300_000)
    monkeypatch.setattr(imagefolder, "MAX_FILE_BYTES", 200_000)  # the clip is "too large" to read
    spec = BUILTIN_TASKS["cats_dogs"]
    data = load_image_data(spec, root)
    assert data.x_train.shape[1:] == spec.input_shape
    assert len(data.y_train) + len(data.y_test) == 8 and data.skipped["count"] == 2
    assert any("larger than" in reason for reason in data.skipped["by_reason"])
    assert set(data.y_test.tolist()) == {0, 1}  # stratified: both classes held out
    # label 0 is the spec's "cat", whatever the folder order or case
    cat = bytes_to_array((root / "Cat" / "0.jpg").read_bytes(), spec)
    both = np.concatenate([data.x_train, data.x_test])
    labels = np.concatenate([data.y_train, data.y_test])
    assert labels[[np.array_equal(x, cat) for x in both].index(True)] == 0


def test_vietnamese_class_folders_match_in_any_unicode_form(tmp_path):
    """macOS writes folder names decomposed (NFD); the task's class names are composed (NFC)."""
    import unicodedata

    from training.cli import folder_parser
    from training.folder import folder_spec
    from training.imagefolder import list_classes

    root = tmp_path / "vi"
    rng = np.random.default_rng(0)
    for split, form in (("train", "NFD"), ("test", "NFC")):
        for name, kind in (("Mèo", "circle"), ("Chó", "square")):
            folder = root / split / unicodedata.normalize(form, name)
            folder.mkdir(parents=True)
            for i in range(2):
                shape_image(kind, rng).save(folder / f"{i}.png")
    args = folder_parser().parse_args(["--slug", "vi", "--data-dir", str(root), "--image-size", "16"])
    spec = folder_spec(args, list_classes(root))
    assert all(unicodedata.is_normalized("NFC", n) for n in spec.class_names)
    data = load_folder(root, spec)
    assert len(data.y_train) == len(data.y_test) == 4
    assert sorted(data.y_test.tolist()) == [0, 0, 1, 1]


# ----------------------------------------------------------------------------- training and serving
def test_quick_folder_run_writes_complete_card_and_is_discovered(shapes_dir, shapes_models):
    models = shapes_models
    folder = models / "shapes"
    for name in ("model.keras", "card.json", "training_curves.png", "confusion_matrix.png"):
        assert (folder / name).stat().st_size > 0, name
    card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    assert card["task"]["classes"] == [{"en": c, "vi": c} for c in sorted(SHAPES)]
    assert card["task"]["title_vi"] == "Hình khối" and card["task"]["image_size"] == [16, 16]
    assert card["architecture"] == "rows_cols"  # small picture: rows and columns
    data = card["data"]
    assert data["skipped_files"]["count"] == 2
    assert data["split"] == {"method": "stratified", "test_fraction": 0.2, "seed": data["split"]["seed"]}
    assert data["class_imbalance"]["train"].keys() == SHAPES.keys()
    assert data["counts"]["train"] + data["counts"]["validation"] + data["counts"]["test"] == 3 * 14 + 3
    m = card["metrics"]
    assert 0.0 <= m["test_accuracy"] <= 1.0 and len(m["per_class_accuracy"]) == 3
    assert np.asarray(m["confusion_matrix"]).sum() == m["test_count"] == data["counts"]["test"]
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        assert len(card["history"][key]) == 1
    assert card["layers"] and card["baseline"]["test_accuracy"] >= 0
    assert card["versions"]["keras"] and card["git_commit"]
    # the app's registry serves it from the card alone
    spec = discover_tasks(models)["shapes"]
    assert spec.class_names == sorted(SHAPES) and spec.input_shape == (16, 16, 3)
    assert get_task("shapes", models) == spec
    # `evaluate` rebuilds the same split and reproduces the card's accuracy
    assert run(["evaluate", "shapes", "--data", str(shapes_dir), "--models-dir", str(models)]) == 0


def test_train_test_layout_grey(tmp_path):
    root = tmp_path / "tt"
    write_classes(root / "train", 6, seed=4, classes=("circle", "square"))
    write_classes(root / "test", 3, seed=5, classes=("circle", "square"))
    models = tmp_path / "models"
    assert train_folder(root, models, "two_shapes", "--colour", "grey") == 0
    card = json.loads((models / "two_shapes" / "card.json").read_text(encoding="utf-8"))
    assert card["data"]["split"] == {"method": "folders", "train": "train", "test": "test"}
    assert card["data"]["counts"]["test"] == 6 and card["input"]["shape"] == [16, 16, 1]
    assert card["data"]["skipped_files"]["count"] == 0
    assert card["data"]["class_imbalance"]["test"] == {"circle": 3, "square": 3}
    assert run(["evaluate", "two_shapes", "--data", str(root), "--models-dir", str(models)]) == 0


@pytest.mark.parametrize("flags, architecture, shape", [
    ([], "renet", (64, 64, 3)),
    (["--image-size", "28", "--colour", "grey"], "rows_cols", (28, 28, 1)),
    (["--image-size", "16"], "rows_cols", (16, 16, 3)),
    (["--image-size", "48", "--architecture", "rows_cols"], "rows_cols", (48, 48, 3)),
])
def test_folder_spec_defaults(shapes_dir, flags, architecture, shape):
    """renet for colour pictures of 32 px and more, rows and columns for small or grey ones."""
    from training.cli import folder_parser
    from training.folder import folder_spec

    args = folder_parser().parse_args(["--slug", "s", "--data-dir", str(shapes_dir), *flags])
    spec = folder_spec(args, sorted(SHAPES))
    assert spec.architecture == architecture and spec.input_shape == shape
    assert spec.resize == "crop" and spec.extra["split"]["test_fraction"] == 0.2
    assert spec.title_vi and spec.summary_vi and spec.class_names == sorted(SHAPES)


@pytest.mark.parametrize("size", [32, 64])
def test_a_colour_folder_task_defaults_to_the_8x8_patch_grid(shapes_dir, size):
    """The coarse grid the shipped ReNets use (fewer sequential steps), whatever the picture size."""
    from training.build import make_image_classifier
    from training.cli import folder_parser
    from training.folder import folder_spec

    args = folder_parser().parse_args(["--slug", "s", "--data-dir", str(shapes_dir), "--image-size", str(size)])
    spec = folder_spec(args, sorted(SHAPES))
    assert spec.architecture == "renet" and spec.extra["model"]["patch"] == size // 8
    model = make_image_classifier(spec, "renet", **spec.extra["model"])
    assert tuple(model.get_layer("patches").output.shape[1:3]) == (8, 8)


def test_builtin_slug_keeps_its_served_input(shapes_dir, capsys):
    err = refused(["folder", "--slug", "cats_dogs", "--data-dir", str(shapes_dir),
                   "--image-size", "32", *TINY], capsys)
    assert "64" in err


def test_created_app_serves_folder_task(shapes_models):
    """The trained folder is served by the app factory with no other change: listed with its
    classes, and an upload is classified into one of them."""
    create_app = getattr(pytest.importorskip("app"), "create_app", None)
    if create_app is None:
        pytest.skip("app.create_app is not written yet")
    client = create_app({"TESTING": True, "MODELS_DIR": str(shapes_models)}).test_client()
    listed = {t["slug"]: t for t in client.get("/api/v1/tasks").get_json()["tasks"]}
    assert [c["en"] for c in listed["shapes"]["classes"]] == sorted(SHAPES)
    assert listed["shapes"]["input_shape"] == [16, 16, 3]
    upload = jpeg_bytes(shape_image("triangle", np.random.default_rng(3)))
    answer = client.post("/api/v1/tasks/shapes/predict?lang=en",
                         data={"file": (io.BytesIO(upload), "t.jpg")}, content_type="multipart/form-data")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    body = answer.get_json()
    assert body["prediction"]["label_en"] in SHAPES and body["input_shape"] == [16, 16, 3]
    bad = client.post("/api/v1/tasks/shapes/predict", data={"file": (io.BytesIO(b"text"), "t.jpg")},
                      content_type="multipart/form-data")
    assert bad.status_code == 400


# ----------------------------------------------------------------------------- refusals
def refused(argv, capsys) -> str:
    """Run a command that must be refused; a private --models-dir in case it is not."""
    models = Path(argv[argv.index("--data-dir") + 1]).parent / "refused-models"
    assert run(argv + ["--models-dir", str(models)]) == 2
    assert not models.exists()
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_refuses_a_single_class(tmp_path, capsys):
    write_classes(tmp_path / "one", 3, seed=0, classes=("circle",))
    err = refused(["folder", "--slug", "one", "--data-dir", str(tmp_path / "one"), *TINY], capsys)
    assert "at least two classes" in err and "circle" in err


def test_refuses_an_empty_class(tmp_path, capsys):
    root = tmp_path / "holey"
    write_classes(root, 3, seed=0, classes=("circle", "square"))
    (root / "triangle").mkdir()
    err = refused(["folder", "--slug", "holey", "--data-dir", str(root), *TINY], capsys)
    assert "triangle" in err and "no readable image" in err and "empty" in err


def test_refuses_a_class_of_unreadable_files(tmp_path, capsys):
    root = tmp_path / "junk"
    write_classes(root, 3, seed=0, classes=("circle", "square"))
    shutil.rmtree(root / "square")
    (root / "square").mkdir()
    (root / "square" / "a.jpg").write_text("text", encoding="utf-8")
    err = refused(["folder", "--slug", "junk", "--data-dir", str(root), *TINY], capsys)
    assert "square" in err and "1 file(s) skipped" in err


def test_refuses_a_missing_folder(tmp_path, capsys):
    err = refused(["folder", "--slug", "gone", "--data-dir", str(tmp_path / "nowhere"), *TINY], capsys)
    assert "nowhere" in err and "no such folder" in err


@pytest.mark.parametrize("slug, words", [("Bad-Slug", "lowercase"), ("mnist", "built-in"),
                                         ("../x", "lowercase")])
def test_refuses_bad_slugs(shapes_dir, capsys, slug, words):
    err = refused(["folder", "--slug", slug, "--data-dir", str(shapes_dir), *TINY], capsys)
    assert words in err


def test_missing_folder_is_a_data_error():
    with pytest.raises(DataError, match="no such folder"):
        load_folder(Path("/nonexistent/instructor"), BUILTIN_TASKS["cats_dogs"])


# ----------------------------------------------------------------------------- shipped models
@pytest.mark.slow
@pytest.mark.parametrize("slug", ["cats_dogs", "faces_gender"])
def test_evaluate_reproduces_shipped_card(slug, shipped_evaluation):
    """The shipped model's card accuracy, recomputed from ../shared/data (2.5k test images)."""
    result = shipped_evaluation(slug)
    assert result["test_count"] == result["card_test_count"]
    assert abs(result["difference"]) <= 0.002
