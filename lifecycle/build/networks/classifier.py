"""A small image classifier served through TF Serving's Classify and Predict APIs.

The second built-in definition (``configs/shapes.yaml``) uses it to exercise the contracts
DeepLab does not: ``serve`` gives

- ``serving_default`` (``tensorflow/serving/classify``): input ``inputs``, a 1-D string tensor of
  serialized ``tf.Example`` whose ``image/encoded`` feature holds a PNG or JPEG; outputs
  ``classes`` (the class names, string [N,C]) and ``scores`` (softmax, float32 [N,C]);
- ``predict`` (``tensorflow/serving/predict``): input ``images`` float32 [N,H,W,3] in [0, 255];
  outputs ``scores`` float32 [N,C] and ``class_ids`` (the top-1 class, int32 [N]).

The network resizes any image to ``image_size`` and runs three stride-2 convolutions, global
average pooling and a dense layer. ``train`` is what ``mlc train --model shapes`` runs: Adam on
single shapes of the synthetic scenes (one class per image), writing ordinary checkpoints.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from lifecycle.build import deeplab
from lifecycle.errors import CheckpointError, ConfigError

EXAMPLE_FEATURE = "image/encoded"


class ShapesClassifier(tf.Module):
    """Resize, three stride-2 3x3 convolutions with ReLU, global average pooling, dense logits."""

    def __init__(self, classes: list[str], image_size: int = 32, width: int = 16, seed: int = 0) -> None:
        super().__init__(name="shapes_classifier")
        rng = np.random.default_rng(seed)
        self.classes = list(classes)
        self.image_size = int(image_size)
        widths = (3, width, 2 * width, 2 * width)
        self.kernels = [
            tf.Variable(rng.normal(0, math.sqrt(2.0 / (9 * cin)), (3, 3, cin, cout)).astype(np.float32), name="kernel")
            for cin, cout in itertools.pairwise(widths)
        ]
        self.biases = [tf.Variable(np.zeros(cout, np.float32), name="bias") for cout in widths[1:]]
        self.dense = tf.Variable(rng.normal(0, math.sqrt(1.0 / widths[-1]), (widths[-1], len(classes))).astype(np.float32))
        self.dense_bias = tf.Variable(np.zeros(len(classes), np.float32))

    def describe(self) -> str:
        """How errors name this network."""
        return f"shapes classifier ({len(self.classes)} classes)"

    def logits(self, images: tf.Tensor) -> tf.Tensor:
        """Class logits [N, C] for float32 RGB images [N, H, W, 3] in [0, 255], any H and W."""
        x = tf.image.resize(images, [self.image_size, self.image_size], method="bilinear") / 127.5 - 1.0
        for kernel, bias in zip(self.kernels, self.biases):
            x = tf.nn.relu(tf.nn.conv2d(x, kernel, strides=2, padding="SAME") + bias)
        return tf.matmul(tf.reduce_mean(x, axis=[1, 2]), self.dense) + self.dense_bias


def build(num_classes: int | None = None, classes: list[str] | None = None, image_size: int = 32, width: int = 16,
          seed: int = 0) -> ShapesClassifier:
    """A freshly initialised classifier over ``classes`` (default: the synthetic scenes' six)."""
    names = list(classes) if classes else [deeplab.class_name(c) for c in deeplab.DEMO_CLASSES]
    if num_classes is not None and int(num_classes) != len(names):
        raise ConfigError(f"num_classes {num_classes} does not match the {len(names)} classes {names}")
    return ShapesClassifier(names, image_size, width, seed)


def serve(net: ShapesClassifier) -> dict[str, Any]:
    """The Classify signature (``serving_default``) and the Predict signature (``predict``)."""
    names = tf.constant(net.classes)

    @tf.function(autograph=False, input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
    def predict(images: tf.Tensor) -> dict[str, tf.Tensor]:
        scores = tf.nn.softmax(net.logits(images))
        return {"scores": scores, "class_ids": tf.argmax(scores, axis=-1, output_type=tf.int32)}

    def decode(serialized: tf.Tensor) -> tf.Tensor:
        features = tf.io.parse_single_example(serialized, {EXAMPLE_FEATURE: tf.io.FixedLenFeature([], tf.string)})
        image = tf.io.decode_image(features[EXAMPLE_FEATURE], channels=3, expand_animations=False)
        image = tf.cast(image, tf.float32)
        return tf.image.resize(image, [net.image_size, net.image_size], method="bilinear")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        images = tf.map_fn(decode, inputs, fn_output_signature=tf.TensorSpec([net.image_size, net.image_size, 3], tf.float32))
        scores = tf.nn.softmax(net.logits(images))
        return {"classes": tf.tile(names[None], [tf.shape(inputs)[0], 1]), "scores": scores}

    return {"predict": predict, "serving_default": classify}


# --- data and training ---------------------------------------------------------------------


def shape_image(seed: int, index: int, size: int, classes: tuple[int, ...] = deeplab.DEMO_CLASSES) -> tuple[np.ndarray, int]:
    """Image ``index`` of ``seed``: one shape of class ``index % len(classes)`` on a texture; (image, class index)."""
    which = index % len(classes)
    image, _ = deeplab.synthetic_scene(seed, index, size, classes, objects=(classes[which],))
    return image, which


def train(run_dir: Path, steps: int, save_every: int, network: dict[str, Any], training: dict[str, Any],
          on_checkpoint: Callable[[int, str, float], None] | None = None) -> list[tuple[int, str, float]]:
    """Train on synthetic single-shape images until ``steps``, a checkpoint every ``save_every`` steps.

    Checkpoints hold ``model`` (the network), ``optimizer`` and ``step``; a run folder with
    checkpoints is resumed. Returns (step, prefix, mean loss) of each checkpoint written.
    """
    known = {"batch_size", "learning_rate", "seed", "pool"}
    if set(training) - known:
        raise ConfigError(f"training: unknown keys {sorted(set(training) - known)} (known: {sorted(known)})")
    batch, lr = int(training.get("batch_size", 32)), float(training.get("learning_rate", 0.01))
    seed, pool = int(training.get("seed", 0)), int(training.get("pool", 384))
    net = build(**{k: v for k, v in network.items() if k not in ("builder", "checkpoint_root")})
    variables = list(net.trainable_variables)
    optimizer = deeplab.Adam(variables, lr)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    ckpt = tf.train.Checkpoint(model=net, optimizer=optimizer, step=step)
    run_dir.mkdir(parents=True, exist_ok=True)
    manager = tf.train.CheckpointManager(ckpt, str(run_dir), max_to_keep=None, checkpoint_name=deeplab.CHECKPOINT_NAME)
    if manager.latest_checkpoint:
        try:
            ckpt.restore(manager.latest_checkpoint).assert_consumed()
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            raise CheckpointError(f"cannot resume {manager.latest_checkpoint}: {str(e).splitlines()[0][:200]}") from e
    pairs = [shape_image(seed + 1, i, net.image_size) for i in range(pool)]
    images = np.stack([p[0] for p in pairs])
    labels = np.array([p[1] for p in pairs], np.int32)

    @tf.function(autograph=False, reduce_retracing=True)
    def train_step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=net.logits(x)))
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    saved, losses = [], []
    for s in range(int(step.numpy()), steps):
        idx = np.random.default_rng([seed, s]).choice(pool, batch, replace=False)
        losses.append(float(train_step(tf.constant(images[idx]), tf.constant(labels[idx]))))
        step.assign(s + 1)
        if (s + 1) % save_every == 0 or s + 1 == steps:
            prefix = manager.save(checkpoint_number=s + 1)
            saved.append((s + 1, prefix, sum(losses) / len(losses)))
            losses = []
            if on_checkpoint is not None:
                on_checkpoint(*saved[-1])
    return saved
