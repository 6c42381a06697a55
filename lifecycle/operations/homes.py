"""``mlc init``: make a folder an mlc home.

A home gets ``configs/``, ``model_repo/`` and one model definition: a built-in one (``deeplab``,
the demo DeepLab; ``shapes``, the small classifier), copied with its test image (and the
classifier's labelled evaluation set), or one written for a SavedModel the user names, whose
signatures become the definition's contract (read with TensorFlow's protos, only then).
Nothing is written until everything is known to be writable: an existing definition of that
name is refused.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lifecycle.errors import UsageError
from lifecycle.store.config import Paths, check_model_name
from lifecycle.store.files import atomic_write_text

# Where the built-in definitions live: the repository's configs/ (and data/ for their sets).
SOURCE_ROOT = Path(__file__).resolve().parents[2]
# Each built-in definition and the files it needs besides itself, relative to the source root.
BUILTINS: dict[str, tuple[str, ...]] = {
    "deeplab": ("configs/test_image.png",),
    "shapes": ("configs/shapes_test.png", "data/shapes-mini"),
}


@dataclass
class InitResult:
    """What ``mlc init`` made."""

    home: str
    model: str
    definition: str
    created: list[str] = field(default_factory=list)  # files and folders written, relative to the home
    source: str = "built-in"  # built-in, or the SavedModel folder the contract was read from

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self)


def init(home: Path, builtin: str | None = None, saved_model: Path | None = None, name: str | None = None) -> InitResult:
    """Make ``home`` an mlc home with a built-in definition, or one written for ``saved_model``."""
    paths = Paths(home.resolve())
    if saved_model is not None and builtin is not None:
        raise UsageError("give a built-in definition or --saved-model, not both")
    if paths.home.exists() and not paths.home.is_dir():
        raise UsageError(f"{paths.home} exists and is not a folder")
    if saved_model is not None:
        folder = saved_model.resolve()
        if not (folder / "saved_model.pb").is_file() and not (folder / "saved_model.pbtxt").is_file():
            raise UsageError(f"{saved_model} is not a SavedModel folder (no saved_model.pb)")
        model = check_model_name(name or _name_from(folder))
        text = saved_model_definition(folder, model)
        extra: tuple[str, ...] = ("configs/test_image.png",)
    else:
        model = builtin or "deeplab"
        if model not in BUILTINS:
            raise UsageError(f"unknown built-in definition {model!r} (known: {', '.join(BUILTINS)})")
        if name is not None and name != model:
            raise UsageError("--name renames only a definition written for --saved-model")
        source = SOURCE_ROOT / "configs" / f"{model}.yaml"
        if not source.is_file():
            raise UsageError(f"the built-in definitions are not installed here ({source} is missing)")
        text = source.read_text(encoding="utf-8")
        extra = BUILTINS[model]
    target = paths.definition_file(model)
    if target.exists():
        raise UsageError(f"{target} exists already; {paths.home} is a home for {model} (nothing changed)")
    missing = [p for p in extra if not (SOURCE_ROOT / p).exists()]
    if missing:
        raise UsageError(f"the built-in files {', '.join(missing)} are not installed here (nothing changed)")
    created = [p for p in ("configs", "model_repo") if not (paths.home / p).is_dir()]
    for folder_name in ("configs", "model_repo"):
        (paths.home / folder_name).mkdir(parents=True, exist_ok=True)
    for relative in extra:
        src, dst = SOURCE_ROOT / relative, paths.home / relative
        if dst.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
        created.append(relative)
    atomic_write_text(target, text)
    created.append(f"configs/{model}.yaml")
    return InitResult(str(paths.home), model, str(target), created,
                      "built-in" if saved_model is None else str(saved_model.resolve()))


def _name_from(folder: Path) -> str:
    """A model name from a SavedModel folder's name (``exports/my-net/1`` -> ``my-net``)."""
    stem = folder.name if not folder.name.isdigit() else folder.parent.name
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem).lstrip("._-") or "model"


def saved_model_definition(folder: Path, model: str) -> str:
    """The YAML of a definition whose contract is the SavedModel's signatures (no network: mlc copies it)."""
    import yaml

    from lifecycle.register.validate import read_signatures

    signatures = read_signatures(folder)
    if not signatures:
        raise UsageError(f"{folder} has no serving signatures to write a contract for")
    # The primary contract first: serving_default when it exists (TF Serving's default key).
    keys = sorted(signatures, key=lambda k: (k != "serving_default", k))
    contracts = [signatures[k] for k in keys]
    body: dict[str, Any] = {"name": model}
    if len(contracts) == 1:
        body["signature"] = contracts[0]
    else:
        body["signatures"] = contracts
    body["validation"] = {
        "test_image": "test_image.png",
        "eval": {"source": "synthetic", "seed": 0, "count": 8, "size": 64},
        "min_miou": 0.0,
    }
    head = (
        f"# Written by `mlc init` for the SavedModel {folder}: its signatures are the contract\n"
        "# `mlc register` holds every version to. No network section: mlc copies SavedModels, it does\n"
        "# not build them. Check validation (test image, evaluation set) before registering;\n"
        "# docs/byo.md says what each setting means. Paths are relative to this file's folder.\n"
    )
    return head + yaml.safe_dump(body, sort_keys=False, default_flow_style=None)
