"""The demo trainer of DeepLab-v3: Adam with DeepLab's poly schedule on the synthetic scenes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from lifecycle.errors import CheckpointError, ConfigError
from lifecycle.networks import deeplab
from lifecycle.train import scenes


class Adam(tf.Module):
    """Adam (Kingma and Ba 2015) with its slots as tracked variables, so checkpoints resume.

    Its own rather than Keras': its slots are plain tracked variables (``optimizer/m/N``,
    ``optimizer/v/N``), independent of Keras' optimizer state layout. Register accepts Keras 3 optimizer checkpoints too (it
    matches the network through the object graph: :mod:`lifecycle.register.checkpoint_graph`).
    """

    def __init__(self, variables: list[tf.Variable], learning_rate: float) -> None:
        super().__init__()
        self.learning_rate = learning_rate
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]

    def apply(self, grads: list[tf.Tensor], variables: list[tf.Variable], scale: tf.Tensor | float = 1.0) -> None:
        """One update step; ``scale`` multiplies the learning rate (the schedule)."""
        b1, b2, eps = 0.9, 0.999, 1e-7
        self.iterations.assign_add(1)
        t = tf.cast(self.iterations, tf.float32)
        lr = scale * self.learning_rate * tf.sqrt(1 - b2**t) / (1 - b1**t)
        for g, var, m, v in zip(grads, variables, self.m, self.v, strict=True):
            m.assign(b1 * m + (1 - b1) * g)
            v.assign(b2 * v + (1 - b2) * g * g)
            var.assign_sub(lr * m / (tf.sqrt(v) + eps))


@dataclass(frozen=True)
class TrainSettings:
    """How ``mlc train`` trains (the definition's ``training`` section)."""

    image_size: int = 64
    batch_size: int = 8
    learning_rate: float = 0.005
    seed: int = 0
    pool: int = 512  # distinct training scenes, drawn in a fixed shuffled order

    @classmethod
    def from_definition(cls, section: dict[str, Any], where: str = "training") -> TrainSettings:
        """Parse and check a definition's ``training`` mapping."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(section) - known
        if unknown:
            raise ConfigError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
        try:
            s = cls(**{k: type(getattr(cls, k))(v) for k, v in section.items()})
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: {e}") from e
        if s.image_size < 16 or s.batch_size < 2 or s.pool < s.batch_size or s.learning_rate <= 0:
            raise ConfigError(f"{where}: need image_size >= 16, batch_size >= 2, pool >= batch_size, learning_rate > 0")
        return s


@dataclass
class SavedCheckpoint:
    """One checkpoint written by :func:`train`."""

    step: int
    prefix: str
    loss: float


@dataclass
class TrainReport:
    """What :func:`train` did."""

    run_dir: str
    network: dict[str, Any]
    start_step: int
    steps: int
    checkpoints: list[SavedCheckpoint] = field(default_factory=list)


CHECKPOINT_NAME = "ckpt"


def open_run(run_dir: Path, net: tf.Module, optimizer: tf.Module,
             mismatch: Callable[[str, str], str]) -> tuple[tf.Variable, tf.train.CheckpointManager]:
    """The run folder's step and checkpoint manager, resumed from its latest checkpoint if it has one.

    Checkpoints hold ``model`` (the network), ``optimizer`` and ``step``; a latest checkpoint that
    does not restore exactly is a CheckpointError worded by ``mismatch(latest, why)``.
    """
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    ckpt = tf.train.Checkpoint(model=net, optimizer=optimizer, step=step)
    run_dir.mkdir(parents=True, exist_ok=True)
    manager = tf.train.CheckpointManager(ckpt, str(run_dir), max_to_keep=None, checkpoint_name=CHECKPOINT_NAME)
    if manager.latest_checkpoint:
        try:
            ckpt.restore(manager.latest_checkpoint).assert_consumed()
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            raise CheckpointError(mismatch(manager.latest_checkpoint, str(e).splitlines()[0][:200])) from e
    return step, manager


def train(
    run_dir: Path,
    spec: deeplab.NetworkSpec,
    settings: TrainSettings,
    steps: int,
    save_every: int,
    on_checkpoint: Callable[[SavedCheckpoint], None] | None = None,
) -> TrainReport:
    """Train on the synthetic set until global step ``steps``, saving every ``save_every`` steps.

    Checkpoints are ordinary TF checkpoints (``tf.train.CheckpointManager``): ``RUN_DIR/checkpoint``
    and ``RUN_DIR/ckpt-<step>.{index,data-*}``, holding ``model`` (the network), ``optimizer``
    and ``step``. A run folder that already has checkpoints is resumed from its latest one.
    """
    net = deeplab.create(spec, seed=settings.seed)
    variables = list(net.trainable_variables)
    optimizer = Adam(variables, settings.learning_rate)
    step, manager = open_run(run_dir, net, optimizer, lambda latest, why: (
        f"cannot resume {latest}: it does not match the {spec.backbone} network ({why}); use a new run folder"))
    start = int(step.numpy())

    data = scenes.SyntheticSet(seed=settings.seed + 1, count=settings.pool, size=settings.image_size)
    images, labels = data.arrays()

    @tf.function(reduce_retracing=True, autograph=False)
    def train_step(x: tf.Tensor, y: tf.Tensor, scale: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            logits = tf.image.resize(net.logits(x, training=True), tf.shape(x)[1:3], method="bilinear")
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        optimizer.apply(tape.gradient(loss, variables), variables, scale)
        return loss

    report = TrainReport(str(run_dir), spec.to_dict(), start, steps)
    per_epoch = settings.pool // settings.batch_size
    loss_sum, loss_n = 0.0, 0
    for s in range(start, steps):
        epoch, i = divmod(s, per_epoch)
        # Each epoch visits the pool in a fresh order that depends only on (seed, epoch).
        perm = np.random.default_rng([settings.seed, epoch]).permutation(settings.pool)
        idx = perm[i * settings.batch_size:(i + 1) * settings.batch_size]
        # DeepLab's "poly" schedule towards --steps, so later checkpoints settle and score better.
        scale = tf.constant((1.0 - s / steps) ** 0.9, tf.float32)
        loss = float(train_step(tf.constant(images[idx]), tf.constant(labels[idx]), scale))
        loss_sum, loss_n = loss_sum + loss, loss_n + 1
        step.assign(s + 1)
        if (s + 1) % save_every == 0 or s + 1 == steps:
            prefix = manager.save(checkpoint_number=s + 1)
            saved = SavedCheckpoint(step=s + 1, prefix=prefix, loss=loss_sum / loss_n)
            loss_sum, loss_n = 0.0, 0
            report.checkpoints.append(saved)
            if on_checkpoint is not None:
                on_checkpoint(saved)
    return report


