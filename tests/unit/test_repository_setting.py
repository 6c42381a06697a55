"""Where the repository lives: model_repo/ by default, an s3:// prefix from $MLC_REPOSITORY or configs/mlc.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifecycle.errors import ConfigError, UsageError
from lifecycle.store.config import Paths, list_models, repository_url
from lifecycle.store.s3_client import parse_s3_url


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    monkeypatch.delenv("MLC_REPOSITORY", raising=False)
    (tmp_path / "configs").mkdir()
    return Paths.from_env(tmp_path)


def test_the_local_folder_is_the_default(home: Paths) -> None:
    assert repository_url(home) is None


def test_configs_mlc_yaml_names_the_repository_and_is_no_model(home: Paths) -> None:
    (home.configs / "mlc.yaml").write_text("repository: s3://models-bucket/team/deeplab\n")
    (home.configs / "deeplab.yaml").write_text("name: deeplab\n")
    assert repository_url(home) == "s3://models-bucket/team/deeplab"
    assert list_models(home) == ["deeplab"]


def test_the_environment_wins_over_the_file(home: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    (home.configs / "mlc.yaml").write_text("repository: s3://from-file/x\n")
    monkeypatch.setenv("MLC_REPOSITORY", "s3://from-env/y")
    assert repository_url(home) == "s3://from-env/y"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("repository: /some/folder\n", "is not an s3:// URL"),
        ("repository: s3://B/x\n", "not a valid bucket name"),
        ("repository: s3://bucket/a//b\n", "empty, '.' or '..' parts"),
        ("repo: s3://bucket/x\n", "unknown setting(s) repo"),
        ("- s3://bucket\n", "expected a mapping"),
        ("repository: [unclosed\n", "malformed mlc settings"),
    ],
)
def test_a_bad_setting_is_one_config_error_naming_the_file(home: Paths, text: str, message: str) -> None:
    (home.configs / "mlc.yaml").write_text(text)
    with pytest.raises(ConfigError, match="mlc.yaml") as info:
        repository_url(home)
    assert message in info.value.message


def test_a_bad_environment_value_names_the_variable(home: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLC_REPOSITORY", "model_repo")
    with pytest.raises(ConfigError, match=r"\$MLC_REPOSITORY"):
        repository_url(home)


def test_s3_urls_parse_into_bucket_and_prefix() -> None:
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    assert parse_s3_url("s3://bucket/") == ("bucket", "")
    assert parse_s3_url("s3://my.bucket-1/a/b/") == ("my.bucket-1", "a/b")
    with pytest.raises(UsageError):
        parse_s3_url("s3://")
