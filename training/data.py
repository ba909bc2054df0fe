"""Data loaders: a local copy (flag or $LSTMLAB_DATA), the canonical download when online,
Debian's Fashion-MNIST package, or an instructor's folder of images.

Every loader returns `ImageData` with uint8 arrays shaped as the task's model reads them, made
by `app.imaging.image_to_array`, the same function the web app applies to uploads.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from app.config import ROOT, default_data_dir
from app.errors import InvalidInput
from app.imaging import decode_image, image_to_array
from app.tasks import TaskSpec
from training.dataset import DataError, ImageData
from training.imagefolder import load_folder

CACHE_DIR = ROOT / "runs" / "cache"
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def resolve(spec: TaskSpec, data: str | Path | None) -> Path:
    """The file or folder to load for `spec`: `data` itself, `data/<spec.data_path>`, or the
    default data directory's copy."""
    base = Path(data) if data else default_data_dir()
    candidates = [base / spec.data_path, base / Path(spec.data_path).name, base]
    for c in candidates:
        if spec.data_path and c.exists() and (c.is_file() or c == base / spec.data_path):
            return c
    return base


def load_image_data(spec: TaskSpec, data: str | Path | None = None, download: bool = True) -> ImageData:
    """Load `spec`'s data set: local copy first, then Debian's package, then keras.datasets
    (unless `download` is False)."""
    path = resolve(spec, data)
    if path.is_file():
        return load_npz(path, spec)
    if path.is_dir() and _is_idx_dir(path):
        return load_idx_dir(path, spec)
    if path.is_dir() and (path / "train").is_dir() or _has_class_folders(path):
        return load_folder(path, spec)  # an instructor's folder of images
    if spec.slug == "fashion_mnist" and _is_idx_dir(DEBIAN_FASHION):
        return load_idx_dir(DEBIAN_FASHION, spec)
    if spec.keras_dataset and download:
        return load_keras_dataset(spec, tried=path)
    raise DataError(f"{spec.slug}: no data found at {path} (expected {spec.data_path}); "
                    f"pass --data PATH or set LSTMLAB_DATA")


def _has_class_folders(path: Path) -> bool:
    return path.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir())


def load_keras_dataset(spec: TaskSpec, tried: Path) -> ImageData:
    """The canonical download through keras.datasets (needs the internet)."""
    import keras  # heavy: the CLI imports this module; Keras loads only to download

    try:
        module = getattr(keras.datasets, spec.keras_dataset)
        (x_train, y_train), (x_test, y_test) = module.load_data()
    except Exception as exc:  # noqa: BLE001 - any download failure becomes one clear message
        raise DataError(
            f"{spec.slug}: no local copy at {tried} and the download through "
            f"keras.datasets.{spec.keras_dataset} failed ({exc.__class__.__name__}: {exc}). "
            f"Pass --data PATH or set LSTMLAB_DATA to a folder holding {spec.data_path}."
        ) from None
    return ImageData(_shape(x_train, spec), y_train.reshape(-1).astype(np.int64),
                     _shape(x_test, spec), y_test.reshape(-1).astype(np.int64),
                     f"keras.datasets.{spec.keras_dataset}", spec.class_names)


def _shape(x: np.ndarray, spec: TaskSpec) -> np.ndarray:
    x = np.asarray(x, dtype=np.uint8)
    if x.shape[1:] != spec.input_shape:
        x = x.reshape((len(x),) + spec.input_shape)
    return x


def load_npz(path: Path, spec: TaskSpec) -> ImageData:
    """A plain npz (x_train, y_train, x_test, y_test) or a JPEG-bytes npz (jpeg_train, off_train…)."""
    try:
        d = np.load(path, allow_pickle=False)
        keys = set(d.files)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    names = [str(n) for n in d["class_names"]] if "class_names" in keys else spec.class_names
    try:
        if {"x_train", "y_train", "x_test", "y_test"} <= keys:
            x_train, x_test = d["x_train"], d["x_test"]
            if x_train.shape[1:3] != spec.image_size:
                raise DataError(f"{path}: images are {x_train.shape[1:]}, task {spec.slug} expects "
                                f"{spec.input_shape}")
            return ImageData(_shape(x_train, spec), d["y_train"].astype(np.int64),
                             _shape(x_test, spec), d["y_test"].astype(np.int64), str(path), names)
        if {"jpeg_train", "off_train", "y_train", "jpeg_test", "off_test", "y_test"} <= keys:
            x_train = _decode_cached(path, d, "train", spec)
            x_test = _decode_cached(path, d, "test", spec)
            meta = {split: {g: d[f"{g}_{split}"] for g in ("age", "race") if f"{g}_{split}" in keys}
                    for split in ("train", "test")}
            return ImageData(x_train, d["y_train"].astype(np.int64), x_test, d["y_test"].astype(np.int64),
                             str(path), names, meta["test"], train_meta=meta["train"])
    except (KeyError, ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: malformed data ({exc.__class__.__name__}: {exc})") from None
    raise DataError(f"{path}: expected arrays x_train/y_train/x_test/y_test or "
                    f"jpeg_train/off_train/y_train (and _test); found {sorted(keys)}")


def _decode_cached(path: Path, d, split: str, spec: TaskSpec) -> np.ndarray:
    """Decode the JPEG bytes of one split through `image_to_array`, cached in runs/cache."""
    buf, off = d[f"jpeg_{split}"], d[f"off_{split}"]
    key = hashlib.sha1(f"{path.resolve()}:{path.stat().st_size}:{split}:{spec.input_shape}:"
                       f"{spec.preprocess}:{spec.resize}".encode()).hexdigest()[:16]
    cache = CACHE_DIR / f"{spec.slug}-{split}-{key}.npy"
    if cache.is_file():
        return np.load(cache)
    out = np.empty((len(off) - 1,) + spec.input_shape, dtype=np.uint8)
    for i in range(len(off) - 1):
        try:
            out[i] = image_to_array(decode_image(buf[off[i]: off[i + 1]].tobytes()), spec)
        except InvalidInput as exc:
            raise DataError(f"{path}: image {i} of the {split} split cannot be read: {exc.en}") from None
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npy")
    np.save(tmp, out)
    tmp.replace(cache)
    return out


IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _is_idx_dir(path: Path) -> bool:
    return path.is_dir() and all(_idx_path(path, n) is not None for n in IDX_FILES)


def _idx_path(folder: Path, name: str) -> Path | None:
    return next((c for c in (folder / f"{name}.gz", folder / name) if c.is_file()), None)


def read_idx(path: Path) -> np.ndarray:
    """One idx file (optionally gzipped), as in the original MNIST distribution."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte idx file")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4: 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims} but holds {data.size} bytes")
    return data.reshape(dims)


def load_idx_dir(folder: Path, spec: TaskSpec) -> ImageData:
    """The four idx files of MNIST or Fashion-MNIST (e.g. Debian's dataset-fashion-mnist)."""
    xtr, ytr, xte, yte = (read_idx(_idx_path(folder, n)) for n in IDX_FILES)
    return ImageData(_shape(xtr, spec), ytr.astype(np.int64), _shape(xte, spec),
                     yte.astype(np.int64), str(folder), spec.class_names)


def to_png_bytes(arr: np.ndarray) -> bytes:
    """A uint8 array as PNG bytes (fixtures and tests)."""
    buf = io.BytesIO()
    Image.fromarray(arr.squeeze()).save(buf, "PNG")
    return buf.getvalue()
