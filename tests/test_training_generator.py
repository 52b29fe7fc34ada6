"""Tests for ganrev.training.generator and the fit-generator / generate commands: tiny end-to-end runs on CPU.

Every run uses a 32x32 generator of width 8 and at most two steps per epoch, so the whole file takes
a few seconds on one core. The data are random shapes drawn into PNG files in a temporary folder.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from ganrev.cli import app, main
from ganrev.data import carve_validation, folder_dataset, is_test_group, open_dataset
from ganrev.errors import GanrevError
from ganrev.models import load_generator
from ganrev.training import common
from ganrev.training.common import (
    BEST_DIR,
    STATE_FILE,
    available_cores,
    choose_device,
    image_grid,
    resolve_precision,
    use_threads,
)
from ganrev.training.generator import (
    AEGAN_DEFAULTS,
    GAN_DEFAULTS,
    AeganObjective,
    TrainOptions,
    default_epochs,
    fit_generator,
    moment_penalty,
    plan_epochs,
    starting_checkpoint,
    validation_ssim,
)

GRID_64 = 8 * (32 + 2) + 2  # an 8x8 grid of 32-pixel tiles with 2-pixel white gaps


def _shapes_folder(root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """PNGs of random rectangles and ellipses, named so that exactly n_train / n_test fall in each split."""
    rng = np.random.default_rng(seed)
    names, i = {"train": [], "test": []}, 0
    while len(names["train"]) < n_train or len(names["test"]) < n_test:
        name = f"set{i % 2}/shape{i:03d}.png"
        names["test" if is_test_group(name) else "train"].append(name)
        i += 1
    for name in names["train"][:n_train] + names["test"][:n_test]:
        bg = tuple(int(v) for v in rng.integers(0, 256, 3))
        img = Image.new("RGB", (40, 36), bg)
        draw = ImageDraw.Draw(img)
        for _ in range(3):
            x0, y0 = (int(v) for v in rng.integers(0, 24, 2))
            x1, y1 = x0 + int(rng.integers(6, 16)), y0 + int(rng.integers(6, 16))
            fill = tuple(int(v) for v in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=fill)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        img.save(root / name)
    return root


def _options(folder: Path, **changes) -> TrainOptions:
    """A tiny plain-GAN run (the aegan tests below pass objective="aegan")."""
    base = dict(data=str(folder), resolution=32, channels=3, latent_dim=16, width=8, disc_width=8, epochs=1,
                batch_size=8, max_steps_per_epoch=2, seed=0, objective="gan")
    return TrainOptions(**(base | changes))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _shapes_folder(tmp_path_factory.mktemp("shapes"), 36, 4)


@pytest.fixture(scope="module")
def trained(shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run") / "ckpt"
    summary = fit_generator(_options(shapes), out, device="cpu", progress=False)
    return out, summary


# ---------------------------------------------------------------------------------------------- grids

def test_image_grid_layout() -> None:
    images = torch.zeros(64, 3, 32, 32)
    grid = image_grid(images)
    assert grid.shape == (3, GRID_64, GRID_64)
    assert grid[:, :2, :].min() == 1.0 and grid[:, :, :2].min() == 1.0  # white border
    assert grid[:, 2:34, 2:34].max() == 0.0 and grid[:, 34:36, :].min() == 1.0  # tile, then gap
    images = torch.rand(10, 1, 8, 8)
    grid = image_grid(images, nrow=4, pad=1)
    assert grid.shape == (1, 3 * 9 + 1, 4 * 9 + 1)
    torch.testing.assert_close(grid[:, 1 + 9:1 + 9 + 8, 1 + 2 * 9:1 + 2 * 9 + 8], images[6])  # row 1, col 2
    assert grid[:, 1 + 2 * 9:, 1 + 2 * 9:].min() == 1.0  # the two missing tiles of the last row stay white


def test_image_grid_fewer_images_than_a_row() -> None:
    grid = image_grid(torch.zeros(4, 3, 32, 32))
    assert grid.shape == (3, 36, 4 * 34 + 2)  # one row of four, no blank tiles


def test_choose_device() -> None:
    assert choose_device("cpu") == torch.device("cpu")
    assert choose_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(GanrevError, match="CUDA"):
            choose_device("cuda")


# ------------------------------------------------------------------------------------------- training

def test_fit_generator_writes_a_complete_checkpoint(trained, shapes: Path) -> None:
    out, summary = trained
    assert summary["epochs"] == 1 and summary["out"] == str(out) and len(summary["history"]) == 1
    assert (out / "generator.safetensors").is_file()
    assert (out / STATE_FILE).is_file()
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["epoch_0001.png"]
    assert not [p for p in out.rglob("*.tmp")]  # atomic writes leave no temporary files

    with Image.open(out / "samples" / "epoch_0001.png") as sample:
        assert sample.size == (GRID_64, GRID_64) and sample.mode == "RGB"

    config = json.loads((out / "config.json").read_text())
    assert (config["latent_dim"], config["resolution"], config["channels"], config["width"]) == (16, 32, 3, 8)
    assert config["dataset"] == str(shapes)
    assert config["split"]["train_images"] == 36 == len(folder_dataset(shapes, "train", 32, 3))
    assert config["split"]["test_images"] == 4
    assert "relative file path" in config["split"]["rule"]
    training = config["training"]
    assert training["epochs"] == 1 and training["wall_s"] >= 0
    assert training["torch"] == torch.__version__ and training["device"].startswith("CPU")
    assert training["options"]["width"] == 8 and training["options"]["disc_width"] == 8
    assert training["options"]["max_steps_per_epoch"] == 2
    assert training["last_epoch"] == summary["history"][-1]

    ckpt = load_generator(out)
    assert ckpt.fingerprint == config["fingerprint"]
    with torch.no_grad():
        images = ckpt.generator.images(torch.randn(3, 16))
    assert images.shape == (3, 3, 32, 32) and 0 <= images.min() and images.max() <= 1


def test_history_figures_are_sane(trained) -> None:
    _, summary = trained
    record = summary["history"][0]
    assert set(record) == {"epoch", "loss_d", "loss_g", "d_real", "d_fake"}
    assert record["epoch"] == 1
    assert all(math.isfinite(v) for v in record.values())
    assert record["loss_d"] > 0 and record["loss_g"] > 0
    assert 0 < record["d_real"] < 1 and 0 < record["d_fake"] < 1


@pytest.mark.parametrize("change", [
    {"epochs": 0}, {"batch_size": 0}, {"lr": float("nan")}, {"lr": -1.0}, {"objective": "vae"},
    {"recon_loss": "perceptual"}, {"adv_weight": -0.1}, {"ema": 1.0}, {"beta1": 1.0}, {"adv_warmup": -1},
    {"latent_noise": -0.1}, {"latent_noise": float("inf")}, {"cooldown": -1}, {"cooldown": 2},
])
def test_train_options_are_checked_before_training(change: dict) -> None:
    with pytest.raises(GanrevError, match="invalid --"):
        _options(Path("."), **change)


# ------------------------------------------------------------------------------------- aegan objective

def _aegan(folder: Path, **changes) -> TrainOptions:
    return _options(folder, **({"objective": "aegan", "adv_weight": 0.05, "adv_warmup": 1, "epochs": 2} | changes))


@pytest.fixture(scope="module")
def aegan_run(shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("aegan") / "ckpt"
    return out, fit_generator(_aegan(shapes), out, device="cpu", progress=False)


def test_aegan_writes_generator_encoder_best_and_reconstructions(aegan_run, shapes: Path) -> None:
    out, summary = aegan_run
    ckpt = load_generator(out)
    assert ckpt.encoder is not None and ckpt.encoder.config.latent_dim == 16
    config = json.loads((out / "config.json").read_text())
    training = config["training"]
    assert training["objective"] == "aegan" and training["options"]["recon_loss"] == "ssim+l1"
    fit, val = carve_validation(folder_dataset(shapes, "train", 32, 3), str(shapes))
    assert val is not None and training["validation_images"] == len(val) and training["fit_images"] == len(fit)
    assert len(fit) + len(val) == config["split"]["train_images"] == 36
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "epoch_0001.png", "epoch_0002.png", "recon_0001.png", "recon_0002.png"]
    best = load_generator(out / BEST_DIR)
    best_epoch = json.loads((out / BEST_DIR / "config.json").read_text())["training"]["best_epoch"]
    scores = [record["val_ssim"] for record in summary["history"]]
    assert scores[best_epoch - 1] == max(scores) and best.encoder is not None
    images = torch.stack([val[i] for i in range(len(val))])
    assert validation_ssim(ckpt.generator, ckpt.encoder, images, torch.device("cpu")).mean() == pytest.approx(
        scores[-1], abs=1e-5)  # the saved (EMA) weights are the ones validated


def test_aegan_run_ends_with_a_latent_density_in_both_checkpoints(aegan_run) -> None:
    out, _ = aegan_run
    for directory in (out, out / BEST_DIR):
        ckpt = load_generator(directory)
        assert ckpt.density is not None and ckpt.density.dim == 16
        record = json.loads((directory / "config.json").read_text())["density"]
        assert record["encoder_fingerprint"] == ckpt.metadata["encoder"]["fingerprint"]
        assert record["validation_codes"] > 0 and record["components"] == ckpt.density.components


def test_density_fits_a_random_subset_of_a_large_training_side(aegan_run, monkeypatch) -> None:
    import ganrev.density as density

    ckpt = load_generator(aegan_run[0])
    monkeypatch.setattr(density, "MAX_FIT_CODES", 10)
    monkeypatch.setattr(density, "MAX_VALIDATION_CODES", 2)
    fit = density.fit_checkpoint_density(ckpt.encoder, ckpt.metadata, torch.device("cpu"))
    assert (fit.fit_codes, fit.validation_codes) == (10, 2)
    again = density.fit_checkpoint_density(ckpt.encoder, ckpt.metadata, torch.device("cpu"))
    assert torch.equal(fit.mixture.means, again.mixture.means)  # the subset is drawn with the seed


def _cli(capsys, *args) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return int(exited.value.code or 0), out.out + out.err


def test_generate_prior_choices(aegan_run, trained, tmp_path: Path, capsys) -> None:
    out, _ = aegan_run
    grids = {}
    for prior in ("auto", "fitted", "normal"):
        code, text = _cli(capsys, "generate", "-g", out, "-n", "4", "-o", tmp_path / f"{prior}.png", "--prior", prior,
                          "--device", "cpu")
        assert code == 0, text
        grids[prior] = np.asarray(Image.open(tmp_path / f"{prior}.png"))
    assert "fitted density" in _cli(capsys, "generate", "-g", out, "-n", "1", "-o", tmp_path / "x.png")[1]
    np.testing.assert_array_equal(grids["auto"], grids["fitted"])  # the density is the default when present
    assert not np.array_equal(grids["fitted"], grids["normal"])
    gan, _ = trained  # no encoder, so no density: auto draws from N(0, I), fitted is an error
    code, text = _cli(capsys, "generate", "-g", gan, "-n", "2", "-o", tmp_path / "gan.png", "--prior", "fitted")
    assert code == 2 and text.startswith("ganrev: error:") and "fit-density" in text
    assert not (tmp_path / "gan.png").exists()
    code, text = _cli(capsys, "generate", "-g", gan, "-n", "2", "-o", tmp_path / "gan.png", "--prior", "uniform")
    assert code == 2 and "--prior" in text


def test_fit_density_command(aegan_run, trained, tmp_path: Path, capsys) -> None:
    out = tmp_path / "copy"
    shutil.copytree(aegan_run[0], out)
    before = json.loads((out / "config.json").read_text())["density"]
    code, text = _cli(capsys, "fit-density", "-g", out, "--device", "cpu")
    assert code == 2 and "already has a latent density" in text and "--force" in text
    code, text = _cli(capsys, "fit-density", "-g", out, "--device", "cpu", "--force", "--seed", "3")
    assert code == 0 and "Gaussian mixture" in text and "validation log-likelihood" in text
    after = json.loads((out / "config.json").read_text())["density"]
    assert after["encoder_fingerprint"] == before["encoder_fingerprint"] and load_generator(out).density is not None
    code, text = _cli(capsys, "fit-density", "-g", trained[0], "--device", "cpu")
    assert code == 2 and "no encoder" in text


def test_fit_density_refuses_a_checkpoint_it_cannot_write_before_fitting(aegan_run, tmp_path: Path, capsys,
                                                                        monkeypatch) -> None:
    import ganrev.density

    out = tmp_path / "copy"
    shutil.copytree(aegan_run[0], out)
    monkeypatch.setattr("ganrev.sampling.os.access", lambda path, mode: False)
    monkeypatch.setattr(ganrev.density, "fit_checkpoint_density", lambda *a, **k: pytest.fail("fitted anyway"))
    code, text = _cli(capsys, "fit-density", "-g", out, "--device", "cpu", "--force")
    assert code == 2 and "cannot write into" in text and text.count("\n") == 1


def test_aegan_history_reconstruction_then_adversarial(aegan_run) -> None:
    _, summary = aegan_run
    first, second = summary["history"]
    assert {"recon", "prior", "latent_std", "val_ssim"} <= set(first) and "loss_d" not in first  # warm-up epoch
    assert {"loss_d", "adv", "d_real", "d_fake"} <= set(second)
    assert all(math.isfinite(v) for record in summary["history"] for v in record.values())
    assert 0 < first["recon"] < 1.5 and -1 <= first["val_ssim"] <= 1


def test_aegan_resume_continues_every_network(aegan_run, tmp_path: Path) -> None:
    first, summary = aegan_run
    out = tmp_path / "resumed"
    shutil.copytree(first, out)
    state = torch.load(out / STATE_FILE, map_location="cpu", weights_only=True)
    assert {"generator", "encoder", "discriminator", "ema_generator", "ema_encoder", "opt_generator",
            "opt_discriminator"} <= set(state)
    resumed = fit_generator(_aegan(Path("/nonexistent"), epochs=3), out, resume=True, device="cpu", progress=False)
    assert resumed["history"][:2] == summary["history"] and resumed["history"][2]["epoch"] == 3
    assert load_generator(out).fingerprint != load_generator(first).fingerprint


def test_a_time_budget_ends_the_run_after_the_epoch_that_spends_it_and_resume_goes_on(shapes: Path,
                                                                                     tmp_path: Path) -> None:
    out = tmp_path / "budget"
    stopped = fit_generator(_aegan(shapes, epochs=3), out, device="cpu", progress=False, max_minutes=1e-9)
    assert stopped["epochs"] == 1 and stopped["out_of_time"] and len(stopped["history"]) == 1
    ckpt = load_generator(out)  # saved and finished like a complete run: density included, best/ written
    assert ckpt.density is not None and load_generator(out / BEST_DIR).density is not None
    assert json.loads((out / "config.json").read_text())["training"]["epochs"] == 1
    resumed = fit_generator(_aegan(Path("/nonexistent"), epochs=3), out, resume=True, device="cpu", progress=False,
                            max_minutes=60)
    assert resumed["epochs"] == 3 and not resumed["out_of_time"]
    assert [record["epoch"] for record in resumed["history"]] == [1, 2, 3]


@pytest.mark.parametrize("minutes", [0.0, -1.0, float("nan"), float("inf")])
def test_a_bad_time_budget_is_refused_before_training(shapes: Path, tmp_path: Path, minutes: float) -> None:
    with pytest.raises(GanrevError, match="--max-minutes"):
        fit_generator(_aegan(shapes), tmp_path / "never", device="cpu", progress=False, max_minutes=minutes)
    assert not (tmp_path / "never").exists()


def test_aegan_augment_and_latent_noise_are_recorded_and_change_training(shapes: Path, tmp_path: Path) -> None:
    plain = fit_generator(_aegan(shapes, epochs=1), tmp_path / "plain", device="cpu", progress=False)
    varied = fit_generator(_aegan(shapes, epochs=1, augment=True, latent_noise=0.3), tmp_path / "varied",
                           device="cpu", progress=False)
    options = json.loads((tmp_path / "varied" / "config.json").read_text())["training"]["options"]
    assert options["augment"] is True and options["latent_noise"] == 0.3
    assert all(math.isfinite(v) for v in varied["history"][0].values())
    assert varied["history"][0]["recon"] != plain["history"][0]["recon"]
    assert load_generator(tmp_path / "varied").fingerprint != load_generator(tmp_path / "plain").fingerprint


def test_augment_changes_aegan_targets_only(shapes: Path, tmp_path: Path, monkeypatch) -> None:
    """--augment is part of the reconstruction objective: the plain GAN learns the images as they are (an
    augmented real set would teach it to draw rotated, recoloured emoji)."""
    calls: list[int] = []
    monkeypatch.setattr("ganrev.training.generator.reconstruction_augment", lambda x: calls.append(len(x)) or x)
    fit_generator(_options(shapes, epochs=1, augment=True), tmp_path / "gan", device="cpu", progress=False)
    assert calls == []
    fit_generator(_aegan(shapes, epochs=1, augment=True), tmp_path / "aegan", device="cpu", progress=False)
    assert calls and all(n > 0 for n in calls)


def test_aegan_discriminator_sees_real_against_prior_samples_only() -> None:
    """D's fakes are G(z) alone (reconstructions are nearly real and stall it); G's adversarial term covers
    both G(z) and G(E(x))."""
    torch.manual_seed(0)
    objective = AeganObjective(_aegan(Path("."), resolution=32, adv_warmup=0), torch.device("cpu"))
    batches: list[int] = []
    objective.netD.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    objective.train()
    figures = objective.step(torch.rand(8, 3, 32, 32) * 2 - 1, 0, torch.autocast("cpu", enabled=False))
    assert batches == [8, 8, 16]  # D's step: real, G(z); then G's step: [G(E(x)); G(z)]
    assert {"loss_d", "adv", "d_real", "d_fake"} <= set(figures)


def test_moment_penalty_is_small_for_prior_samples_and_large_otherwise() -> None:
    torch.manual_seed(0)
    prior = torch.randn(256, 16)
    assert moment_penalty(prior) < 0.05
    assert moment_penalty(prior * 0.5) > 0.4  # shrunk latents pay (var - 1)^2
    assert moment_penalty(prior + 1) > 0.9  # shifted latents pay the mean
    assert moment_penalty(prior[:, :1].repeat(1, 16)) > 0.9  # fully correlated ones pay the correlations


def test_train_state_loads_without_pickle(trained) -> None:
    out, summary = trained
    state = torch.load(out / STATE_FILE, map_location="cpu", weights_only=True)
    assert state["epoch"] == 1
    assert state["history"] == summary["history"]
    assert state["options"]["seed"] == 0 and state["options"]["width"] == 8
    assert {"generator", "discriminator", "opt_generator", "opt_discriminator", "rng_cpu", "wall_s"} <= set(state)
    gen_weights = load_generator(out).generator.state_dict()
    for name, tensor in state["generator"].items():
        assert torch.equal(tensor, gen_weights[name]), name


def test_resume_continues_from_saved_epoch(trained, tmp_path: Path) -> None:
    first, _ = trained
    out = tmp_path / "resumed"
    shutil.copytree(first, out)
    before = torch.load(out / STATE_FILE, map_location="cpu", weights_only=True)
    fingerprint_1 = load_generator(out).fingerprint

    # A resumed run keeps architecture and data from the state file; only the epoch total is taken.
    summary = fit_generator(_options(Path("/nonexistent"), epochs=2, width=16), out, resume=True,
                            device="cpu", progress=False)
    assert summary["epochs"] == 2
    assert len(summary["history"]) == 2
    assert summary["history"][0] == before["history"][0]
    assert summary["history"][1]["epoch"] == 2
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["epoch_0001.png", "epoch_0002.png"]
    with Image.open(out / "samples" / "epoch_0002.png") as sample:
        assert sample.size == (GRID_64, GRID_64)

    state = torch.load(out / STATE_FILE, map_location="cpu", weights_only=True)
    assert state["epoch"] == 2 and state["history"] == summary["history"]
    assert state["wall_s"] >= before["wall_s"]
    config = json.loads((out / "config.json").read_text())
    assert config["training"]["epochs"] == 2 and config["width"] == 8
    assert config["training"]["options"]["epochs"] == 2
    ckpt = load_generator(out)
    assert ckpt.config.width == 8
    assert ckpt.fingerprint != fingerprint_1  # it did train

    # resuming with the budget already spent trains nothing more and keeps the files
    again = fit_generator(_options(Path("/nonexistent"), epochs=2), out, resume=True, device="cpu", progress=False)
    assert again["history"] == summary["history"]
    assert load_generator(out).fingerprint == ckpt.fingerprint


def test_resume_without_state_file_is_an_error(shapes: Path, tmp_path: Path) -> None:
    with pytest.raises(GanrevError, match="resume"):
        fit_generator(_options(shapes), tmp_path / "nothing-here", resume=True, device="cpu", progress=False)
    assert not (tmp_path / "nothing-here").exists()


def test_training_is_reproducible_for_a_seed(trained, shapes: Path, tmp_path: Path) -> None:
    first, _ = trained
    fit_generator(_options(shapes), tmp_path / "again", device="cpu", progress=False)
    assert load_generator(tmp_path / "again").fingerprint == load_generator(first).fingerprint


def test_fewer_images_than_a_batch_trains_with_a_clamped_batch(shapes: Path, tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="36 training images are fewer than one batch of 64: training with "
                                         "batches of 36"):
        summary = fit_generator(_options(shapes, batch_size=64), tmp_path / "out", device="cpu", progress=False)
    assert len(summary["history"]) == 1 and load_generator(tmp_path / "out").encoder is None


def test_folder_whose_test_split_is_empty_still_trains(tmp_path: Path) -> None:
    # A small folder can have no held-out image at all; that must not stop training.
    folder = _shapes_folder(tmp_path / "small", 8, 0, seed=1)
    out = tmp_path / "out"
    fit_generator(_options(folder, max_steps_per_epoch=1, channels=1), out, device="cpu", progress=False)
    config = json.loads((out / "config.json").read_text())
    assert config["split"]["train_images"] == 8 and config["split"]["test_images"] == 0
    assert load_generator(out).config.channels == 1


# ------------------------------------------------------------------------------------------------ CLI

def test_cli_fit_generator_then_generate(shapes: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli-run"
    runner = CliRunner()
    result = runner.invoke(app, ["fit-generator", "--data", str(shapes), "--resolution", "32", "--width", "8",
                                 "--disc-width", "8", "--batch-size", "8", "--epochs", "1",
                                 "--max-steps-per-epoch", "1", "--latent-dim", "12", "--device", "cpu",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "trained 1 epochs;" in result.output
    # the run ends by describing itself: its default bits, its figures beside the best classical file, the card
    assert re.search(r"compress_bits [3-6] \(chosen on \d+ validation images", result.output)
    assert re.search(r"validation: SSIM \d\.\d+ at \d\.\d+ bpp .* best classical file within the same bytes",
                     result.output)
    assert f"model card: {out / 'MODEL_CARD.md'}" in result.output
    ckpt = load_generator(out)
    assert ckpt.config.latent_dim == 12 and ckpt.config.resolution == 32 and ckpt.config.width == 8
    assert (out / "samples" / "epoch_0001.png").is_file()

    grid = tmp_path / "grid.png"
    result = runner.invoke(app, ["generate", "--generator", str(out), "-n", "4", "-o", str(grid),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "wrote 4 samples" in result.output
    with Image.open(grid) as img:
        assert img.mode == "RGB"
        assert img.size == (4 * 34 + 2, 36)  # one row of four 32x32 samples with 2-pixel gaps
        arr = np.asarray(img)
    assert (arr[:2] == 255).all() and (arr[:, :2] == 255).all()  # white frame
    # the same seed gives the same picture; another seed another one
    again = tmp_path / "again.png"
    runner.invoke(app, ["generate", "-g", str(out), "-n", "4", "-o", str(again), "--device", "cpu"])
    np.testing.assert_array_equal(np.asarray(Image.open(again)), arr)
    other = tmp_path / "other.png"
    runner.invoke(app, ["generate", "-g", str(out), "-n", "4", "-o", str(other), "--seed", "1",
                        "--device", "cpu"])
    assert not np.array_equal(np.asarray(Image.open(other)), arr)

    big = tmp_path / "big.png"
    runner.invoke(app, ["generate", "-g", str(out), "-n", "64", "-o", str(big), "--device", "cpu"])
    with Image.open(big) as img:
        assert img.size == (GRID_64, GRID_64)


def test_cli_errors_are_one_line_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["ganrev", "fit-generator", "--data", str(tmp_path), "--resume",
                                      "--device", "cpu", "--out", str(tmp_path / "none")])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("ganrev: error:") and "train_state.pt" in err
    assert "Traceback" not in err

    monkeypatch.setattr(sys, "argv", ["ganrev", "generate", "-g", str(tmp_path / "missing-ckpt"), "-o",
                                      str(tmp_path / "x.png")])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_cli_max_minutes_is_checked_before_the_data_loads(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["fit-generator", "--data", str(tmp_path / "no-such-folder"), "--max-minutes", "0", "--device", "cpu",
              "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and err[0].startswith("ganrev: error: invalid --max-minutes")
    assert not (tmp_path / "run").exists()


def test_cli_fetch_unknown_dataset_is_an_error(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["ganrev", "fetch", "imagenet"])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 2
    assert "nothing to fetch" in capsys.readouterr().err


def test_cli_fetch_fashion_mnist_reports_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setenv("GANREV_FASHION_MNIST", str(tmp_path))
    result = CliRunner().invoke(app, ["fetch", "fashion-mnist"])
    assert result.exit_code == 0 and str(tmp_path) in result.output


def test_cli_fetch_emoji_already_present_needs_no_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    roots = [tmp_path / name for name in ("emoji-datasource-google", "emoji-datasource-twitter", "openmoji",
                                          "iconify-json-fluent-emoji-flat", "iconify-json-emojione",
                                          "iconify-json-noto-v1")]
    for root in roots:
        root.mkdir()
        (root / "emoji.json").write_text("[]")
    monkeypatch.setenv("GANREV_DATA", str(tmp_path))
    monkeypatch.setattr(shutil, "which", lambda *a, **k: pytest.fail("must not look for npm"))
    result = CliRunner().invoke(app, ["fetch", "emoji"])  # every vendor
    assert result.exit_code == 0, repr(result.exception)
    assert all(str(root) in result.output for root in roots)
    result = CliRunner().invoke(app, ["fetch", "emoji:twitter"])
    assert result.exit_code == 0 and str(roots[1]) in result.output and str(roots[0]) not in result.output


def test_cli_fetch_names_the_vendor_npm_packs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("GANREV_DATA", str(tmp_path))
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    with pytest.raises(SystemExit) as exit_info:
        main(["fetch", "emoji:twitter"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ganrev: error:") and "emoji-datasource-twitter@16.0.0" in err and "\n" not in err
    with pytest.raises(SystemExit):
        main(["fetch", "emoji:apple"])
    assert "unknown emoji vendor apple" in capsys.readouterr().err


def test_cooldown_steps_fall_linearly_over_the_last_epochs() -> None:
    assert [TrainOptions(epochs=10, cooldown=4).step_scale(epoch) for epoch in range(10)] == pytest.approx(
        [1.0] * 6 + [0.8, 0.6, 0.4, 0.2])
    assert {TrainOptions(epochs=5, cooldown=0).step_scale(epoch) for epoch in range(5)} == {1.0}
    # not given: the last 2/15 of the epochs, emoji64's 20 of 150
    assert TrainOptions(epochs=150).cooldown_epochs == 20
    assert [TrainOptions(epochs=15).step_scale(epoch) for epoch in (12, 13, 14)] == pytest.approx([1, 2 / 3, 1 / 3])
    assert TrainOptions(epochs=3, cooldown=3).step_scale(0) == 0.75  # the whole run cools down


def test_resume_can_add_a_cooldown_that_lowers_every_step(shapes: Path, tmp_path: Path) -> None:
    """Two epochs at constant steps, then a resume to four with --cooldown 2: epochs 3 and 4 step at 2/3 and 1/3
    of G's (and E's) and D's steps, which the saved optimizer state records; without it the weights differ."""
    first = tmp_path / "constant"
    fit_generator(_aegan(shapes, epochs=2, cooldown=0), first, device="cpu", progress=False)
    cooled, constant = tmp_path / "cooled", tmp_path / "constant-on"
    shutil.copytree(first, cooled)
    shutil.copytree(first, constant)
    later = _aegan(Path("/nonexistent"), epochs=4, cooldown=2)
    summary = fit_generator(later, cooled, resume=True, device="cpu", progress=False,
                            resume_changes=("epochs", "cooldown"))
    assert [record["epoch"] for record in summary["history"]] == [1, 2, 3, 4]
    state = torch.load(cooled / STATE_FILE, map_location="cpu", weights_only=True)
    assert [group["lr"] for group in state["opt_generator"]["param_groups"]] == pytest.approx([2e-3 / 3])
    assert [group["lr"] for group in state["opt_discriminator"]["param_groups"]] == pytest.approx([2e-4 / 3])
    assert json.loads((cooled / "config.json").read_text())["training"]["options"]["cooldown"] == 2
    fit_generator(_aegan(Path("/nonexistent"), epochs=4), constant, resume=True, device="cpu", progress=False)
    state = torch.load(constant / STATE_FILE, map_location="cpu", weights_only=True)
    assert [group["lr"] for group in state["opt_generator"]["param_groups"]] == [2e-3]
    assert load_generator(cooled).fingerprint != load_generator(constant).fingerprint


def test_a_run_saved_before_nested_dropout_resumes_without_it(shapes: Path, tmp_path: Path) -> None:
    fit_generator(_aegan(shapes, epochs=1), tmp_path, device="cpu", progress=False)
    state = torch.load(tmp_path / STATE_FILE, map_location="cpu", weights_only=True)
    assert state["options"]["nested_dropout"] == 0.5  # the default
    del state["options"]["nested_dropout"]  # what a state written before the option existed holds
    torch.save(state, tmp_path / STATE_FILE)
    fit_generator(_aegan(Path("/nonexistent"), epochs=2), tmp_path, resume=True, device="cpu", progress=False)
    assert json.loads((tmp_path / "config.json").read_text())["training"]["options"]["nested_dropout"] == 0.0


def test_resume_can_start_the_adversarial_term_of_a_reconstruction_run(shapes: Path, tmp_path: Path) -> None:
    out = tmp_path / "recon-first"
    fit_generator(_aegan(shapes, epochs=1, adv_weight=0.0), out, device="cpu", progress=False)
    later = _aegan(Path("/nonexistent"), epochs=2, adv_weight=0.1, adv_warmup=1, width=16)
    summary = fit_generator(later, out, resume=True, device="cpu", progress=False,
                            resume_changes=("epochs", "adv_weight", "adv_warmup"))
    assert "loss_d" not in summary["history"][0] and "loss_d" in summary["history"][1]
    options = json.loads((out / "config.json").read_text())["training"]["options"]
    assert options["adv_weight"] == 0.1 and options["width"] == 8  # the schedule changed, the architecture not
    faster_d = _aegan(Path("/nonexistent"), epochs=3, adv_weight=0.1, adv_warmup=1, disc_lr=1e-3)
    fit_generator(faster_d, out, resume=True, device="cpu", progress=False, resume_changes=("epochs", "disc_lr"))
    state = torch.load(out / STATE_FILE, map_location="cpu", weights_only=True)
    assert [group["lr"] for group in state["opt_discriminator"]["param_groups"]] == [1e-3]
    with pytest.raises(GanrevError, match="cannot change width"):
        fit_generator(later, out, resume=True, device="cpu", progress=False, resume_changes=("width",))


# ------------------------------------------------------------------- precision, threads, several vendors

def test_precision_auto_follows_the_cpu_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    monkeypatch.setattr(common, "cpu_flags", lambda: {"avx512f", "amx_bf16", "amx_tile"})
    assert resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(common, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(common, "cpu_flags", lambda: {"avx2", "avx512f"})
    assert resolve_precision("auto", cpu) == "fp32"
    with pytest.raises(GanrevError, match="--precision"):
        resolve_precision("fp16", cpu)


def test_use_threads_sets_torch_and_defaults_to_every_core() -> None:
    before = torch.get_num_threads()
    try:
        assert use_threads(1) == 1 and torch.get_num_threads() == 1
        assert use_threads(None) == available_cores() == torch.get_num_threads()
        with pytest.raises(GanrevError, match="--threads"):
            use_threads(0)
    finally:
        torch.set_num_threads(before)


def test_bf16_and_fp32_training_both_run_on_cpu_and_are_recorded(shapes: Path, tmp_path: Path) -> None:
    weights = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        summary = fit_generator(_aegan(shapes, epochs=1), out, device="cpu", progress=False, precision=precision)
        assert math.isfinite(summary["history"][-1]["recon"])
        assert json.loads((out / "config.json").read_text())["training"]["precision"] == precision
        weights[precision] = load_generator(out).generator.state_dict()
        assert all(torch.isfinite(w.float()).all() and w.dtype != torch.bfloat16 for w in weights[precision].values())
    # autocast really changed the arithmetic: same seed and data, different weights
    assert any(not torch.equal(weights["fp32"][k], weights["bf16"][k]) for k in weights["fp32"])


def test_epoch_lines_report_throughput_and_precision(shapes: Path, tmp_path: Path, capsys) -> None:
    fit_generator(_aegan(shapes, epochs=1), tmp_path / "run", device="cpu", progress=True, precision="fp32")
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("epoch 1/1:"))
    assert re.search(r"\[\d+ images/s, fp32, \d+ s\]$", line), line


def test_cli_bad_precision_is_one_line_before_the_data_loads(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["fit-generator", "--data", str(tmp_path / "no-such-folder"), "--precision", "fp16", "--device", "cpu",
              "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and err[0].startswith("ganrev: error: invalid --precision")
    assert not (tmp_path / "run").exists()


def _two_vendor_emoji(home: Path, count: int = 60) -> None:
    """Two vendors' emoji-datasource trees of ``count`` emoji each: the same codes, different drawings."""
    rng = np.random.default_rng(1)
    entries = [{"unified": f"1F{0x600 + i:03X}", "image": f"1f{0x600 + i:03x}.png"} for i in range(count)]
    for vendor in ("google", "twitter"):
        root = home / f"emoji-datasource-{vendor}"
        (root / "img" / vendor / "64").mkdir(parents=True)
        (root / "emoji.json").write_text(json.dumps(entries))
        for entry in entries:
            img = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
            draw = ImageDraw.Draw(img)
            fill = tuple(int(v) for v in rng.integers(0, 256, 3)) + (255,)
            (draw.ellipse if vendor == "google" else draw.rectangle)([8, 8, 56, 56], fill=fill)
            img.save(root / "img" / vendor / "64" / entry["image"])


def test_a_two_vendor_emoji_run_and_its_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _two_vendor_emoji(tmp_path / "data")
    monkeypatch.setenv("GANREV_DATA", str(tmp_path / "data"))
    # plain `emoji` is every fetched vendor, and the checkpoint records which ones it was
    options = _aegan(Path("emoji"), data="emoji", epochs=1, batch_size=16)
    out = tmp_path / "run"
    fit_generator(options, out, device="cpu", progress=False)
    config = json.loads((out / "config.json").read_text())
    train = open_dataset("emoji:google,twitter", "train", resolution=32)
    assert config["dataset"] == "emoji:google,twitter" and "every vendor" in config["split"]["rule"]
    assert config["split"]["train_images"] == len(train) and len(train) % 2 == 0
    assert {label.split("/")[0] for label in train.labels} == {"google", "twitter"}
    fit, validation = carve_validation(train, "emoji:google,twitter")
    assert validation is not None and config["training"]["validation_images"] == len(validation)
    assert config["training"]["fit_images"] == len(fit)
    resumed = fit_generator(_aegan(Path("."), epochs=2), out, resume=True, device="cpu", progress=False)
    assert [record["epoch"] for record in resumed["history"]] == [1, 2]
    assert json.loads((out / "config.json").read_text())["dataset"] == "emoji:google,twitter"


# ------------------------------------------------------------------------------------ defaults and the schedule

def test_the_defaults_are_the_shipped_recipe_for_aegan_and_pytorch_examples_for_gan() -> None:
    aegan, gan = TrainOptions(), TrainOptions(objective="gan")
    assert {name: getattr(aegan, name) for name in AEGAN_DEFAULTS} == AEGAN_DEFAULTS
    assert (aegan.latent_dim, aegan.width, aegan.lr, aegan.beta2) == (160, 32, 2e-3, 0.99)
    assert aegan.adv_weight == 0 and aegan.latent_noise == 0.2 and aegan.epochs is None and aegan.cooldown is None
    assert {name: getattr(gan, name) for name in GAN_DEFAULTS} == GAN_DEFAULTS
    assert TrainOptions(width=48, lr=5e-4).width == 48  # a given value is kept
    # nested dropout: the shipped emoji64's fine-tuning; the plain GAN has no codes to drop
    assert (aegan.nested_dropout, gan.nested_dropout, TrainOptions(nested_dropout=0).nested_dropout) == (0.5, 0, 0)
    emoji64 = json.loads((Path(__file__).resolve().parent.parent / "pretrained" / "emoji64" / "config.json")
                         .read_text())["training"]["options"]
    assert emoji64["nested_dropout"] == aegan.nested_dropout
    # the defaults are the from-scratch recipe that ships (the default emoji64 is this generator fine-tuned)
    shipped = json.loads((Path(__file__).resolve().parent.parent / "pretrained" / "emoji64-google-twitter" /
                          "config.json").read_text())["training"]["options"]
    assert {name: shipped[name] for name in AEGAN_DEFAULTS} == AEGAN_DEFAULTS
    assert (shipped["adv_weight"], shipped["latent_noise"]) == (aegan.adv_weight, aegan.latent_noise)


def test_the_default_length_is_emojis64s_steps() -> None:
    assert default_epochs(93) == 151  # emoji64-google-twitter: 150 epochs of 93 steps
    assert default_epochs(31) == 452 and default_epochs(20_000) == 1


def test_a_budget_plans_the_epochs_that_fit_and_keeps_the_plan_once_cooling() -> None:
    options = TrainOptions(epochs=100)
    assert plan_epochs(options, 100, done=2, seconds_per_epoch=10, seconds_left=75) == 9  # 7 more fit
    assert plan_epochs(options, 100, done=2, seconds_per_epoch=10, seconds_left=5000) == 100  # all fit
    assert plan_epochs(options, 100, done=2, seconds_per_epoch=10, seconds_left=1) == 3  # at least one more
    shrunk = TrainOptions(epochs=9)  # planned after a slow first epoch: epochs that turn out faster plan more
    assert plan_epochs(shrunk, 100, done=3, seconds_per_epoch=5, seconds_left=60) == 15
    cooling = TrainOptions(epochs=10, cooldown=4)
    assert plan_epochs(cooling, 100, done=6, seconds_per_epoch=10, seconds_left=1000) == 10  # cool-down has begun


def test_a_budgeted_run_lands_its_cooldown_inside_the_budget(shapes: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock on which every epoch takes 10 s and a 1-minute budget: after the first epoch 50 s are left, so 6
    epochs are planned of the 20 asked, the last (2/15 of 6, rounded) cooling down; none is cut off."""
    epochs_done = {"n": 0}
    real_save = sys.modules["ganrev.training.generator"]._save_epoch

    def counting_save(*args, **kwargs):
        epochs_done["n"] += 1
        return real_save(*args, **kwargs)

    monkeypatch.setattr("ganrev.training.generator._save_epoch", counting_save)
    monkeypatch.setattr(common.TimeBudget, "elapsed", lambda self, device, world=1: 10.0 * epochs_done["n"])
    out = tmp_path / "planned"
    summary = fit_generator(_aegan(shapes, epochs=20), out, device="cpu", progress=False, max_minutes=1,
                            describe=False)
    assert summary["epochs"] == summary["planned_epochs"] == 6 and not summary["out_of_time"]
    state = torch.load(out / STATE_FILE, map_location="cpu", weights_only=True)
    assert state["options"]["epochs"] == 6
    assert [group["lr"] for group in state["opt_generator"]["param_groups"]] == pytest.approx([2e-3 / 2])


def test_init_from_starts_g_and_e_from_a_trained_checkpoint(aegan_run, shapes: Path, tmp_path: Path) -> None:
    trained, _ = aegan_run
    out = tmp_path / "fine-tuned"
    # a step of 1e-12: what is saved after one step is the checkpoint it started from, to float precision
    fit_generator(_aegan(shapes, epochs=1, lr=1e-12, ema=0.0, init_from=str(trained)), out, device="cpu",
                  progress=False, describe=False)
    before, after = load_generator(trained), load_generator(out)
    for old, new in ((before.generator, after.generator), (before.encoder, after.encoder)):
        for (name, a), b in zip(old.state_dict().items(), new.state_dict().values()):
            if a.is_floating_point() and "running" not in name:  # batch-norm statistics follow the new batches
                torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert json.loads((out / "config.json").read_text())["training"]["options"]["init_from"] == str(trained)
    with pytest.raises(GanrevError, match="--init-from .* does not match"):
        fit_generator(_aegan(shapes, width=16, init_from=str(trained)), tmp_path / "never", device="cpu",
                      progress=False)
    with pytest.raises(GanrevError, match="--init-from"):
        TrainOptions(objective="gan", init_from=str(trained))


def test_a_new_run_starts_from_the_shipped_generator_where_it_has_its_shape(tmp_path: Path) -> None:
    assert starting_checkpoint(TrainOptions()) == "emoji64"  # 64x64 RGB, latent 160, width 32: emoji64's shape
    assert starting_checkpoint(TrainOptions(width=48)) is None  # another shape: random weights
    assert starting_checkpoint(TrainOptions(resolution=32)) is None
    assert starting_checkpoint(TrainOptions(objective="gan")) is None
    assert starting_checkpoint(TrainOptions(init_from=None)) is None
    assert starting_checkpoint(TrainOptions(init_from=str(tmp_path))) == str(tmp_path)
