"""Paths of an mlc home and the model definitions under ``configs/``.

An mlc home is a folder with ``configs/`` (model definitions, written by people, and
``models.config``, written by mlc) and ``model_repo/`` (versions and ``registry.yaml``,
written only by mlc). It is ``$MLC_HOME`` if set, else the current folder.

This module must not import TensorFlow: ``status`` and ``history`` go through it.

A definition's sections (network, signature contract, validation and evaluation set,
thresholds) are parsed in one place, each error naming the file and line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lifecycle.errors import ConfigError, ModelNotFound, UsageError
from lifecycle.store.backends import open_store
from lifecycle.store.names import MODEL_NAME_RE, check_model_name

if TYPE_CHECKING:
    from lifecycle.store.base import Store

@dataclass(frozen=True)
class Paths:
    """Where everything of one mlc home lives."""

    home: Path

    @classmethod
    def from_env(cls, home: str | Path | None = None) -> Paths:
        """The home named by ``home``, else ``$MLC_HOME``, else the current folder."""
        chosen = home or os.environ.get("MLC_HOME") or os.getcwd()
        return cls(Path(chosen).resolve())

    @property
    def configs(self) -> Path:
        return self.home / "configs"

    @property
    def model_repo(self) -> Path:
        return self.home / "model_repo"

    @cached_property
    def store(self) -> Store:
        """The repository (registry, history, journal, versions, leases): :func:`lifecycle.store.backends.open_store`.

        ``$MLC_REPOSITORY`` or ``repository:`` in ``configs/mlc.yaml`` (:func:`repository_url`)
        selects an object store, whose verified local copies of versions then live in ``model_repo/``.
        """
        return open_store(repository_url(self), self.model_repo)

    @property
    def registry_file(self) -> Path:
        """Where a local repository keeps the registry document (read it with ``registry.load``)."""
        return self.model_repo / "registry.yaml"

    @property
    def serving_config(self) -> Path:
        return self.configs / "models.config"

    @property
    def state_dir(self) -> Path:
        """mlc's private runtime state: journals, server records, sandboxes."""
        return self.home / ".mlc"

    def model_dir(self, model: str) -> Path:
        """model_repo/<model>: the TF Serving base_path of a model."""
        return self.model_repo / check_model_name(model)

    def version_dir(self, model: str, version: int) -> Path:
        """model_repo/<model>/<version> (the local layout; code finds versions with ``store.version_path``)."""
        return self.model_dir(model) / str(int(version))

    def definition_file(self, model: str) -> Path:
        """configs/<model>.yaml."""
        return self.configs / f"{check_model_name(model)}.yaml"


# --- model definitions -------------------------------------------------------------------


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output of a signature contract."""

    name: str
    dtype: str
    shape: tuple[int, ...] | None  # None: unknown rank; -1: unknown dimension


@dataclass(frozen=True)
class SignatureContract:
    """The signature clients rely on: key, method name, inputs and outputs."""

    key: str
    method: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


SEGMENTATION = "segmentation"
CLASSIFICATION = "classification"
TASKS = (SEGMENTATION, CLASSIFICATION)
CLASSIFY_METHOD = "tensorflow/serving/classify"


@dataclass(frozen=True)
class Thresholds:
    """The ``thresholds`` section of a model definition: the limits of promote's quality gate."""

    max_miou_drop: float = 0.0  # refuse a candidate whose eval mIoU is more than this below stable's
    max_accuracy_drop: float = 0.0  # the same for a classifier's eval accuracy


@dataclass(frozen=True)
class ModelDefinition:
    """configs/<model>.yaml, parsed. ``raw`` keeps sections other modules interpret.

    ``signature`` is the primary contract (the one the warmup request and the golden digest
    use); ``signatures`` lists every contract, the primary first (``signatures:`` in the file,
    or the single ``signature:``). ``task`` says how outputs are judged: a ``segmentation`` map
    per pixel, or a ``classification`` per image (the default when a contract is a Classify).
    """

    name: str
    path: Path
    network: dict[str, Any]
    signature: SignatureContract
    validation: dict[str, Any] = field(default_factory=dict)
    thresholds: Thresholds = field(default_factory=Thresholds)
    raw: dict[str, Any] = field(default_factory=dict)
    signatures: tuple[SignatureContract, ...] = ()
    task: str = SEGMENTATION
    classes: tuple[str, ...] = ()

    def resolve(self, relative: str | Path) -> Path:
        """A path from the definition, relative to the definition's folder."""
        p = Path(relative)
        return p if p.is_absolute() else (self.path.parent / p)

    @property
    def home(self) -> Path:
        """The mlc home the definition belongs to (the folder above ``configs/``)."""
        return self.path.parent.parent

    def contract(self, method: str) -> SignatureContract | None:
        """The first contract with this method name, if any."""
        return next((c for c in self.signatures if c.method == method), None)


EVAL_SOURCES = ("synthetic", "voc", "folder")


@dataclass(frozen=True)
class EvalSetSpec:
    """The evaluation set (``validation.eval``).

    - ``synthetic``: procedural scenes fixed by ``seed``, ``count`` and ``size``;
    - ``voc``: labelled images in the Pascal VOC layout under ``root``, the ids of ``split``;
    - ``folder``: a folder per class under ``root`` (or ``root/<split>`` when that exists).

    ``root`` is relative to the mlc home.
    """

    source: str = "synthetic"
    seed: int = 0
    count: int = 8
    size: int = 64
    root: str | None = None
    split: str = "val"


@dataclass(frozen=True)
class ValidationSettings:
    """The ``validation`` section of a model definition, typed and checked."""

    test_image: Path
    eval: EvalSetSpec
    min_miou: float = 0.0
    eval_root: Path | None = None  # eval.root resolved against the mlc home
    min_accuracy: float = 0.0


def validation_settings(definition: ModelDefinition) -> ValidationSettings:
    """Typed view of ``definition.validation``; ConfigError names the file and key."""
    where = f"{definition.path}: validation"
    section = definition.validation
    if "test_image" not in section:
        raise ConfigError(f"{where} lacks 'test_image' (an image file, relative to {definition.path.parent})")
    ev = section.get("eval") or {}
    if not isinstance(ev, dict):
        raise ConfigError(f"{where}.eval: expected a mapping")
    try:
        eval_spec = EvalSetSpec(
            source=str(ev.get("source", "synthetic")),
            seed=int(ev.get("seed", 0)),
            count=int(ev.get("count", 8)),
            size=int(ev.get("size", 64)),
            root=None if ev.get("root") is None else str(ev["root"]),
            split=str(ev.get("split", "val")),
        )
        min_miou = float(section.get("min_miou", 0.0))
        min_accuracy = float(section.get("min_accuracy", 0.0))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from e
    if eval_spec.source not in EVAL_SOURCES:
        raise ConfigError(f"{where}.eval.source: unknown source {eval_spec.source!r} (known: {', '.join(EVAL_SOURCES)})")
    if eval_spec.source == "synthetic" and (eval_spec.count < 1 or eval_spec.size < 16):
        raise ConfigError(f"{where}.eval: need count >= 1 and size >= 16")
    root = None
    if eval_spec.source != "synthetic":
        if not eval_spec.root:
            raise ConfigError(f"{where}.eval: source {eval_spec.source!r} needs 'root' (a folder, relative to the mlc home)")
        root = Path(eval_spec.root) if Path(eval_spec.root).is_absolute() else definition.home / eval_spec.root
    expected = "folder" if definition.task == CLASSIFICATION else ("synthetic", "voc")
    if eval_spec.source not in expected:
        raise ConfigError(f"{where}.eval.source: {eval_spec.source!r} does not score a {definition.task} model "
                          f"(use {' or '.join(expected) if isinstance(expected, tuple) else expected})")
    return ValidationSettings(definition.resolve(str(section["test_image"])), eval_spec, min_miou, root, min_accuracy)


def load_yaml_file(path: Path, what: str) -> Any:
    """Parse a YAML file; a syntax error becomes ConfigError naming the file and line."""
    import yaml  # here, not at the top: `mlc status` without a servers file reads no YAML

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError(f"{what} not found: {path}") from e
    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"malformed {what} {where}: {problem}") from e


def _tensor_specs(section: Any, where: str) -> tuple[TensorSpec, ...]:
    if not isinstance(section, dict) or not section:
        raise ConfigError(f"{where}: expected a mapping of tensor name -> {{dtype, shape}}")
    specs = []
    for name, spec in section.items():
        if not isinstance(spec, dict) or "dtype" not in spec:
            raise ConfigError(f"{where}.{name}: expected {{dtype: ..., shape: [...]}}")
        shape = spec.get("shape")
        if shape is not None and (
            not isinstance(shape, list) or not all(isinstance(d, int) for d in shape)
        ):
            raise ConfigError(f"{where}.{name}.shape: expected a list of integers (-1 = any)")
        specs.append(TensorSpec(str(name), str(spec["dtype"]), None if shape is None else tuple(shape)))
    return tuple(specs)


def _contract(sig: Any, where: str) -> SignatureContract:
    if not isinstance(sig, dict):
        raise ConfigError(f"{where}: a signature must be a mapping")
    return SignatureContract(
        key=str(sig.get("key", "serving_default")),
        method=str(sig.get("method", "tensorflow/serving/predict")),
        inputs=_tensor_specs(sig.get("inputs"), f"{where}.inputs"),
        outputs=_tensor_specs(sig.get("outputs"), f"{where}.outputs"),
    )


def parse_definition(data: Any, path: Path) -> ModelDefinition:
    """Build a ModelDefinition from parsed YAML; structural problems raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"malformed model definition {path}: expected a mapping at the top")
    if "name" not in data:
        raise ConfigError(f"model definition {path} lacks the required key 'name'")
    if "signature" not in data and "signatures" not in data:
        raise ConfigError(f"model definition {path} lacks the required key 'signature' (or a list 'signatures')")
    name = str(data["name"])
    try:
        check_model_name(name)
    except UsageError as e:
        raise ConfigError(f"model definition {path}: {e.message}") from e
    if "signatures" in data:
        listed = data["signatures"]
        if not isinstance(listed, list) or not listed:
            raise ConfigError(f"model definition {path}: 'signatures' must be a non-empty list of signatures")
        contracts = tuple(_contract(s, f"{path}: signatures[{i}]") for i, s in enumerate(listed))
    else:
        contracts = (_contract(data["signature"], f"{path}: signature"),)
    keys = [c.key for c in contracts]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"model definition {path}: signature keys repeat: {keys}")
    network = data.get("network") or {}
    if not isinstance(network, dict):
        raise ConfigError(f"model definition {path}: 'network' must be a mapping")
    inferred = CLASSIFICATION if any(c.method == CLASSIFY_METHOD for c in contracts) else SEGMENTATION
    task = str(data.get("task", inferred))
    if task not in TASKS:
        raise ConfigError(f"model definition {path}: task {task!r} is unknown (known: {', '.join(TASKS)})")
    classes = data.get("classes") or ()
    if not isinstance(classes, list | tuple) or not all(isinstance(c, str) for c in classes):
        raise ConfigError(f"model definition {path}: 'classes' must be a list of class names")
    return ModelDefinition(
        name=name,
        path=path,
        network=network,
        signature=contracts[0],
        validation=dict(data.get("validation") or {}),
        thresholds=parse_thresholds(data.get("thresholds"), path),
        raw=data,
        signatures=contracts,
        task=task,
        classes=tuple(classes),
    )


def parse_thresholds(section: Any, path: Path) -> Thresholds:
    """The typed ``thresholds`` section; an unknown key or a bad value is a ConfigError naming the line."""
    if section is None:
        return Thresholds()
    if not isinstance(section, dict):
        raise ConfigError(f"{yaml_location(path, ['thresholds'])}: 'thresholds' must be a mapping")
    known = [f.name for f in fields(Thresholds)]
    for key in section:
        if key not in known:
            raise ConfigError(
                f"{yaml_location(path, ['thresholds', str(key)])}: unknown threshold {key!r} in model definition "
                f"(known: {', '.join(known)})"
            )
    values = {}
    for key, value in section.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(
                f"{yaml_location(path, ['thresholds', key])}: thresholds.{key} must be a number, got {value!r}"
            )
        values[key] = float(value)
    return Thresholds(**values)


def yaml_location(path: Path, keys: Sequence[str]) -> str:
    """``path:line`` of the key reached by ``keys`` in a YAML file, as far as it is found, else ``path``.

    Read only to word an error: the fast loader keeps no line numbers.
    """
    import yaml

    try:
        node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return str(path)
    line = None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            break
        found = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == key), None)
        if found is None:
            break
        line, node = found[0].start_mark.line + 1, found[1]
    return f"{path}:{line}" if line is not None else str(path)


def load_definition(paths: Paths, model: str) -> ModelDefinition:
    """Read configs/<model>.yaml; an unknown model raises ModelNotFound."""
    file = paths.definition_file(model)
    if not file.exists():
        known = ", ".join(list_models(paths)) or "none"
        raise ModelNotFound(
            f"unknown model {model!r}: no {file} (known models: {known})"
        )
    definition = parse_definition(load_yaml_file(file, "model definition"), file)
    if definition.name != model:
        raise ConfigError(f"model definition {file} names model {definition.name!r}, expected {model!r}")
    return definition


# Files under configs/ that are not model definitions.
NOT_DEFINITIONS = {"servers", "mlc"}
REPOSITORY_ENV = "MLC_REPOSITORY"


def list_models(paths: Paths) -> list[str]:
    """Names of the models defined under configs/ (files ``<name>.yaml``)."""
    if not paths.configs.is_dir():
        return []
    return sorted(
        p.stem for p in paths.configs.glob("*.yaml") if MODEL_NAME_RE.match(p.stem) and p.stem not in NOT_DEFINITIONS
    )


def repository_url(paths: Paths) -> str | None:
    """Where the repository lives when it is not ``model_repo/``: an ``s3://bucket/prefix``.

    ``$MLC_REPOSITORY`` if set, else ``repository:`` in ``configs/mlc.yaml``, else None (the
    local folder). Anything but an s3:// URL is a ConfigError naming where it was set.
    """
    where = f"${REPOSITORY_ENV}"
    url = os.environ.get(REPOSITORY_ENV, "").strip()
    if not url:
        file = paths.configs / "mlc.yaml"
        if not file.exists():
            return None
        data = load_yaml_file(file, "mlc settings") or {}
        if not isinstance(data, dict):
            raise ConfigError(f"malformed mlc settings {file}: expected a mapping (repository: s3://bucket/prefix)")
        unknown = sorted(set(data) - {"repository"})
        if unknown:
            raise ConfigError(f"{file}: unknown setting(s) {', '.join(map(str, unknown))} (known: repository)")
        url = str(data.get("repository") or "").strip()
        where = f"{file}: repository"
        if not url:
            return None
    from lifecycle.store.s3_client import parse_s3_url  # no boto3: only the URL's syntax

    try:
        parse_s3_url(url)
    except UsageError as e:
        raise ConfigError(f"{where}: {e.message} (leave it unset for model_repo/)") from e
    return url


def default_model(paths: Paths) -> str:
    """The model to use when none is named: the only one defined, else an error."""
    models = list_models(paths)
    if len(models) == 1:
        return models[0]
    if not models:
        raise ConfigError(f"no model definitions in {paths.configs}; add configs/<model>.yaml")
    raise UsageError(f"several models are defined ({', '.join(models)}); name one with --model")
