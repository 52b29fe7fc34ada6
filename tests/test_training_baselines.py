"""Tests for ganrev.training.baselines and `ganrev fit-baseline`: tiny real runs on shipped held-out emoji.

The data are 64 emoji from pretrained/emoji64/heldout used as an image folder at 32x32 (the folder's own split
rule holds some back as test and validation images); two steps per epoch keep each run to seconds on one core.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ganrev.codecs.classical import JPEGCodec
from ganrev.cli import app
from ganrev.errors import GanrevError
from ganrev.nets.checkpoint import load_baseline
from ganrev.nets import arcnn, comcnn
from ganrev.io import load_image
from ganrev.training.baselines import BaselineTrainOptions, _Nets, fit_baseline, jpeg_round_trip
from ganrev.training.common import BEST_DIR, STATE_FILE

pytestmark = pytest.mark.usefixtures("one_thread")

HELDOUT = Path(__file__).resolve().parent.parent / "pretrained" / "emoji64" / "heldout"


def _options(model: str, **changes) -> BaselineTrainOptions:
    base = dict(model=model, data=str(HELDOUT), resolution=32, epochs=1, batch_size=8, max_steps_per_epoch=2)
    return BaselineTrainOptions(**(base | changes))


@pytest.mark.parametrize("model, nets", [("arcnn", ["arcnn"]), ("comcnn", ["comcnn", "reccnn"])])
def test_one_epoch_writes_a_loadable_checkpoint(tmp_path: Path, model: str, nets: list[str]) -> None:
    summary = fit_baseline(_options(model), tmp_path / "run", device="cpu", progress=False)
    out = tmp_path / "run"
    (record,) = summary["history"]
    assert record["epoch"] == 1 and record["loss"] > 0
    assert 0 < record["val_ssim_plain"] <= 1 and 0 < record["val_ssim"] <= 1
    meta = json.loads((out / "config.json").read_text())
    assert meta["format"] == "ganrev-baseline" and sorted(meta["files"]) == sorted(nets)
    assert meta["training"]["epochs"] == 1 and meta["codec"]["qualities"] == list(_options(model).qualities)
    assert (out / STATE_FILE).is_file() and (out / "samples" / "epoch_0001.png").is_file()
    assert (out / BEST_DIR / "config.json").is_file()
    architecture = arcnn.ARCHITECTURE if model == "arcnn" else comcnn.ARCHITECTURE
    built = ({"arcnn": arcnn.ArcnnAspp()} if model == "arcnn"
             else {"comcnn": comcnn.ComCNN(), "reccnn": comcnn.RecCNN()})
    loaded = load_baseline(out, architecture, built)
    assert not any(p.requires_grad for net in loaded.nets.values() for p in net.parameters())


def test_a_time_budget_ends_the_run_after_the_epoch_that_spends_it(tmp_path: Path) -> None:
    out = tmp_path / "budget"
    stopped = fit_baseline(_options("arcnn", epochs=3), out, device="cpu", progress=False, max_minutes=1e-9)
    assert stopped["epochs"] == 1 and stopped["out_of_time"] and len(stopped["history"]) == 1
    assert json.loads((out / "config.json").read_text())["training"]["epochs"] == 1
    resumed = fit_baseline(_options("arcnn", epochs=2), out, resume=True, device="cpu", progress=False,
                           max_minutes=60)
    assert resumed["epochs"] == 2 and not resumed["out_of_time"]
    with pytest.raises(GanrevError, match="--max-minutes"):
        fit_baseline(_options("arcnn"), tmp_path / "never", device="cpu", progress=False, max_minutes=0)
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("model", ["arcnn", "comcnn"])
def test_resume_continues_exactly_where_a_straight_run_would_be(tmp_path: Path, model: str) -> None:
    straight = fit_baseline(_options(model, epochs=2), tmp_path / "straight", device="cpu", progress=False)
    fit_baseline(_options(model, epochs=1), tmp_path / "resumed", device="cpu", progress=False)
    resumed = fit_baseline(_options(model, epochs=2), tmp_path / "resumed", resume=True, device="cpu",
                           progress=False)
    assert [r["epoch"] for r in resumed["history"]] == [1, 2]
    assert resumed["history"][-1]["loss"] == pytest.approx(straight["history"][-1]["loss"], rel=1e-5)
    a = torch.load(tmp_path / "straight" / STATE_FILE, weights_only=True)["nets"]
    b = torch.load(tmp_path / "resumed" / STATE_FILE, weights_only=True)["nets"]
    for net in a:
        for key in a[net]:
            torch.testing.assert_close(a[net][key], b[net][key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", ["arcnn", "comcnn"])
def test_training_steps_fit_a_batch_better_than_plain_jpeg(model: str) -> None:
    """Both nets start as plain JPEG (ARCNN: identity; ComCNN/RecCNN: downscale, JPEG, bicubic up); steps on
    one batch of real emoji at JPEG 1 must lower its loss (the nets learn, the codec's gradient flows)."""
    names = sorted(HELDOUT.glob("*.png"))[:8]
    real = torch.stack([load_image(p, "rgb") for p in names])
    real = torch.nn.functional.interpolate(real, size=32, mode="area")
    nets = _Nets(BaselineTrainOptions(model=model, qualities=(1,)), torch.device("cpu"))
    coded = jpeg_round_trip(real, 1)
    first = nets.step(real, coded, 1)["loss"]
    for _ in range(25):
        last = nets.step(real, coded, 1)
    assert last["loss"] < 0.9 * first
    if model == "comcnn":  # ComCNN stepped too, through the real codec
        assert last["com_loss"] < 0.9 * first


def test_jpeg_round_trip_is_the_table_codec() -> None:
    images = torch.stack([JPEGCodec(5).decode(JPEGCodec(100).encode(torch.rand(3, 24, 40)))])
    codec = JPEGCodec(7)
    assert torch.equal(jpeg_round_trip(images, 7)[0], codec.decode(codec.encode(images[0])))


@pytest.mark.parametrize("changes, flag", [({"model": "vdsr"}, "model 'vdsr'"), ({"loss": "huber"}, "--loss"),
                                           ({"qualities": (0,)}, "--quality"), ({"qualities": ()}, "--quality"),
                                           ({"epochs": 0}, "--epochs"), ({"lr": float("nan")}, "--lr")])
def test_bad_options_are_one_line_errors(changes: dict, flag: str) -> None:
    with pytest.raises(GanrevError, match=flag):
        BaselineTrainOptions(**({"model": "arcnn"} | changes))


def test_resume_refuses_another_model_and_a_missing_state(tmp_path: Path) -> None:
    with pytest.raises(GanrevError, match="no train_state.pt"):
        fit_baseline(_options("arcnn"), tmp_path / "empty", resume=True, device="cpu", progress=False)
    fit_baseline(_options("arcnn"), tmp_path / "run", device="cpu", progress=False)
    with pytest.raises(GanrevError, match="'arcnn' run"):
        fit_baseline(_options("comcnn"), tmp_path / "run", resume=True, device="cpu", progress=False)


def test_cli_fit_baseline_trains_and_never_overwrites_without_force(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["fit-baseline", "arcnn", "--out", str(out), "--data", str(HELDOUT), "--resolution", "32",
            "--quality", "1,10", "--epochs", "1", "--batch-size", "8", "--max-steps-per-epoch", "1", "--device", "cpu"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["codec"]["qualities"] == [1, 10]
    before = (out / "arcnn.safetensors").read_bytes()
    again = CliRunner().invoke(app, args)
    assert again.exit_code != 0 and "--resume" in str(again.exception)
    assert (out / "arcnn.safetensors").read_bytes() == before
    assert CliRunner().invoke(app, args + ["--force"]).exit_code == 0
    bad = CliRunner().invoke(app, args[:8] + ["--quality", "ten"])
    assert isinstance(bad.exception, GanrevError) and "--quality" in str(bad.exception)
    shutil.rmtree(out)
