"""The quality gate on promote, end to end: real DeepLab versions from ``registered_home``, their
eval mIoU, the tolerance from configs/deeplab.yaml, the history, and ``mlc watch
--promote-if-better`` against an in-process mlc-model-server.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lifecycle import api
from lifecycle.cli import app
from lifecycle.register.watch import WatchEvent
from lifecycle.serving import fleet, tfs_config
from lifecycle.serving.client import ServingClient
from lifecycle.store import registry
from lifecycle.store.config import Paths
from lifecycle.store.registry import HistoryEvent
from tests.support.deeplab_runs import TinyRun
from tests.support.polling import wait_until
from tests.support.rollout_support import start_server
from tests.support.trainer_sim import SimTrainer, real_files

pytestmark = pytest.mark.e2e
runner = CliRunner()
MODEL = "deeplab"


def miou(paths: Paths, version: int) -> float:
    return float(registry.load(paths).model(MODEL).version(version).report["metrics"]["miou"])


def set_tolerance(paths: Paths, tolerance: float) -> None:
    path = paths.definition_file(MODEL)
    data = yaml.safe_load(path.read_text())
    data.setdefault("thresholds", {})["max_miou_drop"] = tolerance
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def make_stable(paths: Paths, version: int) -> None:
    """Record ``version`` as stable and write the serving config, as a finished promote would."""
    with registry.transaction(paths) as reg:
        rec = reg.model(MODEL)
        rec.stable = version
        rec.history.append(HistoryEvent("promote", None, version, "ok", reason="test setup"))
        tfs_config.write(paths, tfs_config.build(paths, tfs_config.served_from_registry(reg)))


def rewritten(source: Path, target: Path, change: Callable[[object], None]) -> Path:
    """A checkpoint of ``source``'s network with ``change(net)`` applied, written to ``target``."""
    import tensorflow as tf

    from lifecycle.networks import deeplab
    from lifecycle.register import export

    net = deeplab.create(deeplab.NetworkSpec())
    export.restore_strict(net, source)
    change(net)
    tf.train.Checkpoint(model=net).write(str(target))
    return target


def test_promote_refuses_a_worse_version_unless_forced_and_records_why(
    registered_home: Paths, monkeypatch: pytest.MonkeyPatch,
) -> None:
    paths = registered_home
    monkeypatch.setenv("MLC_HOME", str(paths.home))
    m1, m2, m3 = miou(paths, 1), miou(paths, 2), miou(paths, 3)
    assert m1 < m2 < m3, (m1, m2, m3)  # later tiny_run checkpoints score better
    tolerance = round((m3 - m2) + (m2 - m1) / 2, 4)  # v2 is within it of v3, v1 is not
    set_tolerance(paths, tolerance)
    make_stable(paths, 3)
    before = registry.load(paths).model(MODEL)

    refused = runner.invoke(app, ["promote", MODEL, "1"])
    assert refused.exit_code == 1, refused.output
    assert f"quality gate: version 1 has mIoU {m1:.4f}, below stable 3's {m3:.4f} by more than the tolerance {tolerance:g}" \
        in refused.stderr
    assert "--force" in refused.stderr
    plan = runner.invoke(app, ["promote", MODEL, "2", "--dry-run", "--json"])
    assert plan.exit_code == 0, plan.output  # within the tolerance: the gate lets it through

    no_reason = runner.invoke(app, ["promote", MODEL, "1", "--force"])
    assert no_reason.exit_code == 2, no_reason.output
    assert "--reason" in no_reason.stderr
    after = registry.load(paths).model(MODEL)
    assert after.stable == 3 and after.history == before.history, "a refusal changes nothing"

    forced = runner.invoke(app, ["promote", MODEL, "1", "--force", "--reason", "v3 mislabels cats in production"])
    assert forced.exit_code == 0, forced.output
    rec = registry.load(paths).model(MODEL)
    assert rec.stable == 1
    event = rec.history[-1]
    assert (event.action, event.from_version, event.to_version, event.result) == ("promote", 3, 1, "ok")
    assert event.forced is True and event.reason == "v3 mislabels cats in production"
    assert "forced past the quality gate: version 1 has mIoU" in event.detail
    hist = json.loads(runner.invoke(app, ["history", MODEL, "--json"]).stdout)["events"]
    assert hist[-1]["forced"] is True and hist[-1]["reason"] == "v3 mislabels cats in production"


def test_watch_promote_if_better_keeps_a_worse_checkpoint_and_promotes_a_better_one(
    registered_home: Paths, tiny_run: TinyRun, tmp_path: Path,
) -> None:
    import tensorflow as tf

    paths = registered_home
    make_stable(paths, 2)  # tiny_run step 40; the definition's tolerance applies
    stable_miou = miou(paths, 2)
    # Worse: step 60 with a classifier that calls everything background. Better: step 60 with a
    # tiny change (new content, same quality as version 3, which beats version 2).
    worse = rewritten(tiny_run.prefix(60), tmp_path / "w" / "ckpt-60",
                      lambda net: net.classifier.bias.assign_add(tf.one_hot(0, 21) * 100.0))  # type: ignore[attr-defined]
    better = rewritten(tiny_run.prefix(60), tmp_path / "b" / "ckpt-60",
                       lambda net: net.classifier.bias.assign_add(tf.fill([21], 1e-3)))  # type: ignore[attr-defined]

    server = start_server(paths)
    try:
        fleet.write_servers_file(paths, [fleet.ServerSpec(server.grpc_address, f"127.0.0.1:{server.rest_port}")])
        run = tmp_path / "ckpt" / "16700"
        trainer = SimTrainer(run)
        events: list[WatchEvent] = []
        stop = threading.Event()

        def outcome(kind: str) -> list[WatchEvent]:
            return [e for e in list(events) if e.kind == kind]

        thread = threading.Thread(target=lambda: api.watch(
            [run], promote_if_better=True, settle=0.3, exit_after=150, stop=stop, on_event=events.append, paths=paths,
        ), daemon=True)
        thread.start()
        try:
            trainer.write(100, real_files(worse), half_pause=0.1)
            wait_until(lambda: outcome("kept") or outcome("promoted") or outcome("failed"), 120, "the worse checkpoint")
            kept = outcome("kept")
            assert kept and kept[0].version == 4, [e.message for e in events]
            assert "quality gate: version 4 has mIoU" in kept[0].message
            assert kept[0].miou is not None and kept[0].miou < stable_miou
            rec = registry.load(paths).model(MODEL)
            assert rec.stable == 2 and rec.version(4).validated, "registered but not promoted"

            trainer.write(200, real_files(better))
            wait_until(lambda: outcome("promoted") or outcome("promote-failed") or len(outcome("kept")) > 1, 120,
                       "the better checkpoint")
            promoted = outcome("promoted")
            assert promoted and promoted[0].version == 5, [e.message for e in events]
            assert promoted[0].message.startswith("deeplab: version 5 is now stable on 1 server, after ")
        finally:
            stop.set()
            thread.join(timeout=30)
        rec = registry.load(paths).model(MODEL)
        assert rec.stable == 5
        assert (rec.history[-1].to_version, rec.history[-1].result, rec.history[-1].forced) == (5, "ok", False)
        assert rec.history[-1].reason == "mlc watch --promote-if-better"
        with ServingClient(server.grpc_address) as client:
            states = {v: s.state for v, s in client.model_status_grpc(MODEL).items()}
        assert states.get(5) == "AVAILABLE"
        assert tfs_config.read(paths) == {MODEL: tfs_config.ModelServing((5,), {"stable": 5})}
    finally:
        server.stop()
