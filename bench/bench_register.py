"""Benchmark ``mlc register`` (export + validate) of the resnet50 DeepLab-v3 at 513x513.

It builds a resnet50 DeepLab-v3 (random weights), writes it as a training checkpoint, and makes
a temporary mlc home whose definition uses that backbone and a 513x513 test image. Then, in one
process (TensorFlow imported once, before any timing):

- ``baseline``: a bare ``tf.saved_model.save`` of the same network with the same signature,
  plus one inference of the test image through the in-memory signature function;
- ``register``: ``lifecycle.api.register`` on the checkpoint: digest, strict restore (reading
  every tensor), export, load from disk, contract, TensorProto round trip, parity, golden
  record, metrics on the evaluation set, warmup records, publish;

- ``floor``: register's real floor, measured too: build the network, restore the checkpoint
  (strictly, as register does), save, load the export from disk, one inference through the
  loaded signature;

and prints the times and the ratios (the last line is ``register / floor: X.XX``, goal <= 1.15), with register's own phase timings, the floor of that
ratio (the baseline plus the work only register does: building the network, restoring the
checkpoint, loading the export from disk), and the CPU time of each side (every thread of the
process) beside its wall time: on a shared machine the CPU ratio is the steadier figure, the
wall ratio the one that counts (register overlaps its parity reference with the export, which
only wall time credits).

    TF_CPP_MIN_LOG_LEVEL=2 python bench/bench_register.py
    python bench/bench_register.py --size 513 --eval-count 16 --eval-size 64
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--size", type=int, default=513, help="test image height and width")
    parser.add_argument("--eval-count", type=int, default=16, help="evaluation images (the definition's default)")
    parser.add_argument("--eval-size", type=int, default=64, help="evaluation image size (the definition's default)")
    args = parser.parse_args()

    import numpy as np
    import yaml
    from PIL import Image

    from lifecycle.tf_import import import_tensorflow

    tf = import_tensorflow()  # first, and quietly (no CUDA probe, no deprecations)
    from lifecycle import api
    from lifecycle.networks import deeplab
    from lifecycle.register import export
    from lifecycle.store.config import Paths
    from lifecycle.train import scenes

    work = Path(tempfile.mkdtemp(prefix="mlc-bench-register-"))
    try:
        home = work / "home"
        (home / "configs").mkdir(parents=True)
        definition = yaml.safe_load((REPO / "configs" / "deeplab.yaml").read_text())
        definition["network"]["backbone"] = args.backbone
        definition["validation"]["eval"].update(count=args.eval_count, size=args.eval_size)
        (home / "configs" / "deeplab.yaml").write_text(yaml.safe_dump(definition, sort_keys=False))
        image, _ = scenes.synthetic_scene(seed=2017, index=0, size=args.size)
        Image.fromarray(np.round(image).astype(np.uint8)).save(home / "configs" / "test_image.png")
        paths = Paths.from_env(home)

        spec = deeplab.NetworkSpec.from_definition(definition["network"])
        t0 = time.perf_counter()
        net = deeplab.create(spec)
        prefix = work / "run" / "ckpt-1"
        tf.train.Checkpoint(model=net).write(str(prefix))
        print(f"built {args.backbone} DeepLab-v3 ({sum(int(np.prod(v.shape)) for v in net.variables):,} "
              f"weights) and its checkpoint in {time.perf_counter() - t0:.1f} s")

        x = tf.constant(np.round(image)[None].astype(np.float32))

        def bare() -> tuple[float, float, float]:
            """The baseline: a fresh serving module of the same network, saved bare, plus one inference."""
            serving = deeplab.ServingModel(net)
            c0, t0 = time.process_time(), time.perf_counter()
            tf.saved_model.save(serving.root, str(work / "bare"), signatures=serving.signatures())
            t_save = time.perf_counter() - t0
            t1 = time.perf_counter()
            serving.predict_images(x, tf.constant([args.size]), tf.constant([args.size]))["segmentation_map"].numpy()
            t_infer, cpu = time.perf_counter() - t1, time.process_time() - c0
            shutil.rmtree(work / "bare")
            return t_save, t_infer, cpu

        def floor_run() -> tuple[float, float]:
            """register's floor: build the network, restore the checkpoint, save, load the export, one inference."""
            c0, t0 = time.process_time(), time.perf_counter()
            fresh = deeplab.create(spec)
            export.restore_strict(fresh, prefix)
            serving = deeplab.ServingModel(fresh)
            tf.saved_model.save(serving.root, str(work / "floor"), signatures=serving.signatures())
            loaded = tf.saved_model.load(str(work / "floor"))
            loaded.signatures["predict_images"](images=x, height=tf.constant([args.size]),
                                                width=tf.constant([args.size]))["segmentation_map"].numpy()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            del loaded
            shutil.rmtree(work / "floor")
            return wall, cpu

        # Baselines before and after register, so that neither side alone pays the process's warm-up.
        before, floor_before = bare(), floor_run()
        c0, t0 = time.process_time(), time.perf_counter()
        result = api.register(prefix, paths=paths)
        register, register_cpu = time.perf_counter() - t0, time.process_time() - c0
        floor_after, after = floor_run(), bare()
        floor_wall = (floor_before[0] + floor_after[0]) / 2
        floor_cpu = (floor_before[1] + floor_after[1]) / 2
        baseline = (sum(before[:2]) + sum(after[:2])) / 2
        baseline_cpu = (before[2] + after[2]) / 2

        print(f"image {args.size}x{args.size}, evaluation set {args.eval_count} x {args.eval_size}x{args.eval_size}")
        for name, (t_save, t_infer, cpu) in (("before", before), ("after", after)):
            print(f"baseline {name:6s}: tf.saved_model.save {t_save:.2f} s + one inference {t_infer:.2f} s = "
                  f"{t_save + t_infer:.2f} s (CPU {cpu:.2f} s)")
        print(f"mlc register (export + validate + publish): {register:.2f} s (CPU {register_cpu:.2f} s) "
              f"-> version {result.version}")
        print(f"  phases: {result.report['timings']}")
        print(f"ratio register / mean baseline: {register / baseline:.2f} wall, {register_cpu / baseline_cpu:.2f} CPU")
        # Work register cannot skip and the baseline never does: it has no network until it builds
        # one and restores the checkpoint into it, and it must load the export from disk as the
        # server will. Its save and its round trip pair with the baseline's save and inference.
        timings = result.report["timings"]
        floor = {k: timings[k] for k in ("build_s", "restore_s", "load_s")}
        print(f"floor: register also builds the network ({floor['build_s']:.2f} s), restores the checkpoint "
              f"({floor['restore_s']:.2f} s) and loads the export ({floor['load_s']:.2f} s): "
              f"at these times register cannot go below {(baseline + sum(floor.values())) / baseline:.2f}x the baseline")
        for name, (wall, cpu) in (("before", floor_before), ("after", floor_after)):
            print(f"floor {name:6s}: build + restore + save + load + one inference {wall:.2f} s (CPU {cpu:.2f} s)")
        print(f"ratio register / mean floor (goal <= 1.15): {register / floor_wall:.2f} wall, {register_cpu / floor_cpu:.2f} CPU;"
              f" register / bare save {register / baseline:.2f}")
        print(f"register / floor: {register / floor_wall:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
