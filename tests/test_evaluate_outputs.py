"""ganrev.evaluate.outputs: the table's output files, refused before any search."""

from __future__ import annotations

from pathlib import Path

import pytest

from ganrev.errors import GanrevError
from ganrev.evaluate.outputs import TableOutputs


def test_the_curves_bring_their_json_and_compressai_folder(tmp_path: Path) -> None:
    outputs = TableOutputs(json=tmp_path / "t.json", curves=tmp_path / "rd.png")
    assert outputs.files() == [tmp_path / "t.json", tmp_path / "rd.png", tmp_path / "rd.json", tmp_path / "rd.md"]
    assert outputs.compressai_dir == tmp_path / "rd-compressai"
    assert TableOutputs(markdown=tmp_path / "t.md").compressai_dir is None
    outputs.check(force=False)


def test_existing_files_and_folders_are_refused_without_force(tmp_path: Path) -> None:
    (tmp_path / "rd.json").write_text("{}")
    with pytest.raises(GanrevError, match="output exists: .*rd.json"):
        TableOutputs(curves=tmp_path / "rd.png").check(force=False)
    TableOutputs(curves=tmp_path / "rd.png").check(force=True)
    (tmp_path / "b-compressai").mkdir()
    (tmp_path / "b-compressai" / "x.json").write_text("{}")
    with pytest.raises(GanrevError, match="not empty"):
        TableOutputs(curves=tmp_path / "b.png").check(force=False)
    (tmp_path / "c-compressai").write_text("a file")
    with pytest.raises(GanrevError, match="is not a folder"):
        TableOutputs(curves=tmp_path / "c.png").check(force=True)


def test_the_grid_must_be_a_png(tmp_path: Path) -> None:
    with pytest.raises(GanrevError, match="must end in .png"):
        TableOutputs(grid=tmp_path / "grid.jpg").check(force=False)
