"""The mlc-model-server command line without starting a server: flag forms, defaults, refusals,
help, and the config file readers. Start-up failures and a real run are in tests/e2e/test_server_cli.py.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from lifecycle.errors import FlagError, InvalidArgument
from lifecycle.server.config.config_file import read_model_config_file
from lifecycle.server.config.flags import FLAGS, options_from_flags, parse_flags, usage
from lifecycle.server.monitoring import DEFAULT_PATH, read_monitoring_config


def test_flag_forms() -> None:
    values = parse_flags([
        "--port=9000", "--rest_api_port", "9001", "--enable_model_warmup=false",
        "--allow_version_labels_for_unavailable_models", "--model_config_file=/x.config",
        "--file_system_poll_wait_seconds", "3",
    ])
    assert values == {
        "port": 9000, "rest_api_port": 9001, "enable_model_warmup": False,
        "allow_version_labels_for_unavailable_models": True, "model_config_file": "/x.config",
        "file_system_poll_wait_seconds": 3,
    }
    options = options_from_flags(values)
    assert options.grpc_port == 9000 and options.rest_api_port == 9001 and options.host == "127.0.0.1"
    assert parse_flags(["--enable_model_warmup", "false"]) == {"enable_model_warmup": False}


def test_defaults_are_tf_servings() -> None:
    options = options_from_flags({})
    assert options.grpc_port == 8500
    assert options.rest_api_port is None  # rest_api_port 0 = off
    assert options.rest_api_timeout_in_ms == 30000
    assert options.model_name == "default"
    assert options.model_config_file_poll_wait_seconds == 0
    assert options.file_system_poll_wait_seconds == 1
    assert options.max_num_load_retries == 5
    assert options.enable_model_warmup is True
    assert options.saved_model_tags == "serve"
    assert FLAGS["load_retry_interval_micros"].default == 60_000_000


def test_unknown_flags_and_bad_values_are_refused() -> None:
    with pytest.raises(FlagError, match="unknown argument: --no_such_flag"):
        parse_flags(["--no_such_flag=1"])
    with pytest.raises(FlagError):
        parse_flags(["--port=abc"])
    with pytest.raises(FlagError):
        parse_flags(["positional"])


def test_flags_without_effect_warn_once_and_say_why_in_help(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mlc-model-server")
    options_from_flags(parse_flags(["--thread_pool_factory_config_file=/p.config", "--use_alts_credentials"]))
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert all("has no effect in mlc-model-server: " in line for line in warnings)
    text = usage()
    for flag in FLAGS.values():
        assert (f"--{flag.name}=" in text) and ((f"[accepted, no effect here: {flag.no_effect}]" in text) == bool(flag.no_effect))


def _non_default(flag: object) -> object:
    kind, default = flag.kind, flag.default  # type: ignore[attr-defined]
    if kind is bool:
        return not default
    if kind is str:
        return "bfloat16" if flag.name == "mixed_precision" else "/some/file"  # type: ignore[attr-defined]
    return default + 7 if kind is int else 0.5


def test_every_flag_with_an_effect_reaches_the_options() -> None:
    """A flag the help calls effective must change ServerOptions (issue 10: three never did)."""
    baseline = dataclasses.asdict(options_from_flags({}))
    for flag in FLAGS.values():
        if flag.no_effect or flag.name == "version":
            continue
        changed = dataclasses.asdict(options_from_flags({flag.name: _non_default(flag)}))
        assert changed != baseline, f"--{flag.name} never reaches ServerOptions"
    options = options_from_flags(parse_flags(["--rest_api_num_threads=3", "--num_unload_threads=2"]))
    assert (options.rest_api_num_threads, options.num_unload_threads) == (3, 2)


@pytest.mark.parametrize("flag", ["port", "rest_api_port"])
@pytest.mark.parametrize("value", ["99999", "65536", "-1"])
def test_ports_outside_0_65535_are_refused(flag: str, value: str) -> None:
    with pytest.raises(FlagError, match=f"Couldn't interpret value {value} for flag {flag}: a port is 0-65535."):
        parse_flags([f"--{flag}={value}"])
    assert parse_flags([f"--{flag}=65535"]) == {flag: 65535}


def test_help_names_the_bind_address_flag() -> None:
    text = usage()
    assert "--mlc_bind_address" in text and "127.0.0.1" in text
    for name in ("port", "rest_api_port", "model_config_file", "enable_grpc_healthcheck_service"):
        assert f"--{name}=" in text


def test_malformed_config_file_message(tmp_path: Path) -> None:
    bad = tmp_path / "models.config"
    bad.write_text("model_config_list { config { nme: 'x' } }")
    with pytest.raises(InvalidArgument, match="Error parsing text-format tensorflow.serving.ModelServerConfig"):
        read_model_config_file(bad)


def test_monitoring_config_file(tmp_path: Path) -> None:
    path = tmp_path / "monitoring.config"
    path.write_text("prometheus_config { enable: true }\n")
    options = read_monitoring_config(path)
    assert options.enable and options.path == DEFAULT_PATH
    path.write_text('prometheus_config { enable: true, path: "/metrics" }\n')
    assert read_monitoring_config(path).path == "/metrics"
    path.write_text("prometheus_config { enable: yes please }\n")
    with pytest.raises(InvalidArgument, match="Error parsing text-format tensorflow.serving.MonitoringConfig"):
        read_monitoring_config(path)
