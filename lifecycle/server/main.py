"""``mlc-model-server``: tensorflow_model_server's command line, and ``create_server`` for code.

The command line takes TF Serving's flags with their names and defaults (``--flag=value`` or
``--flag value``; booleans also as a bare ``--flag``). Known TF Serving flags that are not
implemented yet are accepted with a one-line warning; unknown flags are refused.

Unlike TF Serving, the server listens on 127.0.0.1 unless ``--mlc_bind_address`` says otherwise.

Library use (a private sandbox server on free ports)::

    from lifecycle.server.main import ServerOptions, create_server
    server = create_server(ServerOptions(model_config=config, rest_api_port=0))
    ... server.grpc_port, server.rest_port ...
    server.stop()

This module imports neither grpc nor TensorFlow until a server is started, so ``--help`` is fast.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lifecycle.errors import InvalidArgument, LifecycleError, UsageError

log = logging.getLogger("mlc-model-server")

LOOPBACK = "127.0.0.1"


# --- options ----------------------------------------------------------------------------------


@dataclass
class ServerOptions:
    """Everything a server needs. Ports: 0 picks a free port, None turns the endpoint off.

    Give the models as ``model_config`` (a ModelServerConfig proto), ``model_config_file``
    (text format), or ``model_name`` + ``model_base_path``.
    """

    host: str = LOOPBACK
    grpc_port: int | None = 0
    rest_api_port: int | None = None
    rest_api_timeout_in_ms: int = 30000
    max_request_bytes: int = 256 << 20
    enable_batching: bool = False
    enable_per_model_batching_parameters: bool = False
    tensorflow_session_parallelism: int = 0
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    tensorflow_session_config_file: str = ""
    xla_cpu_compilation_enabled: bool = False
    mixed_precision: str = ""
    per_process_gpu_memory_fraction: float = 0.0
    num_request_iterations_for_warmup: int = 1
    enable_signature_method_name_check: bool = False
    rest_api_enable_cors_support: bool = False
    prefer_tflite_model: bool = False
    monitoring_config_file: str = ""
    batching_parameters_file: str = ""
    model_config: Any = None
    model_config_file: str | None = None
    model_config_file_poll_wait_seconds: float = 0
    model_name: str = "default"
    model_base_path: str | None = None
    file_system_poll_wait_seconds: float = 1
    allow_version_labels_for_unavailable_models: bool = False
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    enable_model_warmup: bool = True
    saved_model_tags: str = "serve"
    grpc_channel_arguments: str = ""
    grpc_socket_path: str = ""
    ssl_config_file: str = ""
    enable_grpc_healthcheck_service: bool = False
    grpc_max_threads: int = 0
    num_load_threads: int = 0


@dataclass(frozen=True)
class Flag:
    """One command-line flag: its type, default, help, and whether we implement it."""

    name: str
    kind: type
    default: Any
    help: str
    implemented: bool = True


_FLAGS: list[Flag] = [
    Flag("port", int, 8500, "TCP port to listen on for gRPC API. Disabled if port set to zero."),
    Flag("grpc_socket_path", str, "", "If non-empty, listen to a UNIX socket for gRPC API on the given path (a stale socket file is removed first)."),
    Flag("rest_api_port", int, 0, "Port to listen on for HTTP/REST API. If set to zero HTTP/REST API will not be exported. This port must be different than the one specified in --port."),
    Flag("rest_api_num_threads", int, 0, "Number of threads for HTTP/REST API processing (a thread per connection here).", True),
    Flag("rest_api_timeout_in_ms", int, 30000, "Timeout for HTTP/REST API calls."),
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
    Flag("num_unload_threads", int, 0, "The number of threads used to unload servables (shared with loading here)."),
    Flag("max_num_load_retries", int, 5, "maximum number of times it retries loading a model after the first failure, before giving up. If set to 0, a load is attempted only once. Default: 5"),
    Flag("load_retry_interval_micros", int, 60_000_000, "The interval, in microseconds, between each servable load retry. If set negative, it doesn't wait. Default: 1 minute"),
    Flag("file_system_poll_wait_seconds", int, 1, "Interval in seconds between each poll of the filesystem for new model version. If set to zero poll will be exactly done once and not periodically."),
    Flag("flush_filesystem_caches", bool, True, "If true (the default), filesystem caches will be flushed after loads (no effect here)."),
    Flag("tensorflow_session_parallelism", int, 0, "Number of threads to use for running a Tensorflow session. Auto-configured by default. Note that this option is ignored if --tensorflow_intra_op_parallelism or --tensorflow_inter_op_parallelism is set."),
    Flag("tensorflow_session_config_file", str, "", "If non-empty, read an ascii TensorFlow Session ConfigProto protobuf from the supplied file name. Thread counts in it can be overridden by the parallelism flags."),
    Flag("tensorflow_intra_op_parallelism", int, 0, "Number of threads to use to parallelize the execution of an individual op. Auto-configured by default."),
    Flag("tensorflow_inter_op_parallelism", int, 0, "Controls the number of operators that can be executed simultaneously. Auto-configured by default."),
    Flag("use_alts_credentials", bool, False, "Use Google ALTS credentials", False),
    Flag("ssl_config_file", str, "", "If non-empty, read an ascii SSLConfig protobuf from the supplied file name and set up a secure gRPC channel"),
    Flag("platform_config_file", str, "", "If non-empty, read an ascii PlatformConfigMap protobuf.", False),
    Flag("per_process_gpu_memory_fraction", float, 0.0, "Fraction that each process occupies of the GPU memory space the value is between 0.0 and 1.0 (with 0.0 as the default) If 1.0, the server will allocate all the memory when the server starts, If 0.0, Tensorflow will automatically select a value."),
    Flag("saved_model_tags", str, "serve", "Comma-separated set of tags corresponding to the meta graph def to load from SavedModel."),
    Flag("grpc_channel_arguments", str, "", "A comma separated list of arguments to be passed to the grpc server. (e.g. grpc.max_connection_age_ms=2000)"),
    Flag("grpc_max_threads", int, 0, "Max grpc server threads to handle grpc messages."),
    Flag("enable_model_warmup", bool, True, "Enables model warmup, which triggers lazy initializations (such as TF optimizations) at load time, to reduce first request latency."),
    Flag("num_request_iterations_for_warmup", int, 1, "Number of times a request is iterated during warmup replay."),
    Flag("version", bool, False, "Display version"),
    Flag("monitoring_config_file", str, "", "If non-empty, read an ascii MonitoringConfig protobuf from the supplied file name. With prometheus_config { enable: true } the REST port serves Prometheus metrics on prometheus_config.path (default /monitoring/prometheus/metrics)."),
    Flag("remove_unused_fields_from_bundle_metagraph", bool, True, "Removes unused fields from MetaGraphDef proto message to save memory.", False),
    Flag("prefer_tflite_model", bool, False, "Prefer TensorFlow Lite model from `model.tflite` file in SavedModel directory, if it exists (served through TFLite signature runners)."),
    Flag("num_tflite_pools", int, 0, "Number of TFLite interpreter pools.", False),
    Flag("num_tflite_interpreters_per_pool", int, 1, "Number of TFLite interpreters per pool.", False),
    Flag("enable_signature_method_name_check", bool, False, "Enable method_name check for SignatureDef: Classify and Regress then need classify/regress signatures, Predict a predict, classify or regress one."),
    Flag("xla_cpu_compilation_enabled", bool, False, "EXPERIMENTAL; CAN BE REMOVED ANYTIME! Enable XLA:CPU JIT (default is disabled). With XLA:CPU JIT disabled, models utilizing this feature will return bad Status on first compilation request."),
    Flag("enable_profiler", bool, True, "Enable profiler service.", False),
    Flag("thread_pool_factory_config_file", str, "", "If non-empty, read an ascii ThreadPoolConfig protobuf.", False),
    Flag("enable_grpc_healthcheck_service", bool, False, "Enable the standard gRPC health checking service (grpc.health.v1.Health)."),
    Flag("mixed_precision", str, "", "specify mixed_precision mode: bfloat16 rewrites graphs to compute in bfloat16 where oneDNN allows (auto_mixed_precision_onednn_bfloat16)."),
    Flag("skip_initialize_tpu", bool, False, "Whether to skip auto initializing TPU.", False),
    Flag("mlc_max_request_bytes", int, 256 << 20, "mlc-model-server only: the largest HTTP/REST request body accepted, in bytes; larger bodies get 413 without being read (TF Serving has no bound; gRPC messages stay unlimited as in TF Serving)."),
    Flag("mlc_bind_address", str, LOOPBACK, "mlc-model-server only: the address both gRPC and REST listen on. Default 127.0.0.1 (loopback); use 0.0.0.0 to listen on every interface as tensorflow_model_server does."),
]
FLAGS: dict[str, Flag] = {f.name: f for f in _FLAGS}

_TRUE = {"true", "1", "t", "yes"}
_FALSE = {"false", "0", "f", "no"}


class FlagError(UsageError):
    """The command line is malformed: an unknown flag or a bad value (exit code 2)."""


def usage() -> str:
    """The --help text: every flag with its type, default and meaning."""
    lines = [
        "usage: mlc-model-server [--flag=value ...]",
        "A TensorFlow-Serving-compatible model server (tensorflow_model_server's command line).",
        "It listens on 127.0.0.1 unless --mlc_bind_address says otherwise.",
        "Flags:",
    ]
    for f in _FLAGS:
        note = "" if f.implemented else " [accepted, not implemented yet]"
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
        return flag.kind(raw)
    except ValueError:
        raise FlagError(f"Couldn't interpret value {raw} for flag {flag.name}.") from None


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
        if not flag.implemented and values[name] != flag.default:
            print(f"warning: flag --{name} is accepted but not implemented by mlc-model-server yet; ignoring it",
                  file=sys.stderr)
    return ServerOptions(
        host=merged["mlc_bind_address"],
        grpc_port=merged["port"] or None,
        rest_api_port=merged["rest_api_port"] or None,
        rest_api_timeout_in_ms=merged["rest_api_timeout_in_ms"],
        max_request_bytes=merged["mlc_max_request_bytes"],
        model_config_file=merged["model_config_file"] or None,
        model_config_file_poll_wait_seconds=merged["model_config_file_poll_wait_seconds"],
        model_name=merged["model_name"],
        model_base_path=merged["model_base_path"] or None,
        file_system_poll_wait_seconds=merged["file_system_poll_wait_seconds"],
        allow_version_labels_for_unavailable_models=merged["allow_version_labels_for_unavailable_models"],
        max_num_load_retries=merged["max_num_load_retries"],
        load_retry_interval_micros=merged["load_retry_interval_micros"],
        enable_model_warmup=merged["enable_model_warmup"],
        saved_model_tags=merged["saved_model_tags"],
        grpc_channel_arguments=merged["grpc_channel_arguments"],
        grpc_socket_path=merged["grpc_socket_path"],
        ssl_config_file=merged["ssl_config_file"],
        enable_grpc_healthcheck_service=merged["enable_grpc_healthcheck_service"],
        grpc_max_threads=merged["grpc_max_threads"],
        num_load_threads=merged["num_load_threads"],
        enable_batching=merged["enable_batching"],
        enable_per_model_batching_parameters=merged["enable_per_model_batching_parameters"],
        tensorflow_session_parallelism=merged["tensorflow_session_parallelism"],
        tensorflow_intra_op_parallelism=merged["tensorflow_intra_op_parallelism"],
        tensorflow_inter_op_parallelism=merged["tensorflow_inter_op_parallelism"],
        tensorflow_session_config_file=merged["tensorflow_session_config_file"],
        xla_cpu_compilation_enabled=merged["xla_cpu_compilation_enabled"],
        mixed_precision=merged["mixed_precision"],
        per_process_gpu_memory_fraction=merged["per_process_gpu_memory_fraction"],
        num_request_iterations_for_warmup=merged["num_request_iterations_for_warmup"],
        enable_signature_method_name_check=merged["enable_signature_method_name_check"],
        rest_api_enable_cors_support=merged["rest_api_enable_cors_support"],
        prefer_tflite_model=merged["prefer_tflite_model"],
        monitoring_config_file=merged["monitoring_config_file"],
        batching_parameters_file=merged["batching_parameters_file"],
    )


def session_config(options: ServerOptions) -> bytes | None:
    """The serialized TensorFlow ConfigProto the session flags ask for (None: TensorFlow's defaults).

    As tensorflow_model_server: the config file first, then --tensorflow_intra_op_parallelism
    and --tensorflow_inter_op_parallelism, or else --tensorflow_session_parallelism for both;
    --xla_cpu_compilation_enabled turns on the JIT, --mixed_precision=bfloat16 the rewrite.
    """
    intra, inter = options.tensorflow_intra_op_parallelism, options.tensorflow_inter_op_parallelism
    if not intra and not inter and options.tensorflow_session_parallelism:
        intra = inter = options.tensorflow_session_parallelism
    if options.mixed_precision not in ("", "bfloat16"):
        raise InvalidArgument(f"Unsupported --mixed_precision mode: {options.mixed_precision} (use bfloat16)")
    if not (options.tensorflow_session_config_file or intra or inter or options.xla_cpu_compilation_enabled
            or options.mixed_precision or options.per_process_gpu_memory_fraction):
        return None
    from google.protobuf import text_format
    from tensorflow.core.protobuf import config_pb2

    config = config_pb2.ConfigProto()
    if options.tensorflow_session_config_file:
        path = Path(options.tensorflow_session_config_file)
        try:
            text_format.Parse(path.read_text(encoding="utf-8"), config)
        except (OSError, UnicodeDecodeError, text_format.ParseError) as e:
            raise InvalidArgument(
                f"Invalid protobuf file: '{path}'. Error parsing text-format tensorflow.ConfigProto: {e}"
            ) from e
    if intra:
        config.intra_op_parallelism_threads = intra
    if inter:
        config.inter_op_parallelism_threads = inter
    if options.per_process_gpu_memory_fraction:
        config.gpu_options.per_process_gpu_memory_fraction = options.per_process_gpu_memory_fraction
    if options.xla_cpu_compilation_enabled:
        config.graph_options.optimizer_options.global_jit_level = config_pb2.OptimizerOptions.ON_1
    if options.mixed_precision == "bfloat16":
        from tensorflow.core.protobuf import rewriter_config_pb2

        config.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = rewriter_config_pb2.RewriterConfig.ON
    return config.SerializeToString()


# --- model config files -----------------------------------------------------------------------


def read_model_config_file(path: str | Path) -> Any:
    """Parse a text-format ModelServerConfig; INVALID_ARGUMENT naming the file if malformed."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"Could not read model config file '{path}': {e}") from e
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        raise InvalidArgument(
            f"Invalid protobuf file: '{path}'. Error parsing text-format "
            f"tensorflow.serving.ModelServerConfig: {e}"
        ) from e
    return config


def single_model_config(name: str, base_path: str) -> Any:
    """The config TF Serving builds from --model_name and --model_base_path."""
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = name
    model.base_path = base_path
    model.model_platform = "tensorflow"
    return config


class ConfigFileWatcher:
    """Re-reads --model_config_file every poll interval, and at once when watchdog sees it change.

    A config is applied again only when the file's content changed or its last apply failed,
    so a config that was refused (e.g. a label on a version still loading) is retried.
    """

    def __init__(self, path: Path, interval_s: float, apply: Any, applied_digest: str) -> None:
        self.path = path
        self.interval_s = interval_s
        self._apply = apply
        self._digest = applied_digest
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mlc-config-poll", daemon=True)
        self._observer: Any = None
        self.polls = 0  # reads of the file so far

    def start(self) -> None:
        """Start the poll thread and the watchdog observer."""
        self._thread.start()
        try:
            from watchdog.events import FileSystemEventHandler
            from watchdog.observers import Observer

            target = str(self.path.resolve())
            wake = self._wake

            class _Handler(FileSystemEventHandler):
                def on_any_event(self, event: Any) -> None:
                    # Not "opened"/"closed_no_write": our own reads of the file raise those.
                    if event.event_type not in ("created", "modified", "moved", "closed", "deleted"):
                        return
                    paths = {getattr(event, "src_path", ""), getattr(event, "dest_path", "")}
                    if target in {str(Path(p).resolve()) for p in paths if p}:
                        wake.set()

            self._observer = Observer()
            self._observer.schedule(_Handler(), str(self.path.resolve().parent), recursive=False)
            self._observer.daemon = True
            self._observer.start()
        except Exception as e:  # watchdog is an accelerator; polling still works without it
            log.warning("watchdog unavailable for %s (%s); relying on polling", self.path, e)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.poll_once()

    def poll_once(self) -> None:
        """Read the file and apply it if it changed (or failed last time)."""
        self.polls += 1
        try:
            data = self.path.read_bytes()
        except OSError as e:
            log.error("Failed to read ModelServerConfig file: %s", e)
            return
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._digest:
            return
        try:
            config = read_model_config_file(self.path)
            self._apply(config)
        except LifecycleError as e:
            log.error("PollFilesystemAndReloadConfig failed to ReloadConfig: %s: %s", e.grpc_code, e.message)
            self._digest = ""
            return
        self._digest = digest
        log.info("Reloaded model config file %s", self.path)

    def stop(self) -> None:
        """Stop polling and watching."""
        self._stop.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=2)
        self._thread.join(timeout=2)


# --- the server -------------------------------------------------------------------------------


class StartupError(LifecycleError):
    """The server could not start; the message follows TF Serving's ``CODE: message``."""


class RunningServer:
    """A started server: its bound ports, its core, and how to stop it."""

    def __init__(self, core: Any, grpc_server: Any, grpc_port: int | None, rest: Any, host: str,
                 watcher: ConfigFileWatcher | None) -> None:
        self.core = core
        self.host = host
        self.grpc_port = grpc_port
        self.rest_port: int | None = rest.port if rest is not None else None
        self._grpc = grpc_server
        self._rest = rest
        self.config_watcher = watcher
        self._stopped = threading.Event()

    @property
    def grpc_socket_path(self) -> str | None:
        """The Unix socket gRPC also listens on (--grpc_socket_path), if any."""
        return self._grpc.socket_path if self._grpc is not None else None

    @property
    def grpc_address(self) -> str:
        """host:port for grpc.insecure_channel."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def rest_url(self) -> str:
        """Base URL of the REST API, e.g. http://127.0.0.1:8501."""
        return f"http://{self.host}:{self.rest_port}"

    def reload(self, config: Any) -> None:
        """Replace the whole model config, as HandleReloadConfigRequest does."""
        self.core.manager.apply_config(config)

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop serving: refuse new RPCs, let in-flight ones finish for ``grace`` s, unload."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        if self.config_watcher is not None:
            self.config_watcher.stop()
        if self._rest is not None:
            self._rest.stop()
        if self._grpc is not None:
            self._grpc.stop(grace)  # a transport.GrpcEndpoint: NOT_SERVING, then drain
        self.core.stop()

    def wait(self) -> None:
        """Block until :meth:`stop` is called."""
        self._stopped.wait()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def create_server(options: ServerOptions) -> RunningServer:
    """Load the configured models and start gRPC (and REST if asked); returns once serving.

    Raises StartupError (message ``CODE: ...`` as TF Serving prints after
    ``Failed to start server. Error:``) if the config is bad or a model fails to load.
    """
    try:
        return _create_server(options)
    except StartupError:
        raise
    except LifecycleError as e:
        raise StartupError(f"{e.grpc_code}: {e.message}") from e


def _create_server(options: ServerOptions) -> RunningServer:
    digest = ""
    if options.model_config is not None:
        config = options.model_config
    elif options.model_config_file:
        config = read_model_config_file(options.model_config_file)
        digest = hashlib.sha256(Path(options.model_config_file).read_bytes()).hexdigest()
    elif options.model_base_path:
        config = single_model_config(options.model_name, options.model_base_path)
    else:
        raise InvalidArgument(
            "Both server_options.model_base_path and server_options.model_config_file are empty!"
        )
    if options.grpc_port is None and options.rest_api_port is None and not options.grpc_socket_path:
        raise InvalidArgument("At least one of --port or --rest_api_port must be set.")
    if options.grpc_port and options.rest_api_port and options.grpc_port == options.rest_api_port:
        raise InvalidArgument(
            "server_options.http_port cannot be same as grpc_port. Please use a different port "
            "for HTTP/REST API."
        )

    # Heavy imports (grpc, TensorFlow) only once the command line and config are known good.
    from lifecycle.server.core import ServerCore
    from lifecycle.server.manager import ManagerOptions
    from lifecycle.server.rest_api import RestServer
    from lifecycle.server.transport import BindError, start_grpc

    metrics_path = None
    if options.monitoring_config_file:
        from lifecycle.server.monitoring import read_monitoring_config

        prometheus = read_monitoring_config(options.monitoring_config_file)
        if prometheus.enable:
            if options.rest_api_port is None:
                log.warning("Prometheus metrics need --rest_api_port; they are not exported")
            metrics_path = prometheus.path
    batching = None
    if options.enable_batching:
        from lifecycle.server.batching import BatchingOptions, read_batching_parameters

        batching = (read_batching_parameters(options.batching_parameters_file) if options.batching_parameters_file
                    else BatchingOptions(thread_pool_name="model_server_batch_threads"))
    core = ServerCore(
        ManagerOptions(
            file_system_poll_wait_seconds=options.file_system_poll_wait_seconds,
            max_num_load_retries=options.max_num_load_retries,
            load_retry_interval_micros=options.load_retry_interval_micros,
            allow_version_labels_for_unavailable_models=options.allow_version_labels_for_unavailable_models,
            enable_model_warmup=options.enable_model_warmup,
            saved_model_tags=tuple(t.strip() for t in options.saved_model_tags.split(",") if t.strip()),
            num_load_threads=options.num_load_threads or 4,
            prefer_tflite_model=options.prefer_tflite_model,
            session_config=session_config(options),
        ),
        batching=batching,
        method_name_check=options.enable_signature_method_name_check,
        warmup_iterations=options.num_request_iterations_for_warmup,
        per_model_batching=options.enable_per_model_batching_parameters,
    )

    grpc_server = None
    rest = None
    try:
        core.manager.apply_config(config)
        core.manager.start_polling()

        grpc_port: int | None = None
        if options.grpc_port is not None or options.grpc_socket_path:
            try:
                grpc_server = start_grpc(
                    core, options.host, options.grpc_port, options.grpc_socket_path,
                    options.grpc_channel_arguments, options.grpc_max_threads,
                    health=options.enable_grpc_healthcheck_service,
                    ssl_config_file=options.ssl_config_file,
                )
            except BindError as e:
                raise StartupError(f"UNAVAILABLE: {e.message}") from e
            grpc_port = grpc_server.port
        if options.rest_api_port is not None:
            try:
                rest = RestServer(core, options.host, options.rest_api_port, options.rest_api_timeout_in_ms,
                                  max_request_bytes=options.max_request_bytes, metrics_path=metrics_path,
                                  cors=options.rest_api_enable_cors_support)
            except OSError as e:
                raise StartupError(f"UNAVAILABLE: could not bind HTTP/REST to {options.host}:{options.rest_api_port}: {e}") from e
            rest.start()
            log.info("Exporting HTTP/REST API at:%s:%d ...", options.host, rest.port)

        watcher = None
        if options.model_config_file and options.model_config_file_poll_wait_seconds > 0:
            watcher = ConfigFileWatcher(
                Path(options.model_config_file), options.model_config_file_poll_wait_seconds,
                core.manager.apply_config, digest,
            )
            watcher.start()
    except BaseException:
        if grpc_server is not None:
            grpc_server.stop(None)
        if rest is not None:
            rest.stop()
        core.stop()
        raise
    return RunningServer(core, grpc_server, grpc_port, rest, options.host, watcher)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: ``mlc-model-server --model_config_file=... --port=8500``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "-help", "--helpfull") for a in args):
        sys.stdout.write(usage())
        return 0
    try:
        values = parse_flags(args)
    except FlagError as e:
        sys.stderr.write(f"{e.message}\n{usage()}")
        return e.exit_code
    if values.get("version"):
        import lifecycle

        print(f"TensorFlow ModelServer: mlc-model-server {lifecycle.__version__}")
        return 0
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname).1s %(name)s] %(message)s"
    )
    options = options_from_flags(values)
    from lifecycle.tf_import import import_tensorflow

    import_tensorflow()  # before any model loads, without the CUDA-probe noise of a CPU machine
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("Received signal %d, shutting down", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server = create_server(options)
    except LifecycleError as e:
        print(f"Failed to start server. Error: {e.message}", file=sys.stderr, flush=True)
        return 1
    while not stop.wait(0.5):
        pass
    server.stop(grace=5.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
