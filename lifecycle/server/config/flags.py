"""tensorflow_model_server's command line: the flag table, parsing, usage, and ServerOptions.

Flags take TF Serving's names and defaults (``--flag=value`` or ``--flag value``; booleans also
as a bare ``--flag`` or ``--noflag``). A flag this server cannot honour says why in ``--help``
and draws a one-line warning when set; unknown flags are refused.

Errors as tensorflow_model_server reports them (main.cc: ``tensorflow::Flags::Parse`` logs the
bad flag and its value, then ``std::cout << usage``): one line on stderr naming the flag and its
value, the usage text on stdout. The exit code is 2, a usage error (TF Serving exits 255).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lifecycle.errors import FlagError
from lifecycle.server.app import DEFAULT_GRPC_TRANSPORT, LOOPBACK, ServerOptions
from lifecycle.server.grpc.endpoint import TRANSPORTS

log = logging.getLogger("mlc-model-server")

PORT_FLAGS = ("port", "rest_api_port")


@dataclass(frozen=True)
class Flag:
    """One command-line flag: its type, default, help, and (if it has no effect here) why."""

    name: str
    kind: type
    default: Any
    help: str
    no_effect: str = ""  # why setting this flag changes nothing in mlc-model-server


_FLAGS: list[Flag] = [
    Flag("port", int, 8500, "TCP port to listen on for gRPC API. Disabled if port set to zero. 0-65535."),
    Flag("grpc_socket_path", str, "", "If non-empty, listen to a UNIX socket for gRPC API on the given path. An existing socket file is taken over (unlinked, then bound), as gRPC does."),
    Flag("rest_api_port", int, 0, "Port to listen on for HTTP/REST API. If set to zero HTTP/REST API will not be exported. This port must be different than the one specified in --port. 0-65535."),
    Flag("rest_api_num_threads", int, 0, "Number of threads for HTTP/REST API processing (the worker pool that parses and answers requests; idle and stalled connections hold no worker). If not set, will be auto set based on number of CPUs."),
    Flag("rest_api_timeout_in_ms", int, 30000, "Timeout for HTTP/REST API calls; also the time a client gets to send a whole request (headers and body) before the connection is dropped."),
    Flag("rest_api_enable_cors_support", bool, False, "Enable CORS headers in response (Access-Control-Allow-Origin: *; OPTIONS preflight answered)."),
    Flag("enable_batching", bool, False, "enable batching: concurrent requests to a servable are merged along dimension 0"),
    Flag("allow_version_labels_for_unavailable_models", bool, False, "If true, allows assigning unused version labels to models that are not available yet."),
    Flag("batching_parameters_file", str, "", "If non-empty, read an ascii BatchingParameters protobuf from the supplied file name (max_batch_size, batch_timeout_micros, num_batch_threads, max_enqueued_batches, allowed_batch_sizes, pad_variable_length_inputs) and use it when --enable_batching is set."),
    Flag("enable_per_model_batching_parameters", bool, False, "Enables model specific batching params like batch sizes, timeouts, read from `batching_params.pbtxt` in the model's version folder (with --enable_batching)."),
    Flag("model_config_file", str, "", "If non-empty, read an ascii ModelServerConfig protobuf from the supplied file name, and serve the models in that file. (If used, --model_name, --model_base_path are ignored.)"),
    Flag("model_config_file_poll_wait_seconds", int, 0, "Interval in seconds between each poll of the filesystem for model_config_file. If unset or set to zero, poll will be done exactly once and not periodically. When polling is on, a change to the file is also picked up at once (watchdog)."),
    Flag("model_name", str, "default", "name of model (ignored if --model_config_file flag is set)"),
    Flag("model_base_path", str, "", "path to export (ignored if --model_config_file flag is set, otherwise required)"),
    Flag("num_load_threads", int, 0, "The number of threads used to load servables (0: a small default pool)."),
    Flag("num_unload_threads", int, 0, "The number of threads used to unload servables (0: a small default pool)."),
    Flag("max_num_load_retries", int, 5, "maximum number of times it retries loading a model after the first failure, before giving up. If set to 0, a load is attempted only once. Default: 5"),
    Flag("load_retry_interval_micros", int, 60_000_000, "The interval, in microseconds, between each servable load retry. If set negative, it doesn't wait. Default: 1 minute"),
    Flag("file_system_poll_wait_seconds", int, 1, "Interval in seconds between each poll of the filesystem for new model version. If set to zero poll will be exactly done once and not periodically."),
    Flag("flush_filesystem_caches", bool, True, "If true (the default), filesystem caches will be flushed after loads.",
         "TF Serving flushes TensorFlow's C++ file-system block caches (GCS) after loads to free memory; this server reads models through Python and holds no such cache"),
    Flag("tensorflow_session_parallelism", int, 0, "Number of threads to use for running a Tensorflow session. Auto-configured by default. Note that this option is ignored if --tensorflow_intra_op_parallelism or --tensorflow_inter_op_parallelism is set."),
    Flag("tensorflow_session_config_file", str, "", "If non-empty, read an ascii TensorFlow Session ConfigProto protobuf from the supplied file name. Thread counts in it can be overridden by the parallelism flags."),
    Flag("tensorflow_intra_op_parallelism", int, 0, "Number of threads to use to parallelize the execution of an individual op. Auto-configured by default."),
    Flag("tensorflow_inter_op_parallelism", int, 0, "Controls the number of operators that can be executed simultaneously. Auto-configured by default."),
    Flag("use_alts_credentials", bool, False, "Use Google ALTS credentials",
         "ALTS handshakes only succeed on Google Cloud VMs (they need its metadata server), so it cannot be honoured or tested here; use --ssl_config_file for TLS"),
    Flag("ssl_config_file", str, "", "If non-empty, read an ascii SSLConfig protobuf from the supplied file name and set up a secure gRPC channel"),
    Flag("platform_config_file", str, "", "If non-empty, read an ascii PlatformConfigMap protobuf from the supplied file name, and use that platform config instead of the Tensorflow platform. (If used, --enable_batching is ignored.) The tensorflow platform's SavedModelBundleSourceAdapterConfig legacy_config sets session_config, batching_parameters, saved_model_tags, enable_model_warmup, model_warmup_options.num_request_iterations, prefer_tflite_model, enable_per_model_batching_params and mixed_precision."),
    Flag("per_process_gpu_memory_fraction", float, 0.0, "Fraction that each process occupies of the GPU memory space the value is between 0.0 and 1.0 (with 0.0 as the default) If 1.0, the server will allocate all the memory when the server starts, If 0.0, Tensorflow will automatically select a value."),
    Flag("saved_model_tags", str, "serve", "Comma-separated set of tags corresponding to the meta graph def to load from SavedModel."),
    Flag("grpc_channel_arguments", str, "", "A comma separated list of arguments to be passed to the grpc server. (e.g. grpc.max_connection_age_ms=2000)"),
    Flag("grpc_max_threads", int, 0, "Max grpc server threads to handle grpc messages."),
    Flag("enable_model_warmup", bool, True, "Enables model warmup, which triggers lazy initializations (such as TF optimizations) at load time, to reduce first request latency."),
    Flag("num_request_iterations_for_warmup", int, 1, "Number of times a request is iterated during warmup replay."),
    Flag("version", bool, False, "Display version"),
    Flag("monitoring_config_file", str, "", "If non-empty, read an ascii MonitoringConfig protobuf from the supplied file name. With prometheus_config { enable: true } the REST port serves Prometheus metrics on prometheus_config.path (default /monitoring/prometheus/metrics)."),
    Flag("remove_unused_fields_from_bundle_metagraph", bool, True, "Removes unused fields from MetaGraphDef proto message to save memory.",
         "a memory saving inside TF Serving's bundle with no effect a client can see; this server keeps only the signatures anyway"),
    Flag("prefer_tflite_model", bool, False, "Prefer TensorFlow Lite model from `model.tflite` file in SavedModel directory, if it exists (served through TFLite signature runners, or serving_default from its input and output tensors)."),
    Flag("num_tflite_pools", int, 0, "Number of TFLite interpreter pools.",
         "one TFLite interpreter per version serves calls in turn; pools are a throughput tuning of TF Serving's C++ session"),
    Flag("num_tflite_interpreters_per_pool", int, 1, "Number of TFLite interpreters per pool.",
         "one TFLite interpreter per version serves calls in turn; pools are a throughput tuning of TF Serving's C++ session"),
    Flag("enable_signature_method_name_check", bool, False, "Enable method_name check for SignatureDef: Classify and Regress then need classify/regress signatures, Predict a predict, classify or regress one."),
    Flag("xla_cpu_compilation_enabled", bool, False, "EXPERIMENTAL; CAN BE REMOVED ANYTIME! Enable XLA:CPU JIT (default is disabled). With XLA:CPU JIT disabled, models utilizing this feature will return bad Status on first compilation request."),
    Flag("xla_gpu_compilation_enabled", bool, False, "EXPERIMENTAL; CAN BE REMOVED ANYTIME! Enable both XLA:CPU JIT and XLA:GPU JIT (default is disabled)."),
    Flag("enable_profiler", bool, True, "Enable profiler service: TensorFlow's ProfilerService on the gRPC port (tf.profiler.experimental.client.trace)."),
    Flag("thread_pool_factory_config_file", str, "", "If non-empty, read an ascii ThreadPoolConfig protobuf from the supplied file name.",
         "ThreadPoolConfig names a C++ thread-pool factory registered in TF Serving's binary; none exist in this server (use the parallelism flags)"),
    Flag("enable_grpc_healthcheck_service", bool, False, "Enable the standard gRPC health checking service (grpc.health.v1.Health)."),
    Flag("mixed_precision", str, "", "specify mixed_precision mode: bfloat16 rewrites graphs to compute in bfloat16 where oneDNN allows (auto_mixed_precision_onednn_bfloat16)."),
    Flag("skip_initialize_tpu", bool, False, "Whether to skip auto initializing TPU.", "this server never initializes a TPU"),
    Flag("enable_serialization_as_tensor_content", bool, False, "Enable serialization of predict response as tensor content."),
    Flag("mlc_max_request_bytes", int, 256 << 20, "mlc-model-server only: the largest HTTP/REST request body accepted, in bytes; larger bodies get 413 without being read (TF Serving has no bound; gRPC messages stay unlimited as in TF Serving)."),
    Flag("mlc_sandbox_socket", str, "", "mlc-model-server only: if non-empty, also run the private sandbox of `mlc promote` on this UNIX socket: a second, separate model manager (empty at start) serving ModelService and PredictionService there alone, where mlc loads and checks a candidate version before any production server loads it. Nothing it loads is visible on --port or --rest_api_port. `mlc serve` sets it."),
    Flag("mlc_bind_address", str, LOOPBACK, "mlc-model-server only: the address both gRPC and REST listen on. Default 127.0.0.1 (loopback); use 0.0.0.0 to listen on every interface as tensorflow_model_server does."),
    Flag("mlc_admin_token_file", str, "", "mlc-model-server only: if non-empty, a file holding the token of the private admin path on the REST port (PUT and GET /v1/mlc/traffic/models/<model>: the traffic split of `mlc rollout`), read at start-up. A request must carry it in the mlc-admin-token header; without it, or without this flag, the admin path answers as any unknown path does. `mlc serve` writes one (mode 0600) into the home's .mlc/ and sets it."),
    Flag("mlc_traffic_file", str, "", "mlc-model-server only: if non-empty, a JSON file of traffic splits ({\"<model>\": {\"stable\": S, \"candidate\": C, \"weight\": W, \"shadow\": H}}) read at start-up, before the ports open, so a restarted server splits as before; a missing file means no split. Only requests that name no version and no label are split. `mlc serve` sets it to configs/traffic.json."),
    Flag("mlc_grpc_transport", str, DEFAULT_GRPC_TRANSPORT, "mlc-model-server only: the gRPC server behind --port and --grpc_socket_path: threads (grpcio's thread-per-RPC server, --grpc_max_threads workers) or asyncio (grpc.aio on an event loop; model runs and reloads on a pool of --grpc_max_threads threads, status and metadata answered on the loop). Both serve the same services with the same codes, messages, deadlines, message sizes, TLS and traffic split; docs/benchmarks.md gives the measurements behind the default."),
]
FLAGS: dict[str, Flag] = {f.name: f for f in _FLAGS}
TF_SERVING_FLAGS = frozenset(f.name for f in _FLAGS if not f.name.startswith("mlc_"))

_TRUE = {"true", "1", "t", "yes"}
_FALSE = {"false", "0", "f", "no"}


def usage() -> str:
    """The --help text: every flag with its type, default and meaning."""
    lines = [
        "usage: mlc-model-server [--flag=value ...]",
        "A TensorFlow-Serving-compatible model server (tensorflow_model_server's command line).",
        "It listens on 127.0.0.1 unless --mlc_bind_address says otherwise.",
        "Flags:",
    ]
    for f in _FLAGS:
        note = f" [accepted, no effect here: {f.no_effect}]" if f.no_effect else ""
        default = str(f.default).lower() if f.kind is bool else repr(f.default) if f.kind is str else f.default
        lines.append(f"\t--{f.name}={default}\t{f.kind.__name__}\t{f.help}{note}")
    return "\n".join(lines) + "\n"


def _convert(flag: Flag, raw: str) -> Any:
    if flag.kind is bool:
        lowered = raw.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise FlagError(f"Couldn't interpret value {raw} for flag {flag.name}.")
    try:
        value = flag.kind(raw)
    except ValueError:
        raise FlagError(f"Couldn't interpret value {raw} for flag {flag.name}.") from None
    if flag.name == "mlc_grpc_transport" and value not in TRANSPORTS:
        raise FlagError(f"Couldn't interpret value {raw} for flag {flag.name}: use one of {', '.join(TRANSPORTS)}.")
    if flag.name in PORT_FLAGS and not 0 <= value <= 65535:
        raise FlagError(f"Couldn't interpret value {raw} for flag {flag.name}: a port is 0-65535.")
    return value


def parse_flags(argv: Sequence[str]) -> dict[str, Any]:
    """Parse TF Serving-style flags; returns only the flags given, by name."""
    values: dict[str, Any] = {}
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-") or arg in ("-", "--"):
            raise FlagError(f"unknown argument: {arg}")
        body = arg.lstrip("-")
        name, eq, raw = body.partition("=")
        flag = FLAGS.get(name)
        negated = FLAGS.get(name[2:]) if name.startswith("no") else None
        if flag is None and not eq and negated is not None and negated.kind is bool:
            values[name[2:]] = False
            continue
        if flag is None:
            raise FlagError(f"unknown argument: {arg}")
        if eq:
            values[name] = _convert(flag, raw)
        elif flag.kind is bool:
            if i < len(args) and args[i].lower() in ("true", "false"):
                values[name] = _convert(flag, args[i])
                i += 1
            else:
                values[name] = True
        else:
            if i >= len(args):
                raise FlagError(f"flag --{name} needs a value")
            values[name] = _convert(flag, args[i])
            i += 1
    return values


def options_from_flags(values: dict[str, Any]) -> ServerOptions:
    """ServerOptions from parsed flags, with TF Serving's meanings of 0 for ports."""
    merged = {f.name: f.default for f in _FLAGS}
    merged.update(values)
    for name in values:
        flag = FLAGS[name]
        if flag.no_effect and values[name] != flag.default:
            log.warning("flag --%s has no effect in mlc-model-server: %s", name, flag.no_effect)
    taken = {"port", "rest_api_port", "mlc_bind_address", "mlc_max_request_bytes", "model_config_file",
             "model_base_path", "version", "xla_gpu_compilation_enabled"}
    taken |= {f.name for f in _FLAGS if f.no_effect}
    direct = {name: merged[name] for name in FLAGS if name not in taken}
    return ServerOptions(
        host=merged["mlc_bind_address"],
        grpc_port=merged["port"] or None,
        rest_api_port=merged["rest_api_port"] or None,
        max_request_bytes=merged["mlc_max_request_bytes"],
        model_config_file=merged["model_config_file"] or None,
        model_base_path=merged["model_base_path"] or None,
        xla_cpu_compilation_enabled=merged["xla_cpu_compilation_enabled"] or merged["xla_gpu_compilation_enabled"],
        **{k: v for k, v in direct.items() if k != "xla_cpu_compilation_enabled"},
    )
