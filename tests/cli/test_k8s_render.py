"""mlc k8s render: manifests valid against the Kubernetes schemas (kubernetes-validate, no cluster)."""

from __future__ import annotations

import tomllib

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

import lifecycle
from lifecycle.cli import app
from tests.support.homes import REPO_ROOT

# kubernetes-validate bundles the schemas of Kubernetes 1.25 to 1.37; strict mode rejects any
# field the schema does not define (a typo would otherwise pass).
KUBERNETES_VERSION = "1.33.0"


def render(*args: str) -> list[dict]:
    result = CliRunner().invoke(app, ["k8s", "render", *args])
    assert result.exit_code == 0, result.output
    return list(yaml.safe_load_all(result.stdout))


@pytest.mark.parametrize("engine", ["tfserving", "embedded"])
def test_manifests_validate_and_describe_the_fleet(engine: str) -> None:
    docs = render("hpt", "--replicas", "3", "--repository", "s3://models/team-a", "--engine", engine)
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    deployment, headless, clients = docs
    assert [d["kind"] for d in docs] == ["Deployment", "Service", "Service"]
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    server, sidecar = pod["containers"]
    assert server["readinessProbe"]["httpGet"] == {"path": "/v1/models/hpt", "port": "rest"}
    assert "--model_config_file=/models/models.config" in server["args"]
    if engine == "embedded":
        assert server["command"] == ["mlc-model-server"] and "--mlc_bind_address=0.0.0.0" in server["args"]
    else:
        assert server["image"].startswith("tensorflow/serving:") and server["command"] == ["tensorflow_model_server"]
    assert sidecar["args"][:4] == ["sync", "--to", "/models", "--follow"]
    assert pod["initContainers"][0]["args"] == ["sync", "--to", "/models"]
    for c in (sidecar, pod["initContainers"][0]):
        assert {"name": "MLC_REPOSITORY", "value": "s3://models/team-a"} in c["env"]
        assert c["envFrom"] == [{"secretRef": {"name": "mlc-s3"}}]
    assert {"name": "models", "emptyDir": {}} in pod["volumes"]
    assert headless["metadata"]["name"] == "hpt-replicas" and headless["spec"]["clusterIP"] == "None"
    assert clients["metadata"]["name"] == "hpt" and clients["spec"]["type"] == "ClusterIP"
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert headless["spec"]["selector"] == selector == clients["spec"]["selector"]


@pytest.mark.parametrize("engine", ["tfserving", "embedded"])
def test_pods_run_non_root_on_a_read_only_root_with_requests(engine: str) -> None:
    pod = render("hpt", "--repository", "s3://models/team-a", "--engine", engine)[0]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    for c in [*pod["initContainers"], *pod["containers"]]:
        assert c["securityContext"]["readOnlyRootFilesystem"] is True, c["name"]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False, c["name"]
        assert {"cpu", "memory"} <= set(c["resources"]["requests"]), c["name"]
        # the only writable places: the models emptyDir (read-only for the server) and /tmp
        writable = {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")}
        assert writable == ({"/tmp"} if c["name"] == "server" else {"/models", "/tmp"}), c["name"]
        if c["command"] == ["mlc"]:
            assert {"name": "MLC_HOME", "value": "/tmp/mlc"} in c["env"]
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]


def images(*args: str) -> dict[str, str]:
    pod = render("hpt", "--repository", "s3://models/team-a", *args)[0]["spec"]["template"]["spec"]
    return {c["name"]: c["image"] for c in [*pod["initContainers"], *pod["containers"]]}


def test_the_mlc_image_is_this_mlc_version_and_image_overrides_it() -> None:
    own = f"mlc:{lifecycle.__version__}"
    assert images("--engine", "embedded") == {"sync-once": own, "server": own, "sync": own}
    assert images() == {"sync-once": own, "server": "tensorflow/serving:2.18.0", "sync": own}
    mine = "registry.example/team/mlc:0.1.0"
    assert images("--engine", "embedded", "--image", mine) == {"sync-once": mine, "server": mine, "sync": mine}
    assert images("--engine", "embedded", "--image", mine, "--mlc-image", "mlc:x") == {"sync-once": "mlc:x", "server": mine, "sync": "mlc:x"}
    assert images("--image", "tensorflow/serving:2.19.0") == {"sync-once": own, "server": "tensorflow/serving:2.19.0", "sync": own}
    assert images("--mlc-image", mine) == {"sync-once": mine, "server": "tensorflow/serving:2.18.0", "sync": mine}


def test_the_version_is_the_packaged_one() -> None:
    """mlc:<version> names the image built from this checkout: lifecycle.__version__ is pyproject's."""
    assert lifecycle.__version__ == tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_the_validator_catches_a_wrong_field() -> None:
    deployment = render("hpt", "--repository", "s3://models/team-a")[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProb"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    "args, message",
    [
        (["hpt", "--repository", "/srv/model_repo"], "--repository must be an s3://"),
        (["hpt"], "say where the pods read versions from"),
        (["hpt", "--replicas", "0", "--repository", "s3://b/p"], "--replicas"),
        (["../x", "--repository", "s3://b/p"], "model"),
    ],
)
def test_bad_input_is_a_usage_error(args: list[str], message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLC_REPOSITORY", raising=False)
    result = CliRunner().invoke(app, ["k8s", "render", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert result.stdout.count("apiVersion") == 0
