"""The signature-compatibility gate on promote, with real SavedModels: version 1 of hpt is stable
(``x`` float32 [-1, 1] -> ``y``); each later version changes its signature one way."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lifecycle import api
from lifecycle.cli import app
from lifecycle.errors import FailedPrecondition, UsageError
from lifecycle.register.validate import read_signatures
from lifecycle.rollout import compatibility
from lifecycle.serving import signatures
from lifecycle.store import registry
from lifecycle.store.config import Paths
from tests.support.homes import tree_state
from tests.support.rollout_support import MODEL, make_home, write_warmup
from tests.support.signature_variants import build_signature_variant

runner = CliRunner()
VARIANTS: dict[int, dict[str, object]] = {
    1: {},
    2: {"input_name": "pixels"},
    3: {"input_dtype": "float64"},
    4: {"input_shape": (3, 1)},
    5: {"extra_output": "y2"},
    6: {"input_shape": (None, None)},
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("variants")
    for v, knobs in VARIANTS.items():
        build_signature_variant(root / str(v), offset=float(v), **knobs)  # type: ignore[arg-type]
        write_warmup(root / str(v))
    return root


@pytest.fixture
def home(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    paths = make_home(tmp_path / "home", built, list(VARIANTS), stable=1)
    monkeypatch.setenv("MLC_HOME", str(paths.home))
    return paths


def gate(paths: Paths, version: int, allow: bool = False) -> str | None:
    rec = registry.load(paths).model(MODEL)
    return compatibility.check(paths, rec, rec.version(version), rec.stable, allow)


def test_the_tensorflow_free_reader_reads_what_tensorflow_reads(built: Path) -> None:
    for v in VARIANTS:
        pb = built / str(v) / "saved_model.pb"
        assert signatures.parse(pb.read_bytes(), str(pb)) == read_signatures(built / str(v))


@pytest.mark.parametrize(("version", "line"), [
    (2, "signature 'serving_default' input 'x': stable has float32 [-1, 1], the candidate has absent (renamed to 'pixels')"),
    (3, "signature 'serving_default' input 'x': stable has float32 [-1, 1], the candidate has float64 [-1, 1] (dtype changed)"),
    (4, "signature 'serving_default' input 'x': stable has float32 [-1, 1], the candidate has float32 [3, 1] "
        "(dimension 0 is fixed to 3 where stable accepted any size)"),
])
def test_a_breaking_change_is_refused_in_one_line_and_nothing_changes(home: Paths, version: int, line: str) -> None:
    before = tree_state(home.home)
    with pytest.raises(FailedPrecondition, match="would break clients of stable 1") as refused:
        gate(home, version)
    assert line in refused.value.message
    result = runner.invoke(app, ["promote", MODEL, str(version)])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and line in result.stderr
    assert "--allow-breaking --reason TEXT" in result.stderr
    assert tree_state(home.home) == before


def test_a_renamed_input_names_both_sides() -> None:
    old = {"s": {"key": "s", "method": "m", "inputs": {"x": {"dtype": "float32", "shape": [-1]}}, "outputs": {}}}
    new = {"s": {"key": "s", "method": "m", "inputs": {"pixels": {"dtype": "float32", "shape": [-1]}}, "outputs": {}}}
    lines = [d.describe() for d in compatibility.compare(old, new).breaking]
    assert lines == ["signature 's' input 'x': stable has float32 [-1], the candidate has absent (renamed to 'pixels')"]
    new["s"]["inputs"]["pixels"]["dtype"] = "int32"  # not the same tensor: a removal and an addition
    lines = [d.describe() for d in compatibility.compare(old, new).breaking]
    assert lines[0] == "signature 's' input 'x': stable has float32 [-1], the candidate has absent (removed)"
    assert "input 'pixels': stable has absent, the candidate has int32 [-1] (added: clients of stable do not send it)" in lines[1]


@pytest.mark.parametrize("version", [5, 6])
def test_an_added_output_and_a_relaxed_shape_pass(home: Paths, version: int) -> None:
    assert gate(home, version) is None
    result = api.promote(MODEL, version, dry_run=True, paths=home)
    assert not result.plan.forced and not result.plan.notes


def test_allow_breaking_needs_a_reason(home: Paths) -> None:
    with pytest.raises(UsageError, match="--allow-breaking overrides the signature gate.*--reason"):
        api.promote(MODEL, 4, allow_breaking=True, paths=home)
    result = runner.invoke(app, ["promote", MODEL, "4", "--allow-breaking"])
    assert result.exit_code == 2 and "say why with --reason TEXT" in result.stderr


def test_the_override_is_recorded_in_the_history(home: Paths) -> None:
    result = api.promote(MODEL, 4, allow_breaking=True, reason="every client sends 3 rows", paths=home)
    assert result.result == "ok"
    rec = registry.load(home).model(MODEL)
    event = rec.history[-1]
    assert (rec.stable, event.to_version, event.result, event.forced) == (4, 4, "ok", True)
    assert event.reason == "every client sends 3 rows"
    assert "allowed breaking change past the signature gate" in event.detail and "input 'x'" in event.detail


def test_the_gate_skips_unreadable_versions_and_a_missing_stable(home: Paths) -> None:
    with registry.transaction(home) as reg:
        reg.model(MODEL).stable = None
    assert gate(home, 2) is None
