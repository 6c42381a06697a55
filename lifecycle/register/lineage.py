"""Lineage: what made a version, recorded in its report when it is registered.

- the training run's own record (``RUN_DIR/mlc-run.json``, written by ``mlc train``: seed,
  network) and the checkpoint's step;
- the mlc home's git commit and whether the work tree was dirty, when the home is a git repository;
- digests of the model definition file, of the evaluation set (its images and labels as
  loaded) and of the builder's module source;
- the TensorFlow and mlc versions.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from lifecycle.networks import builders
from lifecycle.store.config import ModelDefinition, Paths
from lifecycle.train.record import RECORD_NAME

GIT_TIMEOUT_S = 5.0


def _sha256_file(path: Path) -> str | None:
    try:
        return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def run_record(checkpoint: Path) -> dict[str, Any] | None:
    """The run record of the run folder ``checkpoint`` is in (or is), if ``mlc train`` wrote one."""
    for folder in (checkpoint, checkpoint.parent):
        try:
            data = json.loads((folder / RECORD_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        return data if isinstance(data, dict) else None
    return None


def git_state(home: Path) -> dict[str, Any] | None:
    """The home's git commit and whether its work tree is dirty; None outside a git repository."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(home), *args], capture_output=True, text=True, timeout=GIT_TIMEOUT_S,
                              check=True)
        return done.stdout.strip()
    try:
        if git("rev-parse", "--is-inside-work-tree") != "true":
            return None
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def eval_digest(eval_set: Any) -> str:
    """A digest of an evaluation set's images and labels, as loaded."""
    h = hashlib.sha256()
    for image, label in zip(eval_set.images, eval_set.labels, strict=True):
        for part in (np.ascontiguousarray(image), np.ascontiguousarray(np.asarray(label))):
            h.update(str(part.dtype).encode() + str(part.shape).encode())
            h.update(part.tobytes())
    return "sha256:" + h.hexdigest()


def builder_digest(definition: ModelDefinition) -> dict[str, Any] | None:
    """The builder's import path and the digest of its module's source (None for a SavedModel's definition)."""
    if not definition.network:
        return None
    try:
        plan = builders.plan(definition.network, definition.raw.get("serving"), f"{definition.path}: network")
        spec = importlib.util.find_spec(plan.builder.split(":", 1)[0])
    except (LookupError, ImportError, ValueError, AttributeError):
        return None
    origin = Path(spec.origin) if spec is not None and spec.origin else None
    return {"builder": plan.builder, "module": str(origin) if origin else None,
            "digest": _sha256_file(origin) if origin else None}


def collect(paths: Paths, definition: ModelDefinition, checkpoint: str, step: int | None, eval_set: Any,
            tf_version: str) -> dict[str, Any]:
    """Everything above, as plain data for the version's report."""
    source = Path(checkpoint) if Path(checkpoint).is_absolute() else paths.home / checkpoint
    try:
        mlc_version = metadata.version("mlc")
    except metadata.PackageNotFoundError:
        mlc_version = "unknown"
    return {
        "run": run_record(source), "step": step, "git": git_state(paths.home),
        "definition": {"file": str(definition.path), "digest": _sha256_file(Path(definition.path))},
        "eval": {"description": dict(getattr(eval_set, "description", {}) or {}), "digest": eval_digest(eval_set)},
        "builder": builder_digest(definition), "tf_version": tf_version, "mlc_version": mlc_version,
    }
