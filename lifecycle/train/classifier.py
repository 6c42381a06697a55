"""The demo trainer of the shapes classifier: Adam on single shapes of the synthetic scenes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from lifecycle.errors import ConfigError
from lifecycle.networks import classifier
from lifecycle.train import scenes
from lifecycle.train.deeplab import Adam, open_run


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
    net = classifier.build(**{k: v for k, v in network.items() if k not in ("builder", "checkpoint_root")})
    variables = list(net.trainable_variables)
    optimizer = Adam(variables, lr)
    step, manager = open_run(run_dir, net, optimizer, lambda latest, why: f"cannot resume {latest}: {why}")
    pairs = [scenes.shape_image(seed + 1, i, net.image_size) for i in range(pool)]
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
