"""The files ``ganrev table`` writes: checked together before any search starts, written together after it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ganrev.batch import check_outputs
from ganrev.errors import GanrevError
from ganrev.evaluate.curves import (
    plot_curves,
    run_curves,
    write_compressai_results,
    write_curves_json,
    write_curves_markdown,
)
from ganrev.evaluate.runs import EvalOptions
from ganrev.evaluate.speed import write_speed_plot
from ganrev.evaluate.table import (
    TableResult,
    write_table_csv,
    write_table_grid,
    write_table_json,
    write_table_markdown,
)


@dataclass(frozen=True)
class TableOutputs:
    """Where a table run's results go; None: not written. ``curves`` is the curves' PNG: its points go beside
    it as ``.json`` and in CompressAI's results layout in ``<name>-compressai/``. ``speed``: the speed plot's PNG
    (:mod:`ganrev.evaluate.speed`)."""

    json: Path | None = None
    csv: Path | None = None
    markdown: Path | None = None
    grid: Path | None = None
    curves: Path | None = None
    speed: Path | None = None

    @property
    def compressai_dir(self) -> Path | None:
        return None if self.curves is None else self.curves.with_name(f"{self.curves.stem}-compressai")

    def files(self) -> list[Path]:
        """Every file named up front (the CompressAI folder's files are named by the curves' series)."""
        named = [path for path in (self.json, self.csv, self.markdown, self.grid, self.curves, self.speed)
                 if path is not None]
        return named + ([self.curves.with_suffix(".json"), self.curves.with_suffix(".md")]
                        if self.curves is not None else [])

    def check(self, force: bool) -> None:
        """Refuse now rather than after minutes of searching: names, existing files (without ``force``), folders."""
        for option, path in (("--grid", self.grid), ("--speed", self.speed)):
            if path is not None and path.suffix.lower() != ".png":
                raise GanrevError(f"{option} {path}: it is written as PNG, so its name must end in .png")
        check_outputs([(None, path) for path in self.files()], force, "table")
        folder = self.compressai_dir
        if folder is None:
            return
        if folder.exists() and not folder.is_dir():
            raise GanrevError(f"{folder} (the curves in CompressAI's layout) exists and is not a folder")
        if folder.is_dir() and any(folder.iterdir()) and not force:
            raise GanrevError(f"output folder exists and is not empty: {folder} (--force overwrites its files)")

    def write(self, result: TableResult, generator: str | os.PathLike[str],
              images_dir: str | os.PathLike[str] | None, options: EvalOptions) -> list[Path]:
        """Write every named output (the curves run their sweeps here, re-using the table's latent search);
        returns the files written."""
        written = []
        for path, write in ((self.json, write_table_json), (self.csv, lambda r, p: write_table_csv(r.records, p)),
                            (self.markdown, write_table_markdown), (self.grid, write_table_grid)):
            if path is not None:
                write(result, path)
                written.append(path)
        if self.speed is not None:
            meta = result.metadata
            write_speed_plot(result.summary, self.speed, f"Speed against quality on {meta['images']} images "
                             f"({meta['images_dir']}), one table run; {meta['device']}")
            written.append(self.speed)
        if self.curves is not None and self.compressai_dir is not None:
            points = run_curves(generator, images_dir, options, search=result.search)
            plot_curves(points, self.curves)
            write_curves_json(points, self.curves.with_suffix(".json"))
            write_curves_markdown(points, self.curves.with_suffix(".md"))  # the BD-rate tables
            written += [self.curves, self.curves.with_suffix(".json"), self.curves.with_suffix(".md")]
            written += write_compressai_results(points, self.compressai_dir)
        return written
