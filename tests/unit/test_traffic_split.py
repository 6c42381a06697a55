"""The traffic split's pieces without a server: the JSON form, the sticky choice, the table, the
traffic file, the comparisons by task, the ``error:`` failpoint and what ``mlc serve`` passes."""

from __future__ import annotations

import hashlib
import json
import re
import stat
from pathlib import Path

import numpy as np
import pytest

from lifecycle.errors import InvalidArgument
from lifecycle.failpoints import failpoint
from lifecycle.operations import processes
from lifecycle.server.traffic.compare import classification_agreement, compare, generic_agreement, segmentation_agreement
from lifecycle.server.traffic.split import Compare, Split, TrafficTable, goes_to_candidate, parse_split, read_traffic_file
from lifecycle.serving import fleet
from lifecycle.store.config import Paths


def test_the_json_form_round_trips_and_clears() -> None:
    split = parse_split({"stable": 3, "candidate": 4, "weight": 0.25, "shadow": 1,
                         "compare": {"kind": "segmentation", "output": "segmentation_map"}}, "here")
    assert split == Split(3, 4, 0.25, 1.0, Compare("segmentation", "segmentation_map", ""))
    assert parse_split(split.to_json(), "here") == split
    assert parse_split({}, "here") is None and parse_split(None, "here") is None
    assert parse_split({"stable": 3, "candidate": 4, "weight": 0, "shadow": 0}, "here") is None


@pytest.mark.parametrize(("document", "message"), [
    ({"stable": 3}, "'candidate' must be a version number, got null"),
    ({"stable": True, "candidate": 4, "weight": 0.1}, "'stable' must be a version number, got true"),
    ({"stable": 3, "candidate": 4, "weight": -0.1}, "'weight' must be a number from 0 to 1, got -0.1"),
    ({"stable": 3, "candidate": 4, "shadow": "all"}, "'shadow' must be a number from 0 to 1"),
    ({"stable": 3, "candidate": 4, "weight": 0.1, "compare": {"kind": "pixels"}}, "compare 'kind' must be one of"),
    ({"stable": 3, "candidate": 4, "weight": 0.1, "compare": {"outputs": "x"}}, "unknown key 'outputs' in 'compare'"),
    ([3, 4], "a split is a JSON object"),
])
def test_malformed_splits_say_what_is_wrong(document: object, message: str) -> None:
    with pytest.raises(InvalidArgument, match="^here: .*" + re.escape(message)):
        parse_split(document, "here")


def test_the_sticky_choice_is_the_contract_hash_and_only_moves_keys_to_the_candidate() -> None:
    for key in ("alice", "bob", "ü"):
        fraction = int.from_bytes(hashlib.sha256(f"m\0{key}".encode()).digest()[:8], "big") / 2**64
        assert goes_to_candidate("m", key, fraction + 1e-12) and not goes_to_candidate("m", key, fraction)
    keys = [str(i) for i in range(2000)]
    previous: set[str] = set()
    for weight in (0.0, 0.05, 0.1, 0.25, 0.5, 1.0):
        chosen = {k for k in keys if goes_to_candidate("m", k, weight)}
        assert previous <= chosen and abs(len(chosen) / 2000 - weight) < 0.03
        previous = chosen


def test_the_table_routes_only_while_both_versions_are_available() -> None:
    table = TrafficTable()
    assert table.route("m", "k", {1, 2}) is None and table.get("m") == (None, 0)
    assert table.set("m", Split(1, 2, weight=1.0)) == 1
    assert table.route("m", "k", {1, 2}) == (2, False)
    assert table.route("m", "k", {1}) is None and table.route("m", "k", {2, 3}) is None
    table.set("m", Split(1, 2, weight=0.0, shadow=1.0))
    assert table.route("m", None, {1, 2}) == (1, True)
    assert table.set("m", None) == 3 and table.route("m", "k", {1, 2}) is None


def test_the_traffic_file(tmp_path: Path) -> None:
    file = tmp_path / "traffic.json"
    assert read_traffic_file(file) == {}  # none yet: no split
    file.write_text(json.dumps({"a": {"stable": 1, "candidate": 2, "weight": 0.5}, "b": {}}))
    assert read_traffic_file(file) == {"a": Split(1, 2, 0.5)}
    file.write_text("{nope")
    with pytest.raises(InvalidArgument, match=f"--mlc_traffic_file={file}: not JSON"):
        read_traffic_file(file)
    file.write_text(json.dumps({"a": {"stable": 1, "candidate": 2, "weight": 5}}))
    with pytest.raises(InvalidArgument, match="model 'a': 'weight' must be a number from 0 to 1"):
        read_traffic_file(file)


def test_comparisons_by_task() -> None:
    a = np.array([[[0, 1], [2, 2]]])
    b = np.array([[[0, 1], [2, 1]]])
    seg = segmentation_agreement(a, b)
    assert seg.agreement == 0.75 and seg.iou == pytest.approx((1 + 0.5 + 0.5) / 3)
    logits = np.eye(3)[a].astype(np.float32)  # (1, 2, 2, 3): argmax'ed back to a
    assert segmentation_agreement(logits, a).agreement == 1.0
    assert segmentation_agreement(a, a[:, :1]).agreement == 0.0  # shapes differ
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], np.float32)
    assert classification_agreement(scores, scores[:, ::-1]).agreement == 0.0
    assert classification_agreement(scores, scores * 2).agreement == 1.0
    assert classification_agreement(np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1])).agreement == 0.75
    same = generic_agreement({"y": np.ones(3)}, {"y": np.ones(3)})
    assert (same.agreement, same.max_abs_diff) == (1.0, 0.0)
    off = compare("generic", "", {"y": np.ones(3)}, {"y": np.array([1.0, 1.5, 0.0])})
    assert (off.agreement, off.max_abs_diff) == (0.0, 1.0)
    with pytest.raises(InvalidArgument, match="name the one to compare"):
        compare("segmentation", "", {"p": a, "q": a}, {"p": a, "q": a})
    assert compare("segmentation", "", {"segmentation_map": a, "x": a}, {"segmentation_map": a, "x": b}).agreement == 1.0


def test_the_error_failpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    assert failpoint("server:predict:m:2") is False
    monkeypatch.setenv("MLC_FAILPOINTS", "server:predict:m:2=error:1.0,server:predict:m:3=error:0")
    assert failpoint("server:predict:m:2") is True and failpoint("server:predict:m:3") is False
    monkeypatch.setenv("MLC_FAILPOINTS", "server:predict:m:2=error:0.5")
    fired = sum(failpoint("server:predict:m:2") for _ in range(2000))
    assert 850 < fired < 1150
    monkeypatch.setenv("MLC_FAILPOINTS", "server:predict:m:2=sleep:0")
    assert failpoint("server:predict:m:2") is False


def test_mlc_serve_passes_the_token_and_the_traffic_file(tmp_path: Path) -> None:
    paths = Paths(tmp_path)
    token = processes.admin_token_file(paths)
    assert token == tmp_path / ".mlc" / "admin-token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and len(token.read_text().strip()) >= 32
    content = token.read_text()
    assert processes.admin_token_file(paths) == token and token.read_text() == content  # reused, not rotated
    assert [p.name for p in token.parent.iterdir()] == ["admin-token"]  # no temp file left
    spec = fleet.ServerSpec("127.0.0.1:8500", "127.0.0.1:8501", "request")
    command = processes.server_command("embedded", spec, paths.serving_config, None, token)
    assert command[-2:] == [f"--mlc_admin_token_file={token}",
                            f"--mlc_traffic_file={paths.serving_config.parent / 'traffic.json'}"]
    real = processes.server_command("tfserving", spec, paths.serving_config, None, token)
    assert not any(arg.startswith("--mlc_") for arg in real)  # tensorflow_model_server has no such flags
