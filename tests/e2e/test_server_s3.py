"""mlc-model-server reads an ``s3://`` base path itself: complete versions only, from a real SeaweedFS."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifecycle.serving.client import ServingClient
from lifecycle.store.s3 import S3Store
from tests.support.polling import wait_until
from tests.support.rollout_support import MODEL, build_versions
from tests.support.seaweed import Seaweed
from tests.support.server_support import model_config, server_config

pytestmark = pytest.mark.e2e


def publish(store: S3Store, built: Path, version: int) -> None:
    import shutil

    assert store.claim_version(MODEL, version, "test")
    staged = store.staging_dir(MODEL) / f".staging-{version}"
    shutil.copytree(built / str(version), staged)
    store.publish_version(MODEL, version, staged)


def test_the_server_serves_complete_versions_of_an_s3_base_path(
    tmp_path: Path, seaweed: Seaweed, s3_bucket: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lifecycle.server import ServerOptions, create_server

    for name, value in {**seaweed.env(), "MLC_SERVER_CACHE": str(tmp_path / "cache")}.items():
        monkeypatch.setenv(name, value)
    built = build_versions(tmp_path / "built", [1, 2, 3])
    writer = S3Store(s3_bucket, "team/repo", tmp_path / "writer")
    publish(writer, built, 1)
    # A version whose upload never finished: files, no manifest.
    for rel in ("saved_model.pb", "variables/variables.index"):
        seaweed.client().put_object(Bucket=s3_bucket, Key=f"team/repo/{MODEL}/5/{rel}", Body=b"partial")
    config = server_config(model_config(MODEL, f"s3://{s3_bucket}/team/repo/{MODEL}", policy="latest", num_versions=1))
    server = create_server(ServerOptions(grpc_port=0, rest_api_port=0, model_config=config,
                                         file_system_poll_wait_seconds=1))
    try:
        with ServingClient(server.grpc_address) as client:
            def states() -> dict[int, str]:
                return {v: s.state for v, s in client.model_status_grpc(MODEL).items()}

            wait_until(lambda: states().get(1) == "AVAILABLE", 60, "version 1 from s3")
            publish(writer, built, 2)
            wait_until(lambda: states().get(2) == "AVAILABLE", 60, "version 2 picked up by the poll")
            wait_until(lambda: states().get(1) in ("END", None), 60, "version 1 unloaded (latest 1)")
            assert 5 not in states()  # the partial upload is never served
        cached = sorted(p.name for p in (tmp_path / "cache").glob(f"*/{MODEL}/*"))
        assert cached == ["1", "2"]
    finally:
        server.stop()
