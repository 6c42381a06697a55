"""mlc register and mlc train end to end (real TensorFlow, small backbone), in process and via the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lifecycle import api
from lifecycle.cli import app
from lifecycle.register import export, metrics, publish
from lifecycle.serving import warmup
from lifecycle.store import registry
from lifecycle.store.config import Paths
from tests.support.deeplab_runs import TinyRun
from tests.support.homes import tree_state
from tests.support.no_tensorflow import assert_no_tensorflow

pytestmark = pytest.mark.e2e


def mlc(paths: Paths, *args: str):
    """Run the CLI in process against the home ``paths``."""
    return CliRunner().invoke(app, list(args), env={"MLC_HOME": str(paths.home)})


# --- what a registered version looks like --------------------------------------------------


def test_registered_versions_are_complete(registered_home: Paths, tiny_run: TinyRun) -> None:
    reg = registry.load(registered_home)
    rec = reg.model("deeplab")
    assert [v.version for v in rec.versions] == [1, 2, 3]
    assert [v.step for v in rec.versions] == list(tiny_run.steps)
    assert registry.versions_on_disk(registered_home, "deeplab") == [1, 2, 3]
    assert [c.step for c in rec.checkpoints] == list(tiny_run.steps)
    assert all(c.tf_version.startswith("2.") and c.user for c in rec.checkpoints)
    for v in rec.versions:
        d = registered_home.version_dir("deeplab", v.version)
        assert (d / "saved_model.pb").is_file() and any((d / "variables").glob("variables.data-*"))
        assert warmup.warmup_file(d).is_file() and registry.version_record_file(d).is_file()
        assert v.validated
        # registry.yaml keeps what status, the gate and the live check read; the rest lives beside
        # the version.
        assert set(v.report) == {"golden", "metrics", "full"} and set(v.report["golden"]) == {"digest", "output"}
        r = registry.full_report(registered_home, "deeplab", v)
        assert r["golden"]["digest"] == v.report["golden"]["digest"] and r["metrics"]["miou"] == v.report["metrics"]["miou"]
        assert set(r["checks"]) == {"contract", "round_trip", "parity", "golden", "metrics", "warmup"}
        # Every phase on register's path is timed on its own (bench_register prints them beside the floor's).
        assert {"build_s", "restore_s", "trace_s", "export_s", "load_s", "round_trip_s", "metrics_s"} <= set(r["timings"])
        assert r["signature"] == {
            "key": "predict_images",
            "method": "tensorflow/serving/predict",
            "inputs": {
                "height": {"dtype": "int32", "shape": [1]},
                "images": {"dtype": "float32", "shape": [-1, -1, -1, 3]},
                "width": {"dtype": "int32", "shape": [1]},
            },
            "outputs": {"segmentation_map": {"dtype": "int32", "shape": [-1, -1, -1]}},
        }
        g = r["golden"]
        assert g["digest"].startswith("sha256:") and g["output"] == "segmentation_map" and g["shape"] == [1, 48, 64]
        assert sum(g["histogram"].values()) == 48 * 64
        assert 0 < r["metrics"]["miou"] <= 1 and 0 < r["metrics"]["pixel_accuracy"] <= 1
        assert "background" in r["metrics"]["per_class_iou"]
    # Later checkpoints score better on the evaluation set.
    mious = [v.report["metrics"]["miou"] for v in rec.versions]
    assert mious[0] < mious[-1], mious
    # Nothing but versions under model_repo/deeplab/ (no staging folders or lock files left).
    assert sorted(p.name for p in registered_home.model_dir("deeplab").iterdir()) == ["1", "2", "3"]


def test_warmup_request_replays_to_the_golden_digest(registered_home: Paths) -> None:
    import tensorflow as tf

    v = registry.load(registered_home).model("deeplab").version(2)
    d = registered_home.version_dir("deeplab", 2)
    (request,) = warmup.read_warmup_requests(d)
    assert request.model_spec.signature_name == "predict_images"
    assert set(request.inputs) == {"images", "height", "width"}
    fn = tf.saved_model.load(str(d)).signatures["predict_images"]
    inputs = {k: tf.constant(tf.make_ndarray(p)) for k, p in request.inputs.items()}
    mask = fn(**inputs)["segmentation_map"].numpy()
    assert warmup.output_digest(mask) == v.report["golden"]["digest"]
    assert metrics.class_histogram(mask, ["background"] + [f"c{i}" for i in range(1, 21)]).get("background") == \
        registry.full_report(registered_home, "deeplab", v)["golden"]["histogram"].get("background")


def test_status_json_keeps_its_keys(registered_home: Paths) -> None:
    r = mlc(registered_home, "status", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    (m,) = data["models"]
    assert m["name"] == "deeplab" and m["stable"] is None
    assert [v["version"] for v in m["versions"]] == [1, 2, 3]
    for v in m["versions"]:
        assert {"version", "checkpoint", "step", "validated", "golden_digest", "miou"} <= set(v)
        assert v["validated"] is True and v["golden_digest"].startswith("sha256:")
    table = mlc(registered_home, "status")
    assert table.exit_code == 0 and "deeplab" in table.stdout


def test_status_and_history_do_not_import_tensorflow(registered_home: Paths, subprocess_env: dict[str, str]) -> None:
    printed = assert_no_tensorflow([["status", "--json"], ["history", "deeplab", "--json"]],
                                   dict(subprocess_env, MLC_HOME=str(registered_home.home)))
    assert '"version": 3' in printed and '"events": []' in printed


# --- registering ---------------------------------------------------------------------------


def test_register_publishes_the_next_version(registered_home: Paths, variant_checkpoints: list[Path]) -> None:
    r = mlc(registered_home, "register", str(variant_checkpoints[0]))
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[-1] == "4"
    assert "as deeplab version 4" in r.stdout
    assert registry.versions_on_disk(registered_home, "deeplab") == [1, 2, 3, 4]
    again = mlc(registered_home, "register", str(variant_checkpoints[1]), "--json")
    assert again.exit_code == 0, again.output
    data = json.loads(again.stdout)
    assert data["version"] == 5 and data["reused"] is False and data["validated"] is True
    assert data["golden_digest"] == data["report"]["golden"]["digest"]


def test_same_content_returns_the_existing_version(registered_home: Paths, tiny_run: TinyRun, tmp_path: Path) -> None:
    before = tree_state(registered_home.home)
    r = mlc(registered_home, "register", str(tiny_run.run_dir))
    assert r.exit_code == 0, r.output
    assert "is already deeplab version 3" in r.stdout and r.stdout.splitlines()[-1] == "3"
    # A copy elsewhere under another name is the same content.
    copy = tmp_path / "copied"
    copy.mkdir()
    for f in tiny_run.run_dir.glob("ckpt-20.*"):
        shutil.copy(f, copy / f.name.replace("ckpt-20", "model.ckpt-20"))
    result = api.register(copy / "model.ckpt-20", paths=registered_home)
    assert result.version == 1 and result.reused
    assert tree_state(registered_home.home) == before


def test_concurrent_duplicate_is_resolved_under_the_lock(registered_home: Paths, tiny_run: TinyRun) -> None:
    """A register that finds its content published meanwhile returns that version and publishes nothing."""
    # Simulate the race: the unlocked pre-check saw no version, the locked publish finds one.
    paths = registered_home
    definition_paths = paths
    from lifecycle.register import evalsets, tasks
    from lifecycle.register.checkpoints import resolve
    from lifecycle.store.config import load_definition, validation_settings

    definition = load_definition(definition_paths, "deeplab")
    settings = validation_settings(definition)
    eval_set = evalsets.load(settings.eval, settings.eval_root, tasks.class_names(definition))
    outcome = export.register_checkpoint(paths, definition, settings, resolve(tiny_run.prefixes[1]), eval_set)
    assert outcome.reused and outcome.version.version == 2
    assert sorted(p.name for p in paths.model_dir("deeplab").iterdir()) == ["1", "2", "3"]


def test_failed_validation_publishes_nothing_and_records_the_attempt(
    registered_home: Paths, variant_checkpoints: list[Path]
) -> None:
    definition = registered_home.definition_file("deeplab")
    definition.write_text(definition.read_text().replace("min_miou: 0.0", "min_miou: 0.99"))
    r = mlc(registered_home, "register", str(variant_checkpoints[2]))
    assert r.exit_code == 1
    assert r.stdout == ""
    (line,) = r.stderr.strip().splitlines()
    assert "validation check 'metrics' failed" in line and "below validation.min_miou 0.99" in line
    assert "nothing was published" in line
    rec = registry.load(registered_home).model("deeplab")
    assert [v.version for v in rec.versions] == [1, 2, 3]
    (attempt,) = rec.attempts
    assert attempt.check == "metrics" and attempt.checkpoint.endswith("variant-2/ckpt-60")
    assert sorted(p.name for p in registered_home.model_dir("deeplab").iterdir()) == ["1", "2", "3"]


def test_orphaned_version_is_adopted_by_the_next_transaction(registered_home: Paths) -> None:
    """A register killed between the rename to N and the registry save leaves N; it is not lost."""
    paths = registered_home
    with registry.transaction(paths):
        pass  # nothing to adopt: no write
    original = registry.load(paths)
    v3 = original.model("deeplab").version(3)
    truncated = registry.load(paths)
    truncated.model("deeplab").versions.pop()
    registry.save(paths, truncated)  # the registry as it was before version 3's record landed
    assert registry.load(paths).model("deeplab").latest_version() == 2
    with registry.transaction(paths) as reg:
        assert reg.model("deeplab").version(3) == v3
    assert registry.load(paths).model("deeplab").version(3) == v3


def test_stale_staging_is_removed_but_a_live_one_is_kept(registered_home: Paths, variant_checkpoints: list[Path]) -> None:
    from filelock import FileLock

    model_dir = registered_home.model_dir("deeplab")
    dead = model_dir / ".staging-1-dead"
    (dead / "variables").mkdir(parents=True)
    (dead / "saved_model.pb").write_bytes(b"partial")
    (model_dir / ".staging-2-nodir.lock").touch()  # killed before its folder was made
    live = model_dir / ".staging-3-live"
    live.mkdir()
    holder = FileLock(str(model_dir / ".staging-3-live.lock"))
    holder.acquire(timeout=0)
    try:
        result = api.register(variant_checkpoints[3], paths=registered_home)
        assert result.version == 4
        names = sorted(p.name for p in model_dir.iterdir())
        assert names == [".staging-3-live", ".staging-3-live.lock", "1", "2", "3", "4"]
    finally:
        holder.release()
    assert publish.clean_stale_staging(model_dir) == [".staging-3-live"]
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "2", "3", "4"]


# --- mlc train -----------------------------------------------------------------------------


def test_train_writes_checkpoints_and_resumes(make_home, tmp_path: Path) -> None:
    paths = make_home()
    run_dir = tmp_path / "run"
    r = mlc(paths, "train", str(run_dir), "--steps", "4", "--save-every", "2")
    assert r.exit_code == 0, r.output
    assert "step 2: loss" in r.stdout and "step 4: loss" in r.stdout and f"mlc register {run_dir}" in r.stdout
    assert 'model_checkpoint_path: "ckpt-4"' in (run_dir / "checkpoint").read_text()
    again = mlc(paths, "train", str(run_dir), "--steps", "6", "--save-every", "2", "--json")
    assert again.exit_code == 0, again.output
    data = json.loads(again.stdout)
    assert data["start_step"] == 4 and [c["step"] for c in data["checkpoints"]] == [6]
    done = mlc(paths, "train", str(run_dir), "--steps", "6")
    assert done.exit_code == 0 and "already at step 6" in done.stdout
    definition = paths.definition_file("deeplab")
    original = definition.read_text()
    definition.write_text(original.replace("output_stride: 16", "output_stride: 16\n  aspp_depth: 32"))
    wrong = mlc(paths, "train", str(run_dir), "--steps", "8")
    assert wrong.exit_code == 1 and "cannot resume" in wrong.stderr
    definition.write_text(original)
    bad = mlc(paths, "train", str(run_dir), "--backbone", "vgg")
    assert bad.exit_code == 1 and "unknown backbone 'vgg'" in bad.stderr


def test_definition_yaml_is_what_the_code_expects() -> None:
    from tests.support.homes import CONFIGS

    data = yaml.safe_load((CONFIGS / "deeplab.yaml").read_text())
    assert data["signature"]["key"] == "predict_images"
    assert data["network"]["atrous_rates"] == [6, 12, 18] and data["network"]["output_stride"] == 16
    assert isinstance(data["thresholds"]["max_miou_drop"], float)


def test_strict_restore_returns_the_stored_step(tiny_run: TinyRun, variant_checkpoints: list[Path]) -> None:
    from lifecycle.networks import deeplab

    net = deeplab.create(deeplab.NetworkSpec())
    assert export.restore_strict(net, tiny_run.prefixes[0]) == tiny_run.steps[0]
    assert export.restore_strict(net, variant_checkpoints[0]) is None  # written without a step variable
