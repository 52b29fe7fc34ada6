"""What every command shares: the typer app, the common options, output helpers and the entry point."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, List, Optional, TypeVar

import typer
from rich.markup import escape
from typer.core import TyperCommand

from ganrev.batch import Interrupted
from ganrev.errors import GanrevError
from ganrev.pretrained import DEFAULT_GENERATOR


def prose_help(text: str) -> str:
    """``text`` with each paragraph's lines joined into one: a docstring wraps at the source's width, and typer's
    rich help keeps those line breaks after the first paragraph, so a terminal of another width would show
    lines cut short. A paragraph that starts with ``\\b`` keeps its lines, as in click and typer."""
    return "\n\n".join(p if p.startswith("\b") else " ".join(line.strip(" \t") for line in p.split("\n"))
                       for p in text.split("\n\n"))


class ProseCommand(TyperCommand):
    """A command whose ``--help`` reads as written at any terminal width: its help paragraphs reflow
    (:func:`prose_help`), and in rich mode its help and its options' help are shown literally, since rich
    would take a note such as "[the generator's own ...]" for a markup tag and drop it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        literal = escape if self.rich_markup_mode == "rich" else str
        if self.help:
            self.help = literal(prose_help(self.help))
        for param in self.params:
            if getattr(param, "help", None):
                param.help = literal(param.help)


CommandFunction = TypeVar("CommandFunction", bound=Callable[..., Any])


class GanrevTyper(typer.Typer):
    """A typer app whose commands are :class:`ProseCommand` unless one names another class."""

    def command(self, name: Optional[str] = None, *, cls: Optional[type[TyperCommand]] = None,
                **kwargs: Any) -> Callable[[CommandFunction], CommandFunction]:
        return super().command(name, cls=cls or ProseCommand, **kwargs)


app = GanrevTyper(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="GAN-inversion image compression: compress images into a frozen generator's latent space.")

TABLE_GRID_IMAGES = 8  # columns of the table's --grid: enough to judge a scheme, few enough to read the captions

GeneratorOption = typer.Option(
    None, "--generator", "-g",
    help=f"generator checkpoint directory, or the name of one `ganrev models` lists (default: $GANREV_GENERATOR or "
         f"{DEFAULT_GENERATOR})")
DeviceOption = typer.Option("auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")


def echo_json(payload: object) -> None:
    typer.echo(json.dumps(payload, indent=2, default=_json_default))


def _json_default(value: object) -> object:
    if isinstance(value, float) and value == float("inf"):
        return "inf"
    return str(value)


def fmt(value: Optional[float], digits: int = 4) -> str:
    if value is None:
        return "n/a"
    return "inf" if value == float("inf") else f"{value:.{digits}f}"


def require(ok: bool, flag: str, value: object, rule: str) -> None:
    if not ok:
        raise GanrevError(f"invalid {flag} {value!r}: must be {rule}")


def check_seed(seed: int) -> None:
    require(-(2**63) <= seed < 2**64, "--seed", seed, "an integer between -2**63 and 2**64 - 1")


def device_for(requested: str, local_rank: int = 0):
    """:func:`ganrev.training.common.choose_device`: ``--device`` checked before anything runs."""
    from ganrev.training.common import choose_device

    return choose_device(requested, local_rank)


def report_skipped(skipped: list[str]) -> None:
    typer.echo(f"ganrev: skipped {len(skipped)} unusable input{'s' if len(skipped) > 1 else ''}:", err=True)
    for line in skipped:
        typer.echo(f"  {line}", err=True)


def echo_error(exc: GanrevError) -> None:
    typer.echo(f"ganrev: error: {' '.join(str(exc).split())}", err=True)


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point. A GanrevError is printed as one line ``ganrev: error: ...`` (exit 2); Ctrl-C as
    ``ganrev: interrupted`` (exit 130), with the outputs a batch had written."""
    try:
        app(args=argv, prog_name="ganrev")
    except GanrevError as exc:
        echo_error(exc)
        sys.exit(2)
    except Interrupted as exc:
        typer.echo("ganrev: interrupted", err=True)
        typer.echo(f"ganrev: {exc.report()}", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("ganrev: interrupted", err=True)
        sys.exit(130)
    except SystemExit as exc:
        if exc.code == 130:  # typer turns Ctrl-C outside a batch into a silent exit 130
            typer.echo("ganrev: interrupted", err=True)
        raise
