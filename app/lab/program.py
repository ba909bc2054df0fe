"""A bench recipe, or a shipped task's card, as a standalone Keras 3 program (.py) and notebook (.ipynb).

The program imports nothing from the app: it loads the data set's file (a JPEG data set's images
decoded with Pillow as `app.imaging` does), splits, shuffles, augments (shifts, mirror images,
jitter, CutMix), builds the layers of `training.build.make_recipe_model` (or the card's served
model), trains with the bench's optimiser, loss (label smoothing) and callbacks (the weight
average) of training/images.py, and evaluates on the test split. A shipped model trained in
several continued runs (its card's warm_start) becomes one training phase per run. Its comments
are in the page's language (`translate`, the caller's gettext). Pure Python: no Flask, no Keras.
"""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import jinja2
import nbformat

from app.errors import InvalidInput
from app.lab.recipes import Recipe, RunSettings
from app.tasks import IMAGE, TaskSpec

TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "lab" / "program.py.j2"
CELL_CLASSES = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "SimpleRNN"}
SHIPPED_DROPOUTS = {"rows_cols": 2, "renet": 3}  # the served models the program rebuilds: their Dropout layers
DEFAULT_SEED, DEFAULT_PATIENCE = 42, 6  # training.config.TrainConfig's, for a recorded command that gives none


def N_(msgid: str) -> str:
    """Mark a msgid for the catalogue (Babel's N_ keyword); translated later, by the caller."""
    return msgid


COMMENTS = {  # English msgids of the program's comments (translated by the caller)
    "title": N_("A lab-bench recipe as a standalone Keras 3 program"),
    "title_shipped": N_("A task's served model as a standalone Keras 3 program"),
    "standalone": N_("It needs only numpy, tensorflow and keras. Environment variables it reads:"),
    "standalone_jpeg": N_("It needs only numpy, pillow, tensorflow and keras. Environment variables it reads:"),
    "env_data": N_("folder holding the data sets (default: ./data)"),
    "env_subset": N_("training images to use (0: all); small values make a quick test run"),
    "env_epochs": N_("epochs (overrides the recipe's)"),
    "subset": N_("0: the whole training set"),
    "data": N_("Data"),
    "data_note": N_("The bench's data file: uint8 pixels 0-255, one class number per image."),
    "data_note_jpeg": N_("The bench's data file: every image stored as JPEG bytes (a split's images one after "
                         "another in one array, where each starts in its offsets), one class number per image."),
    "decode": N_("One image's JPEG bytes -> uint8 pixels 0-255, as the app reads an image of at most 1024 pixels "
                 "a side (app/imaging.py): EXIF orientation applied, converted to the model's colours, resized "
                 "only when not at the model's size."),
    "decode_split": N_("The images `picked` (their numbers) of one split, decoded."),
    "subset_rng": N_("the same random subset as the bench (random generator seeded with 0)"),
    "validation": N_("A tenth of the training images, shuffled with the run's seed, is held out for validation."),
    "pipeline": N_("Batches of images; for training shuffled and augmented as on the bench."),
    "one_hot": N_("label smoothing and CutMix need one-hot labels"),
    "cutmix": N_("CutMix: a box of another image of the batch is pasted into each image, the labels mixed by area"),
    "model": N_("Model"),
    "scale": N_("pixels 0-255 to 0-1 inside the model, so serving feeds the same raw pixels"),
    "rows": N_("Each image row is one time step."),
    "rows_cols": N_("One stack reads the rows, another the columns; their last states are joined."),
    "patches": N_("ReNet: an 8x8 grid of patches swept along rows, then down columns, then read row by row."),
    "train": N_("Train"),
    "schedule": N_("AdamW; the learning rate warms up for 1/20 of the steps, then follows a cosine decay."),
    "smoothing": N_("cross-entropy on one-hot labels, smoothed by LABEL_SMOOTHING"),
    "callbacks": N_("Keep the weights of the best validation accuracy; stop after PATIENCE epochs without progress."),
    "average": N_("The exponential moving average of the weights (momentum WEIGHT_AVERAGE) is validated and "
                  "checkpointed in place of the raw weights."),
    "average_doc": N_("After every batch: average = m * average + (1 - m) * weights, from the first batch's weights. "
                      "At each epoch's end the averaged weights are swapped in and validated, and their figures "
                      "replace the epoch's val_ figures (the raw ones kept as val_..._raw), so the callbacks after "
                      "this one keep and judge the averaged model; the raw weights train on at the next epoch."),
    "average_first": N_("first: the callbacks after it see the averaged weights"),
    "evaluate": N_("Evaluate"),
    "save": N_("the trained model, to serve or submit"),
    "shipped_model": N_("The served model: two stacked bidirectional LSTMs read the rows, two more the columns; "
                        "their summaries are joined."),
    "shipped_renet": N_("The served model, a ReNet: the image cut into patches, a bidirectional LSTM swept along "
                        "every row of patches, another down every column, then a third reads the feature map "
                        "row by row."),
    "lab_intro": N_("This is the seed notebook's model, with its bugs fixed:"),
    "fix_labels": N_("the notebook divided the labels by 255 as well as the pixels; labels stay class numbers "
                     "0-9, and only the pixels are scaled, inside the model."),
    "fix_optimizer": N_("the notebook trained 3 epochs with plain SGD, which barely learns in that time; AdamW "
                        "with a warm-up and cosine decay learns in the same 3 epochs."),
    "fix_labels_here": N_("fix: class numbers, not divided by 255"),
    "fix_optimizer_here": N_("fix: AdamW with a schedule, not the notebook's plain SGD"),
    "phases": N_("The served model was trained in several runs, each continuing from the weights of the one "
                 "before (its card's warm_start); this program trains them one after another, a phase each:"),
    "phase_run": N_("the run"),
    "phase_continue": N_("continues from the weights the phase before kept, with this run's settings"),
    "phase_augment": N_("The card records only the last run's augmentation; the earlier phases use it too."),
}
PHASE_TITLE = N_("Train, phase %(n)s of %(total)s")
DISTILLED = N_("The served model also learned from %(count)s teacher models (distillation, weight %(weight)s; the "
               "teachers' test accuracies %(teachers)s, their ensemble's %(ensemble)s). A standalone program cannot "
               "retrain the teachers within reason, so this one trains the same model with the same recipe "
               "without them: do not expect the served model's test accuracy (%(served)s).")
LAB_RECIPE = Recipe("rows", "lstm", 64, 2, False, 0.2)  # the seed notebook's model (recipes.preset "lab")


@dataclass(frozen=True)
class Phase:
    """One training run of a program: what `train_image_task` reads from its settings and the task."""

    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    patience: int = DEFAULT_PATIENCE
    augment: float = 0.0
    flip: bool = False
    jitter: float = 0.0
    label_smoothing: float = 0.0
    cutmix: float = 0.0
    weight_average: float = 0.0
    command: str = ""


def _one_line(text) -> str:
    """A card's text for the program's docstring or a comment: one line, no backslash or triple quote."""
    return " ".join(str(text).split()).replace("\\", "/").replace('"""', "'''")


@functools.cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE.parent)), keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["tuple_repr"] = lambda v: repr(tuple(v))
    env.filters["pyrepr"] = repr
    env.filters["oneline"] = _one_line
    return env.get_template(TEMPLATE.name)


def is_jpeg(spec: TaskSpec) -> bool:
    """Whether `spec`'s data file stores its images as JPEG bytes (jpeg_train, off_train, ...)."""
    return Path(spec.data_path).name.endswith("_jpeg.npz")


def check_supported(spec: TaskSpec) -> None:
    """Refuse (404) a data set the standalone program cannot train: text, images that are not in
    one .npz file (an instructor's folder on the server), or JPEG images the app prepares with the
    digits' or clothes' recipe."""
    if spec.kind != IMAGE:
        raise InvalidInput("No standalone program for text runs yet: only image runs have one.", 404)
    if not spec.data_path.endswith(".npz"):
        raise InvalidInput("No standalone program for this data set yet: its images are a folder of files on "
                           "the server, which only the bench reads.", 404)
    if is_jpeg(spec) and spec.preprocess != "plain":
        raise InvalidInput("No standalone program for this data set yet: its JPEG images are prepared with the "
                           "app's own recipe for digits or clothes.", 404)


def task_phase(spec: TaskSpec, settings: RunSettings) -> Phase:
    """A bench run's one phase: its settings, with the task's augmentation, label smoothing, CutMix
    and weight average, as `train_image_task` adds them (training/pipeline.py, fit.weight_average)."""
    extra = spec.extra if isinstance(spec.extra, dict) else {}
    return Phase(settings.epochs, settings.batch_size, settings.learning_rate, settings.seed,
                 augment=float(extra.get("augment", 0.0)), flip=bool(extra.get("flip")),
                 jitter=float(extra.get("jitter", 0.0)), label_smoothing=float(extra.get("label_smoothing", 0.0)),
                 cutmix=float(extra.get("cutmix", 0.0)), weight_average=float(extra.get("weight_average", 0.0)))


def render_program(spec: TaskSpec, recipe: Recipe, settings: RunSettings, translate=str,
                   shipped: dict | None = None) -> str:
    """The program's source for `recipe` trained with `settings` on `spec`'s data (`shipped`: the
    served model instead, {"architecture", "units", "top_units", "patch", "dropouts", "phases",
    "notes"}; see `shipped_program`)."""
    check_supported(spec)
    h, w, ch = spec.input_shape
    patch = shipped["patch"] if shipped and shipped["architecture"] == "renet" else max(1, min(h, w) // 8)
    gh, gw = h // patch, w // patch
    crop = (h - gh * patch, w - gw * patch) if (gh * patch, gw * patch) != (h, w) else None
    phases = shipped["phases"] if shipped else [task_phase(spec, settings)]
    return _template().render(
        c={k: translate(v) for k, v in COMMENTS.items()}, spec=spec, recipe=recipe, settings=settings,
        shipped=shipped, lab_fixes=recipe == LAB_RECIPE and not shipped, jpeg=is_jpeg(spec),
        cell=CELL_CLASSES[recipe.cell], h=h, w=w, ch=ch, patch=patch, gh=gh, gw=gw, crop=crop,
        width=recipe.units * (2 if recipe.bidirectional else 1), phases=phases, first=phases[0],
        phase_titles=[translate(PHASE_TITLE) % {"n": i + 1, "total": len(phases)} for i in range(len(phases))],
        one_hot=any(p.label_smoothing or p.cutmix for p in phases), any_cutmix=any(p.cutmix for p in phases),
        any_average=any(p.weight_average for p in phases), notes=(shipped or {}).get("notes", []))


def run_program(spec: TaskSpec, recipe: dict, settings: dict, translate=str) -> str:
    """`render_program` from a run record's stored recipe and settings (dicts)."""
    known_r, known_s = asdict(Recipe()), asdict(RunSettings())
    return render_program(spec, Recipe(**{k: v for k, v in (recipe or {}).items() if k in known_r}),
                          RunSettings(**{k: v for k, v in (settings or {}).items() if k in known_s}), translate)


def _flag(command: str, name: str, kind=float):
    """The value of `--name` in a recorded command line, or None."""
    found = re.search(rf"--{name}[ =](\S+)", command or "")
    try:
        return kind(found[1]) if found else None
    except ValueError:
        return None


def _momentum(optimizer: dict | None) -> float:
    """The weight average's momentum in a card's optimizer record (0: none)."""
    return float(((optimizer or {}).get("weight_average") or {}).get("momentum") or 0.0)


def card_phases(spec: TaskSpec, card: dict) -> list[Phase]:
    """One phase per run that trained the served model: the card's warm_start.previous_runs (their
    commands and optimizers), then the card's own run; an earlier run takes the last run's
    augmentation and label smoothing (a card records only those)."""
    training, optimizer = card.get("training") or {}, card.get("optimizer") or {}
    augmentation = training.get("augmentation") or {}
    last = Phase(epochs=int(training.get("epochs_requested") or spec.epochs),
                 batch_size=int(optimizer.get("batch_size") or spec.batch_size),
                 learning_rate=float(optimizer.get("peak_learning_rate") or spec.learning_rate),
                 seed=int(training.get("seed", 1)),
                 patience=int((training.get("early_stopping") or {}).get("patience") or DEFAULT_PATIENCE),
                 augment=float(augmentation.get("augment", 0.0)), flip=bool(augmentation.get("flip")),
                 jitter=float(augmentation.get("jitter", 0.0)),
                 label_smoothing=float(augmentation.get("label_smoothing", 0.0)),
                 cutmix=float(augmentation.get("cutmix", 0.0)), weight_average=_momentum(optimizer),
                 command=_one_line(card.get("command") or ""))
    phases = []
    for run in (card.get("warm_start") or {}).get("previous_runs") or []:
        command, opt = str(run.get("command") or ""), run.get("optimizer") or {}
        phases.append(replace(
            last, epochs=_flag(command, "epochs", int) or int(run.get("epochs_run") or last.epochs),
            batch_size=int(opt.get("batch_size") or last.batch_size),
            learning_rate=float(opt.get("peak_learning_rate") or last.learning_rate),
            seed=_flag(command, "seed", int) or DEFAULT_SEED, patience=_flag(command, "patience", int) or DEFAULT_PATIENCE,
            cutmix=_flag(command, "cutmix") or 0.0, weight_average=_momentum(opt), command=_one_line(command)))
    return [*phases, last]


def distillation_note(card: dict, translate=str, percent=lambda v: f"{v:.2%}") -> str | None:
    """What the program of a distilled model (its card's training.distillation, or an earlier run's
    --teachers) leaves out, with the card's teacher figures; None when it was not distilled."""
    distilled = (card.get("training") or {}).get("distillation") or {}
    earlier = any("--teachers" in str(r.get("command") or "")
                  for r in (card.get("warm_start") or {}).get("previous_runs") or [])
    if not distilled and not earlier:
        return None
    teachers = [t for t in distilled.get("teachers") or [] if isinstance(t, dict)]
    figure = lambda v: percent(float(v)) if isinstance(v, (int, float)) else "?"  # noqa: E731
    return translate(DISTILLED) % {
        "count": len(teachers) or "?", "weight": distilled.get("weight", "?"),
        "teachers": ", ".join(figure(t.get("test_accuracy")) for t in teachers) or "?",
        "ensemble": figure(distilled.get("ensemble_test_accuracy")),
        "served": figure((card.get("metrics") or {}).get("test_accuracy"))}


def shipped_program(spec: TaskSpec, card: dict, translate=str, percent=lambda v: f"{v:.2%}") -> str:
    """The program that trains a shipped task's served model as `python -m training` did: its
    card's architecture (rows and columns, or ReNet) and kwargs, one phase per run of its
    warm-start chain (`card_phases`); a distilled model's without its teachers, as its docstring
    says (404 for a model the program cannot rebuild)."""
    check_supported(spec)
    architecture = card.get("architecture")
    kw = card.get("model_kwargs") or (spec.extra.get("model") if isinstance(spec.extra, dict) else None) or {}
    h, w, _ch = spec.input_shape
    patch = int(kw.get("patch") or default_patch(h, w))
    if architecture not in SHIPPED_DROPOUTS or (architecture == "renet" and (h % patch or w % patch)):
        raise InvalidInput("No standalone program for this task's model yet: only the rows-and-columns LSTM "
                           "and ReNet have one.", 404)
    units = int(kw.get("units", 128 if architecture == "rows_cols" else 64))  # the builders' defaults
    # the card's own names of its (unnamed, so numbered by Keras) Dropout layers
    count = SHIPPED_DROPOUTS[architecture]
    dropouts = [row.get("name") for row in card.get("layers") or [] if row.get("type") == "Dropout"]
    if len(dropouts) != count or not all(isinstance(n, str) and n.isidentifier() for n in dropouts):
        dropouts = ["dropout"] + [f"dropout_{i}" for i in range(1, count)]
    phases = card_phases(spec, card)
    notes = [n for n in (distillation_note(card, translate, percent),
                         translate(COMMENTS["phase_augment"]) if len(phases) > 1 else None) if n]
    last = phases[-1]
    settings = RunSettings(epochs=last.epochs, batch_size=last.batch_size, learning_rate=last.learning_rate,
                           subset=int((card.get("training") or {}).get("subset") or 0), seed=last.seed)
    return render_program(spec, Recipe("rows_cols", "lstm", units, 2, True, 0.3), settings, translate, shipped={
        "architecture": architecture, "units": units, "top_units": int(kw.get("top_units", 128)), "patch": patch,
        "dropouts": dropouts, "phases": phases, "notes": notes})


def default_patch(h: int, w: int) -> int:
    """`training.build.default_patch` (the app does not import training): the patch side (at least
    2, dividing both sides) whose grid is closest to 8 patches a side."""
    sides = [p for p in range(2, min(h, w) + 1) if h % p == 0 and w % p == 0] or [1]
    return min(sides, key=lambda p: (abs(h / p - 8), p))


SECTION = "# " + "-" * 77 + " "  # the program's section headers: Data, Model, Train, Evaluate


def program_notebook(source: str) -> str:
    """The program as a Jupyter notebook (nbformat JSON): a Markdown title per section, then its code."""
    doc, _sep, body = source.partition('"""\n\n')
    cells = [nbformat.v4.new_markdown_cell(doc.strip().strip('"').replace("\n  ", "\n- ", 1).replace("\n  ", "\n- "))]
    head, *sections = body.split(SECTION)
    cells.append(nbformat.v4.new_code_cell(head.strip()))
    for section in sections:
        title, _sep, code = section.partition("\n")
        cells += [nbformat.v4.new_markdown_cell(f"## {title.strip()}"), nbformat.v4.new_code_cell(code.strip())]
    notebook = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})
    nbformat.validate(notebook)
    return nbformat.writes(notebook)
