"""Progress bars: on stderr when asked for *and* stderr is a terminal.

A run under nohup, CI or a pipe then logs its result lines (``tqdm.write``: every epoch's figures, the files
written), not thousands of redrawn bars: a 60-epoch CPU training log was 480 kB of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tqdm import tqdm


def progress_bar(iterable: Iterable[Any], desc: str, show: bool, **options: Any) -> tqdm:
    """``tqdm(iterable)`` that leaves no line behind, drawn only when ``show`` and its file (stderr unless
    ``file=`` is given) is a terminal: tqdm's ``disable=None``."""
    return tqdm(iterable, desc=desc, disable=None if show else True, leave=False, dynamic_ncols=True, **options)
