"""HTML pages: home, one page per task (image upload/drawing or text generation), model cards,
the API documentation. Every form works without JavaScript; static/js only adds drag-and-drop,
paste, the drawing canvas and streaming."""

from __future__ import annotations

import json
import re
from pathlib import Path

from flask import Blueprint, abort, current_app, render_template, request, send_from_directory

from app.cards import Card
from app.decoding import DEFAULTS, LIMITS, STRATEGIES, generate, validate_request
from app.errors import InvalidInput
from app.i18n import current_language
from app.inference import classify_upload, png_data_url
from app.modelstore import PLOTS, Entry, get_store
from app.security import limited
from app.tasks import IMAGE, TEXT
from app.views.limits import TASK_PAGE
from app.views.lstm import image_trace_context, text_trace_context, wants_trace

bp = Blueprint("pages", __name__)

DRAWABLE = ("mnist", "fashion")  # preprocessing recipes for which a drawing canvas makes sense


@bp.get("/")
def home():
    """One card per task, available or not."""
    return render_template("home.html", entries=list(get_store()))


def find_entry(slug: str) -> Entry:
    """The task `slug` or a bilingual 404."""
    try:
        return get_store().get(slug)
    except KeyError:
        raise InvalidInput("There is no task '%(slug)s'.", 404, slug=slug) from None


@bp.route("/tasks/<slug>", methods=["GET", "POST"])
@limited(*TASK_PAGE)
def task(slug: str):
    """The task's page: GET shows the form, POST answers it (no JavaScript needed)."""
    entry = find_entry(slug)
    if not entry.available:
        return render_template("unavailable.html", entry=entry), 503
    if entry.spec.kind == IMAGE:
        return image_page(entry)
    return text_page(entry)


def image_page(entry: Entry, **extra):
    """Upload (or drawing) -> top class, top-5 bars, the image the LSTM read, model time (`extra`:
    more template context, e.g. a lab-bench run's form action and card link)."""
    examples = load_examples(entry.slug)
    context = {"entry": entry, "drawable": entry.spec.preprocess in DRAWABLE, "result": None, "error": None,
               "show_trace": request.method == "GET" or wants_trace(request.form.get("trace")),
               "examples": examples, "example": None, **extra}
    status = 200
    if request.method == "POST":
        try:
            if "example" in request.form:
                context["example"] = find_example(examples, request.form["example"])
                data = (example_folder(entry.slug) / context["example"]["file"]).read_bytes()
            else:
                data = read_upload()
            array, context["result"] = classify_upload(entry.predict, entry.spec, data)
            context["result"]["image"] = png_data_url(array)
            context["result"]["shape"] = array.shape
            if context["show_trace"]:
                context.update(image_trace_context(entry, array))
        except InvalidInput as exc:
            context["error"], status = exc.message(current_language()), exc.status
    return render_template("image_task.html", **context), status


EXAMPLE_FILE = re.compile(r"^[0-9]{2}\.(png|jpg)$")


def example_folder(slug: str) -> Path:
    """models/<slug>/examples/ (written by `python -m training evaluate <slug> --through-upload`)."""
    return (Path(get_store().models_dir) / slug / "examples").resolve()  # send_from_directory reads relative paths from the app package


def load_examples(slug: str) -> list[dict]:
    """The task's one-click examples from the test split ([] when there are none or the index is
    unreadable): {"id", "file", "label"} with file names checked against EXAMPLE_FILE."""
    folder = example_folder(slug)
    try:
        items = json.loads((folder / "examples.json").read_text(encoding="utf-8"))["examples"]
        return [{"id": str(i["id"]), "file": i["file"], "label": int(i["label"])} for i in items
                if EXAMPLE_FILE.match(str(i.get("file", ""))) and (folder / i["file"]).is_file()]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def find_example(examples: list[dict], example_id: str) -> dict:
    """The example `example_id` or a bilingual 400."""
    for item in examples:
        if item["id"] == example_id:
            return item
    raise InvalidInput("There is no such example.")


@bp.get("/tasks/<slug>/examples/<name>")
def example_image(slug: str, name: str):
    """One example file of a known task (only names in its examples index)."""
    entry = find_entry(slug)
    if not any(item["file"] == name for item in load_examples(entry.slug)):
        abort(404)
    mimetype = "image/png" if name.endswith(".png") else "image/jpeg"
    return send_from_directory(example_folder(entry.slug), name, mimetype=mimetype, max_age=3600)


@bp.get("/favicon.ico")
def favicon():
    """The site icon for clients that ask for /favicon.ico without reading the page's <link>."""
    return send_from_directory(Path(current_app.static_folder), "favicon.ico", mimetype="image/vnd.microsoft.icon",
                               max_age=86400)


def read_upload() -> bytes:
    """The bytes of the form field `file` (an empty picker is "no file", an empty file is decoded
    and refused by `decode_image`)."""
    upload = request.files.get("file")
    if upload is None:
        raise InvalidInput("No picture was chosen.")
    data = upload.read()
    if not data and not upload.filename:
        raise InvalidInput("No picture was chosen.")
    return data


def text_page(entry: Entry, **extra):
    """Seed and decoding options -> the generated text (streamed by JS, whole without it; `extra`:
    more template context, e.g. a lab-bench run's form action, stream URL and card link)."""
    form = dict(DEFAULTS)
    form.update(request.form.to_dict() if request.method == "POST" else {})
    lo, hi, default = LIMITS.get(entry.spec.tokenizer, LIMITS["words"])
    form.setdefault("length", default)
    context = {"entry": entry, "form": form, "strategies": STRATEGIES, "limits": (lo, hi),
               "result": None, "error": None, "verse": entry.spec.tokenizer == "syllables",
               "show_trace": wants_trace(request.form.get("trace")), **extra}
    status = 200
    if request.method == "POST":
        try:
            params = request.form.to_dict()
            if "example" in params:  # a one-click opening (a submit button): generate from it, show it in the box
                params["seed"] = form["seed"] = params["example"]
            if "seed" not in params:  # not this page's form (an empty box still sends the field)
                raise InvalidInput("The form has no seed field: send the seed text as 'seed'.")
            if entry.spec.tokenizer == "syllables":
                params["meter"] = "meter" in request.form
            path = [] if context["show_trace"] else None
            context["result"] = generate(entry.text_model, validate_request(entry.spec, params), path)
            if path is not None:
                context.update(text_trace_context(entry.text_model, path))
        except InvalidInput as exc:
            context["error"], status = exc.message(current_language()), exc.status
    return render_template("text_task.html", **context), status


@bp.get("/tasks/<slug>/card")
def card(slug: str):
    """The model card: layers, data, metrics, plots, baseline, the command that reproduces it."""
    entry = find_entry(slug)
    if entry.card is None:
        return render_template("unavailable.html", entry=entry), 503
    return render_template("card.html", entry=entry, card=entry.card.to_json(), scalars=scalar_metrics(entry.card))


@bp.get("/tasks/<slug>/plots/<name>")
def plot(slug: str, name: str):
    """Only the two known plot files of a known task (no other path can be reached)."""
    folder = Path(get_store().models_dir) / find_entry(slug).slug
    if name not in PLOTS or not (folder / name).is_file():
        abort(404)
    return send_from_directory(folder, name, mimetype="image/png", max_age=3600)


@bp.get("/docs/api")
def api_docs():
    """The JSON API with curl examples for the tasks this server has."""
    entries = list(get_store())
    image = next((e for e in entries if e.spec.kind == IMAGE and e.available), None)
    text = next((e for e in entries if e.spec.kind == TEXT and e.available), None)
    return render_template("api.html", entries=entries, image=image, text=text,
                           base=request.host_url.rstrip("/"), strategies=STRATEGIES, limits=LIMITS)


def scalar_metrics(card: Card) -> list[tuple[str, object]]:
    """Every scalar metric of a card, nested ones flattened as 'group.name' (rendered as a table)."""
    out = []

    def walk(prefix: str, value) -> None:
        if value is None or isinstance(value, (int, float, str)):
            out.append((prefix, value))
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)

    skip = {"per_class_accuracy", "confusion_matrix", "accuracy_by_race", "accuracy_by_age", "served"}
    for key, value in card.metrics.to_json().items():
        if key not in skip:
            walk(key, value)
    return out
