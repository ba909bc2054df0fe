"""The tf.data pipeline an image run reads: shuffling, augmentation (shifts, mirror images, jitter,
CutMix), a loss weight per image and distillation targets per batch; and the loss that matches
its labels."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from app.tasks import TaskSpec


def make_dataset(x, y, batch_size: int, spec: TaskSpec, seed: int, train: bool, weights=None, teach=None,
                 cutmix: float = 0.0):
    """tf.data pipeline; random shifts (and mirror images where the task allows) when training;
    (image, label, weight) elements when `weights` (one per image) are given (a weight stays
    with its image); `cutmix` > 0 pastes a box of another image of the batch into each training
    image and mixes the one-hot labels by area (Keras' CutMix, that factor); `teach(images,
    labels)` replaces each batch's labels with distillation targets computed on the images as
    the model will see them (after augmentation and CutMix)."""
    ds = tf.data.Dataset.from_tensor_slices((x, y) if weights is None else (x, y, weights.astype(np.float32)))
    if (spec.extra.get("label_smoothing") or teach or cutmix) and np.ndim(y) == 1:  # these need one-hot labels
        n = len(spec.classes)
        ds = ds.map(lambda a, b, *w: (a, tf.one_hot(tf.cast(b, tf.int32), n), *w))
    if train:
        ds = ds.shuffle(min(len(y), 20000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if train:
        shift = float(spec.extra.get("augment", 0.0))
        aug = []
        if spec.extra.get("flip"):
            aug.append(keras.layers.RandomFlip("horizontal", seed=seed))
        if shift:
            aug.append(keras.layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed))
        jitter = float(spec.extra.get("jitter", 0.0))
        if jitter:
            aug.append(keras.layers.RandomBrightness(jitter, value_range=(0, 255), seed=seed))
            aug.append(keras.layers.RandomContrast(jitter, value_range=(0, 255), seed=seed))
        if aug:
            pipeline = keras.Sequential(aug)
            ds = ds.map(lambda a, b, *w: (pipeline(tf.cast(a, tf.float32), training=True), b, *w),
                        num_parallel_calls=tf.data.AUTOTUNE)
        if cutmix:
            mix = keras.layers.CutMix(factor=cutmix, seed=seed)

            def paste(a, b, *w):
                out = mix({"images": tf.cast(a, tf.float32), "labels": b}, training=True)
                return (out["images"], out["labels"], *w)

            ds = ds.map(paste, num_parallel_calls=tf.data.AUTOTUNE)
    if teach:
        ds = ds.map(lambda a, b, *w: (a, teach(tf.cast(a, tf.float32), b), *w), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def training_loss(spec: TaskSpec, soft: bool = False):
    """Cross-entropy, with label smoothing when the task asks for it (one-hot targets then, or
    the `soft` targets of distillation)."""
    smoothing = float(spec.extra.get("label_smoothing", 0.0))
    if smoothing or soft:
        return keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)
    return "sparse_categorical_crossentropy"
