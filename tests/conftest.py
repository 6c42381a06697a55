"""Shared pytest fixtures. Expensive artefacts (SavedModels, checkpoints) are session fixtures.

What tests import (paths, data classes, helpers) lives in tests/support/; this file holds only
fixtures and the check that every DeepLab test is marked ``e2e``.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lifecycle.store.config import Paths
from tests.support.deeplab_runs import (
    TINY_SAVE_EVERY,
    TINY_STEPS,
    ServedDeeplab,
    ShapesRun,
    TinyRun,
)
from tests.support.homes import REPO_ROOT, new_home
from tests.support.seaweed import s3_bucket, s3_env, seaweed  # noqa: F401 - fixtures: a real S3 server

# Fixture modules: the Store implementations every contract test runs against (store,
# store_factory), and the headless browser the ui tests drive (browser).
pytest_plugins = ["tests.support.stores", "tests.support.browser"]


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


@pytest.fixture(scope="session")
def variant_checkpoints(tmp_path_factory: pytest.TempPathFactory, tiny_run: TinyRun) -> list[Path]:
    """Session fixture: 8 checkpoint prefixes, each ``tiny_run``'s last with a different tiny change.

    Same architecture, different content (so each registers as a new version); written with
    ``tf.train.Checkpoint(model=net).write`` in their own folders (``variant-<i>/ckpt-60``).
    """
    import tensorflow as tf

    from lifecycle.networks import deeplab
    from lifecycle.register import export

    root = tmp_path_factory.mktemp("variants")
    net = deeplab.create(deeplab.NetworkSpec())
    export.restore_strict(net, tiny_run.prefixes[-1])
    prefixes = []
    for i in range(8):
        net.classifier.bias.assign_add(tf.fill(net.classifier.bias.shape, 1e-3))
        prefix = root / f"variant-{i}" / f"ckpt-{tiny_run.steps[-1]}"
        tf.train.Checkpoint(model=net).write(str(prefix))
        prefixes.append(prefix)
    return prefixes


# --- homes of placeholder versions (no models: bookkeeping, gates, refusals) -----------------


@pytest.fixture
def bare_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    """An mlc home at ``tmp_path`` with an empty configs/ (no model definition); MLC_HOME points at it."""
    monkeypatch.setenv("MLC_HOME", str(tmp_path))
    paths = Paths.from_env()
    paths.configs.mkdir()
    return paths


@pytest.fixture
def served_home(bare_home: Paths) -> Paths:
    """``bare_home`` with placeholder models m (versions 1, 2; stable 1) and n (unvalidated 1), and a
    models.config serving m 1: see ``tests.support.placeholders.serve_placeholders``."""
    from tests.support.placeholders import serve_placeholders

    return serve_placeholders(bare_home)


# --- a served DeepLab for client tests (mlc predict, examples/deeplab_client.py) ------------


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


# --- every test that trains or serves DeepLab is marked e2e ----------------------------------

# The fixtures that train DeepLab (tiny_run) or build on its checkpoints.
DEEPLAB_FIXTURES = frozenset({"tiny_run", "_registered_template", "registered_home", "variant_checkpoints",
                              "served_deeplab"})


E2E_FOLDER = Path(__file__).parent / "e2e"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything in tests/e2e/ is an e2e test (its modules say so too, this is the safety net),
    and a test elsewhere that trains or serves DeepLab without ``@pytest.mark.e2e`` is refused."""
    for item in items:
        if E2E_FOLDER in item.path.parents and item.get_closest_marker("e2e") is None:
            item.add_marker(pytest.mark.e2e)
    unmarked = [item.nodeid for item in items
                if DEEPLAB_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("e2e") is None]
    if unmarked:
        raise pytest.UsageError(
            "these tests train or serve DeepLab but are not marked @pytest.mark.e2e: " + ", ".join(unmarked)
        )


# --- homes for bring-your-own models: SavedModel definitions and the shipped labelled sets ----


@pytest.fixture
def make_byo_home(tmp_path: Path) -> Callable[..., Paths]:
    """Factory: ``make_byo_home("segmenter", "shapes", name="home")`` -> Paths (see ``homes.byo_home``)."""
    from tests.support.homes import byo_home

    def make(*definitions: str, name: str = "byo") -> Paths:
        return byo_home(tmp_path / name, *definitions)

    return make


@pytest.fixture(scope="session")
def user_saved_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """SavedModel folders a user brings: keras_saved (tf.saved_model.save of a Keras model),
    keras_export (Keras ExportArchive), seed_tf1 and seed_tf1_text (TF1 SavedModelBuilder)."""
    from tests.support import savedmodels as sm

    root = tmp_path_factory.mktemp("user-saved-models")
    return {
        "keras_saved": sm.build_keras_segmenter_saved(root / "keras_saved"),
        "keras_export": sm.build_keras_segmenter_export(root / "keras_export", seed=1),
        "seed_tf1": sm.build_seed_deeplab_tf1(root / "seed_tf1"),
        "seed_tf1_text": sm.build_seed_deeplab_tf1(root / "seed_tf1_text", as_text=True, seed=2),
    }


@pytest.fixture(scope="session")
def shapes_run(tmp_path_factory: pytest.TempPathFactory) -> ShapesRun:
    """Session fixture: the shapes classifier trained with mlc train's code (steps 3, 120, 150; seconds)."""
    from lifecycle import api
    from tests.support.homes import byo_home

    home = byo_home(tmp_path_factory.mktemp("shapes-home") / "home", "shapes")
    run_dir = tmp_path_factory.mktemp("shapes-run") / "run"
    api.train(run_dir, steps=3, save_every=3, model="shapes", paths=home)
    result = api.train(run_dir, steps=150, save_every=120, model="shapes", paths=home)
    return ShapesRun(run_dir, (3, *(c.step for c in result.checkpoints)))
