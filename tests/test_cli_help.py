"""Every command's ``--help`` reads as written at 80 and 120 columns (issue 35): each paragraph of help in the
source (a command's docstring, an option's help, the app's) appears word for word, and a line of it ends only
where the next word would not have fitted: no line cut short by a line break of the source, no words taken for
rich markup. Apart from that, no word cut off with "…" where a column is too narrow for it."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass

import pytest
from typer.main import get_command_name
from typer.models import ParameterInfo
from typer.testing import CliRunner

from ganrev.cli import app
from ganrev.cli.common import prose_help

WIDTHS = (80, 100, 120)  # the widths issue 35 named, and a wide terminal
BORDER = "│"  # a help panel's side
ELLIPSIS = "…"  # rich's end of a word too long for its column (no help text of ganrev's has one)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # in case the environment forces colour
COMMANDS = {get_command_name(info.name or info.callback.__name__): info for info in app.registered_commands}


def _paragraphs(text: str | None) -> list[str]:
    """The paragraphs of ``text`` as written, each as its words joined by single spaces."""
    return [" ".join(part.split()) for part in (text or "").split("\n\n") if part.strip()]


def _source_help(command: str | None) -> list[str]:
    """What the source says ``ganrev [command] --help`` shows: for the app, its help and each command's first
    paragraph; for a command, its docstring and the help of each of its options and arguments."""
    if command is None:
        return _paragraphs(app.info.help) + [_paragraphs(inspect.getdoc(info.callback))[0]
                                             for info in COMMANDS.values()]
    callback = COMMANDS[command].callback
    texts = _paragraphs(inspect.getdoc(callback))
    for parameter in inspect.signature(callback).parameters.values():
        if isinstance(parameter.default, ParameterInfo):
            texts += _paragraphs(parameter.default.help)
    return texts


def _render(command: str | None, width: int) -> list[str]:
    args = ([] if command is None else [command]) + ["--help"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": str(width)}, terminal_width=width)
    assert result.exit_code == 0, result.output
    return _ANSI.sub("", result.output).splitlines()


@dataclass(frozen=True)
class Piece:
    """The part of a paragraph on one rendered line, starting at column ``col``."""

    row: int
    col: int
    text: str
    breaks_between_words: bool  # False: the paragraph goes on inside a word folded onto the next line


def _follow(lines: list[str], start: int, col: int, text: str) -> list[Piece] | None:
    """``text`` rendered from ``lines[start][col]`` down the same column, or None if it is not there."""
    pieces: list[Piece] = []
    for row in range(start, len(lines)):
        segment = lines[row][col:].rstrip(" " + BORDER)
        if segment.startswith(text) and segment[len(text):len(text) + 1] in ("", " "):
            return pieces + [Piece(row, col, text, True)]
        if segment.endswith(ELLIPSIS) and text.startswith(segment[:-1]):  # left to test_no_word_is_cut_off
            pieces.append(Piece(row, col, segment, True))
            text = text[len(segment) - 1:].partition(" ")[2]
            if not text:
                return pieces
            continue
        if not segment or not text.startswith(segment):  # a line of a paragraph holds nothing else
            return None
        text = text[len(segment):]
        pieces.append(Piece(row, col, segment, text.startswith(" ")))
        text = text.removeprefix(" ")
    return None


def _placements(lines: list[str], text: str) -> list[list[Piece]]:
    """Every place ``text`` is rendered in ``lines``, as its pieces line by line."""
    head = text.split(" ")[0]
    found = []
    for row, line in enumerate(lines):
        for match in re.finditer(re.escape(head), line):
            col = match.start()
            if col == 0 or line[col - 1] == " ":
                pieces = _follow(lines, row, col, text)
                if pieces:
                    found.append(pieces)
    return found


def _room(line: str, width: int) -> int:
    """The column text may reach on a rendered line: one space inside a panel's right side, or inside the
    terminal's edge outside panels (rich pads both by one)."""
    return line.rindex(BORDER) - 1 if line.endswith(BORDER) else width - 1


def _cuts(lines: list[str], pieces: list[Piece], width: int) -> list[str]:
    """The lines of one rendered paragraph that end before the terminal made them: the next word would fit."""
    cuts = []
    for piece, following in zip(pieces, pieces[1:]):
        next_word = following.text.split(" ")[0]
        needed = len(piece.text) + (1 + len(next_word) if piece.breaks_between_words else 1)
        if piece.col + needed <= _room(lines[piece.row], width):
            cuts.append(f"{lines[piece.row].strip()!r} ends before {next_word!r}")
    return cuts


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_reads_as_written(command, width):
    lines = _render(command, width)
    shown = "\n".join(lines)
    texts = _source_help(command)
    assert texts
    for text in texts:
        placements = _placements(lines, text)
        assert placements, f"not shown word for word at {width} columns: {text!r}\n{shown}"
        cuts = [cut for pieces in placements for cut in _cuts(lines, pieces, width)]
        assert not cuts, f"cut short at {width} columns: {cuts}\n{shown}"


# At 80 columns rich cannot fit these commands' option tables (long option names beside a --no-... column): it
# shrinks the option-name and help columns to about 20 characters each and ends a longer word with "…"
# (--max-steps-per-epoch, reconstruction-trained, (bmshj2018-factorized),): typer's layout, not the help text's
# line breaks. Strict, so that a layout which fits them shows here.
CUT_OFF = {("fit-generator", 80), ("fit-baseline", 80)}


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_no_word_is_cut_off(command, width, request):
    if (command, width) in CUT_OFF:
        request.applymarker(pytest.mark.xfail(reason="rich ends words too long for the help column with …",
                                              strict=True))
    lines = _render(command, width)
    assert not [line for line in lines if ELLIPSIS in line], "\n".join(lines)


def test_prose_help_joins_a_paragraphs_lines_and_keeps_a_verbatim_block():
    text = "One paragraph\nover two lines.\n\nAnother,\n  indented.\n\n\b\nkept\n  as written"
    assert prose_help(text) == "One paragraph over two lines.\n\nAnother, indented.\n\n\b\nkept\n  as written"
