"""A byte flipped in a published version's variables (bit rot on this machine's copy): a later
promote of that version is refused in one line before any server loads it, because its files
no longer match the version's manifest, and the stable version keeps serving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lifecycle.serving.client import ServingClient
from lifecycle.store import journal, registry
from tests.support.faults import child_env, one_line, report_load, run_mlc, serve
from tests.support.rollout_support import MODEL, Load, make_home

pytestmark = pytest.mark.e2e


def test_a_flipped_byte_in_the_variables_refuses_the_promote(
    tmp_path: Path, built: Path, remote: dict[str, str], subprocess_env: dict[str, str], record_property: Any,
) -> None:
    paths = make_home(tmp_path / "home", built, [1, 2], stable=1)
    paths.store.fetch_versions(MODEL, [2])  # this machine holds a verified copy of version 2
    data = next((paths.version_dir(MODEL, 2) / "variables").glob("variables.data-*"))
    rotten = bytearray(data.read_bytes())
    rotten[len(rotten) // 2] ^= 0x01
    data.write_bytes(bytes(rotten))
    server = serve(paths)
    env = child_env(subprocess_env, paths)
    try:
        before = registry.load(paths).dump()
        with Load(server.grpc_address, allowed={1}) as load:
            code, out, err = run_mlc(env, "promote", MODEL, "2")
        counted = report_load(record_property, load)
        with ServingClient(server.grpc_address) as client:
            states = {v: s.state for v, s in client.model_status_grpc(MODEL).items()}
    finally:
        server.stop()
    assert code == 1, out + err
    line = one_line(err)
    assert "refused before any server loads it" in line and "does not match its sha256 in the manifest" in line, line
    assert data.name in line, line
    assert states == {1: "AVAILABLE"}  # version 2 never loaded
    assert registry.load(paths).dump() == before and journal.load(paths) is None
    assert counted.requests > 0 and counted.failed == [] and load.wrong == []
