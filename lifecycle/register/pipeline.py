"""``mlc register``: the pre-flight checks, then one source's export, validation and publication.

Everything that can be refused without TensorFlow is refused first (the definition, its
contracts, the registry, the source, the test image, a labelled evaluation set), so refused
input changes nothing on disk. The same content registered again returns its existing version.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lifecycle import progress
from lifecycle.errors import ConfigError, SignatureMismatch
from lifecycle.networks import builders
from lifecycle.register import checkpoints, evalsets, identify, probe, savedmodels, tasks, validate
from lifecycle.store import registry
from lifecycle.store.config import Paths, check_model_name, load_definition, validation_settings


@dataclass
class RegisterResult:
    """The result of ``mlc register``."""

    model: str
    version: int
    reused: bool
    checkpoint: str
    step: int | None
    checkpoint_digest: str
    validated: bool
    path: str
    golden_digest: str | None
    miou: float | None
    report: dict[str, Any]
    accuracy: float | None = None  # a classifier's eval accuracy
    source_kind: str = "checkpoint"  # or savedmodel-tf2, savedmodel-keras, savedmodel-tf1

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self)

    @classmethod
    def of(cls, paths: Paths, model: str, v: registry.VersionRecord, reused: bool) -> RegisterResult:
        """The result for version record ``v`` of ``model``."""
        return cls(
            model=model,
            version=v.version,
            reused=reused,
            checkpoint=v.checkpoint,
            step=v.step,
            checkpoint_digest=v.checkpoint_digest,
            validated=v.validated,
            path=str(paths.version_dir(model, v.version)),
            golden_digest=(v.report.get("golden") or {}).get("digest"),
            miou=(v.report.get("metrics") or {}).get("miou"),
            report=registry.full_report(paths, model, v),
            accuracy=(v.report.get("metrics") or {}).get("accuracy"),
            source_kind=(v.report.get("source") or {}).get("kind", "checkpoint"),
        )


def register(paths: Paths, path: Path, model: str | None = None) -> RegisterResult:
    """Validate a checkpoint's export, or a SavedModel folder, and publish it as the model's next version.

    ``path`` is a run folder (its latest checkpoint), a checkpoint prefix, or a SavedModel folder
    (``saved_model.pb`` or ``.pbtxt`` and ``variables/``; a copy is published, the folder is only
    read). The same content registered again returns its existing version. Refused input (a
    missing or corrupt checkpoint, a SavedModel whose signatures break the contract, a bad name,
    a malformed file or evaluation set) changes nothing on disk; a version that fails validation
    publishes nothing and is recorded as a failed attempt.
    """
    progress.step(f"reading {path}")
    is_saved_model = savedmodels.is_saved_model(path)
    name = check_model_name(model) if model else identify.model_for(paths, path, is_saved_model)
    definition = load_definition(paths, name)
    settings = validation_settings(definition)
    for contract in definition.signatures:
        try:
            validate.check_contract_kind(validate.contract_to_dict(contract))
        except SignatureMismatch as e:
            raise ConfigError(f"model definition {definition.path}: {e.message}") from e
    task = tasks.for_definition(definition)
    current = registry.load(paths)  # a malformed registry is refused before any work
    if is_saved_model:
        ref: Any = savedmodels.resolve(path)
        # A SavedModel whose signatures break the contract is refused before anything is written.
        validate.check_contracts(definition.signatures, validate.read_signatures(ref.path))
    else:
        builders.plan(definition.network, definition.raw.get("serving"), f"{definition.path}: network")
        ref = checkpoints.resolve(path)
    probe.load_image(settings.test_image)
    synthetic = settings.eval.source == "synthetic"
    eval_set = None if synthetic else evalsets.load(settings.eval, settings.eval_root, task.class_names)
    known = current.models.get(name)
    existing = known.version_for_digest(ref.digest) if known else None
    if existing is not None:
        return RegisterResult.of(paths, name, existing, True)
    # A pending rollout journal is left alone: recovering it drives servers (reloads, waits), which
    # a register must not do. promote, rollback and serve recover it; status reports it.

    from lifecycle.register import export  # TensorFlow from here on

    if eval_set is None:
        progress.step("reading the evaluation set")
        eval_set = evalsets.load(settings.eval, settings.eval_root, task.class_names)
    if is_saved_model:
        outcome = export.register_saved_model(paths, definition, settings, ref, eval_set)
    else:
        outcome = export.register_checkpoint(paths, definition, settings, ref, eval_set)
    return RegisterResult.of(paths, name, outcome.version, outcome.reused)
