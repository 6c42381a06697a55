"""Checkpoint or SavedModel folder -> staged SavedModel -> published integer version.

A SavedModel folder is copied into staging (:func:`register_saved_model`); a checkpoint is
exported there (:func:`register_checkpoint`):

1. Build the network from the model definition and restore the checkpoint strictly: every
   variable of the network must be in the checkpoint with the same shape, and the checkpoint's
   network variables must all belong to the network (:func:`restore_strict`). Every tensor of the
   checkpoint is read, so truncated or corrupt data files are refused here.
2. Export to ``<staging dir>/.staging-<id>/`` (the store's :meth:`~lifecycle.store.base.Store.staging_dir`:
   ``model_repo/<model>/`` for a local folder; TF Serving ignores names that are not integers),
   held by the per-staging lock ``.staging-<id>.lock`` for as long as this process lives.
3. Validate the staged export (:mod:`lifecycle.register.validate`), write its warmup records and its own
   record (``assets.extra/mlc_report.json``).
4. Under the registry lease: adopt orphaned versions, return the existing version if the same
   checkpoint content was published meanwhile, else claim N (failpoint ``register:claimed``),
   publish the staged folder whole as N (the store fsyncs it, then renames or uploads it;
   failpoint ``register:published``) and record the version, unless a concurrent register of
   the same content recorded first (then N is removed and that version returned).

Export and validation (slow) run outside the registry lease; only step 4 holds it. A SIGKILL at
any moment leaves either a staging folder (removed by the next register, because its lock is no
longer held), a claimed number that is never handed out again, or a complete, validated version
N (recorded now, or adopted by the next transaction from its ``mlc_report.json``).

This module imports TensorFlow lazily so that :func:`clean_stale_staging` stays cheap.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lifecycle import progress
from lifecycle.errors import (
    ArchitectureMismatch,
    CheckpointError,
    ConfigError,
    ExportError,
)
from lifecycle.register import checkpoint_graph, publish, savedmodels
from lifecycle.register.checkpoints import CheckpointRef
from lifecycle.store import registry
from lifecycle.store.config import ModelDefinition, Paths, ValidationSettings

STAGING_PREFIX = ".staging-"
LOCK_SUFFIX = ".lock"
# The object name the network has in a checkpoint (``tf.train.Checkpoint(model=net)``).
DEFAULT_CHECKPOINT_ROOT = "model"
_VALUE_SUFFIX = checkpoint_graph.VALUE_SUFFIX


# --- strict restore ------------------------------------------------------------------------


def variable_keys(net: Any, root: str = DEFAULT_CHECKPOINT_ROOT) -> dict[str, tuple[int, ...]]:
    """Checkpoint key -> shape of every variable of a network (a tf.Module or a Keras model)."""
    import tensorflow as tf

    if isinstance(net, tf.Module):  # its checkpoint keys are its attribute paths
        return {
            f"{root}/{'/'.join(str(p) for p in path)}{_VALUE_SUFFIX}": tuple(v.shape)
            for path, v in net._flatten(predicate=lambda x: isinstance(x, tf.Variable), with_path=True)
        }
    # A Keras model names its variables by layer tracking: ask TensorFlow by writing a probe.
    with tempfile.TemporaryDirectory(prefix="mlc-probe-") as folder:
        prefix = tf.train.Checkpoint(**{root: net}).write(os.path.join(folder, "probe"))
        shapes = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    return {k: tuple(s) for k, s in shapes.items() if k.startswith(root + "/") and k.endswith(_VALUE_SUFFIX)}


def _first_line(e: BaseException) -> str:
    line = (str(e).strip().splitlines() or [type(e).__name__])[0]
    # An op error raised inside a function names the function first: "{{function_node ...}} <message>".
    return re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", line)[:300]


# Where trainers keep the global step: ours (tf.train.Checkpoint(step=...)) and TF1's.
STEP_KEYS = ("step/.ATTRIBUTES/VARIABLE_VALUE", "global_step/.ATTRIBUTES/VARIABLE_VALUE", "global_step")


def restore_strict(net: Any, prefix: Path, root: str = DEFAULT_CHECKPOINT_ROOT, what: str = "the network") -> int | None:
    """Restore every variable of ``net`` from ``prefix``; any mismatch is ArchitectureMismatch.

    Also reads every tensor of the checkpoint, so corrupt or truncated data is a CheckpointError.
    Returns the global step stored in the checkpoint, if it has one.
    """
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(str(prefix))
        shapes = reader.get_variable_to_shape_map()
    except Exception as e:  # OpError, ValueError, ...: an unreadable index
        raise CheckpointError(f"checkpoint {prefix} is corrupt or truncated: {_first_line(e)}") from e
    expected = variable_keys(net, root)
    try:
        stored = checkpoint_graph.network_keys(reader, root)  # name in the network -> key in the checkpoint
    except Exception as e:  # DecodeError, OpError: an unreadable object graph
        raise CheckpointError(f"checkpoint {prefix} is corrupt or truncated: {_first_line(e)}") from e
    found = {k: tuple(shapes[key]) for k, key in stored.items() if key in shapes}

    def short(k: str) -> str:
        return k[: -len(_VALUE_SUFFIX)]

    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append("shape " + ", ".join(f"{short(k)} {list(found[k])} vs {list(expected[k])}" for k in wrong[:2]))
        if missing:
            parts.append(f"{len(missing)} missing (" + ", ".join(short(k) for k in missing[:2]) + ")")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (" + ", ".join(short(k) for k in unexpected[:2]) + ")")
        raise ArchitectureMismatch(
            f"checkpoint {prefix} does not match {what}: {len(found)} network variables in the checkpoint, "
            f"{len(expected)} in the network; " + "; ".join(parts)
        )
    step = None
    try:
        # The network's own tensors are read (and their checksums verified) once, by the restore
        # below; every other tensor (optimizer slots, step, ...) is read here.
        for key in sorted(set(shapes) - set(stored.values())):
            value = reader.get_tensor(key)
            if key in STEP_KEYS and getattr(value, "size", 0) == 1:
                step = int(value)
    except Exception as e:  # OpError (checksum), IndexError (short read), ...: all mean bad data
        raise CheckpointError(f"checkpoint {prefix} is corrupt or truncated: {_first_line(e)}") from e
    try:
        status = tf.train.Checkpoint(**{root: net}).read(str(prefix))
        status.assert_existing_objects_matched()
        status.expect_partial()  # the optimizer, step and so on are not the network's business
    except (tf.errors.DataLossError, tf.errors.OutOfRangeError, IndexError) as e:  # checksum, short read
        raise CheckpointError(f"checkpoint {prefix} is corrupt or truncated: {_first_line(e)}") from e
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        raise ArchitectureMismatch(f"checkpoint {prefix} does not match {what}: {_first_line(e)}") from e
    return step


@dataclass
class LoadedNetwork:
    """A definition's network restored from a checkpoint, with its serving signatures."""

    net: Any
    plan: Any  # lifecycle.networks.builders.NetworkPlan
    step: int | None
    signatures: dict[str, Any]  # key -> concrete function
    timings: dict[str, float]  # build_s (the network), restore_s (the checkpoint into it), trace_s (signatures)

    @property
    def report(self) -> dict[str, Any]:
        """The network as the version's report records it."""
        to_dict = getattr(getattr(self.net, "spec", None), "to_dict", None)
        own = to_dict() if callable(to_dict) else {}
        return {**own, **self.plan.to_dict()}


def load_network(definition: ModelDefinition, ref: CheckpointRef) -> LoadedNetwork:
    """Build the definition's network, restore ``ref`` into it strictly, and get its signatures."""
    from lifecycle.networks import builders as networks

    p = networks.plan(definition.network, definition.raw.get("serving"), f"{definition.path}: network",
                      definition.path.parent.parent)
    started = time.perf_counter()
    net = networks.build(p, restoring=True)
    built = time.perf_counter()
    step = restore_strict(net, ref.prefix, p.checkpoint_root, networks.describe(p, net, definition.path.name))
    restored = time.perf_counter()
    signatures = networks.serving_functions(p, net, definition.signature.key)
    timings = {"build_s": round(built - started, 3), "restore_s": round(restored - built, 3),
               "trace_s": round(time.perf_counter() - restored, 3)}
    return LoadedNetwork(net, p, step, signatures, timings)


def export_saved_model(net: Any, signatures: dict[str, Any], target: Path, methods: dict[str, str] | None = None) -> None:
    """``tf.saved_model.save`` the network with its signatures into the (existing, empty) folder ``target``.

    The signature functions are not attributes of the saved root: ``tf.saved_model.save`` would
    trace a tf.function attribute a second time.
    """
    import tensorflow as tf

    root = tf.Module()
    root.net = net
    if not isinstance(net, tf.Module):
        # Keras 3 variables wrap tf.Variables that TF Serving's loader only restores when the saved
        # object tracks them itself (keras-team/keras#19274); Keras's own export does the same.
        root.keras_variables = [v.value for v in net.variables]
    try:
        tf.saved_model.save(root, str(target), signatures=signatures)
        if methods:
            from lifecycle.register.savedmodels import set_method_names

            set_method_names(target, methods)
    except (tf.errors.OpError, ValueError, TypeError, OSError) as e:
        raise ExportError(f"exporting the SavedModel to {target} failed: {_first_line(e)}") from e


# --- the register flow ---------------------------------------------------------------------


def register_checkpoint(
    paths: Paths, definition: ModelDefinition, settings: ValidationSettings, ref: CheckpointRef, eval_set: Any,
) -> publish.Published:
    """Export, validate and publish ``ref`` as the next version of the definition's model."""
    import tensorflow as tf

    from lifecycle.register import probe, tasks

    model = definition.name
    progress.step(f"restoring {ref.prefix.name} into {definition.name}'s network")
    loaded = load_network(definition, ref)
    ready = time.perf_counter()  # the network built, restored and traced (loaded.timings)
    # The prefix's -N names the step; a checkpoint named otherwise may still store it.
    step = ref.step if ref.step is not None else loaded.step
    checkpoint = registry.CheckpointRecord(
        digest=ref.digest, path=publish.display_path(paths, ref.prefix), step=step, tf_version=tf.__version__,
    )
    missing = [c.key for c in definition.signatures if c.key not in loaded.signatures]
    if missing:
        raise ConfigError(f"{definition.path}: serving: {loaded.plan.serving} gave signatures "
                          f"{sorted(loaded.signatures)}, not the contract's {missing[0]!r}")

    test = probe.TestRequest(model, tasks.for_definition(definition), settings.test_image)
    staging_dir = paths.store.staging_dir(model)
    publish.clean_stale_staging(staging_dir)
    # The checkpoint model answers the test request (for parity) while the export is written and loaded.
    with probe.ReferenceRun(loaded.signatures[definition.signature.key], test.decoded) as reference, \
            publish.Staging(staging_dir) as staging:
        progress.step("exporting a SavedModel to staging")
        try:
            methods = {c.key: c.method for c in definition.signatures if c.method != "tensorflow/serving/predict"}
            export_saved_model(loaded.net, loaded.signatures, staging.dir, methods)
        except ExportError as e:
            publish.record_failure(paths, model, checkpoint, "export", e.message)
            raise
        exported = time.perf_counter()
        timings = {**loaded.timings, "export_s": round(exported - ready, 3)}
        return publish.validate_and_publish(paths, definition, settings, staging.dir, checkpoint, test, reference,
                                    eval_set, {"network": loaded.report}, timings)


def register_saved_model(
    paths: Paths, definition: ModelDefinition, settings: ValidationSettings, ref: savedmodels.SavedModelRef, eval_set: Any,
) -> publish.Published:
    """Copy the SavedModel folder ``ref``, validate the copy and publish it as the next version.

    The user's folder is only read."""
    import tensorflow as tf

    from lifecycle.register import probe, tasks

    source = registry.CheckpointRecord(
        digest=ref.digest, path=publish.display_path(paths, ref.path), step=None, tf_version=tf.__version__, kind=ref.kind,
    )
    test = probe.TestRequest(definition.name, tasks.for_definition(definition), settings.test_image)
    staging_dir = paths.store.staging_dir(definition.name)
    publish.clean_stale_staging(staging_dir)
    with publish.Staging(staging_dir) as staging:
        started = time.perf_counter()
        progress.step(f"copying {ref.path.name} to staging")
        try:
            savedmodels.copy_into(ref, staging.dir)
        except OSError as e:
            error = f"copying the SavedModel {ref.path} to {staging.dir} failed: {str(e).splitlines()[0][:300]}"
            publish.record_failure(paths, definition.name, source, "export", error)
            raise ExportError(error) from e
        timings = {"copy_s": round(time.perf_counter() - started, 3)}
        extra = {"source": {"kind": ref.kind, "path": source.path, "digest": ref.digest, "files": ref.files}}
        return publish.validate_and_publish(paths, definition, settings, staging.dir, source, test, None, eval_set, extra,
                                    timings)
