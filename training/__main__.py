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

import errno
import importlib
import json
import os
import sys
from pathlib import Path

from app.tasks import BUILTIN_TASKS, IMAGE, get_task
from training import cli
from training.config import TrainConfig
from training.dataset import DataError

# The module whose main(args) runs each command (evaluate is below); imported only when run.
COMMAND_MODULES = {"folder": "training.folder", "export": "training.export", "report": "training.report",
                   "meter": "training.meter", "compare-rnn": "training.compare"}


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        print("tasks:", " ".join(BUILTIN_TASKS), "| commands:", ", ".join(cli.COMMANDS))
        return 0 if argv else 2

    command, rest = argv[0], argv[1:]
    if command in cli.COMMANDS:
        args = cli.parse_command(command, rest)
    else:
        try:
            spec = get_task(command)
        except KeyError:
            print(f"unknown task {command!r}; known: {', '.join(BUILTIN_TASKS)}", file=sys.stderr)
            return 2
        prog = f"python -m training {command}"
        args = (cli.training_parser(prog) if spec.kind == IMAGE else cli.text_parser(prog)).parse_args(rest)
    if command != "report":
        import_tensorflow(verbose=any(a.startswith("--verbose") for a in rest))
    try:
        if command == "evaluate":
            return evaluate(args)
        if command in cli.COMMANDS:
            return importlib.import_module(COMMAND_MODULES[command]).main(args)
        if spec.kind == IMAGE:
            from training.images import train_image_task as train_task  # heavy: Keras loads only for the command that trains
        else:
            from training.textgen import train_text_task as train_task  # heavy: as above
        train_task(spec, TrainConfig.from_args(args), Path(args.models_dir))
        return 0
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
        import tensorflow  # noqa: F401 - heavy: TensorFlow loads here, where its start-up output is silenced
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    sys.stderr.flush()
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401 - heavy: TensorFlow loads here, its start-up output silenced
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    import absl.logging  # after TensorFlow's import, which brings it

    absl.logging.set_verbosity(absl.logging.ERROR)


def evaluate(args) -> int:
    """`python -m training evaluate <slug>`: recompute the test metrics, compare with the card."""
    models_dir = Path(args.models_dir)
    if not (models_dir / args.slug / "card.json").is_file():
        print(f"error: no trained model at {models_dir / args.slug}; run: python -m training {args.slug}",
              file=sys.stderr)
        return 2
    spec = get_task(args.slug, models_dir)
    tolerance = args.tolerance
    if args.through_upload and spec.kind != IMAGE:
        print("error: --through-upload is for image tasks", file=sys.stderr)
        return 2
    if args.through_upload:
        from training.served import evaluate_served  # heavy: Keras loads only for the command that evaluates

        result = evaluate_served(spec, args.data, models_dir, examples=not args.no_examples)
        tolerance = max(tolerance, 0.003)
    elif spec.kind == IMAGE:
        from training.served import evaluate_image_task  # heavy: Keras loads only for the command that evaluates

        result = evaluate_image_task(spec, args.data, models_dir)
    else:
        from training.textgen import evaluate_text_task  # heavy: as above

        result = evaluate_text_task(spec, args.data, models_dir)
    result["ok"] = abs(result["difference"]) <= tolerance
    print(json.dumps(result, ensure_ascii=False, indent=1))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
