"""An instructor's folder of images as `ImageData`: DIR/<class>/*, or DIR/train/, DIR/test/ and
optionally DIR/val/, each holding one sub-folder per class (names in alphanumeric order, as
`keras.utils.image_dataset_from_directory`). Without test/ a seeded stratified split is made.

Every file goes through `app.imaging.decode_image` + `image_to_array`, exactly as an upload
does (Keras' folder loader decodes and resizes differently); unreadable files are counted and
skipped, not fatal.
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
from app.splits import SPLIT_SEED, TEST_FRACTION, stratified_split
from app.tasks import TaskSpec
from training.dataset import DataError, ImageData, class_imbalance

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
