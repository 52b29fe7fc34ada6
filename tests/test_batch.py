"""ganrev.batch through the library, as a script would call it: the CLI's naming, no-clobber, skip and
atomic-write rules without the CLI (the CLI's own tests are test_cli_trust.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganrev.batch import (
    InputsRefused,
    Interrupted,
    compress_files,
    compress_targets,
    decompress_files,
    decompress_targets,
)
from ganrev.codecs.gan import GanCodec
from ganrev.errors import GanrevError
from ganrev.invert import SearchOptions
from ganrev.models import load_generator, save_generator
from ganrev.nets.dcgan import Generator, GeneratorConfig, init_weights

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def codec(tmp_path_factory: pytest.TempPathFactory) -> GanCodec:
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(latent_dim=8, channels=3, resolution=16, width=4))
    generator.apply(init_weights)
    path = tmp_path_factory.mktemp("gen") / "gen"
    save_generator(generator, path, {"dataset": "test"})
    search = SearchOptions(init="random", iters=2, restarts=1, pool=0)
    return GanCodec(load_generator(path), bits=6, search=search, refine_iters=1)


def _image(path: Path, size: int = 16, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_folder_compresses_and_decodes_through_the_library(codec: GanCodec, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    for k, name in enumerate(["a.png", "sub/b.png", "c.png"]):
        _image(inputs / name, seed=k)
    pairs = compress_targets([inputs], tmp_path / "out")
    assert [(s.relative_to(inputs).as_posix(), t.relative_to(tmp_path).as_posix()) for s, t in pairs] == [
        ("a.png", "out/a.grv"), ("c.png", "out/c.grv"), ("sub/b.png", "out/sub/b.grv")]
    groups: list[tuple[int, int]] = []
    report = compress_files(codec, pairs, group_size=2, on_group=lambda done, total: groups.append((done, total)))
    assert groups == [(2, 3), (3, 3)]  # written group by group
    assert [Path(row["output"]).name for row in report.rows] == ["a.grv", "c.grv", "b.grv"] and not report.skipped
    for row, (_, target) in zip(report.rows, pairs):
        assert row["bytes"] == len(target.read_bytes()) and 0 < row["ssim"] <= 1
    decoded = decompress_targets([t for _, t in pairs], tmp_path / "dec")
    written: list[Path] = []
    assert decompress_files(codec, decoded, on_file=lambda s, t, image: written.append(t)) == []
    assert written == [t for _, t in decoded] and all(t.is_file() for t in written)


def test_the_library_keeps_the_no_clobber_rules(codec: GanCodec, tmp_path: Path) -> None:
    source = _image(tmp_path / "a.png")
    pairs = compress_targets([source], None)
    compress_files(codec, pairs)
    before = _files(tmp_path)
    with pytest.raises(GanrevError, match=r"output exists: .*a\.grv \(--force overwrites\)"):
        compress_targets([source], None)
    with pytest.raises(GanrevError, match="one of the inputs"):
        compress_targets([source], source, force=True)
    assert compress_targets([source], None, force=True) == pairs
    assert _files(tmp_path) == before  # refusing touched nothing


def test_an_unusable_input_stops_the_batch_unless_keep_going(codec: GanCodec, tmp_path: Path) -> None:
    _image(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "broken.png").write_bytes(b"not a png")
    _image(tmp_path / "in" / "tiny.png", size=2)
    pairs = compress_targets([tmp_path / "in"], tmp_path / "out")
    with pytest.raises(InputsRefused, match="nothing was compressed"):
        compress_files(codec, pairs)
    assert not (tmp_path / "out").exists()
    report = compress_files(codec, pairs, keep_going=True)
    assert [Path(row["input"]).name for row in report.rows] == ["a.png"]
    assert len(report.skipped) == 2 and any("broken.png" in s for s in report.skipped)
    assert sorted(_files(tmp_path / "out")) == ["a.grv"]


def test_a_damaged_file_decodes_nothing_unless_keep_going(codec: GanCodec, tmp_path: Path) -> None:
    pairs = compress_targets([_image(tmp_path / "a.png"), _image(tmp_path / "b.png", seed=1)], None)
    compress_files(codec, pairs)
    damaged = tmp_path / "b.grv"
    damaged.write_bytes(damaged.read_bytes()[:-3])
    decoded = decompress_targets([t for _, t in pairs], tmp_path / "dec")
    with pytest.raises(GanrevError, match="nothing was decoded"):
        decompress_files(codec, decoded, explain=lambda exc: " [explained]")
    assert not (tmp_path / "dec").exists()
    skipped = decompress_files(codec, decoded, keep_going=True)
    assert len(skipped) == 1 and "b.grv" in skipped[0]
    assert sorted(_files(tmp_path / "dec")) == ["a.png"]


def test_an_interrupted_batch_lists_the_files_it_wrote(codec: GanCodec, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = compress_targets([_image(tmp_path / f"{k}.png", seed=k) for k in range(3)], None)
    real, calls = GanCodec.compress, []

    def second_group_interrupted(self: GanCodec, images: list) -> list:
        calls.append(len(images))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, images)

    monkeypatch.setattr(GanCodec, "compress", second_group_interrupted)
    with pytest.raises(Interrupted) as interrupted:
        compress_files(codec, pairs, group_size=2)
    assert interrupted.value.done == [t for _, t in pairs[:2]] and interrupted.value.total == 3
    assert "2 of 3 outputs were written" in interrupted.value.report()
    assert not pairs[2][1].exists()
