"""`python -m training folder`: an instructor's folder of images becomes a trained, served task.

    python -m training folder --slug flowers --data-dir ~/flowers --image-size 64 --colour rgb \
        --title-vi "Các loài hoa" --title-en "Flowers"

The folder's layout and reading are in `training.imagefolder`. The card carries the whole
`TaskSpec`, so the app discovers and serves the new task with no code change.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

from app.splits import SPLIT_SEED
from app.tasks import BUILTIN_TASKS, IMAGE, SLUG_RE, ClassName, TaskSpec
from training.config import TrainConfig
from training.dataset import DataError
from training.imagefolder import list_classes

FOLDER_BUILTINS = ("cats_dogs", "faces_gender")  # built-in tasks whose data is an image folder


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

    train_image_task(spec, TrainConfig.from_args(args, data=str(Path(args.data_dir).resolve())), Path(args.models_dir))
    return 0
