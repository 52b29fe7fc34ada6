"""Tests for ganrev.evaluate.card: the default bits, the report and MODEL_CARD.md a run ends with."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ganrev.evaluate.card
from ganrev.evaluate.card import (
    CANDIDATE_BITS,
    KNEE_GAIN,
    BitsPoint,
    best_within,
    choose_bits,
    choose_leading,
    describe_generator,
    fit_command,
)
from ganrev.models import load_generator
from ganrev.training.generator import TrainOptions, fit_generator

pytestmark = pytest.mark.usefixtures("one_thread")


def _curve(*ssims: float) -> list[BitsPoint]:
    return [BitsPoint(bits, score, 10.0 * bits, 0.01 * bits) for bits, score in zip(CANDIDATE_BITS, ssims)]


def test_the_default_bits_are_the_knee_of_the_curve() -> None:
    assert choose_bits(_curve(0.843, 0.882, 0.890, 0.893)) == 4  # emoji64's validation curve: 4 bits shipped
    assert choose_bits(_curve(0.70, 0.75, 0.80, 0.85)) == 6  # every bit still pays: the most tried
    assert choose_bits(_curve(0.80, 0.80 + KNEE_GAIN / 2, 0.9, 0.95)) == 3  # the first step below the gain decides
    assert choose_bits(_curve(0.830, 0.874, 0.888, 0.891)) == 4  # the 300-logo folder's curve: +0.014 for a fifth
    assert choose_bits(list(reversed(_curve(0.843, 0.882, 0.890, 0.893)))) == 4  # order does not matter


def test_fit_command_names_the_data_the_output_and_what_differs_from_the_defaults() -> None:
    options = TrainOptions(data="my images", epochs=40, width=48, hflip=False, augment=True)
    words = shlex.split(fit_command(options, Path("runs/x")))
    assert words[:6] == ["ganrev", "fit-generator", "--data", "my images", "--out", "runs/x"]
    assert "--width" in words and words[words.index("--width") + 1] == "48"
    assert "--no-hflip" in words and "--augment" in words and words[-2:] == ["--epochs", "40"]
    assert "--latent-dim" not in words and "--lr" not in words  # defaults are left out
    random_start = shlex.split(fit_command(TrainOptions(data="d", epochs=1, init_from=None), Path("o")))
    assert random_start[random_start.index("--init-from") + 1] == "none"  # not left to the default


def _folder(root: Path, count: int) -> Path:
    """Smooth two-colour gradients (easy for a tiny generator, not for a tiny file) in a folder."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, 32)[None, :, None]
    for k in range(count):
        a, b = rng.random(3), rng.random(3)
        pixels = (a * (1 - ramp) + b * ramp) * np.ones((32, 1, 1))
        Image.fromarray((pixels * 255).astype(np.uint8)).save(root / f"img{k:03d}.png")
    return root


def test_a_run_describes_itself_bits_report_and_card(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    data = _folder(tmp_path / "data", 80)
    out = tmp_path / "run"
    options = TrainOptions(data=str(data), resolution=32, latent_dim=8, width=8, disc_width=8, epochs=2,
                           batch_size=16, max_steps_per_epoch=3)
    fit_generator(options, out, device="cpu", progress=False, describe=False)
    report = describe_generator(out, count=6, command=fit_command(options, out))
    config = json.loads((out / "config.json").read_text())
    assert [p.bits for p in report.curve] == list(CANDIDATE_BITS)
    assert config["compress_bits"] == report.bits == choose_bits(report.curve)
    assert load_generator(out).compress_bits == report.bits  # compress -g RUN uses it
    assert [f.name for f in report.sets] == ["validation", "seen"]
    validation = report.sets[0]
    assert 0 < validation.images <= 6 and validation.classical_ssim is not None and report.sets[1].classical_ssim is None
    point = next(p for p in report.curve if p.bits == report.bits)
    assert (validation.ssim, validation.bytes) == (point.ssim, point.bytes)  # the chosen precision's files
    assert config["report"] == report.headline() and config["report"]["set"] == "validation"
    card = (out / "MODEL_CARD.md").read_text()
    assert f"`{data}`" in card and "fit-generator --data" in card and f"{report.bits} bits per latent" in card
    assert f"| validation | {validation.images} |" in card and f"{validation.classical_ssim:.4f}" in card
    assert "| 3 |" in card.replace(" (default)", "") and "| 6 |" in card.replace(" (default)", "")
    lines = report.summary_lines()
    assert lines[0].startswith(f"compress_bits {report.bits} (chosen on {validation.images} validation images")
    assert "best classical file within the same bytes" in lines[1]


def test_leading_counts_are_chosen_where_they_beat_the_whole_latent_within_a_budget() -> None:
    # two images; (bytes, SSIM) per image. The whole latent never fits 30 bytes; 32 coordinates fit 25; 64 fit 28
    # and beat 32 from there; 128 coordinates are never better than the whole latent within any budget.
    files = {(None, 2): [(45, 0.70), (46, 0.72)], (None, 3): [(66, 0.80), (67, 0.82)],
             (32, 2): [(20, 0.50), (21, 0.52)], (32, 3): [(24, 0.55), (25, 0.57)],
             (64, 2): [(27, 0.58), (28, 0.60)], (64, 3): [(36, 0.66), (37, 0.68)],
             (128, 2): [(40, 0.60), (41, 0.62)], (128, 3): [(55, 0.69), (56, 0.70)]}
    assert best_within(files, [(None, 2), (None, 3)], 30) == 0.0
    assert best_within(files, [(None, 2), (None, 3), (32, 3)], 30) == pytest.approx(0.56)
    assert best_within(files, list(files), 40) == pytest.approx(0.67)
    assert choose_leading(files, (25, 40)) == (32, 64)  # 128 adds nothing: not taken
    assert choose_leading(files, (25, 40), how_many=1) == (32,)  # 0.56 + 0.56 beats 64's 0 + 0.67
    assert choose_leading(files, (30, 40)) == (64,)  # 64 fits 30 bytes too: then 32 adds nothing


def test_a_nested_dropout_run_lists_its_leading_counts(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "data").mkdir()
    data = _folder(tmp_path / "data", 80)
    out = tmp_path / "run"
    options = TrainOptions(data=str(data), resolution=32, latent_dim=8, width=8, disc_width=8, epochs=2,
                           batch_size=16, max_steps_per_epoch=3, nested_dropout=0.5)
    fit_generator(options, out, device="cpu", progress=False, describe=False)
    monkeypatch.setattr(ganrev.evaluate.card, "LEADING_CANDIDATES", (2, 4, 6, 8))  # 8: the whole latent, left out
    monkeypatch.setattr(ganrev.evaluate.card, "LEADING_BUDGETS_BPP", (0.1, 0.12, 0.15))  # 12-19 bytes at 32x32
    report = describe_generator(out, count=6, classical=False)
    config = json.loads((out / "config.json").read_text())
    assert config["leading_latents"] == list(report.leading) and set(report.leading) <= {2, 4, 6}
    assert [budget for budget, _, _ in report.leading_budgets] == [12, 15, 19]
    assert all(picked >= whole for _, whole, picked in report.leading_budgets)
    if report.leading:
        assert "## Low rates" in (out / "MODEL_CARD.md").read_text()
        assert report.summary_lines()[-1].startswith("leading_latents ")
    assert load_generator(out).metadata["leading_latents"] == list(report.leading)
