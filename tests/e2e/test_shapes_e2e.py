"""The second definition end to end: the shapes classifier's checkpoints registered, served by an
in-process mlc-model-server, promoted through the sandbox and the accuracy gate, and asked
through TF Serving's Classify API (gRPC with the official stubs, and REST)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from lifecycle import api
from lifecycle.serving import fleet
from lifecycle.store import registry
from lifecycle.store.config import Paths
from tests.support.deeplab_runs import ShapesRun
from tests.support.rollout_support import start_server

pytestmark = pytest.mark.e2e
CLASSES = ["aeroplane", "bird", "car", "cat", "dog", "person"]


@pytest.fixture
def served_shapes(make_byo_home, shapes_run: ShapesRun):
    """A home with shapes versions 1 (step 30) and 2 (step 150), version 1 stable and served."""
    paths = make_byo_home("shapes")
    for step in (3, 150):
        api.register(shapes_run.prefix(step), "shapes", paths=paths)
    api.promote("shapes", 1, reason="first", paths=paths)  # no server yet: the config only
    server = start_server(paths)
    try:
        fleet.write_servers_file(paths, [fleet.ServerSpec(server.grpc_address, f"127.0.0.1:{server.rest_port}")])
        yield paths, server
    finally:
        server.stop()


def classify(address: str, image_file: Path, label: str) -> tuple[int | None, list[tuple[str, float]]]:
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import classification_pb2, prediction_service_pb2_grpc

    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "shapes"
    request.model_spec.version_label = label
    example = request.input.example_list.examples.add()
    example.features.feature["image/encoded"].bytes_list.value.append(image_file.read_bytes())
    with grpc.insecure_channel(address) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Classify(request, timeout=30)
    assert isinstance(tf, object)
    (result,) = response.result.classifications
    version = response.model_spec.version.value if response.model_spec.HasField("version") else None
    return version, [(c.label, c.score) for c in result.classes]


def test_classifier_is_promoted_and_answers_classify(served_shapes: tuple[Paths, object]) -> None:
    paths, server = served_shapes
    result = api.promote("shapes", 2, reason="more training", paths=paths)
    assert result.ok if hasattr(result, "ok") else True
    rec = registry.load(paths).model("shapes")
    assert rec.stable == 2 and rec.history[-1].result == "ok"
    version, classes = classify(server.grpc_address, paths.configs / "shapes_test.png", "stable")
    assert version == 2 and [c for c, _ in classes] == CLASSES
    scores = np.array([s for _, s in classes])
    assert abs(scores.sum() - 1) < 1e-4
    golden = registry.full_report(paths, "shapes", rec.version(2))["golden"]["class"]
    assert CLASSES[int(scores.argmax())] == golden

    import base64

    body = {"signature_name": "serving_default", "examples": [
        {"image/encoded": {"b64": base64.b64encode((paths.configs / "shapes_test.png").read_bytes()).decode()}}]}
    req = urllib.request.Request(f"http://127.0.0.1:{server.rest_port}/v1/models/shapes/labels/stable:classify",
                                 data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        answer = json.loads(r.read())
    (pairs,) = answer["results"]
    assert [p[0] for p in pairs] == CLASSES and np.allclose([p[1] for p in pairs], scores, atol=1e-5)


def test_accuracy_gate_refuses_a_worse_classifier(served_shapes: tuple[Paths, object]) -> None:
    from lifecycle.errors import FailedPrecondition

    paths, _ = served_shapes
    api.promote("shapes", 2, reason="better", paths=paths)
    acc = {v.version: v.report["metrics"]["accuracy"] for v in registry.load(paths).model("shapes").versions}
    assert acc[1] < acc[2] - 0.05, acc  # the step-3 checkpoint is clearly worse
    with pytest.raises(FailedPrecondition, match=r"quality gate: version 1 has accuracy .* below stable 2's"):
        api.promote("shapes", 1, paths=paths)
    report = api.status("shapes", paths=paths)
    assert [v.accuracy for v in report.models[0].versions] == [acc[1], acc[2]]
    assert all(v.miou is None for v in report.models[0].versions)


def test_predict_gives_the_top_classes_over_grpc_and_rest(served_shapes: tuple[Paths, object], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lifecycle.cli import app

    paths, server = served_shapes
    photo = paths.configs / "shapes_test.png"
    golden = registry.full_report(paths, "shapes", registry.load(paths).model("shapes").version(1))["golden"]["class"]
    for extra in ([], ["--rest"], ["--async"]):
        r = api.predict("shapes", [photo], label="stable", paths=paths, out=tmp_path / "out", rest="--rest" in extra,
                        use_async="--async" in extra)
        (p,) = r.images
        assert r.task == "classification" and p.version == 1 and p.mask is None
        assert len(p.classes) == 5 and next(iter(p.classes)) == golden
        assert list(p.classes.values()) == sorted(p.classes.values(), reverse=True)
    assert not (tmp_path / "out").exists()  # a classifier writes no pictures
    cli = CliRunner().invoke(app, ["predict", "shapes", str(photo), "--label", "stable"],
                             env={"MLC_HOME": str(paths.home)})
    assert cli.exit_code == 0, cli.output
    assert "answered by version 1" in cli.stdout and golden in cli.stdout and "rank" in cli.stdout


def test_diff_tells_two_classifiers_apart(served_shapes: tuple[Paths, object], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lifecycle.cli import app

    paths, _ = served_shapes
    rec = registry.load(paths).model("shapes")
    d = api.diff("shapes", 1, 2, images=[paths.home / "data/shapes-mini/val/dog/0.png"], out=tmp_path, paths=paths)
    c = d.classification
    assert d.signature_changes == [] and d.images == [] and d.eval is None
    assert [Path(i["image"]).name for i in c.images] == ["shapes_test.png", "0.png"]
    assert c.eval_images == 30 and abs(c.agreement - (1 - c.changed_count / 30)) < 1e-9
    assert c.accuracy_a == rec.version(1).report["metrics"]["accuracy"]
    assert c.accuracy_b == rec.version(2).report["metrics"]["accuracy"]
    assert c.changed_count > 0 and not d.identical
    same = api.diff("shapes", 2, 2, out=tmp_path, paths=paths)
    assert same.identical and same.classification.agreement == 1.0
    cli = CliRunner().invoke(app, ["diff", "shapes", "1", "2"], env={"MLC_HOME": str(paths.home)})
    assert cli.exit_code == 0, cli.output
    assert "Top classes of A and B" in cli.stdout and "Eval accuracy against the labels" in cli.stdout
