"""The user-facing commands: compress / decompress / info / metrics, and their error handling."""

from __future__ import annotations

import inspect
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from skimage import data as skdata
from typer.testing import CliRunner

from ganrev.cli import app
from ganrev.cli.codec import compress
from ganrev.cli.table import table
from ganrev.invert import DEFAULT_EFFORT, EFFORTS
from ganrev.io import load_image
from ganrev.metrics import psnr, ssim
from ganrev.models import save_generator, set_compress_bits
from ganrev.nets.dcgan import Encoder, Generator, GeneratorConfig, init_weights

runner = CliRunner()
FAST = ["--iters", "15", "--restarts", "1", "--pool", "8", "--refine-iters", "5"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(latent_dim=16, channels=3, resolution=32, width=8))
    generator.apply(init_weights)
    save_generator(generator, root / "gen", {"dataset": "test"})
    images = root / "images"
    images.mkdir()
    Image.fromarray(skdata.astronaut()).resize((32, 32)).save(images / "astronaut.png")
    Image.fromarray(skdata.coffee()).resize((48, 40)).save(images / "coffee.png")
    Image.fromarray(skdata.camera()).resize((32, 32)).save(images / "camera.png")
    return root


def invoke(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_compress_decompress_info_round_trip(workspace):
    out = workspace / "grv"
    result = invoke("compress", str(workspace / "images"), "-g", str(workspace / "gen"), "-o", str(out), "--json",
                    *FAST)
    rows = json.loads(result.stdout[result.stdout.index("["):])
    assert {Path(r["output"]).name for r in rows} == {"astronaut.grv", "coffee.grv", "camera.grv"}
    for row in rows:
        grv = Path(row["output"])
        assert row["bytes"] == grv.stat().st_size
        original = load_image(row["input"])
        assert row["bpp"] == pytest.approx(row["bytes"] * 8 / (original.shape[1] * original.shape[2]))
        png = workspace / "decoded" / (grv.stem + ".png")
        invoke("decompress", str(grv), "-g", str(workspace / "gen"), "-o", str(png))
        decoded = load_image(png)
        assert decoded.shape == original.shape  # size and gray/colour restored
        # The pixels on disk are exactly those compress measured.
        assert float(ssim(decoded[None], original[None])[0]) == pytest.approx(row["ssim"], abs=1e-6)
        assert float(psnr(decoded[None], original[None])[0]) == pytest.approx(row["psnr"], abs=1e-4)
        info = json.loads(invoke("info", str(grv), "--json").stdout)[0]
        assert (info["width"], info["height"]) == (original.shape[2], original.shape[1])
        assert info["bytes"] == row["bytes"] and info["bits"] == 6  # the default


def test_compress_single_file_and_bits(workspace):
    target = workspace / "one.grv"
    invoke("compress", str(workspace / "images" / "astronaut.png"), "-g", str(workspace / "gen"), "-o", str(target),
           "--bits", "3", *FAST)
    info = json.loads(invoke("info", str(target), "--json").stdout)[0]
    assert info["bits"] == 3 and info["bytes"] == target.stat().st_size


def test_compress_defaults_to_the_generators_own_bits(workspace, tmp_path):
    generator = tmp_path / "gen"
    shutil.copytree(workspace / "gen", generator)
    set_compress_bits(generator, 4)  # what a generator with a larger latent is shipped with
    target = tmp_path / "one.grv"
    invoke("compress", str(workspace / "images" / "camera.png"), "-g", str(generator), "-o", str(target), *FAST)
    assert json.loads(invoke("info", str(target), "--json").stdout)[0]["bits"] == 4


def run_main(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ganrev", *args], capture_output=True, text=True, timeout=120)


def test_errors_are_one_clear_line(workspace, tmp_path):
    grv = workspace / "one.grv"
    if not grv.exists():
        pytest.skip("depends on test_compress_single_file_and_bits")
    damaged = tmp_path / "damaged.grv"
    damaged.write_bytes(grv.read_bytes()[:-3])
    proc = run_main("decompress", str(damaged), "-g", str(workspace / "gen"), "-o", str(tmp_path / "x.png"))
    assert proc.returncode == 2
    assert "ganrev: error:" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.png").exists()  # nothing written for a bad file
    proc = run_main("compress", str(tmp_path / "missing.png"), "-g", str(workspace / "gen"))
    assert proc.returncode == 2 and "image not found" in proc.stderr
    proc = run_main("compress", str(workspace / "images" / "camera.png"), "-g", str(tmp_path))
    assert proc.returncode == 2 and "not a generator checkpoint" in proc.stderr


def test_metrics_command(workspace):
    image = str(workspace / "images" / "astronaut.png")
    result = invoke("metrics", image, image, "--json")
    values = json.loads(result.stdout)
    assert values["ssim"] == 1.0 and values["mse"] == 0.0
    text = invoke("metrics", image, image).stdout
    assert "PSNR     inf" in text and "SSIM     1.000000" in text and "LPIPS" in text
    proc = run_main("metrics", image, str(workspace / "images" / "coffee.png"))
    assert proc.returncode == 2 and "ganrev: error:" in proc.stderr


def test_help_lists_commands():
    text = invoke("--help").stdout
    for command in ("compress", "decompress", "info", "metrics", "fit-generator", "generate", "table"):
        assert command in text


@pytest.fixture(scope="module")
def with_encoder(workspace):
    """A checkpoint with an encoder (as fit-generator --objective aegan writes)."""
    torch.manual_seed(1)
    config = GeneratorConfig(latent_dim=16, channels=3, resolution=32, width=8)
    generator, encoder = Generator(config), Encoder(config)
    generator.apply(init_weights)
    encoder.apply(init_weights)
    save_generator(generator, workspace / "gen-enc", {"dataset": "test"}, encoder=encoder)
    return workspace / "gen-enc"


@pytest.mark.parametrize("init,iterations", [(None, "default"), ("encoder", 3), ("pool", 3), ("random", 3)])
def test_compress_init_choices(workspace, with_encoder, tmp_path, init, iterations):
    args = ["compress", str(workspace / "images" / "astronaut.png"), "-g", str(with_encoder), "-o",
            str(tmp_path / "a.grv"), "--json", "--refine-iters", "1", "--restarts", "1"]
    args += ["--init", init, "--iters", "3"] if init else ["--iters", "0"]
    row = json.loads(invoke(*args).stdout)[0]
    # the default for a checkpoint with an encoder is the encoder start; --iters 0 then keeps E(x) itself
    assert row["iterations"] == (0 if init is None else 3)
    decoded = tmp_path / "a.png"
    invoke("decompress", str(tmp_path / "a.grv"), "-g", str(with_encoder), "-o", str(decoded))
    original = load_image(workspace / "images" / "astronaut.png")
    assert float(ssim(load_image(decoded)[None], original[None])[0]) == pytest.approx(row["ssim"], abs=1e-6)


def test_compress_effort_0_is_the_encoder_alone_and_decompresses(workspace, with_encoder, tmp_path):
    image = workspace / "images" / "astronaut.png"
    args = ["compress", str(image), "-g", str(with_encoder), "-o", str(tmp_path / "a.grv"), "--json", "--effort", "0"]
    row = json.loads(invoke(*args).stdout)[0]
    assert row["iterations"] == 0  # no search, and no refinement: the file is E(x) rounded
    assert row["ssim_refined"] == pytest.approx(row["ssim_quantized"], abs=1e-6)
    invoke("decompress", str(tmp_path / "a.grv"), "-g", str(with_encoder), "-o", str(tmp_path / "a.png"))
    decoded = load_image(tmp_path / "a.png")
    assert float(ssim(decoded[None], load_image(image)[None])[0]) == pytest.approx(row["ssim"], abs=1e-6)
    # an option given with --effort overrides the level's value
    overridden = json.loads(invoke(*args, "--iters", "3", "--patience", "5", "--force").stdout)[0]
    assert overridden["iterations"] == 3


def test_compress_effort_0_without_an_encoder_keeps_the_best_pool_sample(workspace, tmp_path):
    args = ["compress", str(workspace / "images" / "camera.png"), "-g", str(workspace / "gen"), "-o",
            str(tmp_path / "c.grv"), "--json", "--effort", "0", "--pool", "8"]
    row = json.loads(invoke(*args).stdout)[0]
    assert row["iterations"] == 0 and row["ssim_refined"] == pytest.approx(row["ssim_quantized"], abs=1e-6)
    invoke("decompress", str(tmp_path / "c.grv"), "-g", str(workspace / "gen"), "-o", str(tmp_path / "c.png"))


def test_the_effort_help_names_the_default_effort_and_the_levels():
    # written out, not formatted from ganrev.invert: the CLI's modules do not import torch
    for command, shown in ((compress, f"[{DEFAULT_EFFORT}: "), (table, f"[{DEFAULT_EFFORT}]")):
        assert shown in inspect.signature(command).parameters["effort"].default.help
        assert f"0-{max(EFFORTS)} " in inspect.signature(command).parameters["effort"].default.help


def test_compress_without_an_encoder_starts_from_the_pool(workspace, tmp_path):
    args = ["compress", str(workspace / "images" / "astronaut.png"), "-g", str(workspace / "gen"), "-o",
            str(tmp_path / "a.grv"), "--json", "--iters", "2", "--restarts", "1", "--pool", "8", "--refine-iters", "1"]
    assert json.loads(invoke(*args).stdout)[0]["iterations"] == 2
    result = runner.invoke(app, args[:-1] + ["1", "--init", "encoder", "--force"])
    assert result.exit_code != 0 and "no encoder" in str(result.exception)
