"""The results table and rate-distortion curves (ganrev.evaluate, `ganrev table`), on a tiny untrained generator."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import skimage.data
import torch
from PIL import Image
from typer.testing import CliRunner

from ganrev.baselines import AVIFCodec, JPEGCodec, KMeansCodec, PNGCodec, WebPCodec, avif_available
from ganrev.cli import app
from ganrev.codec import GanCodec
from ganrev.errors import GanrevError
from ganrev.evaluate import (
    RECORD_FIELDS,
    TABLE_COLUMNS,
    EvalOptions,
    display_path,
    run_table,
    evaluate,
    load_image_folder,
    markdown_table,
    match_rate,
    search_latents,
    summarise,
)
from ganrev.invert import SearchOptions
from ganrev.io import from_uint8, load_image, resize, save_image
from ganrev.models import Encoder, Generator, GeneratorConfig, init_weights, load_generator, save_generator

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
BASE_ROWS = ["PNG", "K-means (K=4)", "JPEG (10%)", "JPEG (1%)"]


@pytest.fixture(scope="module")
def generator_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(width=8))
    generator.apply(init_weights)
    path = tmp_path_factory.mktemp("gen")
    save_generator(generator, path, {"dataset": "test"})
    return path


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for name in PHOTOS:
        save_image(resize(from_uint8(getattr(skimage.data, name)()), 64, 64), folder / f"{name}.png")
    return folder


@pytest.fixture(scope="module")
def table_run(generator_dir, image_dir, tmp_path_factory):
    """`ganrev table --limit 4 --iters 50` with every output file, run once for the module."""
    out = tmp_path_factory.mktemp("out")
    args = ["table", "--generator", str(generator_dir), "--images", str(image_dir), "--limit", "4", "--iters", "50",
            "--restarts", "2", "--bits", "6", "--seed", "0", "--device", "cpu", "--json", str(out / "t.json"),
            "--csv", str(out / "t.csv"), "--md", str(out / "t.md"), "--curves-out", str(out / "curves.png"),
            "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output, out


def gan_scheme(out: Path) -> str:
    """The GAN-reversal row's name: the generator directory's name in brackets."""
    meta = json.loads((out / "t.json").read_text())["metadata"]
    return f"GAN reversal ({Path(meta['generator']['path']).name})"


def _table_lines(text: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|")]


def test_cli_prints_all_rows_and_columns(table_run):
    output, out = table_run
    lines = _table_lines(output)
    assert lines[0] == list(TABLE_COLUMNS)
    schemes = [line[0] for line in lines[2:]]
    assert schemes[:4] == BASE_ROWS
    assert schemes[4].startswith("WebP (") and schemes[4].endswith("at GAN rate")
    if avif_available():
        assert schemes[5].startswith("AVIF (")
    assert schemes[-1] == gan_scheme(out)
    assert len(schemes) == (7 if avif_available() else 6)
    png = lines[2]
    assert png[1:] and png[3] == "∞" and float(png[4]) == 0 and float(png[5]) == 1 and float(png[2]) == 1.0
    assert all(len(line) == len(TABLE_COLUMNS) for line in lines)
    assert all(float(line[7]) >= 0 for line in lines[2:]) and float(png[7]) == 0  # the shipped LPIPS weights
    assert f"Matched rate ({gan_scheme(out)}" in output and "SSIM GAN − JPEG" in output and "SSIM GAN − WebP" in output
    for name in ("t.json", "t.csv", "t.md", "curves.png", "curves.json"):
        assert f"wrote {out / name}" in output


def test_json_and_csv_parse(table_run):
    _, out = table_run
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
    raise AssertionError(f"unexpected scheme {scheme}")


def test_baseline_bpp_is_the_bytes_of_a_re_encoding(table_run, image_dir):
    _, out = table_run
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
    _, out = table_run
    data = json.loads((out / "t.json").read_text())
    match = data["rate_match"]
    target = match["target_bpp"]
    gan_rows = [r for r in data["per_image"] if r["scheme"] == gan_scheme(out)]
    assert target == pytest.approx(sum(r["bpp"] for r in gan_rows) / len(gan_rows))
    for key in ("jpeg", "webp") + (("avif",) if avif_available() else ()):
        sweep = {int(q): bpp for q, bpp in match[key]["sweep"].items()}
        assert len(sweep) >= 20
        assert abs(match[key]["bpp"] - target) == min(abs(b - target) for b in sweep.values())
        assert match[key]["bpp"] == sweep[match[key]["quality"]]
        rows = [r for r in data["per_image"] if r["scheme"] == match[key]["scheme"]]
        assert len(rows) == 4 and sum(r["bpp"] for r in rows) / 4 == pytest.approx(match[key]["bpp"])
        assert match[key]["ssim_gap"] == pytest.approx(match["gan_ssim"] - match[key]["ssim"])


def test_curves_png_and_points(table_run):
    _, out = table_run
    with Image.open(out / "curves.png") as img:
        assert img.format == "PNG" and img.width > 400
    points = json.loads((out / "curves.json").read_text())["points"]
    jpeg = sorted((p for p in points if p["series"] == "JPEG"), key=lambda p: p["value"])
    assert [p["value"] for p in jpeg] == [1, 2, 3, 5, 8, 10, 15, 20, 30, 50, 75]
    assert all(a["bpp"] <= b["bpp"] for a, b in zip(jpeg, jpeg[1:]))
    assert jpeg[-1]["ssim"] > jpeg[0]["ssim"]
    gan = [p for p in points if p["series"] == "GAN reversal (bits)"]
    assert [p["value"] for p in gan] == [2, 3, 4, 5, 6, 8]
    assert gan[0]["bpp"] < gan[-1]["bpp"]
    assert any(p["series"] == "WebP" for p in points)


def test_compress_latents_reuses_one_search_exactly(generator_dir, image_dir):
    """compress == search + compress_latents, for the codec's own bits and for another bits setting."""
    checkpoint = load_generator(generator_dir)
    _, images = load_image_folder(image_dir, limit=2)
    options = SearchOptions(iters=15, restarts=2, pool=16)
    codec = GanCodec(checkpoint, bits=6, search=options, refine_iters=5)
    search = search_latents(codec, images)
    for bits in (6, 3):
        other = GanCodec(checkpoint, bits=bits, search=options, refine_iters=5)
        direct, reused = other.compress(images), other.compress_latents(images, search)
        assert [r.data for r in direct] == [r.data for r in reused]
        assert [r.ssim_refined for r in direct] == [r.ssim_refined for r in reused]
    with pytest.raises(GanrevError, match="latents for"):
        codec.compress_latents(images[:1], search)


def test_evaluate_records_and_gan_batch(generator_dir, image_dir):
    checkpoint = load_generator(generator_dir)
    names, images = load_image_folder(image_dir, limit=2)
    codec = GanCodec(checkpoint, bits=4, search=SearchOptions(iters=5, restarts=1, pool=8), refine_iters=2)
    records = evaluate(images, [PNGCodec(), ("my JPEG", JPEGCodec(50)), codec], names=names)
    assert [r["scheme"] for r in records] == ["PNG"] * 2 + ["my JPEG"] * 2 + ["GAN reversal"] * 2
    assert [r["image"] for r in records[:2]] == names
    assert all(set(r) == set(RECORD_FIELDS) for r in records)
    gan = records[-2:]
    assert gan[0]["encode_s"] == gan[1]["encode_s"] > 0  # one batch, total / N
    assert all(r["decode_s"] > 0 and r["ssim_quantized"] is not None for r in gan)


def test_match_rate_exhaustive_and_coarse_agree_on_closest(image_dir):
    _, images = load_image_folder(image_dir, limit=2)
    full = match_rate(JPEGCodec, images, 1.5, lo=1, hi=100, step=1)
    assert len(full.sweep) == 100 and full.in_range
    assert abs(full.bpp - 1.5) == min(abs(b - 1.5) for b in full.sweep.values())
    coarse = match_rate(JPEGCodec, images, 1.5, lo=1, hi=100, step=5)
    assert len(coarse.sweep) < 40 and set(coarse.sweep) <= set(full.sweep)
    assert abs(coarse.bpp - 1.5) == min(abs(b - 1.5) for b in coarse.sweep.values())
    assert abs(coarse.quality - full.quality) <= 5


def test_summarise_cr_and_markdown_cells():
    def rec(scheme, nbytes, psnr, lpips=None):
        return {"scheme": scheme, "role": "row", "bytes": nbytes, "bpp": nbytes * 8 / 4096, "mse": 0.0 if psnr ==
                math.inf else 10.0, "psnr": psnr, "ssim": 0.5, "ms_ssim": 0.6, "lpips": lpips, "encode_s": 0.1,
                "decode_s": 0.1}

    records = [rec("PNG", 1000, math.inf), rec("PNG", 3000, math.inf), rec("X", 100, 30.0, 0.2),
               rec("X", 300, 32.0, None)]
    summary = summarise(records)
    assert [row["scheme"] for row in summary] == ["PNG", "X"]
    assert summary[1]["cr"] == pytest.approx(2000 / 200) and summary[1]["psnr"] == pytest.approx(31.0)
    assert summary[1]["lpips"] is None and summary[0]["psnr"] == math.inf
    text = markdown_table(summary)
    assert "| PNG | 3.906 | 1.0 | ∞ | 0.00 | 0.5000 | 0.6000 | n/a |" in text
    assert "| X | 0.391 | 10.0 | 31.00 | 10.00 |" in text


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
    assert display_path(Path(__file__)) == "tests/test_evaluate.py"  # inside the repository: relative
    assert display_path(tmp_path) == str(tmp_path)  # outside: as given
