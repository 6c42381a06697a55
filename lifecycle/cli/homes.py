"""``mlc init``: make a folder an mlc home.

It registers on the one typer ``app`` of :mod:`lifecycle.cli.commands` and follows its rules:
parse, one ``api`` call, render. It is the one command that needs no home (it makes one). This
module must not import TensorFlow (``init --saved-model`` has it imported up front).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from lifecycle import api
from lifecycle.cli.commands import Command, JsonOption, app, run
from lifecycle.cli.render import show, stdout
from lifecycle.operations.homes import BUILTINS, InitResult
from lifecycle.store.config import Paths


@app.command(cls=Command)
def init(
    home: Annotated[Path | None, typer.Argument(
        help="The folder to make a home (created if missing); default $MLC_HOME, else the current folder.",
        show_default=False, metavar="DIR")] = None,
    model: Annotated[
        str | None, typer.Option("--model", metavar="|".join(BUILTINS), show_default=False,
                                 help="The built-in definition to copy (default deeplab).")
    ] = None,
    saved_model: Annotated[
        Path | None, typer.Option("--saved-model", metavar="PATH", show_default=False,
                                  help="Write a definition whose contract is this SavedModel's signatures instead.")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", metavar="MODEL", show_default=False,
                                 help="The model name of a --saved-model definition (default: the folder's name).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Make a folder an mlc home.

    Creates DIR/configs/ and DIR/model_repo/ and one model definition: a built-in one copied with
    its test image (deeplab, the demo DeepLab-v3; shapes, the small classifier, with its labelled
    evaluation set under data/), or, with --saved-model, one written for that SavedModel: its
    signatures become the contract `mlc register` holds every version to. An existing
    definition of that name is refused and nothing changes.

    An mlc home is a folder whose configs/ holds a model definition (or mlc.yaml, naming a remote
    repository), or whose model_repo/ holds registry.yaml. Every other command needs one: the
    current folder, or $MLC_HOME; run elsewhere, it says so in one line and creates nothing.

    Examples:

        mlc init demo-home

        mlc init . --model shapes

        mlc init ~/segmenter --saved-model exports/keras_segmenter --name segmenter
    """
    result = run(lambda: api.init(home if home is not None else Paths.from_env().home, model, saved_model, name))
    show(result, as_json, render_init)


def render_init(result: InitResult) -> None:
    """Print the home made and its next step."""
    made = ", ".join(result.created)
    stdout.print(f"mlc home {escape(result.home)}: {escape(made)}")
    stdout.print(f"Model {result.model}: {escape(result.definition)}"
                 + ("" if result.source == "built-in" else f" (contract of {escape(result.source)})"))
    stdout.print(f"Next: cd {escape(result.home)} && mlc train ckpt/1 --steps 60 && mlc register ckpt/1"
                 if result.source == "built-in" else
                 f"Next: cd {escape(result.home)} && mlc register {escape(result.source)}")
