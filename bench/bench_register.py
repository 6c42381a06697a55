"""Benchmark ``mlc register`` of the resnet50 DeepLab-v3 at 513x513 against its floor, each a fresh process.

A child process builds a resnet50 DeepLab-v3 (random weights), writes it as a training checkpoint,
and makes a template mlc home whose definition uses that backbone and a 513x513 test image. Then,
round by round, four commands run, each in a process of its own (its wall time, and its CPU time:
user + system of the child, every thread, from ``getrusage``):

- ``register``: ``python -m lifecycle register <checkpoint> --json`` in a fresh copy of the home:
  digest, strict restore (reading every tensor), export, load from disk by TF Serving's loader,
  contract, TensorProto round trip, parity with the checkpoint model, golden record, metrics on
  the evaluation set, warmup records, manifest, publish;
- ``floor``: what register cannot skip: import TensorFlow (as mlc does), build the network (zero
  kernels, as register builds one to restore into), restore the checkpoint strictly (as register
  does), ``tf.saved_model.save`` with the serving signature, load the export from disk the way TF
  Serving does (a TF1 session, ``tf.compat.v1.saved_model.loader.load``), run one inference of
  the test image through the loaded signature;
- ``bare``: the old baseline, as a process: import TensorFlow, build the network, a bare
  ``tf.saved_model.save`` and one inference through the in-memory signature function;
- ``parity``: the floor plus the one more inference register's parity check needs (the
  checkpoint model's own answer to the test image, through the in-memory signature function),
  to show how much of register's excess that check alone accounts for.

The order alternates from round to round, so that neither side alone pays a warm-up. It prints
each run, the floor's own phases (CPU), register's phases (wall, from its report), the ratios
register / floor and register / bare save, wall and CPU. On a shared machine the CPU ratio is the
steadier figure: the last line, ``register / floor: X.XX`` (goal <= 1.15), is the CPU ratio.

    python bench/bench_register.py
    python bench/bench_register.py --rounds 1 --size 513 --eval-count 16 --eval-size 64
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
KINDS = ("floor", "register", "bare", "parity")


# --- the children ----------------------------------------------------------------------------


def child_setup(work: Path, args: argparse.Namespace) -> None:
    """Write the checkpoint (work/run/ckpt-1) and the template home (work/template)."""
    import numpy as np
    import yaml
    from PIL import Image

    from lifecycle.tf_import import import_tensorflow

    tf = import_tensorflow()
    from lifecycle.networks import deeplab
    from lifecycle.train import scenes

    home = work / "template"
    (home / "configs").mkdir(parents=True)
    definition = yaml.safe_load((REPO / "configs" / "deeplab.yaml").read_text())
    definition["network"]["backbone"] = args.backbone
    definition["validation"]["eval"].update(count=args.eval_count, size=args.eval_size)
    (home / "configs" / "deeplab.yaml").write_text(yaml.safe_dump(definition, sort_keys=False))
    image, _ = scenes.synthetic_scene(seed=2017, index=0, size=args.size)
    Image.fromarray(np.round(image).astype(np.uint8)).save(home / "configs" / "test_image.png")
    net = deeplab.create(deeplab.NetworkSpec.from_definition(definition["network"]))
    tf.train.Checkpoint(model=net).write(str(work / "run" / "ckpt-1"))
    print(json.dumps({"weights": sum(int(np.prod(v.shape)) for v in net.variables)}))


def child_floor(work: Path, kind: str) -> None:
    """The floor (``kind`` bare: the old baseline; parity: the floor and the reference); prints its phases as JSON."""
    phases: dict[str, tuple[float, float]] = {}
    clock = [time.process_time(), time.perf_counter()]

    def lap(name: str) -> None:
        cpu, wall = time.process_time(), time.perf_counter()
        phases[name] = (round(cpu - clock[0], 3), round(wall - clock[1], 3))
        clock[:] = [cpu, wall]

    import numpy as np
    import yaml
    from PIL import Image

    from lifecycle.tf_import import import_tensorflow

    tf = import_tensorflow()
    from lifecycle.networks import deeplab
    from lifecycle.register import export

    lap("import")
    home = work / "template"
    definition = yaml.safe_load((home / "configs" / "deeplab.yaml").read_text())
    with Image.open(home / "configs" / "test_image.png") as im:
        image = np.asarray(im.convert("RGB"), dtype=np.float32)
    h, w = image.shape[:2]
    net = deeplab.create(deeplab.NetworkSpec.from_definition(definition["network"]), random_init=False)
    lap("build")
    if kind != "bare":
        export.restore_strict(net, work / "run" / "ckpt-1")
        lap("restore")
    serving = deeplab.ServingModel(net)
    signatures = serving.signatures()
    lap("trace")
    target = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=work)) / "1"
    tf.saved_model.save(serving.root, str(target), signatures=signatures)
    lap("save")
    if kind != "floor":
        signatures[deeplab.SIGNATURE_KEY](images=tf.constant(image[None]), height=tf.constant([h]),
                                          width=tf.constant([w]))[deeplab.OUTPUT_NAME].numpy()
        lap("inference" if kind == "bare" else "reference")
    if kind != "bare":
        graph = tf.Graph()
        session = tf.compat.v1.Session(graph=graph)
        with graph.as_default():
            meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(target))
        lap("load")
        sig = meta_graph.signature_def[deeplab.SIGNATURE_KEY]
        session.run(sig.outputs[deeplab.OUTPUT_NAME].name, {sig.inputs["images"].name: image[None],
                                                            sig.inputs["height"].name: [h], sig.inputs["width"].name: [w]})
        lap("inference")
        session.close()
    shutil.rmtree(target.parent)
    print(json.dumps(phases))


# --- the parent ------------------------------------------------------------------------------


def run_child(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run one command; its wall time, its CPU time (user + system, every thread) and its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.stdout


def mean(values: list[float]) -> float:
    """The arithmetic mean."""
    return sum(values) / len(values)


def main() -> int:
    """Set up, run the rounds, print the figures; the last line is ``register / floor: X.XX`` (CPU)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--size", type=int, default=513, help="test image height and width")
    parser.add_argument("--eval-count", type=int, default=16, help="evaluation images (the definition's default)")
    parser.add_argument("--eval-size", type=int, default=64, help="evaluation image size (the definition's default)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of floor, register, bare and parity (order alternating)")
    parser.add_argument("--child", choices=("setup", *KINDS), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "setup":
        child_setup(args.work, args)
        return 0
    if args.child in ("floor", "bare", "parity"):
        child_floor(args.work, args.child)
        return 0

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    env.pop("MLC_REPOSITORY", None)
    me = [sys.executable, str(Path(__file__).resolve())]
    work = Path(tempfile.mkdtemp(prefix="mlc-bench-register-"))
    try:
        wall, _, out = run_child([*me, "--child", "setup", "--work", str(work), "--backbone", args.backbone,
                                  "--size", str(args.size), "--eval-count", str(args.eval_count),
                                  "--eval-size", str(args.eval_size)], env)
        print(f"built {args.backbone} DeepLab-v3 ({json.loads(out)['weights']:,} weights) and its checkpoint "
              f"in {wall:.1f} s")
        print(f"image {args.size}x{args.size}, evaluation set {args.eval_count} x {args.eval_size}x{args.eval_size}; "
              f"{args.rounds} round(s), each command a fresh process")
        prefix = work / "run" / "ckpt-1"
        runs: dict[str, list[tuple[float, float]]] = {k: [] for k in KINDS}
        phases: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
        for number in range(args.rounds):
            for kind in KINDS if number % 2 == 0 else tuple(reversed(KINDS)):
                if kind == "register":
                    home = work / f"home-{number}"
                    shutil.copytree(work / "template", home)
                    wall, cpu, out = run_child([sys.executable, "-m", "lifecycle", "register", str(prefix), "--json"],
                                               {**env, "MLC_HOME": str(home)})
                    result = json.loads(out)
                    phases[kind].append(result["report"]["timings"])
                    shutil.rmtree(home)
                else:
                    wall, cpu, out = run_child([*me, "--child", kind, "--work", str(work)], env)
                    phases[kind].append(json.loads(out))
                runs[kind].append((wall, cpu))
                print(f"round {number + 1} {kind:8s}: wall {wall:6.2f} s, CPU {cpu:6.2f} s")
        wall_of = {k: mean([w for w, _ in v]) for k, v in runs.items()}
        cpu_of = {k: mean([c for _, c in v]) for k, v in runs.items()}
        for kind in ("floor", "bare", "parity"):
            names = list(phases[kind][0])
            print(f"{kind} phases, CPU s (mean): "
                  + ", ".join(f"{n} {mean([p[n][0] for p in phases[kind]]):.2f}" for n in names))
        reg = phases["register"]
        print("register phases, wall s (mean, its report): "
              + ", ".join(f"{n[:-2]} {mean([p[n] for p in reg]):.2f}" for n in reg[0]))
        print(f"mean: register wall {wall_of['register']:.2f} s CPU {cpu_of['register']:.2f} s; floor wall "
              f"{wall_of['floor']:.2f} s CPU {cpu_of['floor']:.2f} s; bare wall {wall_of['bare']:.2f} s CPU "
              f"{cpu_of['bare']:.2f} s; floor + parity reference wall {wall_of['parity']:.2f} s CPU "
              f"{cpu_of['parity']:.2f} s")
        print(f"register / bare save (the old ratio): {wall_of['register'] / wall_of['bare']:.2f} wall, "
              f"{cpu_of['register'] / cpu_of['bare']:.2f} CPU")
        print(f"register / (floor + the parity reference): {wall_of['register'] / wall_of['parity']:.2f} wall, "
              f"{cpu_of['register'] / cpu_of['parity']:.2f} CPU")
        print(f"register / floor (goal <= 1.15): {wall_of['register'] / wall_of['floor']:.2f} wall, "
              f"{cpu_of['register'] / cpu_of['floor']:.2f} CPU")
        print(f"register / floor: {cpu_of['register'] / cpu_of['floor']:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
