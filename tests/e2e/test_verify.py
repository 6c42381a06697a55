"""``mlc verify`` catches each kind of tampering, on a local folder and on S3 (a real SeaweedFS):
an edited history entry, a flipped byte in a variables file, a deleted page, a label pointing at
a deleted version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lifecycle.cli import app
from lifecycle.store import registry
from lifecycle.store.config import Paths
from lifecycle.store.records import record_hash
from lifecycle.store.registry import HistoryEvent
from tests.support.rollout_support import MODEL, build_versions, make_home
from tests.support.seaweed import Seaweed

pytestmark = pytest.mark.e2e
runner = CliRunner()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_versions(tmp_path_factory.mktemp("hpt"), [1, 2])


def with_records(paths: Paths, monkeypatch: pytest.MonkeyPatch) -> Paths:
    monkeypatch.setenv("MLC_HOME", str(paths.home))
    for n in range(3):
        with registry.transaction(paths) as reg:
            reg.model(MODEL).history.append(HistoryEvent("promote", 1, 2, "failed", reason=f"try {n}"))
    assert runner.invoke(app, ["approve", MODEL, "2", "--reason", "fine"]).exit_code == 0
    return paths


@pytest.fixture
def home(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    return with_records(make_home(tmp_path / "home", built, [1, 2], stable=1), monkeypatch)


def refused(paths: Paths, *expected: str) -> str:
    result = runner.invoke(app, ["verify"])
    assert result.exit_code == 1, result.output
    line = result.stderr.strip()
    assert line.count("\n") == 0 and all(e in line for e in expected), line
    return line


def history_page(paths: Paths) -> str:
    state = registry.load(paths, versions=False).model(MODEL).history.state
    return f"registry/{MODEL}/history/0-{state.pages[0]}.json"


def edit(paths: Paths, key: str, change: object) -> None:
    doc = paths.store.read(key)
    assert doc is not None
    body = json.loads(doc.data)
    change(body)  # type: ignore[operator]
    paths.store.write(key, json.dumps(body, sort_keys=True, separators=(",", ":")).encode(), doc.generation)


def test_an_untouched_registry_verifies(home: Paths) -> None:
    result = runner.invoke(app, ["verify"])
    assert result.exit_code == 0, result.output
    assert "checked 1 model(s), 2 version(s)" in result.stdout and ": ok" in result.stdout
    events = list(registry.load(home).model(MODEL).history)
    assert [e.prev for e in events[1:]] == [record_hash(e) for e in events[:-1]] and events[0].prev == ""


def test_an_edited_history_entry(home: Paths) -> None:
    edit(home, history_page(home), lambda b: b["records"][1].update(reason="nothing to see"))
    refused(home, "hpt: history record 2", "does not follow record 1", "chain is broken")


def test_a_flipped_byte_in_a_variables_file(home: Paths) -> None:
    data = next((home.model_repo / MODEL / "2" / "variables").glob("variables.data-*"))
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    data.write_bytes(bytes(raw))
    refused(home, f"hpt 2: file variables/{data.name} changed since it was published")


def test_a_deleted_page(home: Paths) -> None:
    home.store.delete(history_page(home))
    refused(home, "hpt: history page", "named by the head is missing")


def test_a_label_pointing_at_a_deleted_version(home: Paths) -> None:
    home.store.delete_version(MODEL, 1)
    refused(home, "hpt: label stable points at version 1, which is not published")


def test_on_s3_an_edited_entry_and_a_dangling_label(
        built: Path, bare_home: Paths, seaweed: Seaweed, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**seaweed.env(), "MLC_REPOSITORY": f"s3://{s3_bucket}/verify"}.items():
        monkeypatch.setenv(name, value)
    paths = with_records(make_home(bare_home.home, built, [1, 2], stable=1), monkeypatch)
    assert runner.invoke(app, ["verify"]).exit_code == 0
    key = f"registry/{MODEL}/approvals/0-{registry.load(paths, versions=False).model(MODEL).approvals.state.pages[0]}.json"
    edit(paths, key, lambda b: b["records"][0].update(user="mallory"))
    refused(paths, "hpt: the approvals pages hold 1 records, the head says 1")
    edit(paths, key, lambda b: b["records"][0].update(user=registry.load(paths, versions=False).model(MODEL)
                                                      .approvals.state.last["user"]))  # type: ignore[index]
    paths.store.delete_version(MODEL, 1)
    refused(paths, "label stable points at version 1")
