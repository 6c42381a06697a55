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
from rich.markup import escape
from typer.core import TyperArgument, TyperCommand

from lifecycle.cli.jsonout import error_json, print_json
from lifecycle.cli.progress import SHOWN, status_line
from lifecycle.cli.render import stderr, stdout
from lifecycle.errors import ConfigError, LifecycleError, disk_full
from lifecycle.store.config import Paths
from lifecycle.store.home import home_line, is_home, not_a_home
from lifecycle.store.outbox import HOOKS_FILE

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

_state: dict[str, bool] = {"traceback": False, "json": False}

_status_of: list[str] = []  # the command whose api call shows a status line, if any

# Commands that need no mlc home: init makes one, k8s render reads none.
HOMELESS = frozenset({"init", "render"})

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
    def invoke(self, ctx: Any) -> Any:
        """Run the command in its home: say which when it is not the current folder, refuse outside one."""
        _state["json"] = bool(ctx.params.get("as_json"))
        _status_of[:] = []
        if self.name not in HOMELESS:
            run(enter_home)
        # A long command's api call shows a status line (lifecycle.cli.progress), never under --json.
        shown = self.name in SHOWN and not _state["json"] and not ctx.params.get("follow")
        _status_of[:] = [self.name or ""] if shown else []
        return super().invoke(ctx)

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


def enter_home() -> None:
    """Name the home on a terminal's stderr when it is not the current folder; ConfigError outside a home.

    Only a terminal gets the line: a script or pipe reading stderr keeps one line per error.
    """
    paths = Paths.from_env()
    line = home_line(paths)
    if line is not None and stderr.is_terminal:
        stderr.print(line, markup=False, highlight=False)
    if not is_home(paths):
        raise ConfigError(not_a_home(paths))


def run(call: Callable[[], T]) -> T:
    """Run one api call; a LifecycleError becomes one red stderr line and its exit code.

    Under ``--json`` the error is also a JSON object on stdout (:func:`error_json`).
    Then the webhooks that are due are sent (configs/hooks.yaml), waiting at most their timeout.
    """
    try:
        with status_line(_status_of[0] if _status_of else "", bool(_status_of)):
            return call()
    except (LifecycleError, OSError) as e:
        # A full disk can strike any write (TensorFlow's, a picture's): one line, like mlc's own.
        error = e if isinstance(e, LifecycleError) else disk_full(e, e.filename or "a file")
        if error is None or _state["traceback"]:
            raise
        stderr.print(f"[red]Error:[/red] {escape(error.message)}", markup=True, highlight=False)
        if _state["json"]:
            print_json(error_json(error))
        raise typer.Exit(error.exit_code) from None
    finally:
        _send_hooks()


def _send_hooks() -> None:
    paths = Paths.from_env()
    if (paths.configs / HOOKS_FILE).exists():  # a stat: commands of a home without hooks pay nothing more
        from lifecycle.hooks.sender import deliver_in_background

        deliver_in_background(paths)
