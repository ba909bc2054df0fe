"""The options of every `python -m training` command: one argparse parser per command.

`training/__main__.py` parses with these and hands the namespace to the command's module. Nothing
here imports Keras or TensorFlow, so the lab's job runner (`app.lab.jobs`) can build the
namespace a training run expects without them.
"""

from __future__ import annotations

import argparse
import os

from app.config import MODELS_DIR
from app.splits import TEST_FRACTION
from training import compare
from training.config import DEFAULTS
from training.meter import METER_COUPLETS
from training.textdata import AUX_TEXT

PROG = "python -m training"


def _models_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models-dir", default=os.environ.get("LSTMLAB_MODELS", str(MODELS_DIR)))


def _names(value: str) -> list[str]:
    """A comma-separated list (empty items dropped)."""
    return [name for name in value.split(",") if name]


def _share(value: str) -> float:
    """A number in (0, 1] (argparse names the option and the value when it is not)."""
    share = float(value)
    if not 0 < share <= 1:
        raise ValueError(value)
    return share


def _fraction(value: str) -> float:
    """A number in [0, 1]."""
    fraction = float(value)
    if not 0 <= fraction <= 1:
        raise ValueError(value)
    return fraction


def common_parser(prog: str) -> argparse.ArgumentParser:
    """Options shared by every training command, image or text."""
    p = argparse.ArgumentParser(prog=prog)
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (default: the task's)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--data", default=os.environ.get("LSTMLAB_DATA"),
                   help="data file or folder (default: $LSTMLAB_DATA, ./data, ../shared/data)")
    _models_dir(p)
    p.add_argument("--seed", type=int, default=DEFAULTS.seed)
    p.add_argument("--quick", action="store_true", help="tiny subset, one epoch (for tests)")
    p.add_argument("--subset", type=int, default=DEFAULTS.subset,
                   help="train on this many training images (a fixed random choice; 0: all)")
    p.add_argument("--resume", action="store_true", help="continue from the last epoch's backup")
    p.add_argument("--init-from", default=None, metavar="MODEL_DIR",
                   help="start from the weights of a finished model of the same architecture "
                        "(a folder holding model.keras and card.json); its card's history is kept")
    p.add_argument("--weight-average", type=float, default=None, metavar="MOMENTUM",
                   help="validate and keep an exponential moving average of the weights, e.g. 0.998 "
                        "(default: the task's; 0 turns it off)")
    p.add_argument("--patience", type=int, default=DEFAULTS.patience, help="early-stopping patience in epochs")
    p.add_argument("--architecture", default=None, help="override the task's architecture")
    p.add_argument("--model-kwargs", default=None, help='JSON, e.g. \'{"units": 96}\'')
    p.add_argument("--baseline-epochs", type=int, default=DEFAULTS.baseline_epochs,
                   help="epochs for the lab's baseline recipe trained in the same run (0: skip)")
    p.add_argument("--verbose", type=int, default=DEFAULTS.verbose,
                   help="Keras verbosity: 0 silent, 1 progress bar, 2 one line per epoch; "
                        "giving --verbose also keeps TensorFlow's C++ start-up log")
    return p


def training_parser(prog: str) -> argparse.ArgumentParser:
    """The options an image task trains with: the common ones and the loss's group balance."""
    p = common_parser(prog)
    p.add_argument("--balance", type=_names, default=None, metavar="GROUPS",
                   help="weight the loss so that rarer groups count more, by the groups the data set records "
                        "per image, e.g. race,age (UTKFace; ages in bands)")
    p.add_argument("--balance-power", type=float, default=DEFAULTS.balance_power, metavar="P",
                   help="with --balance: weight each image by its group's size to the power -P "
                        "(1: every group the same total weight)")
    p.add_argument("--teachers", type=_names, default=None, metavar="DIRS",
                   help="distil an ensemble: finished model folders of the task, comma-separated, whose mean "
                        "class probabilities become part of each training image's target")
    p.add_argument("--distill-weight", type=_share, default=DEFAULTS.distill_weight, metavar="W",
                   help="with --teachers: target = W x teachers' probabilities + (1 - W) x the label")
    p.add_argument("--teacher-mirror", action="store_true",
                   help="with --teachers, on a task that trains on mirror images: each teacher reads every "
                        "image and its mirror image and gives their mean (a stronger ensemble, twice the cost)")
    p.add_argument("--cutmix", type=_fraction, default=None, metavar="FACTOR",
                   help="CutMix every training batch: paste a box of another image of the batch into each "
                        "image and mix the labels (and teachers' targets) by area; FACTOR in (0, 1] bounds "
                        "the Beta parameter of the box size (default: the task's; 0 turns it off)")
    return p


def text_parser(prog: str) -> argparse.ArgumentParser:
    """The common training flags plus the text model's size."""
    p = common_parser(prog)
    p.add_argument("--min-count", type=int, default=DEFAULTS.min_count, help="rarer tokens become <unk>")
    p.add_argument("--sequence-length", type=int, default=DEFAULTS.sequence_length,
                   help="cut training sequences into pieces of at most this many tokens (0: whole)")
    p.add_argument("--train-text", choices=("all", "headlines"), default=DEFAULTS.train_text,
                   help="headlines: fit on the headlines only, the auxiliary text still loaded for the "
                        "vocabulary and the n-gram (e.g. a last phase with --init-from)")
    p.add_argument("--aux-text", choices=AUX_TEXT, default=None,
                   help="headlines: also train on the training articles' snippets (default: the task's)")
    return p


def folder_parser() -> argparse.ArgumentParser:
    """`python -m training folder` options: the common training flags plus the task's own."""
    p = training_parser(f"{PROG} folder")
    p.add_argument("--slug", required=True, help="task name: lowercase letters, digits, underscore")
    p.add_argument("--data-dir", required=True, help="folder of class sub-folders (or train/ and test/)")
    p.add_argument("--image-size", type=int, default=None, help="square side in pixels (default 64)")
    p.add_argument("--colour", choices=("rgb", "grey"), default=None, help="default rgb")
    p.add_argument("--resize", choices=("crop", "stretch"), default="crop",
                   help="crop: keep the aspect ratio and centre-crop (default); stretch: ignore it")
    p.add_argument("--test-fraction", type=float, default=TEST_FRACTION,
                   help="share of each class held out for testing when there is no test/ folder")
    p.add_argument("--flip", action="store_true", help="augment with mirror images (not for text or arrows)")
    p.add_argument("--title-en", default=None)
    p.add_argument("--title-vi", default=None)
    return p


def _model_parser(command: str) -> argparse.ArgumentParser:
    """A command on one trained model: its slug, the data and the models folder."""
    p = argparse.ArgumentParser(prog=f"{PROG} {command}")
    p.add_argument("slug")
    p.add_argument("--data", default=os.environ.get("LSTMLAB_DATA"))
    _models_dir(p)
    return p


def evaluate_parser() -> argparse.ArgumentParser:
    """`python -m training evaluate <slug>` options."""
    p = _model_parser("evaluate")
    p.add_argument("--tolerance", type=float, default=0.002, help="allowed accuracy difference")
    p.add_argument("--through-upload", action="store_true",
                   help="image tasks: encode every test image as a user would send it (PNG, or the stored "
                        "JPEG), classify it through the app's own upload path and model store, and record "
                        "served_accuracy on the card (and a few one-click examples in models/<slug>/examples/)")
    p.add_argument("--no-examples", action="store_true", help="with --through-upload: leave examples/ alone")
    return p


def meter_parser() -> argparse.ArgumentParser:
    """`python -m training meter kieu` options."""
    p = _model_parser("meter")
    p.add_argument("--couplets", type=int, default=METER_COUPLETS)
    return p


def compare_parser() -> argparse.ArgumentParser:
    """`python -m training compare-rnn` options."""
    p = argparse.ArgumentParser(prog=f"{PROG} compare-rnn", description=compare.__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, one epoch (for tests)")
    p.add_argument("--data", default=os.environ.get("LSTMLAB_DATA"), help="data file or folder for MNIST")
    _models_dir(p)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--verbose", type=int, default=2)
    return p


def report_parser() -> argparse.ArgumentParser:
    """`python -m training report` options."""
    p = argparse.ArgumentParser(prog=f"{PROG} report")
    _models_dir(p)
    p.add_argument("--write", action="store_true", help="replace the results section of README.md")
    return p


def export_parser() -> argparse.ArgumentParser:
    """`python -m training export` options."""
    p = argparse.ArgumentParser(prog=f"{PROG} export")
    p.add_argument("slugs", nargs="*")
    p.add_argument("--all", action="store_true", help="every image task found in --models-dir")
    _models_dir(p)
    p.add_argument("--data", default=os.environ.get("LSTMLAB_DATA"), help="data root for the check images")
    p.add_argument("--force", action="store_true", help="export even when the card says it is current")
    return p


COMMANDS = {"evaluate": evaluate_parser, "meter": meter_parser, "folder": folder_parser,
            "compare-rnn": compare_parser, "report": report_parser, "export": export_parser}


def parse_command(command: str, argv: list[str]) -> argparse.Namespace:
    """The options of one of COMMANDS (argparse exits with status 2 on a bad flag)."""
    p = COMMANDS[command]()
    args = p.parse_args(argv)
    if command == "export" and args.all == bool(args.slugs):
        p.error("name the tasks to export, or --all")
    return args
