"""experiments/loss_study.py --quick: every loss x data set x adversarial setting trains, is measured, reported."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def loss_study():
    spec = importlib.util.spec_from_file_location("loss_study", ROOT / "experiments" / "loss_study.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["loss_study"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def test_quick_study_writes_every_row(loss_study, tmp_path: Path) -> None:
    out, runs = tmp_path / "out", tmp_path / "runs"
    assert loss_study.main(["--quick", "--runs", str(runs), "--out", str(out)]) == 0

    result = json.loads((out / "loss_study.json").read_text())
    rows = result["rows"]
    expected = {(d, loss, adv) for d in ("emoji", "fashion-mnist") for loss in loss_study.STUDY_LOSSES
                for adv in (False, True)}
    assert {(r["dataset"], r["loss"], r["adversarial"]) for r in rows} == expected
    assert set(loss_study.SEED_LOSSES) == {"l1", "l2", "ssim", "ms-ssim", "bce", "ms-ssim+l1", "ms-ssim+l2"}
    assert set(loss_study.SEED_LOSSES) < set(loss_study.STUDY_LOSSES)
    for row in rows:
        assert {"ssim", "ms_ssim", "psnr", "lpips", "bytes", "epochs", "seconds"} <= set(row)
        assert 0 < row["ssim"] <= 1 and row["bytes"] > 0 and row["epochs"] == 2
    # Each run left a real checkpoint whose configuration records the loss it was trained with.
    config = json.loads((runs / "emoji" / "bce-adv" / "config.json").read_text())
    assert config["training"]["options"]["recon_loss"] == "bce"
    assert config["training"]["options"]["adv_weight"] > 0
    assert {r["search_loss"] for r in result["search"]} == {"ssim", "l2"}

    table = (out / "loss_study.md").read_text()
    assert "| ms-ssim+l2 | on |" in table and "## fashion-mnist" in table and "Search loss" in table
    with Image.open(out / "loss_study.png") as picture:
        # Two panels of 1 + 16 rows of images each: originals, then every loss without and with adversarial.
        assert picture.height > 2 * 17 * 64

    # A second call re-uses every measured run instead of training again.
    before = (runs / "emoji" / "l1-ae" / "metrics.json").stat().st_mtime_ns
    assert loss_study.main(["--quick", "--runs", str(runs), "--out", str(out), "--no-search"]) == 0
    assert (runs / "emoji" / "l1-ae" / "metrics.json").stat().st_mtime_ns == before
