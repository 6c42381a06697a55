"""The embedded server as a library: ``create_server(ServerOptions(...)) -> RunningServer``.

    from lifecycle.server import ServerOptions, create_server
    server = create_server(ServerOptions(model_config=config, rest_api_port=0))
    ... server.grpc_port, server.rest_port ...
    server.stop()

Unlike TF Serving, the server listens on 127.0.0.1 unless ``host`` says otherwise. This module
imports neither grpc nor TensorFlow until a server is started, so ``--help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lifecycle.errors import BindError, InvalidArgument, LifecycleError, StartupError
from lifecycle.server.config.config_file import ConfigFileWatcher, file_digest, read_model_config_file, single_model_config

log = logging.getLogger("mlc-model-server")

LOOPBACK = "127.0.0.1"
# The gRPC transport of --mlc_grpc_transport (lifecycle.server.grpc.endpoint.TRANSPORTS), chosen
# by bench/bench_transport.py: see docs/benchmarks.md.
DEFAULT_GRPC_TRANSPORT = "threads"


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
    rest_api_num_threads: int = 0
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
    num_unload_threads: int = 0
    platform_config_file: str = ""
    enable_profiler: bool = True
    enable_serialization_as_tensor_content: bool = False
    mlc_sandbox_socket: str = ""  # mlc only: the private sandbox of mlc promote (lifecycle.server.sandbox)
    mlc_admin_token_file: str = ""  # mlc only: the token of the admin path (the traffic split)
    mlc_traffic_file: str = ""  # mlc only: the traffic splits to start with (lifecycle.server.traffic)
    mlc_grpc_transport: str = ""  # mlc only: threads or asyncio ("": DEFAULT_GRPC_TRANSPORT)


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
    from tensorflow.core.protobuf import config_pb2

    from lifecycle.server.config.textproto import read_textproto

    config = config_pb2.ConfigProto()
    if options.tensorflow_session_config_file:
        read_textproto(options.tensorflow_session_config_file, config)
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


class RunningServer:
    """A started server: its bound ports, its core, and how to stop it."""

    def __init__(self, core: Any, grpc_server: Any, grpc_port: int | None, rest: Any, host: str,
                 watcher: ConfigFileWatcher | None, sandbox: Any = None) -> None:
        self.core = core
        self.sandbox = sandbox  # a lifecycle.server.sandbox.Sandbox with --mlc_sandbox_socket
        self.host = host
        self.grpc_port = grpc_port
        self.rest_port: int | None = rest.port if rest is not None else None
        self._grpc = grpc_server
        self._rest = rest
        self.config_watcher = watcher
        self._stopped = threading.Event()

    @property
    def rest(self) -> Any:
        """The REST endpoint (a rest_server.RestServer: backlog, open_connections, dropped), if any."""
        return self._rest

    @property
    def grpc_socket_path(self) -> str | None:
        """The Unix socket gRPC also listens on (--grpc_socket_path), if any."""
        return self._grpc.socket_path if self._grpc is not None else None

    @property
    def grpc_transport(self) -> str | None:
        """The gRPC transport serving (threads or asyncio; --mlc_grpc_transport), if gRPC is on."""
        return self._grpc.transport if self._grpc is not None else None

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
        if self.sandbox is not None:
            self.sandbox.stop()
        self.core.stop()

    def wait(self) -> None:
        """Block until :meth:`stop` is called."""
        self._stopped.wait()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_admin_token(path: str) -> str:
    """The admin path's token: the content of ``--mlc_admin_token_file``, stripped; it must not be empty."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"--mlc_admin_token_file={path}: cannot read the token: {getattr(e, 'strerror', None) or e}") from e
    if not token:
        raise InvalidArgument(f"--mlc_admin_token_file={path}: the file is empty; write a token into it")
    return token


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
        digest = file_digest(options.model_config_file)
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
    from lifecycle.server.grpc.endpoint import start_grpc
    from lifecycle.server.models.manager import ManagerOptions
    from lifecycle.server.rest.connections import RestServer
    from lifecycle.server.rest.handler import handler_class

    metrics_path = None
    if options.monitoring_config_file:
        from lifecycle.server.monitoring import read_monitoring_config

        prometheus = read_monitoring_config(options.monitoring_config_file)
        if prometheus.enable:
            if options.rest_api_port is None:
                log.warning("Prometheus metrics need --rest_api_port; they are not exported")
            metrics_path = prometheus.path
    batching = None
    if options.platform_config_file:
        # As TF Serving: the platform config replaces what the session and batching flags build.
        from lifecycle.server.config.platform_config import read_platform_config

        platform = read_platform_config(options.platform_config_file)
        batching, session = platform.batching, platform.session_config
        options = dataclasses.replace(
            options, saved_model_tags=platform.saved_model_tags, enable_model_warmup=platform.enable_model_warmup,
            num_request_iterations_for_warmup=platform.num_request_iterations_for_warmup,
            prefer_tflite_model=platform.prefer_tflite_model,
            enable_per_model_batching_parameters=platform.per_model_batching)
    else:
        session = session_config(options)
        if options.enable_batching:
            from lifecycle.server.models.batching import BatchingOptions, read_batching_parameters

            batching = (read_batching_parameters(options.batching_parameters_file) if options.batching_parameters_file
                        else BatchingOptions(thread_pool_name="model_server_batch_threads"))
    manager_options = ManagerOptions(
        file_system_poll_wait_seconds=options.file_system_poll_wait_seconds,
        max_num_load_retries=options.max_num_load_retries,
        load_retry_interval_micros=options.load_retry_interval_micros,
        allow_version_labels_for_unavailable_models=options.allow_version_labels_for_unavailable_models,
        enable_model_warmup=options.enable_model_warmup,
        saved_model_tags=tuple(t.strip() for t in options.saved_model_tags.split(",") if t.strip()),
        num_load_threads=options.num_load_threads or 4,
        num_unload_threads=options.num_unload_threads or 4,
        prefer_tflite_model=options.prefer_tflite_model,
        session_config=session,
    )
    core = ServerCore(
        manager_options,
        batching=batching,
        method_name_check=options.enable_signature_method_name_check,
        warmup_iterations=options.num_request_iterations_for_warmup,
        per_model_batching=options.enable_per_model_batching_parameters,
        tensor_content=options.enable_serialization_as_tensor_content,
    )

    admin_token = read_admin_token(options.mlc_admin_token_file) if options.mlc_admin_token_file else None
    grpc_server = None
    rest = None
    sandbox = None
    try:
        core.manager.apply_config(config)
        core.manager.start_polling()
        if options.mlc_traffic_file:  # before the ports open: a restarted server splits at once
            from lifecycle.server.traffic.split import read_traffic_file

            for name, split in read_traffic_file(options.mlc_traffic_file).items():
                core.set_split(name, split)
                log.info("Traffic split of model %s from %s: %s", name, options.mlc_traffic_file, split.to_json())

        grpc_port: int | None = None
        if options.grpc_port is not None or options.grpc_socket_path:
            try:
                grpc_server = start_grpc(
                    core, options.host, options.grpc_port, options.grpc_socket_path,
                    options.grpc_channel_arguments, options.grpc_max_threads,
                    health=options.enable_grpc_healthcheck_service,
                    ssl_config_file=options.ssl_config_file, profiler=options.enable_profiler,
                    transport=options.mlc_grpc_transport or DEFAULT_GRPC_TRANSPORT,
                )
            except BindError as e:
                raise StartupError(f"UNAVAILABLE: {e.message}") from e
            grpc_port = grpc_server.port
        if options.rest_api_port is not None:
            try:
                handler = handler_class(core, options.rest_api_timeout_in_ms, options.max_request_bytes,
                                        metrics_path, options.rest_api_enable_cors_support, admin_token)
                rest = RestServer(handler, options.host, options.rest_api_port, options.rest_api_timeout_in_ms,
                                  num_threads=options.rest_api_num_threads)
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
        if options.mlc_sandbox_socket:
            from lifecycle.server.sandbox import start_sandbox

            try:
                sandbox = start_sandbox(manager_options, options.mlc_sandbox_socket,
                                        options.num_request_iterations_for_warmup,
                                        options.mlc_grpc_transport or DEFAULT_GRPC_TRANSPORT)
            except BindError as e:
                raise StartupError(f"UNAVAILABLE: {e.message}") from e
    except BaseException:
        if sandbox is not None:
            sandbox.stop()
        if grpc_server is not None:
            grpc_server.stop(None)
        if rest is not None:
            rest.stop()
        core.stop()
        raise
    return RunningServer(core, grpc_server, grpc_port, rest, options.host, watcher, sandbox)
