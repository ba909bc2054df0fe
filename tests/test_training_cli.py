"""`python -m training`: one parser module (training/cli.py), a dispatcher that imports nothing back."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import ROOT
from app.tasks import BUILTIN_TASKS
from training import cli
from training.__main__ import main


@pytest.mark.parametrize("command", [*cli.COMMANDS, "mnist", "kieu"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: python -m training {command}" in capsys.readouterr().out


def test_top_level_help_lists_tasks_and_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(slug in out for slug in BUILTIN_TASKS)
    assert "commands: evaluate, meter, folder, compare-rnn, report, export" in out
    assert main([]) == 2


def test_bad_flags_exit_2_before_anything_runs(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["export"])
    assert exit_.value.code == 2 and "name the tasks to export, or --all" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["mnist", "--min-count", "3"])  # a text option on an image task
    assert exit_.value.code == 2
    assert main(["no_such_task"]) == 2


def test_image_and_text_parsers_add_their_own_options_to_the_common_ones():
    common = cli.common_parser("p").parse_args([])
    text = cli.text_parser("p").parse_args([])
    image = cli.training_parser("p").parse_args([])
    assert vars(common).items() <= vars(text).items() and vars(common).items() <= vars(image).items()
    assert set(vars(text)) - set(vars(common)) == {"min_count", "sequence_length", "train_text", "aux_text"}
    assert set(vars(image)) - set(vars(common)) == {"balance", "balance_power", "teachers", "distill_weight",
                                                     "teacher_mirror", "cutmix"}
    for bad in ("0", "1.5", "half"):
        with pytest.raises(SystemExit):
            cli.training_parser("p").parse_args(["--distill-weight", bad])
    for bad in ("-0.1", "1.5", "half"):
        with pytest.raises(SystemExit):
            cli.training_parser("p").parse_args(["--cutmix", bad])
    assert cli.training_parser("p").parse_args(["--cutmix", "0"]).cutmix == 0.0  # turns a task's CutMix off
    with pytest.raises(SystemExit):
        cli.text_parser("p").parse_args(["--balance", "race"])  # text tasks record no groups


def test_flags_become_a_train_config_whose_defaults_are_the_parsers(monkeypatch):
    """TrainConfig holds every training flag (one set of defaults, the flags' own), and only them."""
    import dataclasses

    from training.config import DEFAULTS, TrainConfig

    monkeypatch.delenv("LSTMLAB_DATA", raising=False)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    for parser in (cli.training_parser("p"), cli.text_parser("p")):
        flags = vars(parser.parse_args([]))
        assert set(flags) - names == {"models_dir"}  # where to save is the caller's argument
        assert {k: v for k, v in flags.items() if k != "models_dir"} == {
            k: getattr(DEFAULTS, k) for k in flags if k != "models_dir"}
    assert names - set(vars(cli.training_parser("p").parse_args([]))) - set(vars(cli.text_parser("p").parse_args([]))) \
        == {"test_subset", "int8", "card_extra"}  # set by the lab bench only
    config = TrainConfig.from_args(cli.training_parser("p").parse_args(["--epochs", "3", "--seed", "5"]), resume=True)
    assert (config.epochs, config.seed, config.resume, config.patience) == (3, 5, True, DEFAULTS.patience)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 4


def test_parsers_import_no_tensorflow():
    code = "import sys, training.cli; print(sorted({'tensorflow', 'keras'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _training_imports() -> dict[str, set[str]]:
    """Every training module and the training modules it imports (at the top or inside a function)."""
    names = {f"training.{f.stem}" for f in (ROOT / "training").glob("*.py") if f.stem != "__init__"}
    graph = {}
    for name in names:
        tree = ast.parse(Path(ROOT / "training" / f"{name.split('.')[1]}.py").read_text(encoding="utf-8"))
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = (found & names) - {name}
    return graph


def test_no_training_module_imports_the_command_line_back():
    graph = _training_imports()
    for start in ("training.cli", "training.__main__"):
        seen, todo = set(), list(graph[start])
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(graph[name])
        assert start not in seen, f"{start} is imported back by one of {sorted(seen)}"
    assert {m for m, deps in graph.items() if "training.cli" in deps} == {"training.__main__"}
