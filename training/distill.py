"""Knowledge distillation: an ensemble of finished models of the task (optionally reading each view
and its mirror image) gives each training batch soft targets, with the teachers' figures for the card."""

from __future__ import annotations

import tensorflow as tf

from app.tasks import TaskSpec
from training.config import TrainConfig
from training.dataset import DataError
from training.finished import load_finished
from training.fit import predict_probs


def distillation(spec: TaskSpec, config: TrainConfig, val, test) -> tuple:
    """`teacher_targets` for the run's --teachers, or (None, None) when it has none."""
    if config.teacher_mirror and not config.teachers:
        raise DataError("--teacher-mirror changes how teachers read: give --teachers too")
    if not config.teachers:
        return None, None
    return teacher_targets(spec, config.teachers, config.distill_weight, config.seed, val, test,
                           mirror=config.teacher_mirror)


def teacher_targets(spec: TaskSpec, folders: list[str], weight: float, seed: int, val, test,
                    mirror: bool = False) -> tuple:
    """Knowledge distillation from an ensemble of finished models of the task. Returns `teach`
    for `make_dataset`: each training batch's target becomes `weight` × the teachers' mean class
    probabilities on the batch as augmented (the view the student reads, so a shifted or
    mirrored image gets the teachers' reading of that view) + (1 - `weight`) × its one-hot label;
    and the card's record: each teacher's and the ensemble's validation and test accuracy on
    this run's split. With `mirror` (tasks that train on mirror images) each teacher reads every
    view and its mirror image and gives their mean: a stronger ensemble for the same teachers, at
    twice their cost per batch; the record's figures are then of that mean too."""
    if mirror and not spec.extra.get("flip"):
        raise DataError(f"{spec.slug}: --teacher-mirror needs a task that trains on mirror images")

    teachers = [load_finished(spec, f, "--teachers") for f in folders]
    for t in teachers:  # another seed's validation images were that teacher's training images
        if t["card"].training.seed != seed:
            raise DataError(f"--teachers {t['folder']}: trained with --seed {t['card'].training.seed}, this run "
                            f"uses {seed}; a teacher must share the run's training/validation split")
    record = {"weight": weight, "views": "augmented and mirrored" if mirror else "augmented", "teachers": []}
    mean = {}
    for t in teachers:
        probs = {name: (predict_probs(t["model"], x) + predict_probs(t["model"], x[:, :, ::-1])) / 2 if mirror
                 else predict_probs(t["model"], x) for name, x in (("val", val[0]), ("test", test[0]))}
        for name, p in probs.items():
            mean[name] = mean.get(name, 0) + p / len(teachers)
        record["teachers"].append({"folder": str(t["folder"]),
                                   "validation_accuracy": float((probs["val"].argmax(1) == val[1]).mean()),
                                   "test_accuracy": float((probs["test"].argmax(1) == test[1]).mean())})
    record["ensemble_validation_accuracy"] = float((mean["val"].argmax(1) == val[1]).mean())
    record["ensemble_test_accuracy"] = float((mean["test"].argmax(1) == test[1]).mean())
    print(f"[{spec.slug}] distilling {len(teachers)} teachers: ensemble validation accuracy "
          f"{record['ensemble_validation_accuracy']:.4f}", flush=True)
    models = [t["model"] for t in teachers]

    def read(model, images):
        if not mirror:
            return model(images, training=False)
        return (model(images, training=False) + model(tf.reverse(images, axis=[2]), training=False)) / 2

    def teach(images, onehot):
        probs = tf.add_n([read(m, images) for m in models]) / len(models)
        return weight * probs + (1 - weight) * tf.cast(onehot, probs.dtype)

    return teach, record
