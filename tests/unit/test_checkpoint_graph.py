"""Checkpoints whose network variables are stored under a Keras 3 optimizer's path restore strictly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lifecycle.errors import ArchitectureMismatch, UsageError
from lifecycle.networks import builders as networks
from lifecycle.register import export, identify
from tests.support.homes import new_home

NETWORK = {"builder": "deeplab_v3", "backbone": "small"}


def _trained_with_keras_adam(folder: Path) -> tuple[Any, str]:
    """A small DeepLab after one Keras Adam step, saved with its optimizer as trainers do."""
    import keras
    import tensorflow as tf

    net = networks.build(networks.plan(NETWORK, None, "network"))
    optimizer = keras.optimizers.Adam(1e-3)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(net.logits(tf.zeros([1, 65, 65, 3])))
    variables = net.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
    step = tf.Variable(7, dtype=tf.int64)
    prefix = tf.train.Checkpoint(model=net, optimizer=optimizer, step=step).write(str(folder / "ckpt-7"))
    return net, prefix


@pytest.fixture(scope="module")
def keras_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, str]:
    return _trained_with_keras_adam(tmp_path_factory.mktemp("keras-run"))


def test_the_case_is_real_and_restores_by_the_object_graph(keras_run: tuple[Any, str]) -> None:
    import tensorflow as tf

    trained, prefix = keras_run
    keys = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    # The deep layers' kernels are stored under the optimizer's shorter path, not under model/...
    assert any(k.startswith("optimizer/_trainable_variables/") for k in keys)
    blank = networks.build(networks.plan(NETWORK, None, "network"), restoring=True)
    assert export.restore_strict(blank, Path(prefix)) == 7
    for a, b in zip(trained.variables, blank.variables, strict=True):
        assert np.array_equal(a.numpy(), b.numpy()), a.name


def test_a_different_network_is_still_refused(keras_run: tuple[Any, str]) -> None:
    _, prefix = keras_run
    other = networks.build(networks.plan({**NETWORK, "num_classes": 5}, None, "network"), restoring=True)
    with pytest.raises(ArchitectureMismatch, match="shape"):
        export.restore_strict(other, Path(prefix))


def test_register_without_model_finds_its_definition(keras_run: tuple[Any, str], tmp_path: Path) -> None:
    _, prefix = keras_run
    paths = new_home(tmp_path / "home")
    text = (paths.configs / "deeplab.yaml").read_text()
    (paths.configs / "five.yaml").write_text(text.replace("name: deeplab", "name: five", 1)
                                             .replace("num_classes: 21", "num_classes: 5"))
    assert identify.model_for(paths, Path(prefix).parent, is_saved_model=False) == "deeplab"
    (paths.configs / "deeplab.yaml").unlink()  # only the five-class network left: told why it does not fit
    (paths.configs / "four.yaml").write_text(text.replace("name: deeplab", "name: four", 1)
                                             .replace("num_classes: 21", "num_classes: 4"))
    with pytest.raises(UsageError, match="five: its network has 57 variables, the checkpoint 57"):
        identify.model_for(paths, Path(prefix).parent, is_saved_model=False)
