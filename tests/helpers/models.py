"""Model folders written the way training writes them: a tiny untrained model with its card, and a
stand-in previous model whose files a test can compare after a failed write."""

from __future__ import annotations

import os
from pathlib import Path


def write_tiny_image_model(models_dir, spec, plots: bool = True, export: bool = False):
    """An untrained baseline model for `spec` with a minimal valid card (and two small plots),
    saved like a training run would save it; its metrics are measured on a few random images.
    With `export`, also its checked model.tflite and the card's `export` block, as training writes."""
    import io

    import keras
    import numpy as np
    from PIL import Image

    from training import fit
    from training.build import BASELINE_RECIPE, make_image_classifier

    keras.utils.set_random_seed(0)
    model = make_image_classifier(spec, "baseline")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, *spec.input_shape)).astype(np.float32)
    y = rng.integers(0, len(spec.classes), 16)
    metrics = fit.classification_metrics(y, keras.ops.convert_to_numpy(model(x)), len(spec.classes))
    card = {"slug": spec.slug, "kind": spec.kind, "task": spec.to_dict(), "architecture": "baseline",
            "layers": fit.layer_table(model), "params_total": int(model.count_params()),
            "optimizer": {"name": "none"}, "training": {"epochs_run": 0, "untrained": True},
            "data": {"source": "random pixels (test fixture)", "counts": {"test": len(y)}},
            "metrics": metrics, "history": {},
            "baseline": {"recipe": BASELINE_RECIPE, "test_accuracy": metrics["test_accuracy"]},
            "command": f"python -m training {spec.slug}"}

    def write(folder):
        model.save(folder / "model.keras")
        if export:
            from training.export import export_model, file_sha256

            card["export"] = export_model(model, spec, folder, file_sha256(folder / "model.keras"), x,
                                          "16 random images")
        fit.write_card(folder, card)
        if plots:
            for name in ("training_curves.png", "confusion_matrix.png"):
                buf = io.BytesIO()
                Image.new("RGB", (8, 6), (200, 220, 240)).save(buf, "PNG")
                (folder / name).write_bytes(buf.getvalue())

    return fit.save_atomically(models_dir, spec.slug, write)



def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}



def old_model(models: Path, slug: str) -> dict:
    folder = models / slug
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(os.urandom(2048))
    (folder / "card.json").write_text('{"slug": "%s", "old": true}' % slug, encoding="utf-8")
    return snapshot(folder)
