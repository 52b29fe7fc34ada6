"""The results table (ganrev.evaluate.table, `ganrev table`): rows, outputs, the image grid, rate matching,
compared generators and learned rows, and the errors found before any work; on a tiny untrained generator
(conftest.py)."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import ganrev.evaluate
from ganrev.codecs.classical import (
    DOWNSCALE_FACTORS,
    AVIFCodec,
    DownscaledWebPCodec,
    JPEGCodec,
    KMeansCodec,
    PNGCodec,
    WebPCodec,
    avif_available,
)
from ganrev.cli import app, main
from ganrev.errors import GanrevError
from ganrev.evaluate import (
    GRID_CAPTION_HEIGHT,
    GRID_GAP,
    GRID_LABEL_WIDTH,
    RECORD_FIELDS,
    TABLE_COLUMNS,
    EvalOptions,
    GridImages,
    TableResult,
    display_path,
    evaluate,
    run_curves,
    run_table,
    summarise,
    write_table_grid,
)
from ganrev.invert import DEFAULT_EFFORT, default_search
from ganrev.io import load_image, to_uint8
from ganrev.models import load_generator, save_generator
from ganrev.nets.dcgan import Encoder, Generator, GeneratorConfig, init_weights

BASE_ROWS = ["PNG", "K-means (K=4)", "JPEG (10%)", "JPEG (1%)"]


def gan_scheme(out: Path) -> str:
    """The GAN-reversal row's name: the generator directory's name in brackets."""
    meta = json.loads((out / "t.json").read_text())["metadata"]
    return f"GAN reversal ({Path(meta['generator']['path']).name})"


def _table_lines(text: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|")]


def test_cli_prints_all_rows_and_columns(table_run):
    output, out = table_run.output, table_run.out
    lines = _table_lines(output)
    assert lines[0] == list(TABLE_COLUMNS)
    schemes = [line[0] for line in lines[2:]]
    assert schemes[:4] == BASE_ROWS
    assert schemes[4].startswith("WebP (") and schemes[4].endswith("at GAN rate")
    assert "WebP" in schemes[5] and "downscaled" in schemes[5] and schemes[5].endswith("at GAN rate")
    if avif_available():
        assert schemes[6].startswith("AVIF (")
    assert schemes[-1] == gan_scheme(out)
    assert len(schemes) == (8 if avif_available() else 7)
    png = lines[2]
    assert png[1:] and png[3] == "∞" and float(png[4]) == 0 and float(png[5]) == 1 and float(png[2]) == 1.0
    assert all(len(line) == len(TABLE_COLUMNS) for line in lines)
    assert all(float(line[7]) >= 0 for line in lines[2:]) and float(png[7]) == 0  # the shipped LPIPS weights
    assert f"Matched rate ({gan_scheme(out)}" in output and "SSIM GAN − JPEG" in output and "SSIM GAN − WebP" in output
    assert "SSIM GAN − WebP downscaled" in output
    for name in ("t.json", "t.csv", "t.md", "grid.png", "curves.png", "curves.json"):
        assert f"wrote {out / name}" in output


def test_json_and_csv_parse(table_run):
    out = table_run.out
    data = json.loads((out / "t.json").read_text())  # strict: non-finite numbers are strings
    summary = {row["scheme"]: row for row in data["summary"]}
    assert list(summary)[:4] == BASE_ROWS and list(summary)[-1] == gan_scheme(out)
    png = summary["PNG"]
    assert png["ssim"] == 1.0 and png["ms_ssim"] == 1.0 and png["mse"] == 0.0 and png["psnr"] == "inf"
    assert png["cr"] == 1.0 and png["lpips"] == 0.0
    gan = summary[gan_scheme(out)]
    assert gan["cr"] == pytest.approx(png["bytes"] / gan["bytes"])
    assert all(gan[key] is not None for key in ("ssim_latent", "ssim_quantized", "ssim_refined"))
    meta = data["metadata"]
    assert meta["images"] == 4 and meta["settings"]["search"]["iters"] == 50 and meta["settings"]["bits"] == 6
    assert meta["generator"]["fingerprint"] == load_generator(meta["generator"]["path"]).fingerprint
    assert meta["generator"]["dataset"] == "test" and meta["lpips"]["available"] is True and meta["wall_s"] > 0
    assert meta["versions"]["torch"] == torch.__version__ and meta["device"]
    per_image = data["per_image"]
    assert len(per_image) == 4 * (len(summary) + 1)  # table rows + the rate-matched JPEG
    with open(out / "t.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == RECORD_FIELDS and len(rows) == len(per_image)
    for row, record in zip(rows, per_image):
        assert row["scheme"] == record["scheme"] and int(row["bytes"]) == record["bytes"]
        assert float(row["ssim"]) == pytest.approx(record["ssim"])
    assert {float(r["psnr"]) for r in rows if r["scheme"] == "PNG"} == {math.inf}
    assert f"| {gan_scheme(out)} |" in (out / "t.md").read_text()


def _codec_for(scheme: str, rate_match: dict):
    fixed = {"PNG": PNGCodec(), "K-means (K=4)": KMeansCodec(4, seed=0), "JPEG (10%)": JPEGCodec(10),
             "JPEG (1%)": JPEGCodec(1)}
    if scheme in fixed:
        return fixed[scheme]
    for key, factory in (("webp", WebPCodec), ("avif", AVIFCodec), ("jpeg", JPEGCodec)):
        if key in rate_match and scheme == rate_match[key]["scheme"]:
            return factory(rate_match[key]["quality"])
    downscaled = rate_match["webp_downscaled"]
    if scheme == downscaled["scheme"]:
        return DownscaledWebPCodec(downscaled["quality"], downscaled["scale"])
    raise AssertionError(f"unexpected scheme {scheme}")


def test_baseline_bpp_is_the_bytes_of_a_re_encoding(table_run, image_dir):
    out = table_run.out
    data = json.loads((out / "t.json").read_text())
    for record in data["per_image"]:
        image = load_image(image_dir / record["image"])
        pixels = image.shape[1] * image.shape[2]
        assert record["bpp"] == record["bytes"] * 8 / pixels
        if record["scheme"].startswith("GAN reversal"):
            continue
        codec = _codec_for(record["scheme"], data["rate_match"])
        assert len(codec.encode(image)) == record["bytes"], record["scheme"]


def test_matched_rate_is_the_closest_in_the_sweep(table_run):
    out = table_run.out
    data = json.loads((out / "t.json").read_text())
    match = data["rate_match"]
    target = match["target_bpp"]
    gan_rows = [r for r in data["per_image"] if r["scheme"] == gan_scheme(out)]
    assert target == pytest.approx(sum(r["bpp"] for r in gan_rows) / len(gan_rows))
    for key in ("jpeg", "webp", "webp_downscaled") + (("avif",) if avif_available() else ()):
        sweep = {int(q): bpp for q, bpp in match[key]["sweep"].items()}
        assert len(sweep) >= 20
        assert abs(match[key]["bpp"] - target) == min(abs(b - target) for b in sweep.values())
        assert match[key]["bpp"] == sweep[match[key]["quality"]]
        rows = [r for r in data["per_image"] if r["scheme"] == match[key]["scheme"]]
        assert len(rows) == 4 and sum(r["bpp"] for r in rows) / 4 == pytest.approx(match[key]["bpp"])
        assert match[key]["ssim_gap"] == pytest.approx(match["gan_ssim"] - match[key]["ssim"])


def test_downscaled_webp_row_takes_the_scale_closest_to_the_gan_rate(table_run):
    out = table_run.out
    data = json.loads((out / "t.json").read_text())
    match, target = data["rate_match"]["webp_downscaled"], data["rate_match"]["target_bpp"]
    by_scale = {int(s): m for s, m in match["by_scale"].items()}
    assert set(by_scale) == set(DOWNSCALE_FACTORS) and match["scale"] in by_scale
    assert by_scale[match["scale"]]["quality"] == match["quality"] and by_scale[match["scale"]]["bpp"] == match["bpp"]
    assert abs(match["bpp"] - target) == min(abs(m["bpp"] - target) for m in by_scale.values())
    for m in by_scale.values():
        sweep = {int(q): bpp for q, bpp in m["sweep"].items()}
        assert abs(m["bpp"] - target) == min(abs(b - target) for b in sweep.values())
    row = next(r for r in data["summary"] if r["scheme"] == match["scheme"])
    assert "WebP" in row["scheme"] and "downscaled" in row["scheme"] and row["role"] == "row"
    assert row["ssim"] == pytest.approx(match["ssim"])


def test_grid_shows_originals_and_every_row_at_its_table_rate(table_run, image_dir):
    out = table_run.out
    data = json.loads((out / "t.json").read_text())
    rows = [r["scheme"] for r in data["summary"]]
    tile = 128  # 64x64 images, enlarged 2x
    with Image.open(out / "grid.png") as img:
        assert img.format == "PNG"
        assert img.size == (GRID_LABEL_WIDTH + table_run.grid_images * (tile + GRID_GAP),
                            GRID_GAP + (1 + len(rows)) * (tile + GRID_CAPTION_HEIGHT + GRID_GAP))
        grid = np.asarray(img.convert("RGB"))
    names = sorted(p.name for p in image_dir.iterdir())[:table_run.grid_images]

    def tile_at(row: int, column: int) -> np.ndarray:
        top = GRID_GAP + row * (tile + GRID_CAPTION_HEIGHT + GRID_GAP)
        left = GRID_LABEL_WIDTH + column * (tile + GRID_GAP)
        return grid[top:top + tile, left:left + tile]

    original = np.asarray(Image.open(image_dir / names[1]).convert("RGB").resize((tile, tile), Image.NEAREST))
    np.testing.assert_array_equal(tile_at(0, 1), original)  # the originals' row
    np.testing.assert_array_equal(tile_at(1 + rows.index("PNG"), 1), original)  # lossless: the same pixels
    assert not np.array_equal(tile_at(1 + rows.index("JPEG (1%)"), 1), original)


def _baseline_table(images: list[torch.Tensor], grid_images: int) -> TableResult:
    """A table of PNG and JPEG rows only (no search), keeping the first ``grid_images`` images for a grid."""
    names = [f"image{k}.png" for k in range(len(images))]
    grid = GridImages(names[:grid_images], images[:grid_images]) if grid_images else None
    records = evaluate(images, [PNGCodec(), JPEGCodec(10)], names=names, grid=grid)
    return TableResult(records, summarise(records), {}, {}, names, grid=grid)


def test_grid_of_mixed_sizes_and_channels(tmp_path):
    """Tiles take the largest width and height, enlarged by one whole factor; gray shows as gray."""
    gray, colour, unseen = torch.rand(1, 32, 32), torch.rand(3, 40, 48), torch.rand(3, 200, 200)
    write_table_grid(_baseline_table([gray, colour, unseen], grid_images=2), tmp_path / "g.png")
    factor = math.ceil(128 / 48)  # the largest side shown, not the unseen 200
    with Image.open(tmp_path / "g.png") as img:
        assert img.size == (GRID_LABEL_WIDTH + 2 * (factor * 48 + GRID_GAP),
                            GRID_GAP + 3 * (factor * 40 + GRID_CAPTION_HEIGHT + GRID_GAP))
        grid = np.asarray(img.convert("RGB"))
    top, left = GRID_GAP + (factor * 40 - factor * 32) // 2, GRID_LABEL_WIDTH + (factor * 48 - factor * 32) // 2
    tile = grid[top:top + factor * 32, left:left + factor * 32]
    expected = np.asarray(Image.fromarray(to_uint8(gray)).resize((factor * 32,) * 2, Image.NEAREST).convert("RGB"))
    np.testing.assert_array_equal(tile, expected)


def test_grid_keeps_only_the_images_shown():
    table = _baseline_table([torch.rand(3, 16, 16) for _ in range(5)], grid_images=2)
    assert table.grid is not None and set(table.grid.decoded) == {"PNG", "JPEG (10%)"}
    assert all(set(images) == {"image0.png", "image1.png"} for images in table.grid.decoded.values())


def test_grid_needs_a_table_that_kept_images(tmp_path):
    with pytest.raises(GanrevError, match="grid_images"):
        write_table_grid(_baseline_table([torch.rand(3, 16, 16)], grid_images=0), tmp_path / "g.png")
    assert not (tmp_path / "g.png").exists()


def test_table_without_heldout_folder_explains(generator_dir):
    result = CliRunner().invoke(app, ["table", "--generator", str(generator_dir), "--no-progress"])
    assert result.exit_code != 0
    assert isinstance(result.exception, GanrevError) and "heldout" in str(result.exception)


def test_table_compares_generators_and_records_relative_paths(generator_dir, image_dir, tmp_path):
    """--compare adds one GAN-reversal row per generator; settings follow compress's defaults per generator."""
    torch.manual_seed(1)
    other = tmp_path / "other-gen"
    generator = Generator(GeneratorConfig(width=8))
    generator.apply(init_weights)
    encoder = Encoder(GeneratorConfig(width=8))
    encoder.apply(init_weights)
    save_generator(generator, other, {"dataset": "test"}, encoder=encoder)
    options = EvalOptions(search_overrides=(("iters", 3),), limit=2, device="cpu", compare=(other,), rate_step=20,
                          refine_iters=1)
    result = run_table(generator_dir, image_dir, options)
    schemes = [row["scheme"] for row in result.summary]
    assert schemes[-2:] == [f"GAN reversal ({generator_dir.name})", "GAN reversal (other-gen)"]
    assert result.rate_match["gan_scheme"] == schemes[-2]
    assert options.search_for(load_generator(other)).init == "encoder"  # each generator gets its own default start
    assert options.search_for(load_generator(generator_dir)).init == "pool"
    assert result.metadata["compared_generators"][0]["fingerprint"] == load_generator(other).fingerprint
    assert display_path(Path(__file__)) == "tests/test_evaluate_table.py"  # inside the repository: relative
    assert display_path(tmp_path) == str(tmp_path)  # outside: as given


# --- `ganrev table --grid`: refused before any work ------------------------------------------------------


@pytest.fixture
def no_table(monkeypatch):
    """Fail the test if the table starts: these errors must be found before its minutes of work."""
    def refuse(*args, **kwargs):
        raise AssertionError("the table ran before the error was found")
    monkeypatch.setattr(ganrev.evaluate, "run_table", refuse)


def _table_error(capsys, generator_dir, image_dir, *args: str) -> str:
    """Run ``ganrev table ... ARGS``; assert exit 2 with one line ``ganrev: error: ...``, and return it."""
    with pytest.raises(SystemExit) as exited:
        main(["table", "--generator", str(generator_dir), "--images", str(image_dir), "--no-progress", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert exited.value.code == 2 and len(err) == 1 and err[0].startswith("ganrev: error: "), err
    return err[0]


def test_grid_refuses_to_overwrite_without_force(capsys, generator_dir, image_dir, tmp_path, no_table):
    existing = tmp_path / "grid.png"
    existing.write_bytes(b"keep me")
    line = _table_error(capsys, generator_dir, image_dir, "--grid", str(existing))
    assert "output exists" in line and "--force" in line
    assert existing.read_bytes() == b"keep me"


@pytest.mark.parametrize("option", ["--json", "--csv", "--md", "--curves-out"])
def test_every_table_output_refuses_to_overwrite_without_force(capsys, generator_dir, image_dir, tmp_path, no_table,
                                                               option):
    existing = tmp_path / "out.png"
    existing.write_bytes(b"keep me")
    line = _table_error(capsys, generator_dir, image_dir, option, str(existing))
    assert "output exists" in line and "--force" in line
    assert existing.read_bytes() == b"keep me"


def test_curves_refuse_a_compressai_folder_with_files_without_force(capsys, generator_dir, image_dir, tmp_path,
                                                                   no_table):
    kept = tmp_path / "curves-compressai" / "jpeg.json"
    kept.parent.mkdir()
    kept.write_text("keep me")
    line = _table_error(capsys, generator_dir, image_dir, "--curves-out", str(tmp_path / "curves.png"))
    assert "curves-compressai" in line and "--force" in line
    assert kept.read_text() == "keep me"
    (tmp_path / "other-compressai").write_text("a file")
    line = _table_error(capsys, generator_dir, image_dir, "--curves-out", str(tmp_path / "other.png"), "--force")
    assert "not a folder" in line


def test_two_table_outputs_may_not_share_a_file(capsys, generator_dir, image_dir, tmp_path, no_table):
    line = _table_error(capsys, generator_dir, image_dir, "--json", str(tmp_path / "t"), "--md", str(tmp_path / "t"))
    assert "named for two outputs" in line


@pytest.mark.parametrize(("name", "fragment"), [("grid.jpg", "must end in .png"), ("grid", "must end in .png"),
                                                ("a-file.png/grid.png", "not a directory"),
                                                ("a-folder.png", "is a directory")])
def test_grid_refuses_a_bad_path(capsys, generator_dir, image_dir, tmp_path, no_table, name, fragment):
    (tmp_path / "a-file.png").write_bytes(b"")
    (tmp_path / "a-folder.png").mkdir()
    line = _table_error(capsys, generator_dir, image_dir, "--grid", str(tmp_path / name), "--force")
    assert fragment in line


def test_grid_images_must_be_positive_and_need_grid(capsys, generator_dir, image_dir, tmp_path, no_table):
    assert "--grid-images" in _table_error(capsys, generator_dir, image_dir, "--grid", str(tmp_path / "g.png"),
                                           "--grid-images", "0")
    assert "needs --grid" in _table_error(capsys, generator_dir, image_dir, "--grid-images", "3")


def test_table_and_curves_carry_the_learned_baselines(generator_dir, image_dir):
    """Learned rows follow the classical ones: JPEG rates unchanged (ARCNN's bytes are JPEG's), its own names;
    the curves get their sweeps only for a generator trained on the models' data (here 'test': none)."""
    options = EvalOptions(search_overrides=(("iters", 2),), limit=2, device="cpu", rate_step=50, refine_iters=0,
                          learned=("arcnn:10", "comcnn:10"))
    result = run_table(generator_dir, image_dir, options)
    rows = {row["scheme"]: row for row in result.summary}
    assert [row["scheme"] for row in result.summary][:6] == BASE_ROWS + ["JPEG (10%) + ARCNN-ASPP",
                                                                          "ComCNN/RecCNN (JPEG q10)"]
    assert rows["JPEG (10%) + ARCNN-ASPP"]["bytes"] == rows["JPEG (10%)"]["bytes"]
    assert list(result.metadata["settings"]["learned"]) == ["arcnn:10", "comcnn:10"]
    assert EvalOptions().learned_specs(load_generator(generator_dir)) == []
    curves = run_curves(generator_dir, image_dir, replace(options, jpeg_qualities=(10,), webp_qualities=(),
                                                           avif_qualities=(), bits_list=(4,), learned=None,
                                                           reference_bpp=()))
    assert {point["series"] for point in curves.points} == {"JPEG", "GAN reversal (bits)"}


def test_table_learned_option_is_checked_before_any_work(generator_dir, image_dir, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("run_table must not start")

    monkeypatch.setattr(ganrev.evaluate, "run_table", refuse)
    for spec, message in (("arcnn:37", "no shipped ARCNN model for JPEG quality 37"), ("vdsr:3", "unknown")):
        result = CliRunner().invoke(app, ["table", "-g", str(generator_dir), "--images", str(image_dir),
                                          "--learned", spec, "--no-progress"])
        assert isinstance(result.exception, GanrevError) and message in str(result.exception)


# --- `ganrev table --effort/--efforts` ------------------------------------------------------------------------


def test_table_efforts_give_a_named_gan_row_each(generator_dir, image_dir, tmp_path):
    """--efforts 0,1: two GAN-reversal rows, named with their effort, the first searched not at all (the best pool
    sample, unrefined) and the one the rates are matched to."""
    out = tmp_path / "t.json"
    result = CliRunner().invoke(app, ["table", "-g", str(generator_dir), "--images", str(image_dir), "--limit", "2",
                                      "--efforts", "0,1", "--restarts", "1", "--device", "cpu", "--learned", "none",
                                      "--json", str(out), "--no-progress"])
    assert result.exit_code == 0, (result.output, result.exception)
    table = json.loads(out.read_text())
    names = [f"GAN reversal ({generator_dir.name}, effort {effort})" for effort in (0, 1)]
    assert [row["scheme"] for row in table["summary"]][-2:] == names
    iterations = {name: [r["iterations"] for r in table["per_image"] if r["scheme"] == name] for name in names}
    assert iterations[names[0]] == [0, 0] and all(0 < n <= 30 for n in iterations[names[1]])
    assert table["rate_match"]["gan_scheme"] == names[0] and list(table["metadata"]["settings"]["efforts"]) == [0, 1]
    assert table["metadata"]["settings"]["search"]["iters"] == 0  # the first effort's search


def test_table_effort_sets_every_gan_rows_search_and_keeps_its_name(generator_dir):
    checkpoint = load_generator(generator_dir)
    options = EvalOptions(efforts=(1,))
    assert options.search_for(checkpoint) == default_search(False, effort=1)
    assert options.gan_label(checkpoint, 1) == f"GAN reversal ({generator_dir.name})"
    assert EvalOptions().efforts == (DEFAULT_EFFORT,)


@pytest.mark.parametrize("args,fragment", [
    (["--effort", "-1"], "invalid --effort -1"), (["--effort", "7"], "invalid --effort 7"),
    (["--efforts", "0,7"], "invalid --effort 7"), (["--efforts", "0,x"], "invalid --efforts '0,x'"),
    (["--efforts", "1,1"], "invalid --efforts '1,1'"), (["--effort", "1", "--efforts", "0,1"], "give one of them"),
])
def test_table_bad_efforts_are_one_line_errors_before_any_work(capsys, generator_dir, image_dir, no_table, args,
                                                               fragment):
    assert fragment in _table_error(capsys, generator_dir, image_dir, *args)
