"""A bench recipe as a standalone Keras 3 program (.py) and notebook (.ipynb).

The program imports nothing from the app: it loads the data set's file, splits, shuffles,
augments, builds the layers of `training.build.make_recipe_model`, trains with the bench's
optimiser and callbacks (training/images.py) and evaluates on the test split. Its comments are
in the page's language (`translate`, the caller's gettext). Pure Python: no Flask, no Keras.
"""

from __future__ import annotations

import functools
from dataclasses import asdict
from pathlib import Path

import jinja2
import nbformat

from app.errors import InvalidInput
from app.lab.recipes import Recipe, RunSettings
from app.tasks import IMAGE, TaskSpec

TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "lab" / "program.py.j2"
CELL_CLASSES = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "SimpleRNN"}

def N_(msgid: str) -> str:
    """Mark a msgid for the catalogue (Babel's N_ keyword); translated later, by the caller."""
    return msgid


COMMENTS = {  # English msgids of the program's comments (translated by the caller)
    "title": N_("A lab-bench recipe as a standalone Keras 3 program"),
    "title_shipped": N_("A task's served model as a standalone Keras 3 program"),
    "standalone": N_("It needs only numpy, tensorflow and keras. Environment variables it reads:"),
    "env_data": N_("folder holding the data sets (default: ./data)"),
    "env_subset": N_("training images to use (0: all); small values make a quick test run"),
    "env_epochs": N_("epochs (overrides the recipe's)"),
    "subset": N_("0: the whole training set"),
    "data": N_("Data"),
    "data_note": N_("The bench's data file: uint8 pixels 0-255, one class number per image."),
    "subset_rng": N_("the same random subset as the bench (random generator seeded with 0)"),
    "validation": N_("A tenth of the training images, shuffled with the run's seed, is held out for validation."),
    "pipeline": N_("Batches of images; for training shuffled and augmented as on the bench."),
    "model": N_("Model"),
    "scale": N_("pixels 0-255 to 0-1 inside the model, so serving feeds the same raw pixels"),
    "rows": N_("Each image row is one time step."),
    "rows_cols": N_("One stack reads the rows, another the columns; their last states are joined."),
    "patches": N_("ReNet: an 8x8 grid of patches swept along rows, then down columns, then read row by row."),
    "train": N_("Train"),
    "schedule": N_("AdamW; the learning rate warms up for 1/20 of the steps, then follows a cosine decay."),
    "callbacks": N_("Keep the weights of the best validation accuracy; stop after 6 epochs without progress."),
    "evaluate": N_("Evaluate"),
    "save": N_("the trained model, to serve or submit"),
    "shipped_model": N_("The served model: two stacked bidirectional LSTMs read the rows, two more the columns; "
                        "their summaries are joined."),
    "lab_intro": N_("This is the seed notebook's model, with its bugs fixed:"),
    "fix_labels": N_("the notebook divided the labels by 255 as well as the pixels; labels stay class numbers "
                     "0-9, and only the pixels are scaled, inside the model."),
    "fix_optimizer": N_("the notebook trained 3 epochs with plain SGD, which barely learns in that time; AdamW "
                        "with a warm-up and cosine decay learns in the same 3 epochs."),
    "fix_labels_here": N_("fix: class numbers, not divided by 255"),
    "fix_optimizer_here": N_("fix: AdamW with a schedule, not the notebook's plain SGD"),
}
LAB_RECIPE = Recipe("rows", "lstm", 64, 2, False, 0.2)  # the seed notebook's model (recipes.preset "lab")


@functools.cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE.parent)), keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["tuple_repr"] = lambda v: repr(tuple(v))
    env.filters["pyrepr"] = repr
    return env.get_template(TEMPLATE.name)


def check_supported(spec: TaskSpec) -> None:
    """Refuse (404) a data set the standalone program cannot train: text, or images not in a plain .npz."""
    if spec.kind != IMAGE:
        raise InvalidInput("No standalone program for text runs yet: only image runs have one.", 404)
    if not spec.data_path.endswith(".npz") or "jpeg" in spec.data_path:
        raise InvalidInput("No standalone program for this data set yet: its images are stored as "
                           "JPEG files, which only the bench reads.", 404)


def render_program(spec: TaskSpec, recipe: Recipe, settings: RunSettings, translate=str,
                   shipped: dict | None = None) -> str:
    """The program's source for `recipe` trained with `settings` on `spec`'s data (`shipped`:
    the served rows-and-columns model instead, {"units", "dropouts"}; see `shipped_program`)."""
    check_supported(spec)
    h, w, ch = spec.input_shape
    patch = max(1, min(h, w) // 8)
    gh, gw = h // patch, w // patch
    crop = (h - gh * patch, w - gw * patch) if (gh * patch, gw * patch) != (h, w) else None
    extra = spec.extra if isinstance(spec.extra, dict) else {}
    if extra.get("label_smoothing") or extra.get("cutmix") or extra.get("weight_average"):
        raise InvalidInput("No standalone program for this data set yet: its training uses label smoothing, "
                           "CutMix or a weight average.", 404)
    return _template().render(
        c={k: translate(v) for k, v in COMMENTS.items()}, spec=spec, recipe=recipe, settings=settings,
        shipped=shipped, lab_fixes=recipe == LAB_RECIPE and not shipped,
        cell=CELL_CLASSES[recipe.cell], h=h, w=w, ch=ch, patch=patch, gh=gh, gw=gw, crop=crop,
        width=recipe.units * (2 if recipe.bidirectional else 1),
        augment=float(extra.get("augment", 0.0)), flip=bool(extra.get("flip")), jitter=float(extra.get("jitter", 0.0)))


def run_program(spec: TaskSpec, recipe: dict, settings: dict, translate=str) -> str:
    """`render_program` from a run record's stored recipe and settings (dicts)."""
    known_r, known_s = asdict(Recipe()), asdict(RunSettings())
    return render_program(spec, Recipe(**{k: v for k, v in (recipe or {}).items() if k in known_r}),
                          RunSettings(**{k: v for k, v in (settings or {}).items() if k in known_s}), translate)


def shipped_program(spec: TaskSpec, card: dict, translate=str) -> str:
    """The program that trains a shipped task's served model as `python -m training` did: its
    card's architecture, units, epochs, batch, peak learning rate and seed (404 for a model the
    program cannot rebuild)."""
    check_supported(spec)
    if card.get("architecture") != "rows_cols":
        raise InvalidInput("No standalone program for this task's model yet: only the rows-and-columns LSTM "
                           "has one.", 404)
    training, optimizer = card.get("training") or {}, card.get("optimizer") or {}
    settings = RunSettings(epochs=int(training.get("epochs_requested") or spec.epochs),
                           batch_size=int(optimizer.get("batch_size") or spec.batch_size),
                           learning_rate=float(optimizer.get("peak_learning_rate") or spec.learning_rate),
                           subset=0, seed=int(training.get("seed", 1)))
    units = int((card.get("model_kwargs") or {}).get("units", 128))  # make_rows_cols' default
    # the card's own names of its two (unnamed, so numbered by Keras) Dropout layers
    dropouts = [row.get("name") for row in card.get("layers") or [] if row.get("type") == "Dropout"]
    if len(dropouts) != 2 or not all(isinstance(n, str) and n.isidentifier() for n in dropouts):
        dropouts = ["dropout", "dropout_1"]
    recipe = Recipe("rows_cols", "lstm", units, 2, True, 0.3)
    return render_program(spec, recipe, settings, translate, shipped={"units": units, "dropouts": dropouts})


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
