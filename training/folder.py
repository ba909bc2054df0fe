"""An instructor's folder of images becomes a trained, served task: `python -m training folder`.

    python -m training folder --slug flowers --data-dir ~/flowers --image-size 64 --colour rgb \
        --title-vi "Các loài hoa" --title-en "Flowers"

DIR holds one sub-folder per class (`DIR/<class>/*.jpg`), or `DIR/train/<class>/` and
`DIR/test/<class>/` (and optionally `DIR/val/<class>/`, a validation set fixed with the data, as
the instructor console saves it; without it each run holds out part of train with its seed).
Without a test folder a stratified split is made with a fixed seed (recorded in the task's
`extra["split"]` and on the card), so `python -m training evaluate` rebuilds exactly the same test
set. Class names are the sub-folder names in alphanumeric order, the convention of
`keras.utils.image_dataset_from_directory`.

Why not `keras.utils.image_dataset_from_directory`: its pipeline decodes with
`tf.image.decode_image` and resizes with `tf.image.resize`, which is not what the web app does with
an upload (no EXIF orientation, transparency not flattened onto white, a different resize filter).
Preprocessing must be the same function at training and serving, so every file here goes through
`app.imaging.decode_image` + `image_to_array`, exactly as an upload does (`app.imagefile`: PNG,
JPEG, GIF, BMP and WebP only, the same size limits; an EPS file never reaches Ghostscript). It also
stops the whole run at the first corrupt or mislabelled file (a text file named .jpg) instead of
counting and skipping it, and silently ignores formats outside bmp/gif/jpeg/png (WebP, TIFF) that
Pillow reads and the app accepts.

The trained model's `card.json` carries the whole `TaskSpec` (`card["task"]`), so the app
discovers and serves the new task with no code change.
"""

from __future__ import annotations

import sys
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np

from app.errors import InvalidInput
from app.imagefile import read_source
from app.imaging import decode_image, image_to_array
from app.modelstore import SLUG_RE
from app.tasks import BUILTIN_TASKS, IMAGE, ClassName, TaskSpec
from training.data import DataError, ImageData
from training.fit import class_imbalance

SPLIT_SEED = 20261128  # fixed: the same folder always gives the same test set
TEST_FRACTION = 0.2
FOLDER_BUILTINS = ("cats_dogs", "faces_gender")  # built-in tasks whose data is an image folder
MAX_FILE_BYTES = 64 * 1024 * 1024  # a video or archive left in a class folder is not read whole
MAX_LISTED_SKIPS = 200  # file names listed on the card; the counts always cover all of them


# ----------------------------------------------------------------------------- folder layout
def _subdirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def _files(folder: Path) -> list[Path]:
    """Every non-hidden file below a class folder, in a stable order."""
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def folder_layout(root: Path) -> tuple[Path, Path | None, Path | None]:
    """(train folder, test folder or None, fixed validation folder `val/` or None) for an
    instructor's folder, or `DataError`."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (expected one sub-folder of images per class, "
                        f"or train/ and test/ each holding them)")
    if (root / "train").is_dir():
        test, val = root / "test", root / "val"
        return root / "train", test if test.is_dir() else None, val if val.is_dir() else None
    return root, None, None


def list_classes(root: Path) -> list[str]:
    """Class names (sub-folder names, alphanumeric order); refuse fewer than two classes."""
    train_dir = folder_layout(root)[0]
    names = [p.name for p in _subdirs(train_dir)]
    if len(names) < 2:
        found = f"only {names[0]!r}" if names else "none"
        raise DataError(f"{train_dir}: a classifier needs at least two classes, one sub-folder of "
                        f"images per class; found {len(names)} ({found})")
    return names


# ----------------------------------------------------------------------------- loading
def _read_class(folder: Path, spec: TaskSpec, root: Path, skipped: list) -> list[np.ndarray]:
    """Decode every file of one class folder the way the app decodes an upload."""
    arrays = []
    for f in _files(folder):
        try:  # app.imagefile: the allow-listed formats and size limits of an upload
            arrays.append(image_to_array(decode_image(read_source(f, MAX_FILE_BYTES)), spec))
        except InvalidInput as exc:  # also unreadable (permissions, I/O error) or oversized files
            skipped.append((str(f.relative_to(root)), exc.en))
    return arrays


def _key(name: str) -> str:
    """A class folder's name for matching: NFC (macOS writes NFD names) and case-folded."""
    return unicodedata.normalize("NFC", name).casefold()


def _label_map(found: list[str], spec: TaskSpec, where: Path) -> list[int]:
    """Label index of each found class folder: the spec's order when it names classes (folder
    names matched without regard to case, e.g. PetImages' Cat/Dog), else the folder order."""
    if not spec.classes:
        return list(range(len(found)))
    wanted = {_key(c.en): i for i, c in enumerate(spec.classes)}
    unknown = [n for n in found if _key(n) not in wanted]
    missing = sorted(set(wanted) - {_key(n) for n in found})
    if unknown or missing:
        raise DataError(f"{where}: task {spec.slug} expects one sub-folder per class "
                        f"{spec.class_names}; unknown folders {unknown}, missing {missing}")
    return [wanted[_key(n)] for n in found]


def _read_split(split_dir: Path, spec: TaskSpec, root: Path, skipped: list, classes: list[str]):
    """x, y for one folder of class sub-folders; refuses a class with no readable image."""
    found = [p.name for p in _subdirs(split_dir)]
    if sorted(map(_key, found)) != sorted(map(_key, classes)):
        raise DataError(f"{split_dir}: class folders {found} differ from {classes} in the training folder")
    labels = _label_map(found, spec, split_dir)
    xs, ys = [], []
    for name, label in zip(found, labels):
        before = len(skipped)
        arrays = _read_class(split_dir / name, spec, root, skipped)
        if not arrays:
            bad = len(skipped) - before
            raise DataError(f"{split_dir / name}: class {name!r} has no readable image"
                            + (f" ({bad} file(s) skipped as unreadable)" if bad else " (the folder is empty)"))
        xs.extend(arrays)
        ys.extend([label] * len(arrays))
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test): `fraction` of every class to test (at least one when the class
    has two images or more), the rest to train."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_test = int(round(len(idx) * fraction))
        n_test = min(max(n_test, 1 if len(idx) > 1 else 0), len(idx) - 1)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def skipped_report(skipped: list[tuple[str, str]]) -> dict:
    """The card's data.skipped_files: total, count per reason, and the file names."""
    return {"count": len(skipped), "by_reason": dict(Counter(why for _, why in skipped)),
            "files": [{"file": f, "reason": why} for f, why in skipped[:MAX_LISTED_SKIPS]],
            "files_listed": min(len(skipped), MAX_LISTED_SKIPS)}


def load_folder(path: Path, spec: TaskSpec) -> ImageData:
    """An instructor's folder as `ImageData`; unreadable files are counted and skipped."""
    root = Path(path)
    train_dir, test_dir, val_dir = folder_layout(root)
    classes = list_classes(root)
    names = spec.class_names or classes
    skipped: list[tuple[str, str]] = []
    x, y = _read_split(train_dir, spec, root, skipped, classes)
    if test_dir is not None:
        x_test, y_test = _read_split(test_dir, spec, root, skipped, classes)
        x_train, y_train = x, y
        split = {"method": "folders", "train": str(train_dir.relative_to(root)),
                 "test": str(test_dir.relative_to(root))}
    else:
        settings = spec.extra.get("split", {})
        fraction = float(settings.get("test_fraction", TEST_FRACTION))
        seed = int(settings.get("seed", SPLIT_SEED))
        tr, te = stratified_split(y, fraction, seed)
        x_train, y_train, x_test, y_test = x[tr], y[tr], x[te], y[te]
        split = {"method": "stratified", "test_fraction": fraction, "seed": seed}
    if len(y_test) == 0:
        raise DataError(f"{root}: too few images to hold any out for testing")
    x_val = y_val = None
    if val_dir is not None:  # fixed once with the data set: every run validates on the same images
        x_val, y_val = _read_split(val_dir, spec, root, skipped, classes)
        split = {**split, "validation": {"method": "folder", "folder": str(val_dir.relative_to(root)),
                                         "count": int(len(y_val))}}
    if skipped:
        print(f"[{spec.slug}] skipped {len(skipped)} unreadable file(s) in {root}", file=sys.stderr)
    imbalance = class_imbalance(y_train, y_test, names)
    if imbalance["imbalanced"]:
        print(f"[{spec.slug}] class imbalance (train): {imbalance['train']}", file=sys.stderr)
    return ImageData(x_train, y_train, x_test, y_test, str(root), names,
                     skipped=skipped_report(skipped), split=split, x_val=x_val, y_val=y_val)


# ----------------------------------------------------------------------------- the command
def check_slug(slug: str) -> None:
    """Refuse a slug that is not a safe folder/URL name or that would replace a built-in task."""
    if not SLUG_RE.match(slug):
        raise DataError(f"--slug {slug!r}: use 1-40 lowercase letters, digits and underscores, "
                        f"starting with a letter (it becomes models/<slug>/ and /tasks/<slug>)")
    if slug in BUILTIN_TASKS and slug not in FOLDER_BUILTINS:
        raise DataError(f"--slug {slug!r} is a built-in task; choose another name "
                        f"(only {', '.join(FOLDER_BUILTINS)} may be trained from a folder)")


def folder_spec(args, classes: list[str]) -> TaskSpec:
    """The TaskSpec a folder task declares, from the command-line flags and the class folders."""
    if args.slug in FOLDER_BUILTINS:
        spec = BUILTIN_TASKS[args.slug]
        size, colour = args.image_size or spec.image_size[0], args.colour or spec.colour
        if (size, size) != spec.image_size or colour != spec.colour:
            raise DataError(f"{args.slug} is served at {spec.image_size[0]} px {spec.colour}; "
                            f"drop --image-size/--colour or train under another --slug")
        return spec
    size, colour = args.image_size or 64, args.colour or "rgb"
    if not 8 <= size <= 256:
        raise DataError(f"--image-size {size}: choose between 8 and 256 pixels")
    if not 0 < args.test_fraction < 1:
        raise DataError(f"--test-fraction {args.test_fraction}: choose a value between 0 and 1")
    architecture = args.architecture or ("renet" if colour == "rgb" and size >= 32 else "rows_cols")
    if architecture == "renet" and size % max(2, size // 8):
        raise DataError(f"--image-size {size}: the renet architecture cuts the image into an 8×8 grid of "
                        f"{max(2, size // 8)}-pixel patches; use a multiple of 8 (e.g. 32, 48, 64)")
    model = {"units": 64, "top_units": 128, "patch": size // 8} if architecture == "renet" else {"units": 64}
    listed = ", ".join(classes)
    title_en = args.title_en or args.slug.replace("_", " ").capitalize()
    return TaskSpec(
        slug=args.slug,
        kind=IMAGE,
        title_en=title_en,
        title_vi=args.title_vi or title_en,
        summary_en=f"An LSTM reads a {size}×{size} picture row by row and names one of "
                   f"{len(classes)} classes: {listed}.",
        summary_vi=f"Mạng LSTM đọc ảnh {size}×{size} từng hàng một và chọn một trong "
                   f"{len(classes)} lớp: {listed}.",
        image_size=(size, size),
        colour=colour,
        preprocess="plain",
        resize=args.resize,
        classes=tuple(ClassName(en=c, vi=c) for c in (unicodedata.normalize("NFC", n) for n in classes)),
        data_path=str(Path(args.data_dir).resolve()),
        data_source=f"Instructor's image folder {Path(args.data_dir).name}/ "
                    f"({len(classes)} classes, one sub-folder per class)",
        architecture=architecture,
        epochs=12,
        batch_size=64,
        learning_rate=2e-3,
        extra={"augment": 0.05, "flip": bool(args.flip), "model": model,
               "split": {"test_fraction": args.test_fraction, "seed": SPLIT_SEED}},
    )


def main(args) -> int:
    """`python -m training folder ...` (options from `training.cli.folder_parser`); a bad folder or
    flag raises `DataError` (exit code 2)."""
    check_slug(args.slug)
    classes = list_classes(Path(args.data_dir))
    spec = folder_spec(args, classes)
    from training.images import train_image_task  # imports Keras: only once the flags are sound

    args.data = str(Path(args.data_dir).resolve())
    train_image_task(spec, args, Path(args.models_dir))
    return 0
