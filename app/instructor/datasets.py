"""An instructor's data set: a zip of class folders (or a server folder) checked, previewed, split
once (stratified, seeded) into train/val/test under <instance>/datasets/<slug>/, and saved by one
final rename, so nothing is half-written.
Details: docs/DESIGN.md, "Instructors' data sets (app/instructor/datasets.py)"."""

from __future__ import annotations

import base64
import functools
import io
import json
import os
import re
import secrets
import shutil
import stat
import time
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np
from flask import current_app, has_app_context
from PIL import Image
from sqlalchemy import func, select

from app.errors import InvalidInput
from app.i18n import N_, translate_to
from app.imaging import decode_image
from app.records import ACTIVE, Dataset, Run, db
from app.splits import IMBALANCE_RATIO, SPLIT_SEED, TEST_FRACTION, VALIDATION_FRACTION, held_out
from app.tasks import BUILTIN_TASKS, IMAGE, SLUG_RE, TEXT, ClassName, TaskSpec

TOKEN_RE = re.compile(r"^[0-9a-f]{16}$")
SIZES = (16, 28, 32, 48, 64, 96, 128)
SUGGESTED_SIZES = (16, 32, 48, 64)  # multiples of 16: every reading order of the bench fits them
THUMBS_PER_CLASS = 8
THUMB_SIDE = 72
MAX_LISTED_SKIPS = 500
RATIO_CHECK_BYTES = 1024 * 1024  # the per-file ratio is checked for files larger than this
STAGING_HOURS = 24  # unsaved previews older than this are deleted
INDEX_THREADS = 4  # decode and write in parallel (Pillow and file I/O release the GIL)
INDEX_CHUNK = 256  # files in flight at once: memory stays bounded whatever the archive's size
GREY_SAMPLE = 1000  # colour is judged on the first files and every tenth after
IGNORED_NAMES = {"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"}
ARCHIVE_SUFFIXES = {".zip", ".tar", ".gz", ".tgz", ".bz2", ".tbz2", ".xz", ".txz", ".7z", ".rar",
                    ".zst", ".lz", ".lzma", ".z", ".cab", ".jar", ".war", ".apk", ".whl", ".iso"}
ARCHIVE_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00",
                 b"7z\xbc\xaf\x27\x1c", b"Rar!\x1a\x07", b"\x28\xb5\x2f\xfd")


@dataclass
class Limits:
    """The safety limits (DATASET_* config)."""

    max_files: int
    max_total: int
    max_ratio: float
    max_file: int
    max_classes: int

    @classmethod
    def from_config(cls, config) -> Limits:
        """The limits of an app's config."""
        return cls(int(config["DATASET_MAX_FILES"]), int(config["DATASET_MAX_TOTAL_BYTES"]),
                   float(config["DATASET_MAX_RATIO"]), int(config["DATASET_MAX_FILE_BYTES"]),
                   int(config["DATASET_MAX_CLASSES"]))


@dataclass
class Item:
    """One file of an archive or folder: its path parts, declared size and how to open it."""

    parts: tuple[str, ...]
    size: int
    open: Callable[[], BinaryIO]


# ----------------------------------------------------------------------------- folders
def instance_datasets() -> Path:
    """<instance>/datasets (created)."""
    base = Path(current_app.instance_path) / "datasets"
    base.mkdir(parents=True, exist_ok=True)
    return base


def staging_root() -> Path:
    """Where previews wait to be saved: <instance>/datasets/.staging."""
    path = instance_datasets() / ".staging"
    path.mkdir(parents=True, exist_ok=True)
    return path


def staging_dir(token: str) -> Path:
    """The staging folder of preview `token`, or a 404."""
    path = staging_root() / token
    if not TOKEN_RE.match(token or "") or not (path / "preview.json").is_file():
        raise InvalidInput("This preview does not exist any more: upload the data set again.", 404)
    return path


def clean_staging(max_age_hours: float = STAGING_HOURS) -> None:
    """Delete previews nobody saved."""
    cutoff = time.time() - max_age_hours * 3600
    for path in staging_root().iterdir():
        try:
            if path.stat().st_mtime < cutoff:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


# ----------------------------------------------------------------------------- names
def safe_parts(name: str) -> tuple[str, ...]:
    """The path parts of an archive member name; refuses zip-slip names, absolute paths and
    drive letters (backslashes count as separators, as Windows tools write them)."""
    text = name.replace("\\", "/")
    if "\x00" in text:
        raise InvalidInput("The archive holds a file name with a NUL character (%(name)s).", name=repr(name))
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        raise InvalidInput("The archive holds an absolute path (%(name)s); refused.", name=repr(name))
    parts = tuple(p for p in PurePosixPath(text).parts if p not in ("", "."))
    if ".." in parts:
        raise InvalidInput("The archive holds a path that leaves its folder (%(name)s); refused.", name=repr(name))
    return tuple(unicodedata.normalize("NFC", p) for p in parts)


def ignored(parts: tuple[str, ...]) -> bool:
    """macOS resource forks, hidden files and thumbnail caches are not part of a data set."""
    return any(p in IGNORED_NAMES or p.startswith(".") for p in parts)


def nested_archive(name: str) -> InvalidInput:
    """The refusal of an archive inside the archive."""
    return InvalidInput("The archive holds another archive (%(name)s); unpack it first, one zip of class folders.", name=name)


# ----------------------------------------------------------------------------- sources
def zip_items(zf: zipfile.ZipFile, archive_bytes: int, limits: Limits) -> list[Item]:
    """Every file of an open zip, after the checks that need no decompression (names, links,
    count, declared sizes and ratios, encryption, nested archives by name)."""
    infos = zf.infolist()
    if len(infos) > limits.max_files:
        raise InvalidInput("The archive holds %(len)s entries; the limit is %(max_files)s.", 413, len=len(infos), max_files=limits.max_files)
    total, items = 0, []
    for info in infos:
        parts = safe_parts(info.filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise InvalidInput("The archive holds a symbolic link (%(filename)s); refused.", filename=info.filename)
        if info.is_dir() or not parts or ignored(parts):
            continue
        if info.flag_bits & 0x1:
            raise InvalidInput("The archive holds an encrypted file (%(filename)s); send it without a password.", filename=info.filename)
        if PurePosixPath(parts[-1]).suffix.lower() in ARCHIVE_SUFFIXES:
            raise nested_archive(info.filename)
        if info.file_size > 0 and (info.compress_size == 0 or (
                info.file_size > RATIO_CHECK_BYTES and info.file_size / info.compress_size > limits.max_ratio)):
            raise bomb(f"{info.filename} expands {info.file_size / max(1, info.compress_size):.0f} times")
        total += info.file_size
        if total > limits.max_total:
            raise bomb(f"the files add up to more than {limits.max_total // 2**20} MB")
        items.append(Item(parts, info.file_size, functools.partial(zf.open, info)))
    if total > RATIO_CHECK_BYTES * 10 and total / max(1, archive_bytes) > limits.max_ratio:
        raise bomb(f"the archive expands {total / max(1, archive_bytes):.0f} times")
    return items


def bomb(detail: str) -> InvalidInput:
    """The refusal of a decompression bomb."""
    return InvalidInput("The archive decompresses far beyond its size (%(detail)s); refused as a possible zip bomb.", 413, detail=detail)


def folder_items(root: Path, folder: Path, limits: Limits) -> list[Item]:
    """Every file below `folder` (already confined to `root`); a symbolic link that points
    outside `root` refuses the folder, one inside it is skipped (links are not followed)."""
    items, total = [], 0
    real_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        here = Path(dirpath)
        for name in sorted(dirnames + filenames):
            path = here / name
            rel = tuple(unicodedata.normalize("NFC", p) for p in path.relative_to(folder).parts)
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(real_root):
                    raise InvalidInput("%(value)s is a symbolic link that leads outside the allowed folder.", 403, value=path.relative_to(root))
                if name in filenames:
                    items.append(Item(rel, 0, _open_link))
                continue
            if name in dirnames or ignored(rel):
                continue
            if PurePosixPath(name).suffix.lower() in ARCHIVE_SUFFIXES:
                raise nested_archive(str(path.relative_to(root)))
            size = path.stat().st_size
            total += size
            if len(items) >= limits.max_files:
                raise InvalidInput("The folder holds more than %(max_files)s files.", 413, max_files=limits.max_files)
            if total > limits.max_total:
                raise InvalidInput("The folder's files add up to more than %(value)s MB.", 413, value=limits.max_total // 2 ** 20)
            items.append(Item(rel, size, functools.partial(open, path, "rb")))
        dirnames[:] = [d for d in dirnames if not (here / d).is_symlink() and not d.startswith(".")
                       and d not in IGNORED_NAMES]
    return items


def _open_link() -> BinaryIO:
    raise _Skip("A symbolic link (not followed).")


class _Skip(Exception):
    """One file left out of the data set, and why (a msgid and its fields)."""

    def __init__(self, msgid: str, **params):
        self.reason = InvalidInput(msgid, **params)
        super().__init__(self.reason.en)


def server_path(relative: str) -> tuple[Path, Path]:
    """(root, path) for a name under DATASET_SERVER_ROOT: no `..`, nothing outside the root (after
    following links), the option off when no root is configured; 404 when nothing is there."""
    configured = current_app.config.get("DATASET_SERVER_ROOT") or ""
    if not configured:
        raise InvalidInput("Importing a folder from the server is turned off (DATASET_SERVER_ROOT is not set).", 403)
    root = Path(configured).resolve()
    text = (relative or "").strip().replace("\\", "/")
    if not text or "\x00" in text:
        raise InvalidInput("Name a folder under the allowed root.")
    parts = PurePosixPath(text).parts
    if ".." in parts:
        raise InvalidInput("The folder name may not contain '..'.", 403)
    candidate = Path(text) if text.startswith("/") else root / text
    try:  # a name the file system refuses (too long, a part over 255 bytes) is bad input
        path = candidate.resolve()
        inside, exists = path.is_relative_to(root), path.exists()
    except OSError:
        raise InvalidInput("This folder name is too long or not valid on this server.") from None
    if not inside:
        raise InvalidInput("Only folders under %(root)s may be imported.", 403, root=root)
    if not exists:
        raise InvalidInput("No folder %(text)s under the allowed root.", 404, text=repr(text[:200]))
    return root, path


def server_folder(relative: str) -> tuple[Path, Path]:
    """(root, folder) for a folder named under DATASET_SERVER_ROOT (`server_path`, a folder)."""
    root, folder = server_path(relative)
    if not folder.is_dir():
        raise InvalidInput("No folder %(text)s under the allowed root.", 404, text=repr(relative.strip()[:200]))
    return root, folder


# ----------------------------------------------------------------------------- indexing
def class_layout(items: list[Item]) -> tuple[int, list[str]]:
    """(how many leading folders to drop, class names): class folders sit at the top of the
    archive or inside one wrapping folder (what zipping a folder produces)."""
    depth = 0
    while True:
        firsts = {it.parts[depth] for it in items if len(it.parts) > depth + 1}
        at_top = [it for it in items if len(it.parts) == depth + 1]
        if len(firsts) == 1 and not at_top and any(len(it.parts) > depth + 2 for it in items):
            depth += 1  # a single wrapping folder ("flowers/roses/1.jpg")
            continue
        break
    names = sorted({it.parts[depth] for it in items if len(it.parts) > depth + 1})
    return depth, names


def check_class_name(name: str) -> None:
    """A class folder name that can be a folder and a label."""
    if len(name) > 100 or any(ord(ch) < 32 for ch in name):
        raise InvalidInput("The class folder name %(value)s is too long or holds control characters.", value=repr(name[:40]))


def is_grey(img: Image.Image) -> bool:
    """True for a greyscale picture (mode L, or RGB whose channels agree)."""
    if img.mode == "L":
        return True
    small = np.asarray(img.convert("RGB").resize((16, 16), Image.Resampling.NEAREST), dtype=np.int16)
    return int(np.abs(small - small[..., :1]).max()) <= 8


def thumbnail(img: Image.Image) -> str:
    """A small JPEG of the picture as a data: URL (the page's CSP allows data: images)."""
    thumb = img.convert("RGB")
    thumb.thumbnail((THUMB_SIDE, THUMB_SIDE))
    buf = io.BytesIO()
    thumb.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def suffix_of(name: str) -> str:
    """A short, safe file suffix kept from the original name (training reads the bytes, not it)."""
    suffix = re.sub(r"[^a-z0-9]", "", PurePosixPath(name).suffix.lower())[:5]
    return f".{suffix}" if suffix else ".img"


def _skip(shown: str, reason: InvalidInput) -> dict:
    """A skipped file as the preview lists it, its reason in both languages."""
    return {"file": shown, "en": reason.en, "vi": reason.vi}


def check_file(item: Item, shown: str, out: Path, limits: Limits, thumb: bool, grey_check: bool) -> dict:
    """Read, check and decode one file and copy it to `out` (run in a worker thread): a dict
    with the picture's facts, or {"skipped": reason}; InvalidInput for a nested archive."""
    try:
        data = None
        if item.size <= limits.max_file:
            with item.open() as fh:  # zipfile stops at the declared size and checks the CRC
                data = fh.read(limits.max_file + 1)
        if data is None or len(data) > limits.max_file:
            raise _Skip("Larger than %(mb)s MB.", mb=limits.max_file // 2**20)
    except _Skip as exc:
        return {"skipped": _skip(shown, exc.reason)}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:  # a damaged member (CRC, truncated)
        return {"skipped": _skip(shown, InvalidInput("Damaged or unreadable (%(name)s).", name=exc.__class__.__name__))}
    if data[:8].startswith(ARCHIVE_MAGIC) or data[257:262] == b"ustar":
        raise nested_archive(shown)
    try:
        img = decode_image(data)  # the app's decoder for uploads: not an image, too many pixels...
    except InvalidInput as exc:
        return {"skipped": _skip(shown, exc), "bytes": len(data)}
    out.write_bytes(data)
    return {"bytes": len(data), "short_side": min(img.size), "grey": is_grey(img) if grey_check else None,
            "thumb": thumbnail(img) if thumb else None}


def index_items(items: list[Item], staging: Path, limits: Limits, source: dict) -> dict:
    """Decode every file, copy the readable images into `staging/files/<class #>/`, and return
    (and write as preview.json) the preview; InvalidInput for a data set that cannot be used.
    A few threads decode and write while others wait on the disk (Pillow and file I/O release
    the GIL); files go in chunks, so memory holds at most one chunk of pictures."""
    depth, classes = class_layout(items)
    if len(classes) > limits.max_classes:
        raise InvalidInput("%(len)s class folders; the limit is %(max_classes)s.", 413, len=len(classes), max_classes=limits.max_classes)
    for name in classes:
        check_class_name(name)
    index = {name: i for i, name in enumerate(classes)}
    for i in range(len(classes)):
        (staging / "files" / str(i)).mkdir(parents=True)
    files: dict[str, list[dict]] = {name: [] for name in classes}
    thumbs: dict[str, list[str]] = {name: [] for name in classes}
    asked: dict[str, int] = {name: 0 for name in classes}
    skipped: list[dict] = []
    grey = sides = read_total = 0
    short_sides: list[int] = []
    jobs = []
    for n, item in enumerate(items):
        shown = "/".join(item.parts)
        if len(item.parts) <= depth + 1:
            skipped.append(_skip(shown, InvalidInput("Not inside a class folder.")))
            continue
        cls = item.parts[depth]
        asked[cls] += 1
        out = staging / "files" / str(index[cls]) / f"{n:06d}{suffix_of(item.parts[-1])}"
        jobs.append((item, shown, cls, out, asked[cls] <= 2 * THUMBS_PER_CLASS, n < GREY_SAMPLE or n % 10 == 0))
    with ThreadPoolExecutor(max_workers=INDEX_THREADS) as pool:
        for start in range(0, len(jobs), INDEX_CHUNK):
            chunk = jobs[start:start + INDEX_CHUNK]
            results = pool.map(lambda j: check_file(j[0], j[1], j[3], limits, j[4], j[5]), chunk)
            for (item, shown, cls, out, _t, _g), facts in zip(chunk, results):
                read_total += facts.get("bytes", 0)
                if read_total > limits.max_total:
                    raise bomb(f"the files add up to more than {limits.max_total // 2**20} MB")
                if "skipped" in facts:
                    skipped.append(facts["skipped"])
                    continue
                files[cls].append({"file": out.name, "original": "/".join(item.parts[depth + 1:])})
                short_sides.append(facts["short_side"])
                if facts["grey"] is not None:
                    grey += facts["grey"]
                    sides += 1
                if facts["thumb"] and len(thumbs[cls]) < THUMBS_PER_CLASS:
                    thumbs[cls].append(facts["thumb"])
    check_classes(classes, files, skipped)
    counts = {c: len(files[c]) for c in classes}
    preview = {
        "source": source,
        "classes": [{"name": c, "count": counts[c], "thumbs": thumbs[c]} for c in classes],
        "total": sum(counts.values()),
        "skipped": {"count": len(skipped), "files": skipped[:MAX_LISTED_SKIPS]},
        "imbalance": imbalance(counts),
        "suggested": suggest(short_sides, grey, sides),
        "created": time.time(),
    }
    (staging / "index.json").write_text(json.dumps({"classes": classes, "files": files}, ensure_ascii=False),
                                        encoding="utf-8")
    (staging / "preview.json").write_text(json.dumps(preview, ensure_ascii=False), encoding="utf-8")
    return preview


def check_classes(classes: list[str], files: dict[str, list], skipped: list[dict]) -> None:
    """At least two classes, each with at least two readable images (one to train, one to test)."""
    if len(classes) < 2:
        found = f": {classes[0]}" if classes else ""
        raise InvalidInput("A classifier needs at least two classes, one folder of images per class; found %(len)s%(found)s.", len=len(classes), found=found)
    for name in classes:
        n = len(files[name])
        if n == 0:
            bad = sum(1 for s in skipped if s["file"].split("/").count(name))
            raise InvalidInput("The class %(name)s has no readable image (%(bad)s file(s) skipped).", name=repr(name), bad=bad)
        if n < 2:
            raise InvalidInput("The class %(name)s has only one readable image; each class needs at least two.", name=repr(name))


def imbalance(counts: dict[str, int]) -> dict:
    """Largest / smallest class and whether that is worth a warning."""
    lo, hi = min(counts.values()), max(counts.values())
    ratio = hi / max(1, lo)
    return {"ratio": round(ratio, 2), "largest": max(counts, key=counts.get),
            "smallest": min(counts, key=counts.get), "imbalanced": ratio > IMBALANCE_RATIO}


def suggest(short_sides: list[int], grey: int, total: int) -> dict:
    """An image size (the largest of SUGGESTED_SIZES not above the median short side) and a
    colour mode (grey when nearly all pictures are)."""
    median = int(np.median(short_sides)) if short_sides else 32
    size = max([s for s in SUGGESTED_SIZES if s <= median] or [SUGGESTED_SIZES[0]])
    return {"image_size": size, "colour": "grey" if total and grey / total >= 0.95 else "rgb",
            "median_short_side": median, "grey_share": round(grey / total, 3) if total else 0.0}


# ----------------------------------------------------------------------------- staging
def staged(build: Callable[[Path], dict]) -> tuple[str, dict]:
    """(token, preview) of `build(folder)` run in a new staging folder, which goes if it fails."""
    clean_staging()
    token = secrets.token_hex(8)
    path = staging_root() / token
    path.mkdir()
    try:
        preview = build(path)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)  # nothing half-written stays behind
        raise
    return token, preview


def stage_zip(stream, filename: str = "upload.zip") -> tuple[str, dict]:
    """Check and index an uploaded zip (a seekable binary stream): (preview token, preview)."""
    limits = Limits.from_config(current_app.config)
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    if size == 0:
        raise InvalidInput("The uploaded file is empty.")

    def build(path: Path) -> dict:
        try:
            with zipfile.ZipFile(stream) as zf:
                items = zip_items(zf, size, limits)
                return index_items(items, path, limits, {"kind": "zip", "name": filename[:200], "bytes": size})
        except zipfile.BadZipFile:
            raise InvalidInput("This file is not a zip archive (or it is damaged).") from None

    return staged(build)


def stage_folder(relative: str) -> tuple[str, dict]:
    """Check and index a folder under DATASET_SERVER_ROOT: (preview token, preview)."""
    limits = Limits.from_config(current_app.config)
    root, folder = server_folder(relative)
    return staged(lambda path: index_items(folder_items(root, folder, limits), path, limits,
                                           {"kind": "folder", "name": str(folder.relative_to(root)) or "."}))


def read_preview(token: str) -> dict:
    """The preview of a staged data set (404 when gone)."""
    return json.loads((staging_dir(token) / "preview.json").read_text(encoding="utf-8"))


def discard(token: str) -> None:
    """Delete a staged data set."""
    shutil.rmtree(staging_dir(token), ignore_errors=True)


# ----------------------------------------------------------------------------- saving
def check_choices(slug: str, title_en: str, title_vi: str, image_size, colour: str) -> tuple[str, str, str, int, str]:
    """The save form's fields, checked (InvalidInput otherwise)."""
    slug, title_en, title_vi = check_names(slug, title_en, title_vi)
    try:
        size = int(image_size)
    except (TypeError, ValueError):
        size = 0
    if size not in SIZES:
        raise InvalidInput("Image size: choose one of %(value)s pixels.", value=', '.join(map(str, SIZES)))
    if colour not in ("rgb", "grey"):
        raise InvalidInput("Colour: choose rgb or grey.")
    return slug, title_en, title_vi, size, colour


def check_names(slug: str, title_en: str, title_vi: str) -> tuple[str, str, str]:
    """A new data set's name (a slug no built-in task or saved data set has) and its titles
    (defaults from the name)."""
    slug = (slug or "").strip()
    if not SLUG_RE.match(slug):
        raise InvalidInput("Name: 1-40 lowercase letters, digits and underscores, starting with a letter.")
    if slug in BUILTIN_TASKS:
        raise InvalidInput("%(slug)s is a built-in data set; choose another name.", 409, slug=repr(slug))
    if has_app_context() and (instance_datasets() / slug).exists():
        raise InvalidInput("A data set called %(slug)s exists already; choose another name.", 409, slug=repr(slug))
    title_en = (title_en or "").strip()[:120] or slug.replace("_", " ").capitalize()
    title_vi = (title_vi or "").strip()[:120] or title_en
    return slug, title_en, title_vi


def save_dataset(token: str, slug: str, title_en: str = "", title_vi: str = "", image_size=None,
                 colour: str | None = None, created_by: str = "", seed: int = SPLIT_SEED) -> dict:
    """Fix the split of a staged data set and move it to <instance>/datasets/<slug>/; returns
    its record (dataset.json). 409 when the name is taken."""
    staging = staging_dir(token)
    preview = json.loads((staging / "preview.json").read_text(encoding="utf-8"))
    suggested = preview["suggested"]
    slug, title_en, title_vi, size, colour = check_choices(
        slug, title_en, title_vi, image_size or suggested["image_size"], colour or suggested["colour"])
    index = json.loads((staging / "index.json").read_text(encoding="utf-8"))
    out = staging / "dataset"
    rng = np.random.default_rng(seed)
    counts, listing = {}, {}
    orders = {name: rng.permutation(len(index["files"][name])) for name in index["classes"]}
    n_tests = {name: held_out(len(order), TEST_FRACTION) for name, order in orders.items()}
    n_vals = {name: held_out(len(order) - n_tests[name], VALIDATION_FRACTION) if len(order) - n_tests[name] > 1 else 0
              for name, order in orders.items()}
    fixed_val = all(n_vals.values())  # every class has a validation image: fix the set; else each run holds out its own
    for i, name in enumerate(index["classes"]):
        entries, order, n_test = index["files"][name], orders[name], n_tests[name]
        n_val = n_vals[name] if fixed_val else 0
        chosen = {"test": sorted(order[:n_test].tolist()), "train": sorted(order[n_test + n_val:].tolist())}
        if fixed_val:
            chosen["val"] = sorted(order[n_test:n_test + n_val].tolist())
        counts[name] = {split: len(idx) for split, idx in chosen.items()}
        for split, idx in chosen.items():
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for j in idx:
                os.replace(staging / "files" / str(i) / entries[j]["file"], folder / entries[j]["file"])
            listing.setdefault(split, {})[name] = [entries[j]["file"] for j in idx]
    record = {
        "slug": slug, "title_en": title_en, "title_vi": title_vi, "kind": IMAGE,
        "classes": index["classes"], "image_size": size, "colour": colour, "resize": "crop",
        "counts": {split: sum(c.get(split, 0) for c in counts.values()) for split in ("train", "val", "test")}
        | {"per_class": counts},
        "split": {"method": "stratified", "seed": seed, "test_fraction": TEST_FRACTION,
                  "validation": ({"method": "fixed", "folder": "val", "fraction": VALIDATION_FRACTION, "of": "train",
                                  "seed": seed} if fixed_val else
                                 {"method": "per run", "fraction": VALIDATION_FRACTION, "of": "train",
                                  "seed": "the run's seed (too few images to fix one per class)"})},
        "skipped": preview["skipped"], "imbalance": preview["imbalance"], "source": preview["source"],
        "suggested": suggested, "created_by": created_by, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / "split.json").write_text(json.dumps(listing, ensure_ascii=False), encoding="utf-8")
    return publish_staged(staging, out, record)


def publish_staged(staging: Path, out: Path, record: dict) -> dict:
    """Write `record` as out/dataset.json, rename `out` to <instance>/datasets/<slug> (the data set
    appears complete, or not at all: 409 when the name was taken meanwhile), drop the staging
    folder and store the record; returns it."""
    (out / "dataset.json").write_text(json.dumps(record, ensure_ascii=False, indent=1), encoding="utf-8")
    try:
        os.rename(out, instance_datasets() / record["slug"])
    except OSError:
        raise InvalidInput("A data set called %(slug)s exists already; choose another name.", 409,
                           slug=repr(record["slug"])) from None
    shutil.rmtree(staging, ignore_errors=True)
    db.session.merge(Dataset(slug=record["slug"], title_en=record["title_en"], title_vi=record["title_vi"],
                             created_by=record["created_by"], manifest=record))
    db.session.commit()
    return record


# ----------------------------------------------------------------------------- listing
def read_record(folder: Path) -> dict | None:
    """A data set folder's dataset.json, or None when absent or unreadable."""
    try:
        record = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("slug") == folder.name else None


SUMMARY = N_("An instructor's data set: %(size)s×%(size)s pictures of %(count)s classes: %(listed)s.")


def dataset_spec(record: dict, folder: Path) -> TaskSpec:
    """The TaskSpec the lab bench trains a data set with (its folder as data_path)."""
    classes = record["classes"]
    size = int(record["image_size"])
    fields = {"size": size, "count": len(classes), "listed": ", ".join(classes)}
    return TaskSpec(
        slug=record["slug"], kind=IMAGE, title_en=record["title_en"], title_vi=record["title_vi"],
        summary_en=translate_to("en", SUMMARY, **fields), summary_vi=translate_to("vi", SUMMARY, **fields),
        image_size=(size, size), colour=record["colour"], preprocess="plain", resize=record.get("resize", "crop"),
        classes=tuple(ClassName(en=c, vi=c) for c in classes), data_path=str(folder),
        data_source=f"Instructor's data set {record['slug']} ({record.get('source', {}).get('name', '')}, "
                    f"{record['counts']['train']} train / {record['counts']['test']} test)",
        architecture="rows_cols", epochs=10, batch_size=64, learning_rate=2e-3,
        extra={"counts": {"train": record["counts"]["train"] + record["counts"].get("val", 0),  # before validation
                          "test": record["counts"]["test"]},
               "per_class_train": {c: int(n.get("train", 0)) + int(n.get("val", 0))  # the bench's warnings
                                   for c, n in (record["counts"].get("per_class") or {}).items() if isinstance(n, dict)},
               "split": record["split"], "dataset": "instructor", "model": {"units": 64}},
    )


def iter_datasets() -> Iterator[tuple[dict, Path]]:
    """(record, folder) of every saved data set, by name (none outside an app)."""
    if not has_app_context():
        return
    base = instance_datasets()
    for folder in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        record = read_record(folder)
        if record is not None:
            yield record, folder


def list_datasets() -> list[TaskSpec]:
    """Every instructor image data set as a TaskSpec (the lab bench offers them beside the built-in ones)."""
    out = []
    for record, folder in iter_datasets():
        if record.get("kind", IMAGE) != IMAGE:
            continue  # an instructor's text corpus (app.instructor.corpora)
        try:
            out.append(dataset_spec(record, folder))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def get_dataset(slug: str) -> tuple[dict, Path]:
    """(record, folder) of data set `slug`, or a 404."""
    folder = instance_datasets() / slug
    record = read_record(folder) if SLUG_RE.match(slug or "") else None
    if record is None:
        raise InvalidInput("There is no data set %(slug)s.", 404, slug=repr(slug))
    return record, folder


def delete_dataset(slug: str) -> None:
    """Delete data set `slug` (404 if unknown; 409 while a run on it is queued, running or
    interrupted): its folder is renamed into <instance>/datasets/.trash/ (it leaves the bench at
    once and whole), its record removed, then the files deleted. Finished runs keep their records
    and models."""
    _record, folder = get_dataset(slug)
    busy = db.session.scalar(select(func.count()).select_from(Run)
                             .where(Run.dataset == slug, Run.status.in_(ACTIVE)))
    if busy:
        raise InvalidInput("%(busy)s run(s) on data set %(slug)s are queued or running: cancel them (or wait) before deleting it.", 409, busy=busy, slug=repr(slug))
    trash = instance_datasets() / ".trash"
    for old in trash.glob("*"):  # what an interrupted earlier delete left
        shutil.rmtree(old, ignore_errors=True)
    trash.mkdir(exist_ok=True)
    target = trash / f"{slug}-{secrets.token_hex(4)}"
    os.rename(folder, target)
    row = db.session.get(Dataset, slug)
    if row is not None:
        db.session.delete(row)
        db.session.commit()
    shutil.rmtree(target, ignore_errors=True)


def summaries(records: Iterable[dict]) -> list[dict]:
    """The JSON list the API returns."""
    return [{k: r.get(k) for k in ("slug", "title_en", "title_vi", "classes", "image_size", "colour",
                                   "counts", "split", "created_by", "created_at")} | {"kind": r.get("kind", IMAGE)}
            | ({k: r.get(k) for k in ("lines", "vocabulary", "validation_unknown_rate")} if r.get("kind") == TEXT else {})
            for r in records]
