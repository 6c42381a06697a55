"""``mlc train``: the definition's network trained by its demo trainer, and the run's record.

The built-in networks have their trainers here (:mod:`lifecycle.train.deeplab`,
:mod:`lifecycle.train.classifier`); a user's builder module may bring its own ``train``
function. Every run folder gets a record of which model wrote it (:mod:`lifecycle.train.record`),
so ``mlc register RUN`` knows the model without ``--model``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lifecycle.errors import UsageError
from lifecycle.store.config import Paths, check_model_name, default_model, load_definition
from lifecycle.train import record


@dataclass
class TrainedCheckpoint:
    """One checkpoint ``mlc train`` wrote."""

    step: int
    prefix: str
    loss: float


@dataclass
class TrainResult:
    """The result of ``mlc train``."""

    run_dir: str
    model: str
    network: dict[str, Any]
    start_step: int
    steps: int
    checkpoints: list[TrainedCheckpoint]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self)


def train(
    paths: Paths,
    run: Path,
    steps: int,
    save_every: int,
    backbone: str | None = None,
    model: str | None = None,
    on_checkpoint: Callable[[TrainedCheckpoint], None] | None = None,
) -> TrainResult:
    """Train the model's network on the synthetic set, writing a checkpoint every ``save_every`` steps.

    A run folder that already holds checkpoints is resumed from its latest one.
    """
    if steps < 1 or save_every < 1:
        raise UsageError("--steps and --save-every must be at least 1")
    name = check_model_name(model) if model else default_model(paths)
    definition = load_definition(paths, name)
    if run.exists() and not run.is_dir():
        raise UsageError(f"{run} exists and is not a folder")
    from lifecycle.networks import builders

    plan = builders.plan(definition.network, definition.raw.get("serving"), f"{definition.path}: network")
    if plan.builder != builders.ALIASES["deeplab_v3"]:
        if backbone is not None:
            raise UsageError(f"--backbone chooses the DeepLab backbone; {name} is built by {plan.builder}")
        result = _train_with_builder_module(plan, definition, run, steps, save_every, on_checkpoint)
    else:
        result = _train_deeplab(definition, run, steps, save_every, backbone, on_checkpoint)
    record.write(run, definition)
    return result


def _train_deeplab(definition: Any, run: Path, steps: int, save_every: int, backbone: str | None,
                   on_checkpoint: Callable[[TrainedCheckpoint], None] | None) -> TrainResult:
    """The built-in DeepLab's trainer, with the definition's ``training`` settings."""
    from lifecycle.networks.deeplab import NetworkSpec  # TensorFlow: only here
    from lifecycle.train import deeplab

    spec = NetworkSpec.from_definition(definition.network, f"{definition.path}: network", backbone)
    settings = deeplab.TrainSettings.from_definition(
        dict(definition.raw.get("training") or {}), f"{definition.path}: training"
    )

    def saved(c: Any) -> None:
        if on_checkpoint is not None:
            on_checkpoint(TrainedCheckpoint(c.step, c.prefix, c.loss))

    report = deeplab.train(run, spec, settings, steps, save_every, saved)
    return TrainResult(
        run_dir=str(run),
        model=definition.name,
        network=report.network,
        start_step=report.start_step,
        steps=report.steps,
        checkpoints=[TrainedCheckpoint(c.step, c.prefix, c.loss) for c in report.checkpoints],
    )


# Trainers of the built-in builders other than DeepLab; a user's builder module brings its own
# ``train(run_dir, steps, save_every, network, training, on_checkpoint)``.
BUILT_IN_TRAINERS = {"lifecycle.networks.classifier": "lifecycle.train.classifier:train"}


def _train_with_builder_module(plan: Any, definition: Any, run: Path, steps: int, save_every: int,
                               on_checkpoint: Callable[[TrainedCheckpoint], None] | None) -> TrainResult:
    """Train a network whose builder module has a trainer (the shapes classifier's is built in)."""
    import tensorflow as tf

    from lifecycle.networks import builders

    module = plan.builder.split(":", 1)[0]
    where = f"{definition.path}: network.builder"
    trainer = builders.import_callable(BUILT_IN_TRAINERS.get(module, f"{module}:train"), where, plan.home)
    latest = tf.train.latest_checkpoint(str(run)) if run.is_dir() else None
    tail = latest.rsplit("-", 1)[-1] if latest else ""
    start = int(tail) if tail.isdigit() else 0

    def saved(step: int, prefix: str, loss: float) -> None:
        if on_checkpoint is not None:
            on_checkpoint(TrainedCheckpoint(step, prefix, loss))

    written = trainer(run, steps, save_every, dict(definition.network), dict(definition.raw.get("training") or {}), saved)
    return TrainResult(str(run), definition.name, plan.to_dict(), start, steps,
                       [TrainedCheckpoint(s, p, loss) for s, p, loss in written])
