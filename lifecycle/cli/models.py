"""The commands that make and use model versions: ``train``, ``register``, ``watch``, ``predict``, ``diff``.

They register on the one typer ``app`` of :mod:`lifecycle.cli.commands` and follow its rules:
parse, one ``api`` call, render. They load models, so :func:`lifecycle.cli.main` imports
TensorFlow before they run; this module itself must not import it.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from lifecycle import api
from lifecycle.cli.commands import Command, JsonOption, ModelArg, app, run
from lifecycle.cli.render import WatchDisplay, render_register, render_train, show, stderr, stdout
from lifecycle.cli.render_predictions import render_diff, render_predict

ModelOption = Annotated[str | None, typer.Option("--model", metavar="MODEL",
                                                 help="Model to register into (configs/<model>.yaml); default: the only one.")]


@app.command(cls=Command)
def register(
    path: Annotated[str, typer.Argument(help="Run folder (its latest checkpoint), checkpoint prefix, or SavedModel folder.",
                                        show_default=False, metavar="PATH")],
    model: ModelOption = None,
    as_json: JsonOption = False,
) -> None:
    """Export a checkpoint or SavedModel as the next version.

    Exports a checkpoint (or copies a SavedModel folder, docs/byo.md) to the next integer
    version, validated, and prints the version. Registering the same content again prints its
    existing version.

    mlc restores every variable into the network of configs/<model>.yaml (a checkpoint of
    another architecture is an error, never a partial restore), exports a SavedModel (tag
    serve, signature predict_images) into model_repo/<model>/.staging-<id>, validates it and
    only then renames it to the next integer version. Validation: the signature matches the
    contract in the definition (Predict, Classify and Regress contracts are supported); the test
    image, encoded with tf.make_tensor_proto as a client would, round-trips through the export
    loaded fresh from disk by TF Serving's loader (a TF1 session, loaded once for every check)
    to a [1,H,W] mask of valid class ids; the mask equals the checkpoint model's pixel for pixel
    (computed while the export is written); mIoU, per-class IoU and pixel accuracy on the
    evaluation set; and assets.extra/tf_serving_warmup_requests holds the test request so the
    server warms the version up. The registry records the checkpoint (path, step, content
    digest, TF version, time, user) and the version's report (signature, golden digest and
    class histogram of the test mask, metrics). A failed check publishes nothing and records
    the failed attempt.

    The network comes from the definition's network.builder, an import path module:function
    (the mlc home is first on sys.path) called with the section's other keys as keyword
    arguments; it returns a tf.Module or a Keras model. serving: module:function (default: the
    builder module's serve) gets the restored network and returns the concrete function(s) of
    the signature contract. The built-in DeepLab is lifecycle.networks.deeplab:build (alias
    deeplab_v3). A builder that does not import, fails, or returns anything else is one line,
    and nothing changes. Eight registers at once get eight distinct versions; a register killed
    at any moment leaves no integer folder without a complete validated SavedModel, and the
    next one cleans up.

    Examples:

        mlc register ckpt/16645

        mlc register exports/my_saved_model --model segmenter

        mlc register ckpt/16645/ckpt-200 --model deeplab --json
    """
    result = run(lambda: api.register(path, model))
    show(result, as_json, render_register)


@app.command(cls=Command)
def train(
    run_dir: Annotated[str, typer.Argument(help="Run folder to write checkpoints into (created if missing).",
                                           show_default=False, metavar="RUN_DIR")],
    steps: Annotated[int, typer.Option("--steps", min=1, metavar="N", help="Train until this global step.")] = 300,
    save_every: Annotated[int, typer.Option("--save-every", min=1, metavar="K",
                                            help="Write a checkpoint every this many steps.")] = 100,
    backbone: Annotated[
        str | None, typer.Option("--backbone", metavar="small|resnet50",
                                 help="Backbone (small or resnet50); default: the model definition's.")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", metavar="MODEL",
                                              help="Model definition to train (configs/<model>.yaml).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Train the demo network and write TF checkpoints.

    The demo trainer (for --model shapes, the classifier's trainer: single shapes, one class
    per image) trains the model definition's DeepLab-v3 (atrous backbone at output stride 16,
    ASPP with rates 6/12/18 and image pooling, 1x1 classifier, bilinear upsampling) on a
    procedurally generated, seeded set of shapes on textured backgrounds labelled with VOC
    class ids, and writes ordinary TF checkpoints (checkpoint, ckpt-<step>.index, .data-*)
    into RUN_DIR every K steps. Later checkpoints score better on the evaluation set. A RUN_DIR
    that already holds checkpoints is resumed from its latest one.

    Examples:

        mlc train ckpt/16645

        mlc train ckpt/16645 --steps 600 --save-every 200
    """

    def progress(c: api.TrainedCheckpoint) -> None:
        if not as_json:
            stdout.print(f"step {c.step}: loss {c.loss:.4f} -> {c.prefix}")

    result = run(lambda: api.train(run_dir, steps, save_every, backbone, model, on_checkpoint=progress))
    show(result, as_json, render_train)


@app.command(cls=Command)
def watch(
    run_dirs: Annotated[
        list[str], typer.Argument(help="Run folders to watch (they may not exist yet).", show_default=False, metavar="RUN_DIR...")
    ],
    model: ModelOption = None,
    promote_if_better: Annotated[
        bool, typer.Option("--promote-if-better", help="Promote each new version that passes the quality gate (safe rollout).")
    ] = False,
    settle: Annotated[
        float, typer.Option("--settle", min=0, metavar="S",
                            help="Seconds a checkpoint's files must stay unchanged before it is read.")
    ] = 2.0,
    max_events: Annotated[
        int | None, typer.Option("--max-events", min=1, metavar="N",
                                 help="Stop after this many checkpoints were handled (registered, known, failed or skipped).")
    ] = None,
    exit_after: Annotated[
        float | None, typer.Option("--exit-after", min=0.001, metavar="S", help="Stop after this many seconds.")
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Register what the folders hold now (waiting for it to settle), then stop.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per event, then the summary, instead of text.")
    ] = False,
) -> None:
    """Register each new checkpoint written into run folders.

    Registers every new checkpoint a trainer writes into the run folders, as `mlc register`
    would, as soon as it is complete. It watches the folders with watchdog (and scans them at
    start, whenever a folder is created or recreated after a delete, and every 30 s), and reads
    a checkpoint only once the folder's `checkpoint` state file names it and its .index and
    every .data-* shard exist and have not changed for --settle seconds, so a half-written file
    is never read.

    Registration is idempotent by content digest: a restarted watch registers nothing twice,
    and a checkpoint whose exact content already failed validation is skipped until
    configs/<model>.yaml changes (or retry it now with `mlc register`). A checkpoint that fails
    is logged with its reason and the watch goes on; one that changes afterwards is tried
    again. With --promote-if-better, each new version that passes the quality gate (thresholds
    in configs/<model>.yaml) is promoted through `mlc promote`'s safe rollout; in a burst, only
    the newest; a version the gate refuses stays registered and is not promoted. Ctrl-C (or
    SIGTERM) stops after the current checkpoint; a second Ctrl-C aborts.

    For scripts and tests: --once registers what is there and stops, --max-events N stops after
    N checkpoints were handled (registered, already known, failed or skipped), --exit-after S
    after S seconds; --json prints one JSON object per event and a final
    {"kind": "summary", ...} line.

    Examples:

        mlc watch ckpt/16645 &           # next to: mlc train ckpt/16645

        mlc watch ckpt/16645 ckpt/16646 --promote-if-better

        mlc watch ckpt/16645 --once --json

        mlc watch ckpt/16645 --max-events 3 --exit-after 600
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        stderr.print("stopping after the current checkpoint (Ctrl-C again to abort)")

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with WatchDisplay(len(run_dirs), as_json) as display:
            summary = run(lambda: api.watch(run_dirs, model, promote_if_better, settle, max_events, exit_after, once,
                                            stop=stop, on_event=display.event))
    except KeyboardInterrupt:
        stderr.print("aborted")
        raise typer.Exit(130) from None
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)
    display.summary(summary)


@app.command(cls=Command)
def predict(
    model: ModelArg,
    images: Annotated[
        list[Path], typer.Argument(help="Photos to segment or classify: JPEG, PNG or any image pillow reads, any size.",
                                   show_default=False, metavar="IMAGE...")
    ],
    version: Annotated[
        int | None, typer.Option("--version", min=1, metavar="VERSION", help="Ask for this version number (model_spec.version).")
    ] = None,
    label: Annotated[
        str | None, typer.Option("--label", metavar="LABEL",
                                 help="Ask for the version this label points at, e.g. stable or canary.")
    ] = None,
    server: Annotated[
        str | None,
        typer.Option(
            "--server", metavar="HOST:PORT",
            help="The server's address (its REST port with --rest). Default: the first server of "
            "configs/servers.yaml, else the one `mlc serve` started.",
        ),
    ] = None,
    rest: Annotated[bool, typer.Option("--rest", help="Send TF Serving REST JSON instead of gRPC.")] = False,
    use_async: Annotated[
        bool, typer.Option("--async", help="Send all photos at once through Predict.future (Classify.future), then collect.")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.001, metavar="S", help="Deadline of each request, in seconds.")
    ] = 30.0,
    out: Annotated[
        Path, typer.Option("--out", file_okay=False, metavar="DIR",
                           help="Folder for <name>.v<N>.mask.png and <name>.v<N>.overlay.png.")
    ] = Path("."),
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace pictures another version (or another tool) wrote under those names.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Segment or classify photos with the served model.

    The classic DeepLab client as one command. Each photo becomes a PredictRequest for
    signature predict_images with images float32 [1,H,W,3] and height/width int32 [1] built with
    tf.make_tensor_proto, sent over gRPC with a deadline (--timeout), all at once through
    Predict.future with --async, or as TF Serving's REST JSON with --rest. It writes
    DIR/<name>.v<N>.mask.png (a palette PNG: pixel values are the class ids, the palette is Pascal
    VOC's) and DIR/<name>.v<N>.overlay.png (mask and photo blended half and half), N being the
    version that answered, and prints each photo's share of every class by name and that version.
    A picture of that name that another version wrote is refused in one line, and nothing is
    written, unless --overwrite. A label the server does not have is one line naming the labels
    it has ("deeplab has no canary; labels: stable → 2"). Signature, output and
    number of classes come from configs/<model>.yaml when the home defines MODEL. Every photo is
    read before anything is sent: a file that is not an image, or a server that does not
    answer, is one line on stderr and exit 1.

    A classifier (a definition with task: classification, such as configs/shapes.yaml) is asked
    through TF Serving's Classify API instead: each photo, PNG-encoded, goes as the
    image/encoded feature of a tf.Example in a ClassificationRequest (gRPC, or REST :classify
    with the bytes base64-encoded), and mlc prints the top 5 classes with their scores. No
    pictures are written.

    Examples:

        mlc predict deeplab photo.jpg            # -> ./photo.v3.mask.png, ./photo.v3.overlay.png

        mlc predict shapes photo.png --label stable        # rank, class, score

        mlc predict deeplab a.jpg b.png --label canary --out masks/

        mlc predict deeplab photo.jpg --version 3 --async --timeout 5

        mlc predict deeplab photo.jpg --rest --server 127.0.0.1:8501
    """
    if version is not None and label is not None:
        raise typer.BadParameter("give --version or --label, not both", param_hint="--version/--label")
    result = run(
        lambda: api.predict(
            model, list(images), version=version, label=label, server=server, rest=rest,
            use_async=use_async, timeout=timeout, out=out, overwrite=overwrite,
        )
    )
    show(result, as_json, render_predict)


@app.command(cls=Command)
def diff(
    model: ModelArg,
    a: Annotated[int, typer.Argument(help="Version A, the reference.", show_default=False, min=1, metavar="A")],
    b: Annotated[int, typer.Argument(help="Version B, compared with A.", show_default=False, min=1, metavar="B")],
    image: Annotated[
        list[Path] | None,
        typer.Option("--image", metavar="PHOTO", help="Also compare on this photo (repeatable); the test image is always used."),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", file_okay=False, metavar="DIR", help="Folder for the side-by-side pictures.")
    ] = Path("."),
    as_json: JsonOption = False,
) -> None:
    """Tell two versions of a model apart.

    Tells two registered versions apart before you promote one: their signatures (added,
    removed or changed signatures, methods, inputs and outputs) and their masks on the test
    image, on each --image and on the evaluation set of configs/<model>.yaml: pixel agreement
    and mIoU of B against A, plus each version's mIoU against the evaluation set's ground truth.
    For every photo it writes DIR/<model>-<A>-vs-<B>.<name>.png: photo | mask A | mask B |
    disagreement (differing pixels white over the dimmed photo). Both versions are loaded in
    this process from model_repo/ with the embedded server's loader, so no server is needed and
    no production server has to load B.

    For a classifier it shows the top classes of A and B on each photo, the share of evaluation
    images where B gives A's class (and which changed), and each version's accuracy and top-5
    accuracy against the labels (no pictures).

    Examples:

        mlc diff deeplab 2 3

        mlc diff deeplab 2 3 --image photo.jpg --out diffs/

        mlc diff deeplab 2 3 --json
    """
    result = run(lambda: api.diff(model, a, b, images=list(image or []), out=out))
    show(result, as_json, render_diff)
