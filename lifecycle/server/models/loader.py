"""Loading one SavedModel version and running its signatures, as TF Serving's C++ loader does.

Every SavedModel (TF1 builder exports, ``saved_model.pbtxt``, TF2 ``tf.saved_model.save`` and
Keras exports) is loaded the same way: a TF1 ``Session`` on a fresh graph and
``tf.compat.v1.saved_model.loader.load``. Signatures are run through the session's C API, which
like TF Serving's ``Session::Run`` feeds tensors as given: a ``[1]`` tensor fed into a
``(None, 1)`` placeholder is not rejected up front, and a dtype mismatch is reported by the
runtime as INVALID_ARGUMENT.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lifecycle.errors import (
    FailedPrecondition,
    InternalError,
    InvalidArgument,
    LifecycleError,
    ServingError,
)
from lifecycle.server.models.plans import MAX_CACHED_PLANS, RunTiming, SignaturePlan, check_inputs, run_options_bytes, select_outputs

log = logging.getLogger("mlc-model-server")

DEFAULT_SIGNATURE = "serving_default"
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving's WarmupConsts::kMaxNumRecords


def translate_tf_error(error: Exception) -> LifecycleError:
    """Turn a TensorFlow OpError into the LifecycleError with the same gRPC code and message."""
    import tensorflow as tf

    if isinstance(error, LifecycleError):
        return error
    if isinstance(error, tf.errors.OpError):
        code = _CODE_NAMES.get(error.error_code, "UNKNOWN")
        return ServingError(error.message, code)
    return InternalError(f"{type(error).__name__}: {error}")


_CODE_NAMES = {
    1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND",
    6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED", 9: "FAILED_PRECONDITION",
    10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED", 13: "INTERNAL", 14: "UNAVAILABLE",
    15: "DATA_LOSS", 16: "UNAUTHENTICATED",
}


def release_memory() -> None:
    """Free an unloaded version's graph now: call once the last reference to its Servable is gone.

    A TF graph is a web of reference cycles (Graph <-> Operation), and the native graph and the
    session's tensors live as long as it does, so only a full collection frees them. A server
    rarely reaches one by itself (startup's objects are frozen and requests make little garbage):
    measured with bench/bench_soak.py (MLC_TRACEMALLOC), the small DeepLab's graphs piled up at
    about 7 MiB of RSS per promote/rollback cycle, and a collection found them all unreachable.
    """
    gc.collect()


class Servable:
    """One loaded SavedModel version: its MetaGraphDef's signatures and a session to run them.

    Thread-safe. Requests hold it through :meth:`acquire` / :meth:`release`, so that unloading
    waits for in-flight requests instead of closing the session under them.
    """

    def __init__(self, name: str, version: int, path: Path, tags: list[str], session_config: bytes | None = None) -> None:
        import tensorflow as tf
        from tensorflow.python.client import pywrap_tf_session

        started = time.monotonic()
        self.name = name
        self.version = version
        self.path = Path(path)
        self._tf_session_api = pywrap_tf_session
        self._graph = tf.Graph()
        config = None
        if session_config is not None:
            from tensorflow.core.protobuf import config_pb2

            config = config_pb2.ConfigProto.FromString(session_config)
        self._session = tf.compat.v1.Session(graph=self._graph, config=config)
        try:
            with self._graph.as_default():
                self.meta_graph = tf.compat.v1.saved_model.loader.load(
                    self._session, tags, str(self.path)
                )
        except Exception as e:
            self._session.close()
            raise _load_error(e, self.path, tags) from e
        self.signatures = dict(self.meta_graph.signature_def)
        self.load_seconds = time.monotonic() - started
        self._outputs_cache: dict[str, Any] = {}
        self._init_handles()

    def _init_handles(self) -> None:
        """Request handles and close hooks; every kind of servable calls this once loaded."""
        self._plans: dict[tuple[str, tuple[str, ...]], SignaturePlan] = {}
        self._lock = threading.Condition()
        self._refs = 0
        self._closing = False
        # Set by the server when batching is on: run_tensors goes through it instead.
        self.batch_runner: Callable[[Mapping[str, np.ndarray], list[str], int | None], list[np.ndarray]] | None = None
        self.on_close: list[Callable[[], None]] = []

    # --- request handles ----------------------------------------------------------------

    def acquire(self) -> bool:
        """Take a request handle; False once the servable is being unloaded."""
        with self._lock:
            if self._closing:
                return False
            self._refs += 1
            return True

    def release(self) -> None:
        """Give back a handle taken with :meth:`acquire`."""
        with self._lock:
            self._refs -= 1
            if self._refs == 0:
                self._lock.notify_all()

    def close(self) -> None:
        """Refuse new handles, wait for the in-flight ones, run the close hooks, then free."""
        with self._lock:
            self._closing = True
            while self._refs:
                self._lock.wait()
        for callback in self.on_close:
            callback()
        self._free()

    def _free(self) -> None:
        """Release what runs the model (here the TF session); called once no request holds it."""
        self._session.close()

    # --- running ------------------------------------------------------------------------

    def signature(self, signature_name: str) -> Any:
        """The SignatureDef for a name ('' means serving_default), or FAILED_PRECONDITION."""
        name = signature_name or DEFAULT_SIGNATURE
        try:
            return self.signatures[name]
        except KeyError:
            raise FailedPrecondition(f'Serving signature key "{name}" not found.') from None

    def plan(self, signature_name: str, inputs: Mapping[str, Any], output_filter: Sequence[str] = ()) -> SignaturePlan:
        """Check a request against a signature as TF Serving does, in its order: the signature
        exists (FAILED_PRECONDITION), the input aliases match, the output filter names
        outputs once each (INVALID_ARGUMENT). The plan is cached, so a repeated request only
        compares its input aliases."""
        key = (signature_name or DEFAULT_SIGNATURE, tuple(output_filter))
        plan = self._plans.get(key)
        if plan is None:
            signature = self.signature(key[0])
            check_inputs(signature, inputs)
            aliases = select_outputs(signature, list(output_filter))
            names = {alias: signature.inputs[alias].name for alias in signature.inputs}
            fetches = [signature.outputs[alias].name for alias in aliases]
            plan = SignaturePlan(key[0], signature, names, tuple(aliases), fetches,
                                 {alias: self._key(name) for alias, name in names.items()},
                                 [self._key(name) for name in fetches])
            if len(self._plans) < MAX_CACHED_PLANS:
                self._plans[key] = plan
        elif inputs.keys() != plan.inputs.keys():
            check_inputs(plan.signature, inputs)
        return plan

    def run_plan(self, plan: SignaturePlan, inputs: Mapping[str, np.ndarray], timeout_ms: int | None = None) -> list[np.ndarray]:
        """Run a planned signature on arrays by input alias; the outputs in ``plan.outputs`` order."""
        if self.batch_runner is not None:
            return self.batch_runner({plan.inputs[alias]: value for alias, value in inputs.items()}, plan.fetches,
                                     timeout_ms)
        if plan.timing.inline:
            return self._run_inline(plan, inputs, timeout_ms)
        return self._run_keys({plan.feed_keys[alias]: value for alias, value in inputs.items()}, plan.fetch_keys,
                              timeout_ms, plan.timing)

    def run(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: list[str] | None = None,
        timeout_ms: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Run a signature on named arrays; returns the requested (or all) outputs by alias."""
        plan = self.plan(signature_name, inputs, output_filter or ())
        return dict(zip(plan.outputs, self.run_plan(plan, inputs, timeout_ms), strict=True))

    def run_tensors(
        self, feeds: Mapping[str, np.ndarray], fetches: list[str], timeout_ms: int | None = None
    ) -> list[np.ndarray]:
        """Run the session on graph tensor names (Classify/Regress/MultiInference feed one
        serialized-Example tensor to several signatures' outputs in one run)."""
        if self.batch_runner is not None:
            return self.batch_runner(feeds, fetches, timeout_ms)
        return self.run_session(feeds, fetches, timeout_ms)

    def run_session(
        self, feeds: Mapping[str, np.ndarray], fetches: list[str], timeout_ms: int | None = None
    ) -> list[np.ndarray]:
        """One Session::Run on graph tensor names, never batched."""
        return self._run_keys({self._key(name): value for name, value in feeds.items()},
                              [self._key(name) for name in fetches], timeout_ms)

    def _key(self, tensor_name: str) -> Any:
        """What :meth:`_run_keys` takes for a tensor name: here its graph TF_Output."""
        return self._tf_output(tensor_name)

    def _run_keys(self, feeds: Mapping[Any, np.ndarray], fetches: list[Any], timeout_ms: int | None,
                  timing: RunTiming | None = None) -> list[np.ndarray]:
        inline = timing is not None and timing.inline
        options = None
        if inline or (timeout_ms is not None and timeout_ms > 0):
            options = self._tf_session_api.TF_NewBufferFromString(run_options_bytes(timeout_ms, inline))
        started = time.perf_counter()
        try:
            # The C entry point feeds tensors as given, like TF Serving's Session::Run; the
            # Python Session.run would reject shapes that TF Serving accepts.
            values = self._session._call_tf_sessionrun(options, feeds, fetches, [], None)
        except Exception as e:
            raise translate_tf_error(e) from e
        finally:
            if options is not None:
                self._tf_session_api.TF_DeleteBuffer(options)
        if timing is not None and not inline:
            timing.record(time.perf_counter() - started)
        return values

    def _run_inline(self, plan: SignaturePlan, inputs: Mapping[str, np.ndarray], timeout_ms: int | None) -> list[np.ndarray]:
        """A fast plan's run: a Session callable (MakeCallable: feeds, fetches and the caller's
        thread fixed once, so a run skips the per-call lookup by names) in this thread.

        A callable words some failures differently from Session::Run (a feed's dtype: "Type
        mismatch" instead of "Expects arg[0] to be ..."), so a failed run is run again the
        ordinary way, whose error is the one TF Serving sends.
        """
        runner = plan.timing.runner
        if runner is None:
            from tensorflow.core.protobuf import config_pb2

            options = config_pb2.CallableOptions(feed=list(plan.inputs.values()), fetch=plan.fetches)
            options.run_options.inter_op_thread_pool = -1
            try:
                runner = plan.timing.runner = self._session._make_callable_from_options(options)
            except Exception as e:
                raise translate_tf_error(e) from e
        try:
            return runner(*[inputs[alias] for alias in plan.inputs])
        except Exception as e:  # any failure: the ordinary run raises Session::Run's own error
            log.debug("session callable of %s version %s failed (%s: %s); running it by names",
                      self.name, self.version, type(e).__name__, e)
            return self._run_keys({plan.feed_keys[alias]: value for alias, value in inputs.items()}, plan.fetch_keys,
                                  timeout_ms)

    def _tf_output(self, tensor_name: str) -> Any:
        cached = self._outputs_cache.get(tensor_name)
        if cached is None:
            try:
                cached = self._graph.get_tensor_by_name(tensor_name)._as_tf_output()
            except (KeyError, ValueError) as e:
                raise InternalError(f"signature names tensor {tensor_name} missing from the graph") from e
            self._outputs_cache[tensor_name] = cached
        return cached

    # --- warmup -------------------------------------------------------------------------

    def warmup(self, run_request: Callable[[str, Any], Any]) -> int:
        """Replay assets.extra/tf_serving_warmup_requests; returns the count.

        ``run_request(kind, request)`` runs one logged request, ``kind`` being the PredictionLog
        field: predict_log, classify_log, regress_log or multi_inference_log.
        """
        path = self.path / WARMUP_FILE
        if not path.exists():
            return 0
        import tensorflow as tf
        from tensorflow_serving.apis import prediction_log_pb2

        count = 0
        try:
            for record in tf.compat.v1.io.tf_record_iterator(str(path)):
                log_entry = prediction_log_pb2.PredictionLog()
                try:
                    log_entry.ParseFromString(record)
                except Exception as e:
                    raise InvalidArgument(
                        f"Failed to parse warmup record: {record!r} from {path}"
                    ) from e
                kind = log_entry.WhichOneof("log_type")
                if kind in ("predict_log", "classify_log", "regress_log", "multi_inference_log"):
                    run_request(kind, getattr(log_entry, kind).request)
                else:
                    raise InvalidArgument(f"Unsupported log_type for warmup: {kind}")
                count += 1
                if count > MAX_WARMUP_RECORDS:
                    raise InvalidArgument(
                        f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}"
                    )
        except LifecycleError:
            raise
        except Exception as e:
            raise translate_tf_error(e) from e
        return count


def _load_error(error: Exception, path: Path, tags: list[str]) -> LifecycleError:
    import tensorflow as tf

    text = str(error)
    if "Cannot parse file" in text:  # saved_model.pb(txt) exists but is not a SavedModel
        return ServingError(text, "DATA_LOSS")
    if isinstance(error, (OSError, tf.errors.NotFoundError)) or "SavedModel file does not exist" in text:
        return ServingError(
            "Could not find SavedModel .pb or .pbtxt at supplied export directory path: "
            f"{path}. Check that the directory exists and that you have the right permissions "
            "for accessing it.",
            "NOT_FOUND",
        )
    if isinstance(error, RuntimeError) and "MetaGraphDef associated with tags" in text:
        return ServingError(text, "NOT_FOUND")
    translated = translate_tf_error(error)
    if isinstance(translated, InternalError) and not isinstance(error, LifecycleError):
        return ServingError(f"Failed to load SavedModel at {path}: {error}", "INVALID_ARGUMENT")
    return translated
