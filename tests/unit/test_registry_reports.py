"""Unit: registry.yaml keeps a summary of each version's report; the whole report lives beside
the version, and registries written with whole reports still load."""

from __future__ import annotations

import json

import yaml

from lifecycle.store import registry
from lifecycle.store.config import Paths

REPORT = {
    "signature": {"key": "serving_default", "inputs": {"x": {"dtype": "float32", "shape": [-1, 1]}}},
    "golden": {"digest": "sha256:" + "ab" * 32, "output": "y", "shape": [1, 1], "histogram": {"a": 1}},
    "metrics": {"miou": 0.61, "per_class_iou": {"a": 0.5, "b": 0.72}, "eval": {"seed": 1, "count": 4, "size": 32}},
    "checks": {"contract": "ok", "parity": "ok"},
}


def publish(paths: Paths, number: int) -> None:
    """A version folder with its own record, as register leaves it."""
    d = paths.model_dir("m") / str(number)
    registry.version_record_file(d).parent.mkdir(parents=True)
    record = {"checkpoint": {"digest": f"sha256:{number}", "path": "run/ckpt-1", "step": 1, "tf_version": "2.x"},
              "version": {"checkpoint_digest": f"sha256:{number}", "checkpoint": "run/ckpt-1", "step": 1,
                          "validated": True, "report": REPORT}}
    registry.version_record_file(d).write_text(json.dumps(record))


def test_the_registry_keeps_a_summary_and_the_full_report_stays_beside_the_version(bare_home: Paths) -> None:
    publish(bare_home, 1)
    with registry.transaction(bare_home):
        pass  # adopts version 1 from its record file
    (v,) = registry.load(bare_home).model("m").versions
    assert v.report == {"golden": {"digest": REPORT["golden"]["digest"], "output": "y"},
                        "metrics": {"miou": 0.61, "eval": {"seed": 1, "count": 4, "size": 32}},
                        "full": "assets.extra/mlc_report.json"}
    assert "per_class_iou" not in bare_home.registry_file.read_text()
    assert registry.full_report(bare_home, "m", v) == REPORT


def test_a_registry_with_whole_reports_still_loads(bare_home: Paths) -> None:
    publish(bare_home, 1)
    old = {"schema": 1, "models": {"m": {"stable": 1, "versions": [
        {"version": 1, "checkpoint_digest": "sha256:1", "checkpoint": "run/ckpt-1", "step": 1, "validated": True,
         "report": REPORT}]}}}
    bare_home.registry_file.write_text(yaml.safe_dump(old))
    (v,) = registry.load(bare_home).model("m").versions
    assert v.report == REPORT and registry.full_report(bare_home, "m", v) == REPORT
