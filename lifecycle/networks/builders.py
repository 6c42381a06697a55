"""Networks named by import paths: the ``network`` and ``serving`` sections of a model definition.

A model definition names the function that builds its network and the function that gives the
serving signatures, as ``module:attribute`` import paths::

    network:  {builder: "mypkg.nets:build", width: 32}    # the other keys are keyword arguments
    serving:  "mypkg.nets:serve"

- ``build(**kwargs)`` returns a ``tf.Module`` or a Keras model: the object whose variables a
  checkpoint restores (under ``network.checkpoint_root``, default ``model``: the name
  ``tf.train.Checkpoint(model=net)`` gives it).
- ``serve(net)`` returns what the export serves: a concrete function (or a ``tf.function`` with
  an ``input_signature``) for the definition's signature key, or a mapping of signature key to
  either.

Import paths are resolved with the mlc home first on ``sys.path``, so a package kept in the home
(``mypkg/nets.py``) needs no installing. The built-in networks are builders like any other:
``lifecycle.networks.deeplab:build`` (alias ``deeplab_v3``) and
``lifecycle.networks.classifier:build`` (alias ``shapes_classifier``); a builder that names
no ``serving`` uses the ``serve`` function of its own module.

A builder may ask :func:`restoring`: True when mlc builds the network only to restore a checkpoint
into it strictly (every variable is overwritten), so drawing random initial values is wasted work.

Parsing a plan (:func:`plan`) does not import TensorFlow; building does.
"""

from __future__ import annotations

import contextvars
import importlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lifecycle.errors import ConfigError

ALIASES = {
    "deeplab_v3": "lifecycle.networks.deeplab:build",
    "shapes_classifier": "lifecycle.networks.classifier:build",
}
# Where the built-in networks lived before mlc 0.2 moved them; definitions that name the old
# paths keep working.
MOVED = {"lifecycle.build.networks.": "lifecycle.networks."}
# Keys of the network section that are mlc's, not the builder's keyword arguments.
RESERVED = ("builder", "checkpoint_root")
DEFAULT_CHECKPOINT_ROOT = "model"


@dataclass(frozen=True)
class NetworkPlan:
    """What a definition says about its network: builder and serving paths and the builder's kwargs."""

    builder: str
    serving: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    checkpoint_root: str = DEFAULT_CHECKPOINT_ROOT
    where: str = "network"
    home: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for reports)."""
        return {"builder": self.builder, "serving": self.serving, **self.kwargs}


def plan(network: Mapping[str, Any], serving: Any, where: str, home: Path | None = None) -> NetworkPlan:
    """Parse a definition's ``network`` mapping and ``serving`` path (no TensorFlow)."""
    if not network:
        raise ConfigError(f"{where}: the definition has no 'network' section, so it cannot restore checkpoints "
                          "(register a SavedModel folder instead, or add network: {builder: 'pkg.module:build'})")
    raw = str(network.get("builder", "deeplab_v3"))
    builder = _current(ALIASES.get(raw, raw))
    _split(builder, f"{where}.builder")
    if serving is None:
        serving_path = builder.split(":", 1)[0] + ":serve"
    elif isinstance(serving, str):
        serving_path = _current(serving)
        _split(serving_path, f"{where.rsplit('network', 1)[0]}serving")
    else:
        raise ConfigError(f"{where.rsplit('network', 1)[0]}serving: expected an import path 'module:function'")
    kwargs = {k: v for k, v in network.items() if k not in RESERVED}
    root = str(network.get("checkpoint_root", DEFAULT_CHECKPOINT_ROOT))
    return NetworkPlan(builder, serving_path, kwargs, root, where, home)


def _current(path: str) -> str:
    """An import path with a moved built-in module's old name replaced by its current one."""
    for old, new in MOVED.items():
        if path.startswith(old):
            return new + path[len(old):]
    return path


def _split(path: str, where: str) -> tuple[str, str]:
    module, sep, attr = path.partition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"{where}: {path!r} is not an import path 'module:function' "
                          f"(or one of the built-in builders: {', '.join(ALIASES)})")
    return module, attr


def import_callable(path: str, where: str, home: Path | None = None) -> Callable[..., Any]:
    """The function an import path names; ConfigError (one line) if it does not import."""
    module_name, attr = _split(path, where)
    added = home is not None and str(home) not in sys.path
    if added:
        sys.path.insert(0, str(home))
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # ImportError, SyntaxError, anything the module raises at import
        raise ConfigError(f"{where}: {path!r} does not import: {type(e).__name__}: {_first_line(e)}") from e
    finally:
        if added:
            sys.path.remove(str(home))
    try:
        fn = getattr(module, attr)
    except AttributeError as e:
        raise ConfigError(f"{where}: {path!r} does not import: module {module_name!r} has no {attr!r}") from e
    if not callable(fn):
        raise ConfigError(f"{where}: {path!r} is a {type(fn).__name__}, not a function")
    return fn


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def is_network(obj: Any) -> bool:
    """A tf.Module or a Keras model (Keras 3 models are trackable but not tf.Modules)."""
    import tensorflow as tf

    if isinstance(obj, tf.Module):
        return True
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(obj, keras.Model)


_RESTORING = contextvars.ContextVar("mlc_network_restoring", default=False)


def restoring() -> bool:
    """True while a builder runs for a strict restore: every variable it makes will be overwritten."""
    return _RESTORING.get()


def build(p: NetworkPlan, restoring: bool = False) -> Any:
    """Call the builder with the definition's keyword arguments and check what it returns.

    ``restoring``: the caller restores every variable next (:func:`restoring` tells the builder).
    """
    builder = import_callable(p.builder, f"{p.where}.builder", p.home)
    token = _RESTORING.set(restoring)
    try:
        net = builder(**p.kwargs)
    except ConfigError:
        raise
    except Exception as e:  # a TypeError for an unknown keyword, or anything the user's code raises
        raise ConfigError(f"{p.where}.builder: {p.builder}(**{sorted(p.kwargs)}) failed: "
                          f"{type(e).__name__}: {_first_line(e)}") from e
    finally:
        _RESTORING.reset(token)
    if not is_network(net):
        raise ConfigError(f"{p.where}.builder: {p.builder} returned a {type(net).__module__}.{type(net).__name__}, "
                          "not a tf.keras.Model or tf.Module")
    return net


def serving_functions(p: NetworkPlan, net: Any, default_key: str) -> dict[str, Any]:
    """Signature key -> concrete function, from the definition's ``serving`` function."""
    import tensorflow as tf

    where = f"{p.where.rsplit('network', 1)[0]}serving"
    serve = import_callable(p.serving, where, p.home)
    try:
        result = serve(net)
    except Exception as e:
        raise ConfigError(f"{where}: {p.serving}(net) failed: {type(e).__name__}: {_first_line(e)}") from e
    items = result.items() if isinstance(result, Mapping) else [(default_key, result)]
    out = {}
    for key, fn in items:
        if isinstance(fn, tf.types.experimental.GenericFunction):
            try:
                fn = fn.get_concrete_function()
            except (TypeError, ValueError) as e:
                raise ConfigError(f"{where}: {p.serving} gave a tf.function for {key!r} without an "
                                  f"input_signature: {_first_line(e)}") from e
        if not isinstance(fn, tf.types.experimental.ConcreteFunction):
            raise ConfigError(f"{where}: {p.serving} gave a {type(fn).__name__} for signature {key!r}, "
                              "not a concrete function or a tf.function with an input_signature")
        out[str(key)] = fn
    return out


def describe(p: NetworkPlan, net: Any, definition_name: str) -> str:
    """How an error names the network: the builder's own words (``describe``) or its path."""
    own = getattr(net, "describe", None)
    return f"the {own()} of {definition_name}" if callable(own) else f"the network {p.builder} of {definition_name}"
