"""End to end with registered DeepLab versions: promote, canary, gate and rollback under load."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from lifecycle.cli import app
from lifecycle.serving import fleet, tfs_config, warmup
from lifecycle.store import registry
from lifecycle.store.config import Paths
from tests.support.polling import wait_until
from tests.support.rollout_support import Load, start_server

pytestmark = pytest.mark.e2e
runner = CliRunner()
MODEL = "deeplab"


def test_deeplab_lifecycle_under_label_addressed_load(registered_home: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = registered_home
    monkeypatch.setenv("MLC_HOME", str(paths.home))
    rec = registry.load(paths).model(MODEL)
    digests = {v.version: v.report["golden"]["digest"] for v in rec.versions}
    miou = {v.version: v.report["metrics"]["miou"] for v in rec.versions}
    request = warmup.read_warmup_requests(paths.version_dir(MODEL, 1))[0]

    # The first promote, before any server runs: sandbox check, then config and registry only.
    result = runner.invoke(app, ["promote", MODEL, "1", "--reason", "first"])
    assert result.exit_code == 0, result.output
    assert tfs_config.read(paths) == {MODEL: tfs_config.ModelServing((1,), {"stable": 1})}

    server = start_server(paths)
    try:
        fleet.write_servers_file(paths, [fleet.ServerSpec(server.grpc_address, f"127.0.0.1:{server.rest_port}")])
        load = Load(server.grpc_address, request=request, digests=digests, output="segmentation_map",
                    threads=2, pause=0.01, allowed={1})
        with load:
            wait_until(lambda: load.total() > 2, timeout=60)

            def step(args: list[str], before: set[int], after: set[int]) -> str:
                load.allow(before | after)
                seen = load.total()
                out = runner.invoke(app, args)
                assert out.exit_code == 0, out.output
                load.allow(after)
                wait_until(lambda: load.total() > seen + 2, timeout=60)
                return out.output

            step(["promote", MODEL, "2"], {1}, {2})
            step(["promote", MODEL, "3", "--canary"], {2}, {2})
            status = json.loads(runner.invoke(app, ["status", "--json"]).output)["models"][0]
            assert status["canary"] == 3 and status["drift"] == []
            assert {v["version"]: v["servers"][server.grpc_address] for v in status["versions"]} == {
                1: "END", 2: "AVAILABLE", 3: "AVAILABLE"}
            assert any("clients that name no version reach version 3" in w for w in status["warnings"])
            step(["promote", MODEL, "3"], {2}, {3})
            step(["rollback", MODEL], {3}, {2})

            # The quality gate: a version worse than stable by more than max_miou_drop is refused.
            assert miou[1] < miou[2], miou  # later tiny_run checkpoints score better
            config = paths.serving_config.read_bytes()
            definition = paths.definition_file(MODEL)
            data = yaml.safe_load(definition.read_text())
            data["thresholds"]["max_miou_drop"] = 0.0
            definition.write_text(yaml.safe_dump(data, sort_keys=False))
            refused = runner.invoke(app, ["promote", MODEL, "1"])
            assert refused.exit_code == 1 and "quality gate: version 1 has mIoU" in refused.output, refused.output
            assert paths.serving_config.read_bytes() == config
            step(["promote", MODEL, "1", "--force", "--reason", "compare by hand"], {2}, {1})
            forced = registry.load(paths).model(MODEL).history[-1]
            assert forced.forced and forced.reason == "compare by hand" and "quality gate" in forced.detail
        assert load.failures == [], load.failures[:3]
        assert load.wrong == [], load.wrong[:3]
        assert load.total() > 10
        history = json.loads(runner.invoke(app, ["history", MODEL, "--json"]).output)["events"]
        assert [(e["action"], e["from_version"], e["to_version"], e["result"]) for e in history][:5] == [
            ("promote", None, 1, "ok"), ("promote", 1, 2, "ok"), ("canary", 2, 3, "ok"),
            ("promote", 2, 3, "ok"), ("rollback", 3, 2, "ok"),
        ]
    finally:
        server.stop()
