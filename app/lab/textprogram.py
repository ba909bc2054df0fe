"""A text bench recipe (kieu, nyt_headlines) as a standalone Keras 3 program (.py) and notebook.

The program imports nothing from the app: it reads the data set's file(s), cleans, splits and
numbers the tokens as `training.textdata` and `app.text` do, builds `training.build.make_word_lstm`'s
layers for the recipe (with the task's own extras: whole-word, locked and weight dropout, the
snippets, the weight average), trains with the queue job's optimiser and callbacks
(`training.textgen.train_text_task`) and reports the test perplexity. Comments are in the page's
language (`translate`, the caller's gettext). Pure Python: no Flask, no Keras.
"""

from __future__ import annotations

import functools
import re
import textwrap
from dataclasses import asdict

import jinja2

from app.errors import InvalidInput
from app.lab.program import CELL_CLASSES, N_, TEMPLATE
from app.lab.textrecipes import TextRecipe, TextSettings, model_kwargs
from app.tasks import TEXT, TaskSpec

COMMENTS = {  # English msgids of the program's comments (translated by the caller)
    "title": N_("A text lab-bench recipe as a standalone Keras 3 program"),
    "standalone": N_("It needs only numpy, tensorflow and keras (and pandas for the headlines). "
                     "Environment variables it reads:"),
    "env_data": N_("folder holding the data sets (default: ./data)"),
    "env_subset": N_("headlines or blocks of four couplets to use (0: all); small values make a quick test run"),
    "env_epochs": N_("epochs (overrides the recipe's)"),
    "subset": N_("0: the whole text"),
    "title_shipped": N_("A text task's served model as a standalone Keras 3 program"),
    "sequence_length": N_("training sequences are cut into pieces of at most this many tokens (0: whole)"),
    "patience": N_("epochs without a better validation loss before training stops"),
    "min_count": N_("tokens seen fewer times in the training split become <unk>"),
    "specials": N_("ids 0, 1, 2 of every vocabulary"),
    "snippet": N_("starts an article's snippet: read as the first input, never a target"),
    "data": N_("Data"),
    "clean": N_("Words as the app cuts them: Unicode NFC, lower case, punctuation removed (apostrophes and "
                "dots inside a word join it)."),
    "split": N_("A seeded 80/10/10 split: training, validation, test."),
    "headlines": N_("Every headline of every Articles*.csv, at most 39 words, each kept once, then <eol>."),
    "aux": N_("Extra training text: the snippet (and abstract) of each training article. An article goes "
              "with its headline's split, and no text of a validation or test article is trained on."),
    "aux_dropped": N_("a headline left out of the split: its text goes nowhere"),
    "corpus": N_("The instructor's corpus, split when it was saved: train.txt, validation.txt and test.txt in a "
                 "folder named after it, one verse or headline per line (at most 99 words, then <eol>)."),
    "verses": N_("The verse lines (NFC), paired into couplets, four couplets to a block; blocks are split."),
    "verse_tokens": N_("The syllables of a block's lines, <eol> after each line."),
    "vocabulary": N_("The vocabulary, from the training split only: most frequent first, ties alphabetical."),
    "shift": N_("Inputs and targets: the target is the sequence, the input <eol> then the sequence "
                "shifted right by one."),
    "marker_input": N_("a snippet: its marker is the first input"),
    "pad": N_("The pairs as two arrays padded with 0 to the longest target."),
    "batches": N_("Batches of sequences of similar length, each padded only to its own longest; "
                  "reshuffled every epoch."),
    "widths": N_("Keras reads the input shape off the first two batches: keep their widths different."),
    "weights": N_("padding counts for nothing in the loss"),
    "cut": N_("Training sequences cut into pieces (truncated backpropagation through time)."),
    "model": N_("Model"),
    "tied": N_("An embedding whose matrix, transposed, also gives the output logits (tied embeddings)."),
    "weight_drop_cell": N_("An LSTM cell that uses a dropped copy of its recurrent kernel while training."),
    "weight_drop": N_("Weight drop (AWD-LSTM): while training, one dropout mask per batch on the recurrent "
                      "kernel; at inference a plain LSTM with the same weights."),
    "build": N_("Embedding, dropout, the recurrent layers (one output per step), dropout, softmax over "
                "the vocabulary."),
    "build_weight_drop": N_("weight_drop 0 builds the plain model that is saved and served."),
    "word_dropout": N_("drops whole words"),
    "locked": N_("the same units dropped at every step of a sequence"),
    "tied_out": N_("the embedding matrix, transposed"),
    "train": N_("Train"),
    "perplexity": N_("Perplexity over the non-padding targets: e to the mean negative log-likelihood."),
    "average": N_("An exponential moving average of the weights after every batch; at each epoch's end the "
                  "averaged weights are swapped in and validated, so the checkpoint keeps the best average."),
    "swap_in": N_("the average in, validated"),
    "swap_out": N_("The raw weights back for the next epoch."),
    "callbacks": N_("Keep the weights of the best validation loss, stop after PATIENCE epochs without progress, "
                    "halve the learning rate after a third of them."),
    "evaluate": N_("Evaluate"),
    "served": N_("the plain model that is served, with the trained weights"),
    "save": N_("the trained model, to serve or submit"),
    "vocab_file": N_("the vocabulary, in the app's vocab.json form: token i has id i"),
    "lab_intro": N_("This is the seed notebook's section 3 model, with its bugs fixed:"),
    "fix_data": N_("the notebook trained on two headlines only; this trains on every headline of the "
                   "training split."),
    "fix_eval": N_("the notebook measured nothing on unseen text; a validation split picks the best epoch "
                   "and a test split gives the perplexity."),
}
LAB_RECIPE = TextRecipe(embedding=10, cell="lstm", units=100, layers=1, dropout=0.1, tied=False)  # preset "lab"
PATIENCE = 6  # the bench's early stopping (training.config.TrainConfig.patience)
MODEL_DEFAULTS = {"word_dropout": 0.0, "locked": False, "weight_drop": 0.0, "cell": "lstm", "rnn_layers": 1,
                  "projection": 0, "tied": False}  # make_word_lstm's defaults where a recipe sets none


@functools.cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE.parent)), keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["pyrepr"] = repr
    return env.get_template("text_program.py.j2")


def program_kwargs(spec: TaskSpec, recipe: TextRecipe) -> dict:
    """`make_word_lstm`'s keyword arguments as the queue job builds them: the task's own model
    extras (app/tasks.py) under the recipe's `model_kwargs`."""
    extra = spec.extra.get("model", {}) if isinstance(spec.extra, dict) else {}
    return MODEL_DEFAULTS | extra | model_kwargs(recipe)


def render_text_program(spec: TaskSpec, recipe: TextRecipe, settings: TextSettings, translate=str) -> str:
    """The program's source for `recipe` trained with `settings` on the text data set `spec`."""
    if spec.kind != TEXT:
        raise InvalidInput("There is no text data set %(slug)s.", 404, slug=spec.slug)
    extra = spec.extra if isinstance(spec.extra, dict) else {}
    return _render(spec, program_kwargs(spec, recipe), settings, recipe.sequence_length, recipe.min_count,
                   PATIENCE, float(extra.get("weight_average", 0.0)), translate,
                   lab_fixes=recipe == LAB_RECIPE and spec.tokenizer == "words")


def shipped_text_program(spec: TaskSpec, card: dict, translate=str) -> str:
    """The program that trains a shipped text task's served model as its card's command did: its
    model keywords, epochs, batch, learning rate, seed, cut-off, sequence length, patience and
    weight average (404 for a card without them or a model continued from another)."""
    training, optimizer, vocab = (card.get(k) or {} for k in ("training", "optimizer", "vocabulary"))
    kw = card.get("model_kwargs")
    known = set(MODEL_DEFAULTS) | {"embedding", "units", "dropout"}
    if (spec.kind != TEXT or card.get("architecture") != "word_lstm" or not isinstance(kw, dict) or not set(kw) <= known
            or card.get("warm_start") or training.get("quick") or training.get("trained_on") == "headlines only"):
        raise InvalidInput("No standalone program for this task's model: it was not trained in one run "
                           "from its data.", 404)
    settings = TextSettings(epochs=int(training.get("epochs_requested") or spec.epochs),
                            batch_size=int(optimizer.get("batch_size") or spec.batch_size),
                            learning_rate=float(optimizer.get("learning_rate") or spec.learning_rate),
                            seed=int(training.get("seed", 42)))
    average = (optimizer.get("weight_average") or {}).get("momentum") or 0.0
    patience = int((training.get("early_stopping") or {}).get("patience") or PATIENCE)
    return _render(spec, MODEL_DEFAULTS | kw, settings, int(training.get("sequence_length") or 0),
                   int(vocab.get("min_count") or 2), patience, float(average), translate, shipped=True)


def _render(spec: TaskSpec, kw: dict, settings: TextSettings, sequence_length: int, min_count: int, patience: int,
            average: float, translate, lab_fixes: bool = False, shipped: bool = False) -> str:
    extra = spec.extra if isinstance(spec.extra, dict) else {}
    corpus = extra.get("dataset") == "instructor"
    return tidy(_template().render(
        c={k: translate(v) for k, v in COMMENTS.items()}, spec=spec, settings=settings, kw=kw, shipped=shipped,
        sequence_length=sequence_length, min_count=min_count, patience=patience,
        cell=CELL_CLASSES[kw["cell"]], words=spec.tokenizer == "words", corpus=corpus,
        aux=spec.tokenizer == "words" and not corpus and extra.get("aux_text", "none") == "snippets",
        weight_drop=bool(kw["weight_drop"]) and kw["cell"] == "lstm", average=average, lab_fixes=lab_fixes))


WIDTH = 100


def _wrap(line: str) -> str:
    """A comment line or one-line docstring longer than WIDTH, wrapped at its own indentation."""
    body = line.lstrip()
    indent = line[:len(line) - len(body)]
    if len(line) <= WIDTH:
        return line
    if body.startswith("# "):
        return "\n".join(textwrap.wrap(body[2:], WIDTH - len(indent) - 2, initial_indent=indent + "# ",
                                        subsequent_indent=indent + "# "))
    if body.startswith('"""') and body.endswith('"""') and len(body) > 6:
        text = textwrap.wrap(body[3:-3], WIDTH - len(indent) - 3)
        return "\n".join([indent + '"""' + text[0], *(indent + t for t in text[1:]), indent + '"""'])
    return line


def tidy(source: str) -> str:
    """The rendered program with long comments wrapped and at most two blank lines in a row."""
    head, sep, body = source.partition('"""\n\n')  # the module docstring stays as written
    body = "\n".join(_wrap(line) for line in body.split("\n"))
    return head + sep + re.sub(r"\n{4,}", "\n\n\n", body)


def run_text_program(spec: TaskSpec, recipe: dict, settings: dict, translate=str) -> str:
    """`render_text_program` from a run record's stored recipe and settings (dicts)."""
    known_r, known_s = asdict(TextRecipe()), asdict(TextSettings())
    return render_text_program(spec, TextRecipe(**{k: v for k, v in (recipe or {}).items() if k in known_r}),
                               TextSettings(**{k: v for k, v in (settings or {}).items() if k in known_s}), translate)
