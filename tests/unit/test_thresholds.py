"""The ``thresholds`` section of a model definition is typed: an unknown key or a bad value is refused
with the file and line, and the quality gate reads the typed value."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifecycle.errors import ConfigError
from lifecycle.store.config import Thresholds, load_yaml_file, parse_definition

HEAD = (
    "name: m\n"
    "network: {}\n"
    "signature: {inputs: {x: {dtype: float32}}, outputs: {y: {dtype: float32}}}\n"
)


def definition(tmp_path: Path, thresholds: str) -> Path:
    file = tmp_path / "m.yaml"
    file.write_text(HEAD + thresholds, encoding="utf-8")
    return file


def parse(file: Path) -> Thresholds:
    return parse_definition(load_yaml_file(file, "model definition"), file).thresholds


def test_thresholds_default_and_typed(tmp_path: Path) -> None:
    assert parse(definition(tmp_path, "")) == Thresholds(max_miou_drop=0.0)
    assert parse(definition(tmp_path, "thresholds:\n  max_miou_drop: 0.02\n")) == Thresholds(max_miou_drop=0.02)
    assert parse(definition(tmp_path, "thresholds: {max_miou_drop: 1}\n")).max_miou_drop == 1.0


def test_an_unknown_threshold_names_the_file_and_line(tmp_path: Path) -> None:
    file = definition(tmp_path, "thresholds:\n  max_miou_drop: 0.02\n  miou_tolerance: 0.5\n")
    with pytest.raises(ConfigError) as e:
        parse(file)
    assert e.value.message == (
        f"{file}:6: unknown threshold 'miou_tolerance' in model definition (known: max_miou_drop, max_accuracy_drop)"
    )


@pytest.mark.parametrize("value", ["'0.1'", "true", "[0.1]", "null"])
def test_a_threshold_that_is_not_a_number_is_refused(tmp_path: Path, value: str) -> None:
    file = definition(tmp_path, f"thresholds:\n  max_miou_drop: {value}\n")
    with pytest.raises(ConfigError, match=rf"^{file}:5: thresholds.max_miou_drop must be a number"):
        parse(file)


def test_thresholds_must_be_a_mapping(tmp_path: Path) -> None:
    file = definition(tmp_path, "thresholds: [max_miou_drop]\n")
    with pytest.raises(ConfigError, match=rf"^{file}:4: 'thresholds' must be a mapping"):
        parse(file)
