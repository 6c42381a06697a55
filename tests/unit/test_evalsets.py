"""Evaluation sets on disk (the shipped VOC-layout and class-folder sets), their scores, and definitions
with several signatures. No TensorFlow."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from lifecycle.errors import ConfigError, EvalSetError
from lifecycle.register import evalsets, metrics
from lifecycle.store.config import EvalSetSpec, parse_definition, validation_settings
from tests.support.homes import CONFIGS, REPO_ROOT

SHAPES = ["aeroplane", "bird", "car", "cat", "dog", "person"]
VOC = [f"class_{i}" for i in range(21)]


def test_shipped_voc_set_loads_with_ignore_pixels() -> None:
    data = evalsets.load(EvalSetSpec("voc", root="data/voc-mini", split="val"), REPO_ROOT / "data" / "voc-mini", VOC)
    assert len(data) == 10 and data.ids[0] == "2026_000004"
    assert all(im.shape == (64, 64, 3) and m.shape == (64, 64) for im, m in zip(data.images, data.labels, strict=True))
    values = np.unique(np.concatenate([m.ravel() for m in data.labels]))
    assert 255 in values and 0 in values and set(values) - {255} <= set(range(21))
    again = evalsets.load(EvalSetSpec("voc", root="data/voc-mini", split="val"), REPO_ROOT / "data" / "voc-mini", VOC)
    assert data.description == again.description and data.description["digest"].startswith("sha256:")
    train = evalsets.load(EvalSetSpec("voc", root="data/voc-mini", split="train"), REPO_ROOT / "data" / "voc-mini", VOC)
    assert len(train) == 4 and train.description["digest"] != data.description["digest"]


def test_shipped_class_folders_load() -> None:
    data = evalsets.load(EvalSetSpec("folder", root="data/shapes-mini"), REPO_ROOT / "data" / "shapes-mini", SHAPES)
    assert len(data) == 30 and sorted(set(data.labels)) == list(range(6))
    assert data.ids[0] == "aeroplane/0.png" and data.description["split"] == "val"
    chunks = list(data.batches(8))
    assert sum(len(i) for i, _ in chunks) == 30 and all(b.shape[1:] == (32, 32, 3) for _, b in chunks)


def test_class_folder_not_in_the_definition_is_named(tmp_path: Path) -> None:
    root = shutil.copytree(REPO_ROOT / "data" / "shapes-mini", tmp_path / "s")
    (root / "val" / "dog").rename(root / "val" / "wolf")
    with pytest.raises(EvalSetError, match="folder 'wolf' is not one of the model's classes"):
        evalsets.load(EvalSetSpec("folder", root="s"), root, SHAPES)


def test_mask_with_unknown_class_ids_is_named(tmp_path: Path) -> None:
    from PIL import Image

    root = shutil.copytree(REPO_ROOT / "data" / "voc-mini", tmp_path / "v")
    mask = root / "SegmentationClass" / "2026_000004.png"
    with Image.open(mask) as im:
        pixels = np.asarray(im).copy()
        palette = im.getpalette()
    pixels[0, 0] = 40
    out = Image.fromarray(pixels, mode="P")
    out.putpalette(palette)
    out.save(mask)
    with pytest.raises(EvalSetError, match=r"SegmentationClass/2026_000004.png has class ids \[40\], beyond the model's 21"):
        evalsets.load(EvalSetSpec("voc", root="v"), root, VOC)


def test_scores() -> None:
    labels = np.array([[0, 1, 255], [1, 1, 0]])
    pred = np.array([[0, 1, 1], [1, 0, 0]])
    assert metrics.segmentation_confusion(labels, pred, 2).tolist() == [[2, 0], [1, 2]]
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.1, 0.6, 0.3], [0.5, 0.4, 0.1]])
    m = metrics.classification_metrics(np.array([0, 1, 1, 2]), scores, ["a", "b", "c"])
    assert m["accuracy"] == 0.5 and m["top_k"] == 3 and m["top3_accuracy"] == 1.0
    assert m["per_class_accuracy"] == {"a": 1.0, "b": 0.5, "c": 0.0}


def test_definition_with_several_signatures_is_a_classifier() -> None:
    path = CONFIGS / "shapes.yaml"
    d = parse_definition(yaml.safe_load(path.read_text()), path)
    assert d.task == "classification" and [c.key for c in d.signatures] == ["predict", "serving_default"]
    assert d.signature.key == "predict" and d.contract("tensorflow/serving/classify").key == "serving_default"
    assert d.classes == tuple(SHAPES)
    settings = validation_settings(d)
    assert settings.eval.source == "folder" and settings.eval_root == REPO_ROOT / "data" / "shapes-mini"
    raw = yaml.safe_load(path.read_text())
    raw["validation"]["eval"] = {"source": "voc", "root": "data/voc-mini"}
    with pytest.raises(ConfigError, match="'voc' does not score a classification model"):
        validation_settings(parse_definition(raw, path))
    raw["signatures"][1]["key"] = "predict"
    with pytest.raises(ConfigError, match="signature keys repeat"):
        parse_definition(raw, path)
