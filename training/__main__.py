"""Command line: `python -m training <slug> [options]`, `python -m training evaluate <slug>`.

Examples:
    python -m training mnist --epochs 20
    python -m training cifar10 --resume          # continue an interrupted run
    python -m training cifar10 --init-from models/cifar10 --epochs 8 --learning-rate 1e-3
                                                 # more epochs on top of a finished model
    python -m training evaluate mnist            # recompute the card's test metrics
    python -m training evaluate mnist --through-upload
                                                 # the test set uploaded as a user would: served accuracy on the card
    python -m training report --write            # README's results table, from the cards
    python -m training meter kieu                # re-measure the verse model's meter and rhymes on its card
    python -m training export --all              # models/<slug>/model.tflite, what the web app serves
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path

from app.config import MODELS_DIR
from app.tasks import IMAGE, BUILTIN_TASKS, get_task


def image_parser(prog: str) -> argparse.ArgumentParser:
    """Options shared by every training command."""
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (default: the task's)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--data", default=os.environ.get("LSTMLAB_DATA"),
                   help="data file or folder (default: $LSTMLAB_DATA, ./data, ../shared/data)")
    p.add_argument("--models-dir", default=os.environ.get("LSTMLAB_MODELS", str(MODELS_DIR)))
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--quick", action="store_true", help="tiny subset, one epoch (for tests)")
    p.add_argument("--subset", type=int, default=0,
                   help="train on this many training images (a fixed random choice; 0: all)")
    p.add_argument("--resume", action="store_true", help="continue from the last epoch's backup")
    p.add_argument("--init-from", default=None, metavar="MODEL_DIR",
                   help="start from the weights of a finished model of the same architecture "
                        "(a folder holding model.keras and card.json); its card's history is kept")
    p.add_argument("--patience", type=int, default=6, help="early-stopping patience in epochs")
    p.add_argument("--architecture", default=None, help="override the task's architecture")
    p.add_argument("--model-kwargs", default=None, help='JSON, e.g. \'{"units": 96}\'')
    p.add_argument("--baseline-epochs", type=int, default=3,
                   help="epochs for the lab's baseline recipe trained in the same run (0: skip)")
    p.add_argument("--verbose", type=int, default=1,
                   help="Keras verbosity: 0 silent, 1 progress bar, 2 one line per epoch; "
                        "giving --verbose also keeps TensorFlow's C++ start-up log")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        print("tasks:", " ".join(BUILTIN_TASKS), "| commands: evaluate, meter, folder, compare-rnn, report, export")
        return 0 if argv else 2
    from training.data import DataError

    command, rest = argv[0], argv[1:]
    if command != "report":
        import_tensorflow(verbose=any(a.startswith("--verbose") for a in rest))
    try:
        if command == "evaluate":
            return evaluate(rest)
        if command == "folder":
            from training.folder import main as folder_main

            return folder_main(rest)
        if command == "export":
            from training.export import main as export_main

            return export_main(rest)
        if command == "report":
            from training.report import main as report_main

            return report_main(rest)
        if command == "meter":
            from training.textgen import meter_main

            return meter_main(rest)
        if command == "compare-rnn":
            from training.compare import main as compare_main

            return compare_main(rest)
        try:
            spec = get_task(command)
        except KeyError:
            print(f"unknown task {command!r}; known: {', '.join(BUILTIN_TASKS)}", file=sys.stderr)
            return 2
        if spec.kind == IMAGE:
            from training.images import train_image_task

            args = image_parser(f"python -m training {command}").parse_args(rest)
            train_image_task(spec, args, Path(args.models_dir))
            return 0
        from training.textgen import main as text_main

        return text_main(spec, rest)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # save_atomically has already removed the half-written folder; the model in place is intact.
        print(f"error: the disk is full ({exc}); nothing was replaced. Free some space and rerun "
              f"with --resume to continue from the last epoch.", file=sys.stderr)
        return 1


def import_tensorflow(verbose: bool) -> None:
    """Import TensorFlow; without `verbose` its C++ start-up log (written to the stderr file
    descriptor before absl's logging is set up, so no environment variable reaches it) is dropped."""
    if verbose:
        import tensorflow  # noqa: F401
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    sys.stderr.flush()
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)


def evaluate(rest: list[str]) -> int:
    """`python -m training evaluate <slug>`: recompute the test metrics, compare with the card."""
    p = argparse.ArgumentParser(prog="python -m training evaluate")
    p.add_argument("slug")
    p.add_argument("--data", default=os.environ.get("LSTMLAB_DATA"))
    p.add_argument("--models-dir", default=os.environ.get("LSTMLAB_MODELS", str(MODELS_DIR)))
    p.add_argument("--tolerance", type=float, default=0.002, help="allowed accuracy difference")
    p.add_argument("--through-upload", action="store_true",
                   help="image tasks: encode every test image as a user would send it (PNG, or the stored "
                        "JPEG), classify it through the app's own upload path and model store, and record "
                        "served_accuracy on the card (and a few one-click examples in models/<slug>/examples/)")
    p.add_argument("--no-examples", action="store_true", help="with --through-upload: leave examples/ alone")
    args = p.parse_args(rest)
    models_dir = Path(args.models_dir)
    if not (models_dir / args.slug / "card.json").is_file():
        print(f"error: no trained model at {models_dir / args.slug}; run: python -m training {args.slug}",
              file=sys.stderr)
        return 2
    spec = get_task(args.slug, models_dir)
    if spec.kind == IMAGE and args.through_upload:
        from training.images import evaluate_served

        result = evaluate_served(spec, args.data, models_dir, examples=not args.no_examples)
        result["ok"] = abs(result["difference"]) <= max(args.tolerance, 0.003)
        print(json.dumps(result, ensure_ascii=False, indent=1))
        return 0 if result["ok"] else 1
    if args.through_upload:
        print("error: --through-upload is for image tasks", file=sys.stderr)
        return 2
    if spec.kind == IMAGE:
        from training.images import evaluate_image_task

        result = evaluate_image_task(spec, args.data, models_dir)
    else:
        from training.textgen import evaluate_text_task

        result = evaluate_text_task(spec, args.data, models_dir)
    result["ok"] = abs(result["difference"]) <= args.tolerance
    print(json.dumps(result, ensure_ascii=False, indent=1))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
