"""Which model a checkpoint or SavedModel is, when the command line names none.

- A run folder ``mlc train`` wrote names its model in its run record (:mod:`lifecycle.train.record`).
- Any other checkpoint is tried against each definition's network: the model is the one whose
  network's variables (names and shapes) are exactly the checkpoint's.
- A SavedModel is the model whose signature contract it satisfies.

With one definition, that one is the model, as before. Only when more than one matches, or none
does, is ``--model`` needed; the error names every candidate and why it was ruled in or out.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lifecycle.errors import CheckpointError, ConfigError, LifecycleError, UsageError
from lifecycle.store.config import Paths, default_model, list_models, load_definition
from lifecycle.train import record


def model_for(paths: Paths, path: Path, is_saved_model: bool) -> str:
    """The model ``path`` belongs to (see the module's docstring); a UsageError when it is not one."""
    models = list_models(paths)
    if len(models) <= 1:
        return default_model(paths)  # the only one, or the error that there is none
    if not is_saved_model:
        recorded = record.model_of(path)
        if recorded in models:
            return recorded
    judge = _satisfies_contract if is_saved_model else _network_matches
    verdicts = {m: judge(paths, m, path) for m in models}
    matches = [m for m, why in verdicts.items() if why is None]
    if len(matches) == 1:
        return matches[0]
    what = "SavedModel" if is_saved_model else "checkpoint"
    reasons = "; ".join(f"{m}: {why or 'matches'}" for m, why in verdicts.items())
    if matches:
        raise UsageError(f"{path} fits several models ({', '.join(matches)}); name one with --model ({reasons})")
    raise UsageError(f"{path} is no defined model's {what}; name one with --model ({reasons})")


def _satisfies_contract(paths: Paths, model: str, path: Path) -> str | None:
    """None when the SavedModel satisfies ``model``'s contract, else why not."""
    from lifecycle.register import validate

    return _why_not(lambda: validate.check_contracts(
        load_definition(paths, model).signatures, validate.read_signatures(path)))


def _network_matches(paths: Paths, model: str, path: Path) -> str | None:
    """None when ``model``'s network has exactly the checkpoint's variables, else why not."""

    def check() -> None:
        import tensorflow as tf

        from lifecycle.networks import builders
        from lifecycle.register import checkpoint_graph, checkpoints
        from lifecycle.register.export import variable_keys

        definition = load_definition(paths, model)
        plan = builders.plan(definition.network, definition.raw.get("serving"), f"{definition.path}: network")
        prefix = checkpoints.resolve_prefix(path)
        try:
            reader = tf.train.load_checkpoint(str(prefix))
            shapes = reader.get_variable_to_shape_map()
            stored = checkpoint_graph.network_keys(reader, plan.checkpoint_root)
        except Exception as e:  # OpError, ValueError, DecodeError: an unreadable index or object graph
            raise CheckpointError(f"checkpoint {prefix} is unreadable: {str(e).splitlines()[0]}") from e
        expected = variable_keys(builders.build(plan, restoring=True), plan.checkpoint_root)
        found = {k: tuple(shapes[key]) for k, key in stored.items() if key in shapes}
        if found != expected:
            differ = sorted(set(found) ^ set(expected)) or sorted(k for k in found if found[k] != expected[k])
            raise ConfigError(f"its network has {len(expected)} variables, the checkpoint {len(found)}"
                              f" (first difference: {differ[0].split('/.ATTRIBUTES')[0]})")

    return _why_not(check)


def _why_not(check: Callable[[], object]) -> str | None:
    """None when ``check`` passes, else the first line of the mlc error it raised."""
    try:
        check()
    except LifecycleError as e:
        return e.message.splitlines()[0]
    return None
