"""Validation of staged exports: signature contracts, round trip, parity, metrics, warmup.

The checks, in order (each failure raises :class:`ValidationFailed` naming its ``check``):

- ``contract``: the exported signature equals the model definition's contract (names, dtypes,
  shapes, method name); Predict, Classify and Regress contracts are supported.
- ``round_trip``: the test image is encoded into TensorProtos exactly as a client would
  (``tf.make_tensor_proto``), serialised as a PredictRequest, parsed, decoded
  (``tf.make_ndarray``) and run through the export loaded fresh from disk by TF Serving's
  loader (a TF1 session, loaded once for every check below); the mask must be [1,H,W] int32
  with values in [0, num_classes).
- ``parity``: that mask equals, pixel for pixel, the checkpoint model's mask (computed on a
  thread while the export is written, :class:`lifecycle.register.probe.ReferenceRun`).
- ``metrics``: mIoU, per-class IoU and pixel accuracy of the export on the evaluation set.
- ``warmup``: ``assets.extra/tf_serving_warmup_requests`` holds the test request as a
  PredictionLog, and reads back.

The golden record of a version is the digest of the outputs its warmup request produces.
Register computes it; promote recomputes it on live servers and compares.

The golden digest and the warmup reader live in :mod:`lifecycle.serving.warmup` (promote reads
them without TensorFlow); this module imports TensorFlow and the TF Serving protos only inside
the functions that need them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lifecycle.errors import (
    LifecycleError,
    SignatureMismatch,
    ValidationFailed,
)
from lifecycle.serving.warmup import WARMUP_DIR, WARMUP_FILE, output_digest, read_warmup_requests, warmup_file
from lifecycle.store.config import SignatureContract

if TYPE_CHECKING:
    from tensorflow_serving.apis.predict_pb2 import PredictRequest

    from lifecycle.register.probe import ReferenceRun, TestRequest

# TF Serving ignores other files in assets.extra/; mlc keeps each version's report there so that
# a version published just before a crash can be adopted by the next mlc transaction.
REPORT_FILE = "mlc_report.json"

PREDICT = "tensorflow/serving/predict"
CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"
METHODS = (PREDICT, CLASSIFY, REGRESS)


# --- (a) signature contracts (plain data, no TensorFlow) ----------------------------------


def contract_to_dict(contract: SignatureContract) -> dict[str, Any]:
    """A contract as the same plain data :func:`read_signature` returns for an export."""

    def specs(items: Any) -> dict[str, Any]:
        return {t.name: {"dtype": t.dtype, "shape": None if t.shape is None else list(t.shape)} for t in items}

    return {"key": contract.key, "method": contract.method, "inputs": specs(contract.inputs),
            "outputs": specs(contract.outputs)}


def check_contract_kind(contract: Mapping[str, Any]) -> None:
    """Check a contract against the rules of its method (Predict, Classify or Regress)."""
    method, inputs, outputs = contract["method"], contract["inputs"], contract["outputs"]
    key = contract["key"]
    if method not in METHODS:
        raise SignatureMismatch(f"signature {key!r}: unknown method {method!r} (known: {', '.join(METHODS)})")
    if method == CLASSIFY:
        if list(inputs) != ["inputs"] or inputs["inputs"]["dtype"] != "string":
            raise SignatureMismatch(f"classify signature {key!r} needs exactly one string input named 'inputs'")
        if not outputs or not set(outputs) <= {"classes", "scores"}:
            raise SignatureMismatch(
                f"classify signature {key!r} needs outputs 'classes' and/or 'scores', not {sorted(outputs)}"
            )
        if "classes" in outputs and outputs["classes"]["dtype"] != "string":
            raise SignatureMismatch(f"classify signature {key!r}: 'classes' must be string")
        if "scores" in outputs and outputs["scores"]["dtype"] != "float32":
            raise SignatureMismatch(f"classify signature {key!r}: 'scores' must be float32")
    elif method == REGRESS:
        if list(inputs) != ["inputs"] or inputs["inputs"]["dtype"] != "string":
            raise SignatureMismatch(f"regress signature {key!r} needs exactly one string input named 'inputs'")
        if list(outputs) != ["outputs"] or outputs["outputs"]["dtype"] != "float32":
            raise SignatureMismatch(f"regress signature {key!r} needs exactly one float32 output named 'outputs'")
    elif not inputs or not outputs:
        raise SignatureMismatch(f"predict signature {key!r} needs at least one input and one output")


def _fmt(spec: Mapping[str, Any] | None) -> str:
    if spec is None:
        return "absent"
    shape = "unknown rank" if spec["shape"] is None else str(spec["shape"])
    return f"{spec['dtype']} {shape}"


def check_contract(contract: SignatureContract | Mapping[str, Any], exported: Mapping[str, Mapping[str, Any]]) -> None:
    """The export's signatures (``read_signatures``) must hold the contract exactly.

    Names, dtypes, shapes (``-1`` only where the contract says ``-1``) and the method name.
    """
    want = contract_to_dict(contract) if isinstance(contract, SignatureContract) else dict(contract)
    check_contract_kind(want)
    key = want["key"]
    if key not in exported:
        raise SignatureMismatch(
            f"the export has no signature {key!r} (it has: {', '.join(sorted(exported)) or 'none'})"
        )
    got = exported[key]
    if got["method"] != want["method"]:
        raise SignatureMismatch(f"signature {key!r} has method {got['method']!r}, the contract says {want['method']!r}")
    for side in ("inputs", "outputs"):
        for name in sorted(set(want[side]) | set(got[side])):
            w, g = want[side].get(name), got[side].get(name)
            if w is None or g is None or w["dtype"] != g["dtype"] or w["shape"] != g["shape"]:
                raise SignatureMismatch(
                    f"signature {key!r} {side[:-1]} {name!r}: the export has {_fmt(g)}, the contract says {_fmt(w)}"
                )


def read_signatures(saved_model_dir: Path) -> dict[str, dict[str, Any]]:
    """Every signature of the ``serve`` meta graph of a SavedModel on disk, as plain data."""
    import tensorflow as tf

    from lifecycle.errors import CheckpointError
    from lifecycle.register.savedmodels import read_proto

    pb = Path(saved_model_dir) / "saved_model.pb"
    try:
        sm = read_proto(Path(saved_model_dir))
    except CheckpointError as e:
        raise ValidationFailed(e.message, check="contract") from e
    graphs = [mg for mg in sm.meta_graphs if "serve" in mg.meta_info_def.tags]
    if not graphs:
        raise SignatureMismatch(f"{pb} has no meta graph tagged 'serve'")
    out: dict[str, dict[str, Any]] = {}
    for key, sig in graphs[0].signature_def.items():
        if key.startswith("__"):  # __saved_model_init_op and friends
            continue

        def specs(infos: Any) -> dict[str, Any]:
            return {
                name: {
                    "dtype": tf.dtypes.as_dtype(info.dtype).name,
                    "shape": None if info.tensor_shape.unknown_rank else [d.size for d in info.tensor_shape.dim],
                }
                for name, info in sorted(infos.items())
            }

        out[key] = {"key": key, "method": sig.method_name, "inputs": specs(sig.inputs), "outputs": specs(sig.outputs)}
    return out


# --- (b) round trip (the request itself: lifecycle.register.probe) ------------------------------------------------------------------------


def check_segmentation_map(mask: np.ndarray, height: int, width: int, num_classes: int) -> None:
    """A segmentation map must be int32 [1, height, width] with values in [0, num_classes)."""
    if mask.dtype != np.int32 or mask.shape != (1, height, width):
        raise ValidationFailed(
            f"segmentation_map is {mask.dtype} {list(mask.shape)}, expected int32 [1, {height}, {width}]",
            check="round_trip",
        )
    lo, hi = int(mask.min()), int(mask.max())
    if lo < 0 or hi >= num_classes:
        raise ValidationFailed(
            f"segmentation_map values span [{lo}, {hi}], outside the {num_classes} classes", check="round_trip"
        )


# --- (c) parity and (d) golden record ------------------------------------------------------


def check_parity(exported: np.ndarray, reference: np.ndarray) -> None:
    """The export's mask must equal the checkpoint model's, pixel for pixel."""
    if exported.shape != reference.shape:
        raise ValidationFailed(
            f"the export's mask is {list(exported.shape)}, the checkpoint model's {list(reference.shape)}",
            check="parity",
        )
    differ = int(np.count_nonzero(exported != reference))
    if differ:
        raise ValidationFailed(
            f"the export's mask differs from the checkpoint model's in {differ} of {exported.size} pixels",
            check="parity",
        )


# --- (e) warmup ----------------------------------------------------------------------------


def write_warmup(version_dir: Path, requests: list[PredictRequest]) -> Path:
    """Write ``assets.extra/tf_serving_warmup_requests``: a TFRecord of PredictionLog."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = warmup_file(version_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for req in requests:
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=req))
            writer.write(log.SerializeToString())
    return path


# --- the whole validation of a staged export -----------------------------------------------


def check_contracts(contracts: Sequence[SignatureContract], exported: Mapping[str, Mapping[str, Any]]) -> str:
    """Every contract of the definition must be in the export, exactly; returns the check's summary."""
    for contract in contracts:
        check_contract(contract, exported)
    return ", ".join(f"{c.key} ({c.method})" for c in contracts) + " match the definition"


# Keras 3 models saved with tf.saved_model.save load in TF2 but not in TF Serving.
_KERAS_HINT = (" (a Keras 3 model saved with tf.saved_model.save? Make the saved object track the backing "
               "tf.Variables, each variable's .value, or export with model.export(); keras-team/keras#19274)")


def serving_loader_failed(error: LifecycleError) -> ValidationFailed:
    """The round trip's one line for an export that TF Serving's loader cannot load or run."""
    line = str(error).strip().splitlines()[0].split(". This could mean")[0][:240]
    hint = _KERAS_HINT if "Could not find variable" in line else ""
    return ValidationFailed(f"the export does not answer under TF Serving's loader: {line}{hint}", check="round_trip")


def validate_export(
    staged: Path,
    model: str,
    contracts: Sequence[SignatureContract],
    test: TestRequest,
    reference: ReferenceRun | None,
    eval_set: Any,
    minimum: float = 0.0,
) -> dict[str, Any]:
    """Run checks (a)-(e) on the SavedModel in ``staged`` and write its warmup file.

    The export is loaded once, from disk, the way tensorflow_model_server loads it: a TF1 session
    on the SavedModel's graph (:class:`lifecycle.server.models.loader.Servable`, the loader of the
    embedded server and of promote's sandbox; ``tf.saved_model.load`` accepts exports that TF
    Serving cannot run). That one session answers the round trip, the golden digest and the
    evaluation set. ``test.task`` (:mod:`lifecycle.register.tasks`) builds the request and judges the
    answers; ``reference`` is the checkpoint model's answer (None for a version registered from a
    SavedModel: there is no other model to compare with). ``minimum`` is the lowest acceptable
    primary metric (mIoU or accuracy). Returns the report: ``signature``, ``golden``, ``metrics``,
    ``checks``, ``timings``.
    """
    from lifecycle.server.models.loader import Servable

    task = test.task
    checks: dict[str, str] = {}
    timings: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        timings[name] = round(now - clock[0], 3)
        clock[0] = now

    contract = contracts[0]
    exported = read_signatures(staged)
    checks["contract"] = check_contracts(contracts, exported)
    lap("contract_s")
    output = task.output

    try:
        servable = Servable(model, 0, staged, ["serve"])
    except LifecycleError as e:
        raise serving_loader_failed(e) from e
    try:
        lap("load_s")

        def run(key: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            """A signature's outputs, each round-tripped through a TensorProto as a response is."""
            import tensorflow as tf

            return {k: tf.make_ndarray(tf.make_tensor_proto(np.asarray(v))) for k, v in servable.run(key, inputs).items()}

        try:
            outputs = run(contract.key, test.decoded)
        except LifecycleError as e:
            raise serving_loader_failed(e) from e
        if output not in outputs:
            raise ValidationFailed(f"the signature returned {sorted(outputs)}, not {output!r}", check="round_trip")
        out = outputs[output]
        task.check_output(out, test.image)
        shape = ",".join(str(d) for d in out.shape)
        checks["round_trip"] = (f"[{shape}] {out.dtype} {output} from TensorProtos through the export loaded "
                                "from disk by TF Serving's loader")
        extra = task.extra_round_trip(run, test.image_path, out)
        if extra:
            checks["round_trip"] += "; " + extra
        lap("round_trip_s")

        if reference is not None:
            import tensorflow as tf

            try:
                ref_outputs = reference.outputs()
            except (tf.errors.OpError, ValueError, TypeError) as e:
                raise ValidationFailed(f"the checkpoint model did not answer the test request: "
                                       f"{str(e).strip().splitlines()[0][:240]}", check="parity") from e
            checks["parity"] = task.check_parity(out, ref_outputs[output], outputs, ref_outputs)
            timings["reference_s"] = round(reference.seconds, 3)  # overlapped with export and load
        else:
            checks["parity"] = "skipped: registered from a SavedModel, which is its own reference"
        lap("parity_s")

        golden = {
            "digest": output_digest(out),
            "output": output,
            "shape": list(out.shape),
            **task.golden_extra(out),
            "image": str(test.image_path.name),
            "image_digest": "sha256:" + hashlib.sha256(test.image_path.read_bytes()).hexdigest(),
        }
        checks["golden"] = "digest of the test answer recorded"

        def answer(inputs: Mapping[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
            return servable.run(contract.key, inputs, output_filter=outputs)

        try:
            metrics = task.evaluate(answer, eval_set)
        except (LifecycleError, ValueError, TypeError) as e:
            raise ValidationFailed(f"the export failed on the evaluation set: {str(e).splitlines()[0]}",
                                   check="metrics") from e
    finally:
        servable.close()
    score = metrics[task.primary_metric]
    if score < minimum:
        name = {"miou": "mIoU", "accuracy": "accuracy"}[task.primary_metric]
        setting = {"miou": "min_miou", "accuracy": "min_accuracy"}[task.primary_metric]
        raise ValidationFailed(f"eval {name} {score:.4f} is below validation.{setting} {minimum}", check="metrics")
    checks["metrics"] = task.summary(metrics, len(eval_set))
    lap("metrics_s")

    write_warmup(staged, [test.request])
    # The golden digest is what the warmup request returns: the file must hold exactly the
    # request the round trip ran (same bytes in, same graph, so the same answer out).
    replay = read_warmup_requests(staged)
    if [r.SerializeToString(deterministic=True) for r in replay] != [test.request.SerializeToString(deterministic=True)]:
        raise ValidationFailed("the warmup file does not hold the test request", check="warmup")
    checks["warmup"] = f"{WARMUP_DIR}/{WARMUP_FILE} holds the test request, whose answer is the golden digest"
    lap("warmup_s")

    return {"signature": exported[contract.key], "signatures": {c.key: exported[c.key] for c in contracts},
            "golden": golden, "metrics": metrics, "checks": checks, "timings": timings}
