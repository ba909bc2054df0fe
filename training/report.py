"""`python -m training report [--write]`: the results table of the shipped models, read from their cards.

Every figure comes from a `card.json` written by a training run (and checked by `evaluate`);
nothing here is typed in except the targets set for each task. With --write the table replaces the
part of README.md between the RESULTS markers; a test checks README and cards agree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from app.config import MODELS_DIR, ROOT

START, END = "<!-- RESULTS: python -m training report --write -->", "<!-- /RESULTS -->"

# Floors, goals and the best published row-by-row LSTM: the project's targets for each task.
IMAGE_TARGETS = {
    "mnist": (0.990, 0.993, 0.989),
    "fashion_mnist": (0.905, 0.915, 0.896),
    "cifar10": (0.76, 0.80, 0.56),
    "cats_dogs": (0.83, 0.85, None),
    "faces_gender": (0.90, 0.92, None),
}


def pct(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def verdict(acc: float, floor: float, goal: float) -> str:
    if acc >= goal:
        return "goal met"
    return "floor met, goal missed" if acc >= floor else "**below floor**"


def load_cards(models_dir: Path) -> dict[str, dict]:
    cards = {}
    for path in sorted(Path(models_dir).glob("*/card.json")):
        try:
            cards[path.parent.name] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
    return cards


def epochs_and_time(card: dict) -> tuple[int, float]:
    """Epochs and training seconds over the run and every run it continued (--init-from)."""
    runs = card.get("warm_start", {}).get("previous_runs", []) + [card["training"]]
    return (sum(r.get("epochs_run", 0) for r in runs),
            sum(r.get("seconds_total") or 0 for r in runs))


def model_mb(models_dir: Path, slug: str) -> str:
    path = Path(models_dir) / slug / "model.keras"
    return f"{path.stat().st_size / 1e6:.1f}" if path.is_file() else "–"


def image_table(cards: dict, models_dir: Path) -> list[str]:
    rows = ["| task | test accuracy | served (upload path) | floor / goal | verdict | lab recipe (same run) "
            "| published row-wise LSTM | architecture | parameters | file MB | epochs | training time |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for slug, (floor, goal, published) in IMAGE_TARGETS.items():
        card = cards.get(slug)
        if not card:
            rows.append(f"| {slug} | not trained | | {pct(floor, 1)} / {pct(goal, 1)} | | | | | | | | |")
            continue
        acc = card["metrics"]["test_accuracy"]
        epochs, seconds = epochs_and_time(card)
        base = (card.get("baseline") or {}).get("test_accuracy")
        rows.append(
            f"| {slug} | **{pct(acc)}** (n={card['metrics']['test_count']:,}) | {served_cell(card['metrics'])} "
            f"| {pct(floor, 1)} / {pct(goal, 1)} "
            f"| {verdict(acc, floor, goal)} | {pct(base)} | {pct(published, 1)} | {card['architecture']} "
            f"| {card['params_total']:,} | {model_mb(models_dir, slug)} | {epochs} | {seconds / 60:.0f} min |")
    return rows


def served_cell(metrics: dict) -> str:
    """The served accuracy (each test image uploaded through the app) and any photo set's."""
    served = metrics.get("served_accuracy")
    if served is None:
        return "not measured"
    cell = f"{pct(served)} (n={metrics.get('served_count', 0):,})"
    for key, name in (("product_photos", "product photos"), ("digit_photos", "digit photos")):
        photos = (metrics.get("served") or {}).get(key)
        if photos:
            cell += f"; {name} {pct(photos['accuracy'])} (n={photos['count']:,})"
    return cell


def text_table(cards: dict, models_dir: Path) -> list[str]:
    rows = ["| task | test perplexity | Kneser-Ney n-gram (tuned on validation) | LSTM vs n-gram "
            "| goal: ≥ 10% below | top-1 / top-5 next word | parameters | file MB |",
            "|---|---|---|---|---|---|---|---|"]
    for slug in ("nyt_headlines", "kieu"):
        card = cards.get(slug)
        if not card:
            rows.append(f"| {slug} | not trained | | | | | | |")
            continue
        m = card["metrics"]
        below = m["perplexity_below_ngram"]
        rows.append(
            f"| {slug} | **{m['test_perplexity']:.1f}** | {m['ngram']['test_perplexity']:.1f} "
            f"(order {m['ngram']['order']}{', + snippets' if m['ngram'].get('auxiliary_text') else ''}) "
            f"| {abs(below):.1%} {'lower' if below > 0 else 'higher'} "
            f"| {'met' if m['goal_perplexity_10pct_below_ngram'] else 'missed'} "
            f"| {pct(m['test_top1_accuracy'], 1)} / {pct(m['test_top5_accuracy'], 1)} "
            f"| {card['params_total']:,} | {model_mb(models_dir, slug)} |")
    meter = cards.get("kieu", {}).get("metrics", {}).get("meter")
    if meter:
        rows += ["", "Kiều meter (share of generated couplets; a couplet is a 6-syllable and an 8-syllable line):", "",
                 "| decoding | couplets | length 6/8 | tones | rhyme | all three "
                 "| exact rhymes (lục 6 ~ bát 6 / bát 8 ~ lục 6) |", "|---|---|---|---|---|---|---|"]
        for name, label in (("constrained", "ours: lục bát constraints"),
                            ("unconstrained", "same model, no constraints"),
                            ("real_poem_all", "the poem itself (check of the checker)")):
            r = meter[name]
            ex = r.get("rhymes")
            exact = (f"{pct(ex['exact'], 1)} ({pct(ex['luc6_bat6']['exact'], 1)} / {pct(ex['bat8_luc6']['exact'], 1)})"
                     if ex else "–")
            rows.append(f"| {label} | {r['couplets']:,} | {pct(r['length'], 1)} | {pct(r['tone'], 1)} "
                        f"| {pct(r['rhyme'], 1)} | {pct(r['all'], 1)} | {exact} |")
    return rows


def render(models_dir: Path = MODELS_DIR) -> str:
    cards = load_cards(models_dir)
    lines = ["Image classifiers (full official test sets; cats_dogs and faces_gender: the held-out "
             "test split of ../shared/data). \"Served\": every test image encoded as a user would send it "
             "(PNG, or the stored JPEG) and classified through the app's upload path and served model "
             "(`python -m training evaluate <slug> --through-upload`):", ""]
    lines += image_table(cards, models_dir)
    lines += ["", "Text generators (word-level; perplexity on the held-out test split):", ""]
    lines += text_table(cards, models_dir)
    return "\n".join(lines) + "\n"


def replace_section(text: str, table: str) -> str:
    if START not in text or END not in text:
        raise ValueError(f"README.md has no {START} ... {END} section")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}{END}{tail}"


def main(args) -> int:
    """`python -m training report [--write]` (options from `training.cli.report_parser`)."""
    table = render(Path(args.models_dir))
    if not args.write:
        sys.stdout.write(table)
        return 0
    readme = ROOT / "README.md"
    readme.write_text(replace_section(readme.read_text(encoding="utf-8"), table), encoding="utf-8")
    print(f"updated {readme}")
    return 0
