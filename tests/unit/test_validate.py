"""Unit tests of validation pieces that need no SavedModel: contracts, metrics, images, digests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lifecycle.errors import ImageError, SignatureMismatch, ValidationFailed
from lifecycle.register import metrics, probe, validate
from lifecycle.serving import warmup
from lifecycle.store.config import Paths, SignatureContract, TensorSpec, load_definition
from tests.support.homes import CONFIGS, REPO_ROOT
from tests.support.no_tensorflow import assert_no_tensorflow

DEEPLAB = SignatureContract(
    key="predict_images",
    method=validate.PREDICT,
    inputs=(
        TensorSpec("images", "float32", (-1, -1, -1, 3)),
        TensorSpec("height", "int32", (1,)),
        TensorSpec("width", "int32", (1,)),
    ),
    outputs=(TensorSpec("segmentation_map", "int32", (-1, -1, -1)),),
)


def exported_like(contract: SignatureContract) -> dict:
    d = validate.contract_to_dict(contract)
    return {d["key"]: d}


def test_the_repository_definition_declares_this_contract_and_an_export_holding_it_passes() -> None:
    assert load_definition(Paths(REPO_ROOT), "deeplab").signature == DEEPLAB
    assert validate.contract_to_dict(DEEPLAB) == {
        "key": "predict_images",
        "method": "tensorflow/serving/predict",
        "inputs": {"images": {"dtype": "float32", "shape": [-1, -1, -1, 3]},
                   "height": {"dtype": "int32", "shape": [1]}, "width": {"dtype": "int32", "shape": [1]}},
        "outputs": {"segmentation_map": {"dtype": "int32", "shape": [-1, -1, -1]}},
    }
    # Other signatures beside the contract's are the export's own business.
    exported = {**exported_like(DEEPLAB), "serving_default": {"method": validate.PREDICT, "inputs": {}, "outputs": {}}}
    assert validate.check_contract(DEEPLAB, exported) is None
    assert validate.check_contract(validate.contract_to_dict(DEEPLAB), exported) is None  # the same as plain data


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda s: s.pop("predict_images"), "no signature 'predict_images'"),
        (lambda s: s["predict_images"].update(method=validate.CLASSIFY), "method"),
        (lambda s: s["predict_images"]["inputs"].pop("height"), "input 'height': the export has absent"),
        (lambda s: s["predict_images"]["inputs"]["images"].update(dtype="uint8"), "uint8"),
        (lambda s: s["predict_images"]["inputs"]["images"].update(shape=[1, -1, -1, 3]), "[1, -1, -1, 3]"),
        (lambda s: s["predict_images"]["outputs"]["segmentation_map"].update(shape=None), "unknown rank"),
        (lambda s: s["predict_images"]["outputs"].update(extra={"dtype": "float32", "shape": [1]}), "'extra'"),
    ],
)
def test_contract_mismatches_are_named(mutate, words: str) -> None:
    exported = exported_like(DEEPLAB)
    mutate(exported)
    with pytest.raises(SignatureMismatch, match=None) as e:
        validate.check_contract(DEEPLAB, exported)
    assert words in e.value.message
    assert e.value.check == "contract"


def classify(outputs: dict) -> dict:
    return {"key": "c", "method": validate.CLASSIFY, "inputs": {"inputs": {"dtype": "string", "shape": [-1]}},
            "outputs": outputs}


def test_classify_and_regress_contracts() -> None:
    scores = {"dtype": "float32", "shape": [-1, 3]}
    classes = {"dtype": "string", "shape": [-1, 3]}
    for outs in ({"scores": scores}, {"classes": classes}, {"scores": scores, "classes": classes}):
        c = classify(outs)
        validate.check_contract(c, {"c": c})
    with pytest.raises(SignatureMismatch, match="classes.*scores"):
        validate.check_contract_kind(classify({}))
    with pytest.raises(SignatureMismatch, match="classes.*scores"):
        validate.check_contract_kind(classify({"probabilities": scores}))
    regress = {"key": "r", "method": validate.REGRESS, "inputs": {"inputs": {"dtype": "string", "shape": [-1]}},
               "outputs": {"outputs": {"dtype": "float32", "shape": [-1, 1]}}}
    validate.check_contract(regress, {"r": regress})
    two = dict(regress, outputs={**regress["outputs"], "more": {"dtype": "float32", "shape": [-1]}})
    with pytest.raises(SignatureMismatch, match="exactly one float32 output"):
        validate.check_contract_kind(two)
    with pytest.raises(SignatureMismatch, match="unknown method"):
        validate.check_contract_kind(dict(regress, method="tensorflow/serving/nope"))


def test_output_digest_covers_dtype_shape_and_bytes() -> None:
    a = np.arange(6, dtype=np.int32).reshape(1, 2, 3)
    assert warmup.output_digest(a) == warmup.output_digest(a.copy())
    assert warmup.output_digest(a) != warmup.output_digest(a.reshape(1, 3, 2))
    assert warmup.output_digest(a) != warmup.output_digest(a.astype(np.int64))
    b = a.copy()
    b[0, 0, 0] = 9
    assert warmup.output_digest(a) != warmup.output_digest(b)
    assert warmup.output_digest(a).startswith("sha256:")


def test_metrics_from_confusion() -> None:
    names = ["background", "aeroplane", "bicycle"]
    truth = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 1, 1, 1]])
    m = metrics.segmentation_metrics(metrics.confusion_matrix(truth, pred, 3), names)
    assert m["per_class_iou"] == {"background": 0.5, "aeroplane": pytest.approx(2 / 3, abs=1e-6)}
    assert m["miou"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert m["pixel_accuracy"] == 0.75
    assert metrics.class_histogram(pred, names) == {"background": 1, "aeroplane": 3}


def test_mask_and_parity_checks() -> None:
    mask = np.zeros((1, 4, 5), np.int32)
    validate.check_segmentation_map(mask, 4, 5, 21)
    with pytest.raises(ValidationFailed, match=r"expected int32 \[1, 5, 4\]") as e:
        validate.check_segmentation_map(mask, 5, 4, 21)
    assert e.value.check == "round_trip"
    with pytest.raises(ValidationFailed, match="outside the 21 classes"):
        validate.check_segmentation_map(mask + 21, 4, 5, 21)
    other = mask.copy()
    other[0, 1, 1] = 3
    with pytest.raises(ValidationFailed, match="differs .* in 1 of 20 pixels") as e:
        validate.check_parity(other, mask)
    assert e.value.check == "parity"


def test_load_image(tmp_path: Path) -> None:
    img = probe.load_image(CONFIGS / "test_image.png")
    assert img.shape == (48, 64, 3) and img.dtype == np.float32
    with pytest.raises(ImageError, match="not found"):
        probe.load_image(tmp_path / "nope.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageError, match="not a readable image"):
        probe.load_image(tmp_path / "text.png")


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(arrays(np.int32, (3, 5), elements=st.integers(0, 4)), arrays(np.int32, (3, 5), elements=st.integers(0, 4)))
def test_metrics_properties(truth: np.ndarray, pred: np.ndarray) -> None:
    names = [f"c{i}" for i in range(5)]
    m = metrics.segmentation_metrics(metrics.confusion_matrix(truth, pred, 5), names)
    assert 0.0 <= m["miou"] <= 1.0 and 0.0 <= m["pixel_accuracy"] <= 1.0
    assert set(m["per_class_iou"]) == {names[c] for c in set(truth.ravel()) | set(pred.ravel())}
    perfect = metrics.segmentation_metrics(metrics.confusion_matrix(truth, truth, 5), names)
    assert perfect["miou"] == 1.0 and perfect["pixel_accuracy"] == 1.0
    assert (m["miou"] == 1.0) == bool(np.array_equal(truth, pred))


def test_validate_imports_no_tensorflow(subprocess_env: dict[str, str]) -> None:
    """The rollout calls output_digest on live answers: importing validate must stay cheap."""
    assert_no_tensorflow("import lifecycle.register.validate, lifecycle.register.checkpoints, lifecycle.register.export",
                         subprocess_env)


def test_reference_run_answers_on_its_thread_and_hands_errors_to_the_caller() -> None:
    import tensorflow as tf

    def double(x: tf.Tensor) -> dict:
        return {"y": x * 2}

    with probe.ReferenceRun(double, {"x": np.ones(3, np.float32)}) as run:
        assert run.outputs()["y"].tolist() == [2.0, 2.0, 2.0]
    assert not run._thread.is_alive()

    def broken(x: tf.Tensor) -> dict:
        raise tf.errors.InvalidArgumentError(None, None, "no such input")

    with probe.ReferenceRun(broken, {"x": np.ones(3, np.float32)}) as run, \
            pytest.raises(tf.errors.InvalidArgumentError, match="no such input"):
        run.outputs()
    with probe.ReferenceRun(broken, {"x": np.ones(3, np.float32)}):
        pass  # never asked: leaving the block still waits for the thread
