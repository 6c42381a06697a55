"""The mlc app: the typer root, the runner every command goes through, and the shared options.

The commands themselves live in modules named for what they drive (:mod:`lifecycle.cli.lifecycle`,
:mod:`~lifecycle.cli.serving`, :mod:`~lifecycle.cli.models`, :mod:`~lifecycle.cli.ui`,
:mod:`~lifecycle.cli.storage`); each registers on :data:`app` with ``@app.command(cls=Command)``,
parses its arguments, makes exactly one ``api`` call and renders (:mod:`lifecycle.cli.render`).
Every command runs through :func:`run`, which turns a :class:`LifecycleError` into one red line
on stderr and the error's exit code; the hidden ``--traceback`` flag shows the stack instead.
No module of the CLI imports TensorFlow at import time (``mlc --help``, ``status`` and
``history`` are fast paths); commands that need it import it inside ``api``.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import metadata
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperArgument, TyperCommand

from lifecycle.cli.render import stderr, stdout
from lifecycle.errors import LifecycleError, disk_full

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    name="mlc",
    no_args_is_help=True,
    add_completion=True,
    context_settings=HELP_OPTIONS,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

T = TypeVar("T")

_state: dict[str, bool] = {"traceback": False}

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
ModelArg = Annotated[str, typer.Argument(help="Model name (configs/<model>.yaml).", show_default=False, metavar="MODEL")]
VersionArg = Annotated[int, typer.Argument(help="The version.", show_default=False, min=1, metavar="VERSION")]

# The distributions `mlc --version` reports, read from their metadata (importing TensorFlow to
# ask it would cost seconds).
VERSIONED = ("mlc", "tensorflow", "tensorflow-serving-api")
_TENSORFLOW_BUILDS = ("tensorflow", "tensorflow-cpu", "tensorflow-intel", "tf-nightly")


def _argument_name(param: TyperArgument) -> str:
    """An argument as help names it: its metavar (MODEL, RUN_DIR...), else its name in capitals."""
    name = param.metavar or (param.name or "").upper()
    return name if param.nargs == 1 or name.endswith("...") else f"{name}..."


class Command(TyperCommand):
    """A typer command whose help names arguments as click does: ``MODEL``, ``[MODEL]``, ``IMAGE...``.

    typer 0.2x writes ``{model}`` in the usage line and ``model <str>`` in the Arguments list.
    """

    # ctx is typer's vendored click Context and formatter its HelpFormatter, neither of which
    # typer exports under a public name.
    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        """The usage line's words after the command name."""
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = _argument_name(param)
                pieces.append(name if param.required else f"[{name}]")
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces

    def format_options(self, ctx: Any, formatter: Any) -> None:
        """The Arguments and Options sections, arguments without typer's type tags."""
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if isinstance(param, TyperArgument):
                arguments.append((_argument_name(param), record[1]))
            else:
                options.append(record)
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def installed_version(distribution: str) -> str:
    """The installed version of ``distribution`` (for TensorFlow: of whichever build is installed)."""
    names = _TENSORFLOW_BUILDS if distribution == "tensorflow" else (distribution,)
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


def _print_version(value: bool) -> None:
    """``--version``: mlc's version and TensorFlow's and tensorflow-serving-api's, then exit."""
    if value:
        for name in VERSIONED:
            stdout.print(f"{name} {installed_version(name)}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=_print_version,
                           help="Print the versions of mlc, TensorFlow and tensorflow-serving-api, and exit.")
    ] = False,
    traceback: Annotated[
        bool, typer.Option("--traceback", hidden=True, help="Show the Python traceback on errors.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Also show TensorFlow's own log (start-up, deprecations).")
    ] = False,
) -> None:
    """mlc: model-version lifecycle manager for TensorFlow Serving.

    Every command takes --help (-h, with examples) and most take --json. Errors are one line on
    stderr and a non-zero exit (2 for usage errors); a refused command changes nothing on disk.
    A command prints only mlc's own lines: TensorFlow's start-up log and deprecation warnings are
    dropped, unless the global option `mlc --verbose COMMAND` (or MLC_VERBOSE=1, which servers
    mlc starts inherit) lets them through.

    Examples:

        mlc status

        mlc --verbose register ckpt/16645

        mlc --version
    """
    _state["traceback"] = traceback
    # lifecycle.cli.main acted on --verbose already: TensorFlow is imported before typer parses.


def run(call: Callable[[], T]) -> T:
    """Run one api call; a LifecycleError becomes one red stderr line and its exit code."""
    try:
        return call()
    except (LifecycleError, OSError) as e:
        # A full disk can strike any write (TensorFlow's, a picture's): one line, like mlc's own.
        error = e if isinstance(e, LifecycleError) else disk_full(e, e.filename or "a file")
        if error is None or _state["traceback"]:
            raise
        stderr.print(f"[red]Error:[/red] {error.message}", markup=True, highlight=False)
        raise typer.Exit(error.exit_code) from None
