"""A ModelServerConfig's model list: its checks, its labels, and the versions each model's policy wants.

As TF Serving's ServerCore (ValidateModelConfigList, the platform rules,
UpdateModelVersionLabelMap) and its FileSystemStoragePathSource (integer subfolders of a base path are versions; the version
policy latest{N}, all or specific picks the aspired ones).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lifecycle.errors import FailedPrecondition, InvalidArgument
from lifecycle.server.models import remote

log = logging.getLogger("mlc-model-server")

TENSORFLOW_PLATFORM = "tensorflow"

# tensorflow_serving.config's ModelConfig and ModelServerConfig messages (no type stubs)
ModelConfig = Any
ServerConfig = Any


def validate_model_configs(model_configs: list[ModelConfig], old: dict[str, ModelConfig]) -> None:
    """A new config list as ReloadConfig checks it: unique names, the tensorflow platform, unchanged platforms."""
    seen: set[str] = set()
    for config in model_configs:
        if config.name in seen:
            raise InvalidArgument(f"Illegal to list model {config.name} multiple times in config list")
        seen.add(config.name)
        platform = _platform(config)
        if platform != TENSORFLOW_PLATFORM:
            raise InvalidArgument(f"Model {config.name} requests unsupported platform {platform}")
        if config.name in old and _platform(old[config.name]) != platform:
            raise InvalidArgument(
                f"Illegal to change a model's platform. For model {config.name} platform was "
                f"{_platform(old[config.name])} and new platform requested is {platform}"
            )


def label_map(model_configs: list[ModelConfig], available: Callable[[str, int], bool],
              current: dict[str, dict[str, int]], allow_unavailable: bool) -> dict[str, dict[str, int]]:
    """TF Serving's UpdateModelVersionLabelMap: the new labels, each on an AVAILABLE version.

    With ``allow_unavailable`` (--allow_version_labels_for_unavailable_models) a new label, or
    one left where it is, may point at a version that is not loaded yet.
    """
    new_map: dict[str, dict[str, int]] = {}
    for config in model_configs:
        for label, version in config.version_labels.items():
            allow = False
            if allow_unavailable:
                existing = current.get(config.name, {}).get(label)
                allow = existing is None or existing == version
            if not allow and not available(config.name, version):
                raise FailedPrecondition(
                    f"Request to assign label to version {version} of model "
                    f"{config.name}, which is not currently available for inference"
                )
            new_map.setdefault(config.name, {})[label] = version
    return new_map


def _platform(config: ModelConfig) -> str:
    if config.model_type:  # deprecated ModelType enum; 1 == TENSORFLOW
        if config.model_platform:
            raise InvalidArgument(
                "Illegal setting both ModelServerConfig::model_type (deprecated) and "
                "ModelServerConfig::model_platform."
            )
        if config.model_type == 1:
            return TENSORFLOW_PLATFORM
        raise InvalidArgument(f"ModelServerConfig::model_type choice {config.model_type} not supported.")
    if not config.model_platform:
        raise InvalidArgument(
            "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
            "ModelServerConfig::model_platform."
        )
    return config.model_platform


def aspired_versions(config: ModelConfig) -> dict[int, Path]:
    """The versions the model's policy wants among the integer folders of its base path.

    An ``s3://`` base path is read through a verified local cache (:mod:`lifecycle.server.models.remote`).
    """
    base = remote.local_base(config)
    try:
        entries = list(base.iterdir())
    except OSError:
        log.warning("File system storage path source: base path %s for servable %s does not exist", base, config.name)
        return {}
    on_disk: dict[int, Path] = {}
    for entry in entries:
        name = entry.name
        if name.isascii() and name.isdigit() and entry.is_dir():
            on_disk[int(name)] = entry
    policy = config.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return on_disk
    if choice == "specific":
        wanted = set(policy.specific.versions)
        missing = wanted - on_disk.keys()
        if missing:
            log.warning("Version(s) %s of servable %s not found under %s", sorted(missing), config.name, base)
        return {v: p for v, p in on_disk.items() if v in wanted}
    count = policy.latest.num_versions if choice == "latest" and policy.latest.num_versions > 0 else 1
    return {v: on_disk[v] for v in sorted(on_disk, reverse=True)[:count]}
