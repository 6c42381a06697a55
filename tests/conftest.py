"""Shared pytest fixtures. Expensive artefacts (SavedModels, checkpoints) are session fixtures."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.support.seaweed import s3_bucket, seaweed  # noqa: F401 - fixtures: a real S3 server

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def subprocess_env() -> dict[str, str]:
    """Environment for child processes (mlc, mlc-model-server) that imports this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="session")
def python() -> str:
    """The interpreter running the tests, for child processes."""
    return sys.executable


@pytest.fixture(scope="session")
def half_plus_two_exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """half_plus_two version folders built once per session: tf1, tf1_text, tf2 and keras."""
    from tests.support.savedmodels import (
        build_half_plus_two_tf1,
        build_half_plus_two_tf2,
        build_keras,
    )

    root = tmp_path_factory.mktemp("half_plus_two_exports")
    return {
        "tf1": build_half_plus_two_tf1(root / "tf1"),
        "tf1_text": build_half_plus_two_tf1(root / "tf1_text", as_text=True),
        "tf2": build_half_plus_two_tf2(root / "tf2"),
        "keras": build_keras(root / "keras"),
    }



# --- mlc homes and DeepLab checkpoints (small backbone) ------------------------------------

import shutil  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from lifecycle.store.config import Paths  # noqa: E402

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


@pytest.fixture
def make_home(tmp_path: Path) -> Callable[..., Paths]:
    """Factory: ``make_home(name="home") -> Paths`` of a fresh mlc home under ``tmp_path``.

    The home has ``configs/deeplab.yaml`` and ``configs/test_image.png`` copied from the
    repository and an empty ``model_repo/``. Call it several times with different names for
    several homes. Pass the Paths to api functions (``api.register(..., paths=p)``) or set
    ``MLC_HOME=str(p.home)`` for child processes.
    """

    def make(name: str = "home") -> Paths:
        return new_home(tmp_path / name)

    return make


@dataclass(frozen=True)
class TinyRun:
    """A run folder of small-backbone DeepLab checkpoints at increasing steps."""

    run_dir: Path
    steps: tuple[int, ...]

    def prefix(self, step: int) -> Path:
        """The checkpoint prefix of ``step`` (``run_dir/ckpt-<step>``)."""
        return self.run_dir / f"ckpt-{step}"

    @property
    def prefixes(self) -> list[Path]:
        """Prefixes in step order; the last is what the run folder itself names."""
        return [self.prefix(s) for s in self.steps]


TINY_STEPS = 60
TINY_SAVE_EVERY = 20


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """Session fixture: ``TinyRun(run_dir, steps=(20, 40, 60))`` trained with ``mlc train``'s code.

    Small backbone at 64x64 (about 10 s, once per session). Later checkpoints score better on
    the evaluation set of ``configs/deeplab.yaml``. Treat it as read-only: copy it
    (``shutil.copytree``) before corrupting files.
    """
    from lifecycle import api

    home = new_home(tmp_path_factory.mktemp("tiny-home"))
    run_dir = tmp_path_factory.mktemp("tiny-run") / "16645"
    result = api.train(run_dir, steps=TINY_STEPS, save_every=TINY_SAVE_EVERY, paths=home)
    return TinyRun(run_dir=run_dir, steps=tuple(c.step for c in result.checkpoints))


@pytest.fixture(scope="session")
def _registered_template(tmp_path_factory: pytest.TempPathFactory, tiny_run: TinyRun) -> Path:
    from lifecycle import api

    paths = new_home(tmp_path_factory.mktemp("registered") / "home")
    for prefix in tiny_run.prefixes:
        api.register(prefix, paths=paths)
    return paths.home


@pytest.fixture
def registered_home(tmp_path: Path, _registered_template: Path) -> Paths:
    """A fresh mlc home with deeplab versions 1, 2, 3 registered from ``tiny_run`` steps 20, 40, 60.

    Built once per session and copied per test, so a test may change it freely. No version is
    promoted (``stable`` is null) and ``configs/models.config`` does not exist yet.
    """
    home = tmp_path / "registered"
    shutil.copytree(_registered_template, home, symlinks=True)
    return Paths.from_env(home)


def tree_state(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with its SHA-256 (folders as ``dir``): compare before/after."""
    import hashlib

    state = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        state[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return state


@pytest.fixture(scope="session")
def variant_checkpoints(tmp_path_factory: pytest.TempPathFactory, tiny_run: TinyRun) -> list[Path]:
    """Session fixture: 8 checkpoint prefixes, each ``tiny_run``'s last with a different tiny change.

    Same architecture, different content (so each registers as a new version); written with
    ``tf.train.Checkpoint(model=net).write`` in their own folders (``variant-<i>/ckpt-60``).
    """
    import tensorflow as tf

    from lifecycle.build import deeplab, export

    root = tmp_path_factory.mktemp("variants")
    net = deeplab.build(deeplab.NetworkSpec())
    export.restore_strict(net, tiny_run.prefixes[-1])
    prefixes = []
    for i in range(8):
        net.classifier.bias.assign_add(tf.fill(net.classifier.bias.shape, 1e-3))
        prefix = root / f"variant-{i}" / f"ckpt-{tiny_run.steps[-1]}"
        tf.train.Checkpoint(model=net).write(str(prefix))
        prefixes.append(prefix)
    return prefixes


# --- a served DeepLab for client tests (mlc predict, examples/deeplab_client.py) ------------

from collections.abc import Iterator  # noqa: E402


@dataclass(frozen=True)
class ServedDeeplab:
    """A home with deeplab versions 1, 2, 3 and an in-process mlc-model-server serving them.

    Labels: ``stable`` -> 2, ``canary`` -> 3. The server is listed in ``configs/servers.yaml``,
    so commands find it by default. Shared by the session: do not change the home or the server.
    """

    paths: Paths
    grpc: str
    rest: str


@pytest.fixture(scope="session")
def served_deeplab(tmp_path_factory: pytest.TempPathFactory, _registered_template: Path) -> Iterator[ServedDeeplab]:
    """Session fixture: :class:`ServedDeeplab`, the server started with ``create_server``."""
    from lifecycle.server import ServerOptions, create_server
    from lifecycle.serving import fleet
    from tests.support.server_support import (
        Client,
        model_config,
        server_config,
        wait_state,
    )

    home = tmp_path_factory.mktemp("served") / "home"
    shutil.copytree(_registered_template, home, symlinks=True)
    paths = Paths.from_env(home)
    base = paths.model_dir("deeplab")
    versions = [1, 2, 3]
    server = create_server(
        ServerOptions(
            model_config=server_config(model_config("deeplab", base, policy="specific", versions=versions)),
            rest_api_port=0,
            file_system_poll_wait_seconds=0,
        )
    )
    client = Client(server.grpc_address)
    try:
        for v in versions:
            wait_state(client, "deeplab", v, "AVAILABLE", timeout=60)
        # Labels only on AVAILABLE versions, as TF Serving requires.
        server.reload(
            server_config(
                model_config("deeplab", base, policy="specific", versions=versions, labels={"stable": 2, "canary": 3})
            )
        )
        rest = f"127.0.0.1:{server.rest_port}"
        fleet.write_servers_file(paths, [fleet.ServerSpec(server.grpc_address, rest)])
        yield ServedDeeplab(paths, server.grpc_address, rest)
    finally:
        client.close()
        server.stop()
