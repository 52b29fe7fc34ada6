"""ganrev.training.hyperprior: tiny real CompressAI runs on shipped held-out emoji (64x64 folder, 2 steps)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("compressai")

from ganrev.errors import GanrevError  # noqa: E402
from ganrev.training.common import BEST_DIR, STATE_FILE  # noqa: E402
from ganrev.training.baselines import options_for  # noqa: E402
from ganrev.training.hyperprior import (  # noqa: E402
    HyperpriorTrainOptions,
    RateDistortionLoss,
    _optimizers,
    fit_hyperprior,
    train_step,
)
from ganrev.nets.hyperprior import build_model  # noqa: E402
from ganrev.io import list_images, load_image  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

HELDOUT = Path(__file__).resolve().parent.parent / "pretrained" / "emoji64" / "heldout"


def _options(**changes) -> HyperpriorTrainOptions:
    base = dict(model="mean", lmbda=0.01, data=str(HELDOUT), epochs=1, batch_size=4, max_steps_per_epoch=2,
                hidden_channels=16, latent_channels=24)
    return HyperpriorTrainOptions(**(base | changes))


@pytest.mark.parametrize("model", ["factorized", "hyperprior", "mean", "joint", "cheng2020-anchor"])
def test_one_epoch_writes_a_checkpoint_with_real_file_figures(tmp_path: Path, model: str) -> None:
    out = tmp_path / model
    channels = {"latent_channels": 16} if model == "cheng2020-anchor" else {}
    (record,) = fit_hyperprior(_options(model=model, **channels), out, device="cpu", progress=False)["history"]
    assert record["bpp"] > 0 and record["val_loss"] > 0 and record["aux"] > 0
    assert record["val_file_bpp"] > 0 and 0 < record["val_file_ssim"] <= 1
    meta = json.loads((out / "config.json").read_text())
    assert meta["architecture"] == "compressai" and meta["net"]["model"] == model
    assert meta["codec"] == {"name": {"factorized": "bmshj2018-factorized", "hyperprior": "bmshj2018-hyperprior",
                                      "mean": "mbt2018-mean", "joint": "mbt2018",
                                      "cheng2020-anchor": "cheng2020-anchor"}[model], "lmbda": 0.01, "loss": "mse"}
    assert (out / STATE_FILE).is_file() and (out / BEST_DIR / "config.json").is_file()
    assert (out / "samples" / "epoch_0001.png").is_file()


def test_resume_continues_exactly_where_a_straight_run_would_be(tmp_path: Path) -> None:
    options = dict(loss="ssim", lmbda=0.5)
    straight = fit_hyperprior(_options(epochs=2, **options), tmp_path / "straight", device="cpu", progress=False)
    fit_hyperprior(_options(epochs=1, **options), tmp_path / "split", device="cpu", progress=False)
    resumed = fit_hyperprior(_options(epochs=2, lmbda=99.0), tmp_path / "split", resume=True, device="cpu",
                             progress=False)
    assert [r["epoch"] for r in resumed["history"]] == [1, 2]
    assert resumed["history"] == straight["history"]
    weights = [load_file(tmp_path / run / "model.safetensors") for run in ("straight", "split")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])
    meta = json.loads((tmp_path / "split" / "config.json").read_text())
    assert meta["codec"]["lmbda"] == 0.5  # the saved run's options, except epochs
    with pytest.raises(GanrevError, match="no training state|train_state"):
        fit_hyperprior(_options(), tmp_path / "nothing", resume=True, device="cpu", progress=False)


def test_a_step_ignores_the_gradient_the_last_auxiliary_step_left() -> None:
    """The clip sees the main loss's gradient alone: a leftover quantile gradient (a straight run has one from its
    last auxiliary step, a resumed run's first step none) changes nothing."""
    options = _options(loss="ssim", lmbda=0.5)
    images = torch.stack([load_image(path, "rgb") for path in list_images(HELDOUT)[:4]])
    steps = []
    for leftover in (None, 1000.0):
        torch.manual_seed(0)
        model = build_model(options.net_config)
        optimizers = _optimizers(model, options)
        if leftover is not None:
            quantiles = model.entropy_bottleneck.quantiles
            quantiles.grad = torch.full_like(quantiles, leftover)
        torch.manual_seed(1)  # the training noise
        parts, aux = train_step(model, optimizers, RateDistortionLoss(options.lmbda, options.loss), images)
        steps.append({name: value.detach().clone() for name, value in model.state_dict().items()})
    changed = [name for name in steps[0] if not torch.equal(steps[0][name], steps[1][name])]
    assert changed == []
    assert parts["loss"] > 0 and aux > 0


def test_resume_refuses_a_state_from_before_the_clip_saw_the_main_gradient_alone(tmp_path: Path) -> None:
    fit_hyperprior(_options(), tmp_path, device="cpu", progress=False)
    state = torch.load(tmp_path / STATE_FILE, weights_only=True)
    del state["clip"]  # what every train_state.pt written before the fix holds
    torch.save(state, tmp_path / STATE_FILE)
    with pytest.raises(GanrevError, match="start a new run"):
        fit_hyperprior(_options(epochs=2), tmp_path, resume=True, device="cpu", progress=False)


def test_the_loss_is_lambda_distortion_plus_rate() -> None:
    target = torch.full((2, 3, 16, 16), 0.5)
    output = {"x_hat": target + 0.1, "likelihoods": {"y": torch.full((2, 4, 1, 1), 0.5)}}
    parts = RateDistortionLoss(0.01, "mse")(output, target)
    assert float(parts["bpp"]) == pytest.approx(8 / (2 * 256))  # 8 latents of 1 bit over 512 pixels
    assert float(parts["distortion"]) == pytest.approx(255**2 * 0.01, rel=1e-4)
    assert float(parts["loss"]) == pytest.approx(0.01 * 255**2 * 0.01 + 8 / 512, rel=1e-4)


@pytest.mark.parametrize("change, message", [({"model": "cheng2020"}, "--model"), ({"lmbda": 0.0}, "--lmbda"),
                                             ({"loss": "psnr"}, "--loss"), ({"hidden_channels": 4}, "8-512"),
                                             ({"model": "cheng2020-anchor"}, "M must equal N")])
def test_bad_options_are_refused_before_any_data_loads(change: dict, message: str) -> None:
    with pytest.raises(GanrevError, match=message):
        _options(**change)


def test_cli_trains_a_compressai_model_and_refuses_the_jpeg_options(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ganrev.cli import app

    args = ["fit-baseline", "compressai", "--model", "factorized", "--lmbda", "0.02", "--out", str(tmp_path / "m"),
            "--data", str(HELDOUT), "--epochs", "1", "--batch-size", "4", "--max-steps-per-epoch", "1",
            "--hidden-channels", "16", "--latent-channels", "24", "--device", "cpu", "--threads", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["net"] == {"model": "factorized", "n": 16, "m": 24, "channels": 3} and meta["codec"]["lmbda"] == 0.02
    assert meta["training"]["options"]["lr"] == 1e-4  # CompressAI's step, not the JPEG baselines'
    refused = CliRunner().invoke(app, [*args[:2], "--quality", "10", "--out", str(tmp_path / "q")])
    assert refused.exit_code != 0 and "--lmbda" in str(refused.exception)
    assert not (tmp_path / "q").exists()


def test_the_latent_channels_default_to_n_for_a_model_of_one_channel_count() -> None:
    assert options_for("compressai", compressai_model="cheng2020-anchor", hidden_channels=32).latent_channels == 32
    assert options_for("compressai", compressai_model="joint", hidden_channels=32).latent_channels == 96
    assert options_for("compressai", compressai_model="mean", latent_channels=40).latent_channels == 40
