"""Fixtures shared by several test modules."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import skimage.data
import torch
from typer.testing import CliRunner

from ganrev.cli import app
from ganrev.io import from_uint8, resize, save_image
from ganrev.models import save_generator
from ganrev.nets.dcgan import Generator, GeneratorConfig, init_weights


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: threads only add overhead (3x slower on a busy 2-core machine). Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- the evaluation tests' tiny generator, photos and one `ganrev table` run (test_evaluate_*.py) ------------

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")  # scikit-image's bundled photos, shrunk to 64x64


@pytest.fixture(scope="session")
def generator_dir(tmp_path_factory) -> Path:
    """An untrained width-8 generator checkpoint without an encoder (so the search starts from a pool)."""
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(width=8))
    generator.apply(init_weights)
    path = tmp_path_factory.mktemp("gen")
    save_generator(generator, path, {"dataset": "test"})
    return path


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for name in PHOTOS:
        save_image(resize(from_uint8(getattr(skimage.data, name)()), 64, 64), folder / f"{name}.png")
    return folder


@dataclass(frozen=True)
class TableRun:
    output: str  # what the command printed
    out: Path  # the folder of its output files: t.json, t.csv, t.md, grid.png, speed.png, curves.png, curves-compressai/...
    grid_images: int


@pytest.fixture(scope="session")
def table_run(generator_dir, image_dir, tmp_path_factory) -> TableRun:
    """`ganrev table --limit 4 --iters 50` with every output file, run once for the table and curves tests
    (about 40 s). The grid overwrites a file already there (``--force``)."""
    out = tmp_path_factory.mktemp("out")
    (out / "grid.png").write_bytes(b"an older grid")
    grid_images = 2
    args = ["table", "--generator", str(generator_dir), "--images", str(image_dir), "--limit", "4", "--iters", "50",
            "--restarts", "2", "--bits", "6", "--seed", "0", "--device", "cpu", "--json", str(out / "t.json"),
            "--csv", str(out / "t.csv"), "--md", str(out / "t.md"), "--curves-out", str(out / "curves.png"),
            "--grid", str(out / "grid.png"), "--grid-images", str(grid_images), "--speed", str(out / "speed.png"),
            "--force", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return TableRun(result.output, out, grid_images)
