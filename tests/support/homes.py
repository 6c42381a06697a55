"""mlc homes for tests: where the repository is, a fresh home, and a byte-for-byte picture of a tree."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from lifecycle.store.config import Paths

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIGS = REPO_ROOT / "configs"
# What a fresh home gets from the repository's configs/: the model definition and its test image.
HOME_CONFIG_FILES = ("deeplab.yaml", "test_image.png")


def new_home(root: Path) -> Paths:
    """Create an mlc home at ``root``: configs/ (deeplab.yaml + test image) and an empty model_repo/."""
    (root / "configs").mkdir(parents=True)
    for name in HOME_CONFIG_FILES:
        shutil.copy2(CONFIGS / name, root / "configs" / name)
    (root / "model_repo").mkdir()
    return Paths.from_env(root)


def tree_state(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with its SHA-256 (folders as ``dir``): compare before/after."""
    state = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        state[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return state


def byo_home(root: Path, *definitions: str) -> Paths:
    """A fresh home plus the named definitions (``segmenter`` and ``seed`` from examples/byo/,
    ``shapes`` from configs/), the classifier's test image and the shipped labelled sets (``data/``)."""
    paths = new_home(root)
    for name in definitions:
        source = CONFIGS / f"{name}.yaml" if name == "shapes" else REPO_ROOT / "examples" / "byo" / f"{name}.yaml"
        shutil.copy2(source, paths.configs / f"{name}.yaml")
    shutil.copy2(CONFIGS / "shapes_test.png", paths.configs / "shapes_test.png")
    shutil.copytree(REPO_ROOT / "data", paths.home / "data")
    return paths
