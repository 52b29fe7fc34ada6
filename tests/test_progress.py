"""Progress bars (ganrev.progress): drawn only when asked for and on a terminal."""

from __future__ import annotations

import io

from ganrev.progress import progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_is_drawn_only_when_asked_for_on_a_terminal() -> None:
    for stream, show, drawn in ((Terminal(), True, True), (io.StringIO(), True, False), (Terminal(), False, False)):
        assert list(progress_bar(range(3), "steps", show, file=stream)) == [0, 1, 2]  # every item, bar or not
        assert ("steps" in stream.getvalue()) == drawn
