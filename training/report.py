"""`python -m training report [--write]`: the results table of the shipped models, read from their cards.

Every figure comes from a `card.json` written by a training run (and checked by `evaluate`);
nothing here is typed in: the targets (floor, goal, published figure) are the tasks' own
(`app.tasks`). With --write the table replaces the part of README.md between the RESULTS markers;
a test checks README and cards agree.
"""

from __future__ import annotations

import sys
from pathlib import Path

from app.cards import Card, CardError, Metrics
from app.config import MODELS_DIR, ROOT
from app.tasks import BUILTIN_TASKS, IMAGE, TEXT

START, END = "<!-- RESULTS: python -m training report --write -->", "<!-- /RESULTS -->"

def pct(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def verdict(acc: float, floor: float, goal: float) -> str:
    if acc >= goal:
        return "goal met"
    return "floor met, goal missed" if acc >= floor else "**below floor**"


def load_cards(models_dir: Path) -> dict[str, Card]:
    """slug -> card of every readable models/<slug>/card.json (a damaged one is left out)."""
    cards = {}
    for path in sorted(Path(models_dir).glob("*/card.json")):
        try:
            cards[path.parent.name] = Card.from_json(path)
        except CardError:
            continue
    return cards


def model_mb(models_dir: Path, slug: str) -> str:
    path = Path(models_dir) / slug / "model.keras"
    return f"{path.stat().st_size / 1e6:.1f}" if path.is_file() else "–"


def image_table(cards: dict[str, Card], models_dir: Path) -> list[str]:
    rows = ["| task | test accuracy | served (upload path) | floor / goal | verdict | lab recipe (same run) "
            "| published row-wise LSTM | architecture | parameters | file MB | epochs | training time |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for slug, spec in BUILTIN_TASKS.items():
        if spec.kind != IMAGE:
            continue
        floor, goal, card = spec.floor, spec.goal, cards.get(slug)
        if not card:
            rows.append(f"| {slug} | not trained | | {pct(floor, 1)} / {pct(goal, 1)} | | | | | | | | |")
            continue
        acc = card.metrics.test_accuracy
        epochs, seconds = card.epochs_and_seconds()
        base = card.baseline.test_accuracy if card.baseline else None
        rows.append(
            f"| {slug} | **{pct(acc)}** (n={card.metrics.test_count:,}) | {served_cell(card.metrics)} "
            f"| {pct(floor, 1)} / {pct(goal, 1)} "
            f"| {verdict(acc, floor, goal)} | {pct(base)} | {pct(spec.published, 1)} | {card.architecture} "
            f"| {card.params_total:,} | {model_mb(models_dir, slug)} | {epochs} | {seconds / 60:.0f} min |")
    return rows


def served_cell(metrics: Metrics) -> str:
    """The served accuracy (each test image uploaded through the app) and any photo set's."""
    if metrics.served_accuracy is None:
        return "not measured"
    cell = f"{pct(metrics.served_accuracy)} (n={metrics.served_count or 0:,})"
    for key, name in (("product_photos", "product photos"), ("digit_photos", "digit photos")):
        photos = metrics.served.extra.get(key) if metrics.served else None
        if photos:
            cell += f"; {name} {pct(photos['accuracy'])} (n={photos['count']:,})"
    return cell


def text_table(cards: dict[str, Card], models_dir: Path) -> list[str]:
    text_tasks = [spec for spec in BUILTIN_TASKS.values() if spec.kind == TEXT]
    goals = sorted({f"{spec.goal_below_ngram:.0%}" for spec in text_tasks if spec.goal_below_ngram is not None})
    rows = ["| task | test perplexity | Kneser-Ney n-gram (tuned on validation) | LSTM vs n-gram "
            f"| goal: ≥ {' / '.join(goals)} below | top-1 / top-5 next word | parameters | file MB |",
            "|---|---|---|---|---|---|---|---|"]
    for spec in text_tasks:
        card = cards.get(spec.slug)
        if not card:
            rows.append(f"| {spec.slug} | not trained | | | | | | |")
            continue
        m = card.metrics
        below = m.perplexity_below_ngram
        rows.append(
            f"| {spec.slug} | **{m.test_perplexity:.1f}** | {m.ngram['test_perplexity']:.1f} "
            f"(order {m.ngram['order']}{', + snippets' if m.ngram.get('auxiliary_text') else ''}) "
            f"| {abs(below):.1%} {'lower' if below > 0 else 'higher'} "
            f"| {'met' if below >= spec.goal_below_ngram else 'missed'} "
            f"| {pct(m.test_top1_accuracy, 1)} / {pct(m.test_top5_accuracy, 1)} "
            f"| {card.params_total:,} | {model_mb(models_dir, spec.slug)} |")
    meter = cards["kieu"].metrics.meter if "kieu" in cards else None
    if meter:
        rows += ["", "Kiều meter (share of generated couplets; a couplet is a 6-syllable and an 8-syllable "
                 "line):", "",
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
