"""Lab bench text benchmark: a text preset trained the way the bench trains it, timed.

    nice -n 10 python benchmarks/lab_text.py kieu fast      # prints one JSON line

The preset's recipe (app/lab/textrecipes.py), its epochs cut to the default server limit as the
bench's form fills it in (`limited_preset`), becomes its `python -m training` command line
(`training_argv`), parsed by the CLI's own parser and trained by `train_text_task` into a
temporary models folder (nothing in place is touched). Measured in the same run: wall time
end to end, seconds to the end of the first epoch (when the bench can show its first sample
lines), the model's test perplexity and the Kneser-Ney n-gram's on the same split and vocabulary.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    """Train the preset, print the figures as JSON."""
    p = argparse.ArgumentParser()
    p.add_argument("slug", choices=("kieu", "nyt_headlines"))
    p.add_argument("preset", choices=("lab", "shipped", "fast"))
    a = p.parse_args()
    start = time.monotonic()
    import keras

    from app.lab.recipes import Limits
    from app.config import MODELS_DIR
    from app.lab.textrecipes import limited_preset, training_argv, training_sequences
    from app.tasks import BUILTIN_TASKS
    from training.cli import text_parser
    from training.config import TrainConfig
    from training.textgen import train_text_task

    spec = BUILTIN_TASKS[a.slug]
    recipe, settings = limited_preset(a.preset, spec, Limits(), training_sequences(spec, MODELS_DIR))
    first_epoch = []

    class FirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            first_epoch.append(time.monotonic() - start)

    with tempfile.TemporaryDirectory() as models:
        argv = training_argv(a.slug, recipe, settings)
        config = TrainConfig.from_args(text_parser(f"python -m training {a.slug}").parse_args([*argv[1:], "--verbose", "2"]))
        folder = train_text_task(spec, config, Path(models), callbacks=(FirstEpoch(),))
        card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    m = card["metrics"]
    print(json.dumps({"slug": a.slug, "preset": a.preset, "argv": argv,
                      "test_perplexity": round(m["test_perplexity"], 1),
                      "ngram_test_perplexity": round(m["ngram"]["test_perplexity"], 1),
                      "epochs_run": card["training"].get("epochs_run"),
                      "seconds_total": round(time.monotonic() - start, 1),
                      "seconds_to_first_epoch": round(first_epoch[0], 1) if first_epoch else None},
                     ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
