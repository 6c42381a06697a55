"""mlc register of SavedModel folders (TF2, Keras export, TF1 SavedModelBuilder), scored on the
shipped labelled sets; the second definition (shapes classifier) from its checkpoints."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lifecycle import api
from lifecycle.cli import app
from lifecycle.store import registry
from lifecycle.store.config import Paths
from tests.support.deeplab_runs import ShapesRun
from tests.support.homes import tree_state

pytestmark = pytest.mark.e2e


def mlc(paths: Paths, *args: str):
    return CliRunner().invoke(app, list(args), env={"MLC_HOME": str(paths.home)})


@pytest.mark.parametrize("source,kind", [
    ("keras_saved", "savedmodel-tf2"), ("keras_export", "savedmodel-keras"),
    ("seed_tf1", "savedmodel-tf1"), ("seed_tf1_text", "savedmodel-tf1"),
])
def test_saved_model_folder_registers_as_a_validated_copy(
    source: str, kind: str, make_byo_home, user_saved_models: dict[str, Path]
) -> None:
    paths = make_byo_home("segmenter")
    folder = user_saved_models[source]
    before = tree_state(folder)
    r = mlc(paths, "register", str(folder), "--model", "segmenter")
    assert r.exit_code == 0, (r.output, r.exception)
    assert f"({kind})" in r.stdout and r.stdout.strip().endswith("1")
    assert tree_state(folder) == before  # the user's folder is only read
    rec = registry.load(paths).model("segmenter")
    (v,) = rec.versions
    (src,) = rec.checkpoints
    assert src.kind == kind and src.step is None and v.checkpoint_digest == src.digest.strip()
    assert v.report["source"] == {"kind": kind}  # registry.yaml keeps the summary
    report = registry.full_report(paths, "segmenter", v)  # the whole report, beside the version
    assert report["source"]["kind"] == kind and report["source"]["digest"] == src.digest
    assert set(report["checks"]) == {"contract", "round_trip", "parity", "golden", "metrics", "warmup"}
    assert report["checks"]["parity"].startswith("skipped")
    metrics = report["metrics"]
    assert metrics["eval"]["source"] == "voc" and metrics["eval"]["count"] == 10
    assert 0 <= metrics["miou"] <= 1 and 0 < metrics["pixel_accuracy"] <= 1 and metrics["per_class_iou"]
    published = paths.version_dir("segmenter", 1)
    assert (published / "assets.extra" / "tf_serving_warmup_requests").is_file()
    assert not (folder / "assets.extra" / "tf_serving_warmup_requests").exists()
    # The same content again is the existing version, and nothing changes.
    state = tree_state(paths.home)
    again = mlc(paths, "register", str(folder), "--model", "segmenter")
    assert again.exit_code == 0 and "is already segmenter version 1" in again.stdout
    assert tree_state(paths.home) == state


def test_a_copy_of_the_same_folder_is_the_same_version(make_byo_home, user_saved_models, tmp_path: Path) -> None:
    paths = make_byo_home("seed")
    first = api.register(user_saved_models["seed_tf1"], "seed", paths=paths)
    copy = shutil.copytree(user_saved_models["seed_tf1"], tmp_path / "elsewhere")
    second = api.register(copy, "seed", paths=paths)
    assert (first.version, first.reused, second.version, second.reused) == (1, False, 1, True)


def _rewrite(paths: Paths, name: str, old: str, new: str) -> None:
    f = paths.definition_file(name)
    text = f.read_text()
    assert old in text
    f.write_text(text.replace(old, new))


def _build(kind: str, root: Path) -> Path:
    from tests.support import savedmodels as sm

    if kind == "key":
        return sm.build_seed_deeplab_tf1(root / "k", signature_name="serving_default")
    if kind == "dtype":
        return sm.build_seed_deeplab_tf1(root / "d", images_dtype="uint8")
    return sm.build_seed_deeplab_tf1(root / "m", method_name="tensorflow/serving/regress")


SIGNATURE_CASES = {
    "key": "the export has no signature 'predict_images' (it has: serving_default)",
    "dtype": "signature 'predict_images' input 'images': the export has uint8 [-1, -1, -1, 3], "
             "the contract says float32 [-1, -1, -1, 3]",
    "method": "signature 'predict_images' has method 'tensorflow/serving/regress', the contract says "
              "'tensorflow/serving/predict'",
}


@pytest.mark.parametrize("case", sorted(SIGNATURE_CASES))
def test_saved_model_breaking_the_contract_is_refused(case: str, make_byo_home, tmp_path: Path) -> None:
    paths = make_byo_home("seed")
    folder = _build(case, tmp_path)
    home_before, folder_before = tree_state(paths.home), tree_state(folder)
    r = mlc(paths, "register", str(folder), "--model", "seed")
    assert r.exit_code == 1 and r.stdout == ""
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("Error: ") and SIGNATURE_CASES[case] in line, line
    assert tree_state(paths.home) == home_before and tree_state(folder) == folder_before


def _voc(paths: Paths) -> Path:
    return paths.home / "data" / "voc-mini"


def _resize_mask(paths: Paths) -> None:
    from PIL import Image

    f = _voc(paths) / "SegmentationClass" / "2026_000007.png"
    with Image.open(f) as im:
        im.resize((60, 64)).save(f)


EVAL_CASES = {
    "missing mask": (lambda p: (_voc(p) / "SegmentationClass" / "2026_000005.png").unlink(),
                     "missing mask SegmentationClass/2026_000005.png for JPEGImages/2026_000005.jpg"),
    "wrongly sized mask": (_resize_mask,
                           "mask SegmentationClass/2026_000007.png is 60x64, its photo JPEGImages/2026_000007.jpg is 64x64"),
    "split lists absent ids": (
        lambda p: (_voc(p) / "ImageSets" / "Segmentation" / "val.txt").write_text("2026_000004\nnope_1\nnope_2\n"),
        "ImageSets/Segmentation/val.txt lists ids absent from JPEGImages/: nope_1, nope_2"),
    "missing split": (lambda p: _rewrite(p, "seed", "split: val", "split: test"),
                      "no split file ImageSets/Segmentation/test.txt"),
    "missing root": (lambda p: _rewrite(p, "seed", "root: data/voc-mini", "root: data/nothing"),
                     "evaluation set 'data/nothing' not found"),
}


@pytest.mark.parametrize("case", sorted(EVAL_CASES))
def test_bad_evaluation_set_is_refused(case: str, make_byo_home, user_saved_models) -> None:
    paths = make_byo_home("seed")
    prepare, words = EVAL_CASES[case]
    prepare(paths)
    before = tree_state(paths.home)
    r = mlc(paths, "register", str(user_saved_models["seed_tf1"]), "--model", "seed")
    assert r.exit_code == 1 and r.stdout == ""
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("Error: ") and words in line, line
    assert tree_state(paths.home) == before


def test_classifier_checkpoints_register_with_accuracy(make_byo_home, shapes_run: ShapesRun) -> None:
    paths = make_byo_home("shapes")
    early = api.register(shapes_run.prefix(3), "shapes", paths=paths)
    late = api.register(shapes_run.run_dir, "shapes", paths=paths)
    assert (early.version, late.version, late.step) == (1, 2, 150)
    r = late.report
    assert r["task"] == "classification" and r["golden"]["output"] == "class_ids"
    assert set(r["signatures"]) == {"predict", "serving_default"}
    assert r["signatures"]["serving_default"]["method"] == "tensorflow/serving/classify"
    assert "ClassificationRequest" in r["checks"]["round_trip"]
    m = r["metrics"]
    assert m["eval"]["source"] == "folder" and m["eval"]["count"] == 30
    assert set(m) >= {"accuracy", "top5_accuracy", "per_class_accuracy"}
    assert late.accuracy >= 0.9 and late.accuracy >= early.accuracy, (early.accuracy, late.accuracy)
    assert m["top5_accuracy"] >= m["accuracy"]
    (shown,) = api.status(paths=paths).models  # status, its JSON and mlc ui score a classifier by accuracy
    assert shown.metric == "accuracy" and [v.score(shown.metric) for v in shown.versions] == [early.accuracy, late.accuracy]


def test_diff_scores_segmenters_on_the_voc_set(make_byo_home, user_saved_models, tmp_path: Path) -> None:
    paths = make_byo_home("segmenter")
    api.register(user_saved_models["keras_saved"], "segmenter", paths=paths)
    api.register(user_saved_models["seed_tf1"], "segmenter", paths=paths)
    rec = registry.load(paths).model("segmenter")
    d = api.diff("segmenter", 1, 2, out=tmp_path, paths=paths)
    assert d.classification is None and d.eval.images == 10 and d.eval.size == 64
    # The diff's mIoU against the ground truth is register's (VOC's 255 pixels left out by both).
    assert abs(d.eval.miou_a - rec.version(1).report["metrics"]["miou"]) < 1e-9
    assert abs(d.eval.miou_b - rec.version(2).report["metrics"]["miou"]) < 1e-9
    assert d.signature_changes == [] and len(d.images) == 1 and Path(d.images[0].picture).is_file()


def test_keras_save_that_tf_serving_cannot_load_is_refused(make_byo_home, tmp_path: Path) -> None:
    """A Keras 3 model saved plainly loads in TF2 but not in TF Serving's loader: refused at register."""
    from tests.support.savedmodels import build_keras_segmenter_saved

    paths = make_byo_home("segmenter")
    folder = build_keras_segmenter_saved(tmp_path / "plain", track_variables=False)
    r = mlc(paths, "register", str(folder), "--model", "segmenter")
    assert r.exit_code == 1 and r.stdout == ""
    (line,) = r.stderr.strip().splitlines()
    assert "validation check 'round_trip' failed: the export does not answer under TF Serving's loader: " \
           "Could not find variable" in line and "keras-team/keras#19274" in line, line
    assert registry.load(paths).model("segmenter").versions == []
