"""Tests for the epoch-loop bookkeeping the trainers share (ganrev.training.common): resume, records, best epoch,
train_state.pt. The trainers' own tests run these through real training; here each piece on small data."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from ganrev.errors import GanrevError
from ganrev.io import atomic_write_text
from ganrev.training.common import (
    BEST_DIR,
    STATE_FILE,
    epoch_batches,
    epoch_line,
    epoch_record,
    epoch_seed,
    is_best_epoch,
    read_train_state,
    resumed_options,
    save_latest_and_best,
    saved_progress,
    stack_images,
    write_train_state,
)


@dataclass
class _Options:
    data: str = "emoji"
    epochs: int | None = None
    lr: float | None = None
    seed: int = 0


def _save_config(directory: Path, metadata: dict[str, Any]) -> None:
    atomic_write_text(directory / "config.json", json.dumps(metadata))


def _train_epoch(out: Path, options: _Options, history: list[dict[str, float]], epoch: int, val_ssim: float) -> None:
    """What a trainer does at the end of epoch ``epoch`` (1-based), with a validation SSIM of ``val_ssim``."""
    history.append(epoch_record(epoch, {"loss": 2.0 / epoch}, steps=2) | {"val_ssim": val_ssim})
    metadata = {"training": {"epochs": epoch, "last_epoch": history[-1]}}
    save_latest_and_best(out, metadata, history, _save_config, figure="val_ssim")
    write_train_state(out, options, epoch, history, wall_s=10.0 * epoch, weights=torch.full((2,), float(epoch)))


def _config(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "config.json").read_text())


def test_a_resumed_run_counts_on_its_epochs_history_and_best_epoch(tmp_path: Path) -> None:
    options = _Options(epochs=2, lr=0.5)
    history, start_epoch, wall_before = saved_progress(None)
    assert (history, start_epoch, wall_before) == ([], 0, 0.0)
    for epoch, score in ((1, 0.6), (2, 0.8)):
        _train_epoch(tmp_path, options, history, epoch, score)
    assert _config(tmp_path / BEST_DIR)["training"]["best_epoch"] == 2

    state = read_train_state(tmp_path)
    assert list(state)[:4] == ["options", "epoch", "history", "wall_s"]  # what every trainer's --resume reads
    assert torch.equal(state["weights"], torch.full((2,), 2.0))
    resumed = resumed_options(_Options(epochs=4), state["options"], changes=("epochs", "lr"))
    assert resumed == _Options(data="emoji:google", epochs=4, lr=0.5)  # lr not given: the saved run's
    history, start_epoch, wall_before = saved_progress(state)
    assert (start_epoch, wall_before, [record["epoch"] for record in history]) == (2, 20.0, [1, 2])

    _train_epoch(tmp_path, resumed, history, 3, 0.7)  # worse than epoch 2: best/ keeps epoch 2
    assert _config(tmp_path)["training"]["epochs"] == 3
    assert _config(tmp_path / BEST_DIR)["training"]["best_epoch"] == 2
    _train_epoch(tmp_path, resumed, history, 4, 0.9)
    assert _config(tmp_path / BEST_DIR)["training"]["best_epoch"] == 4
    assert saved_progress(read_train_state(tmp_path))[1:] == (4, 40.0)


def test_a_failed_state_write_leaves_the_last_state_and_no_partial_file(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    options = _Options(epochs=2)
    history = [epoch_record(1, {"loss": 1.0}, steps=1)]
    write_train_state(tmp_path, options, 1, history, wall_s=1.0)
    before = (tmp_path / STATE_FILE).read_bytes()

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt  # a Ctrl-C after the bytes went out, before the rename

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_train_state(tmp_path, options, 2, history + [epoch_record(2, {"loss": 0.5}, steps=1)], wall_s=2.0)
    assert (tmp_path / STATE_FILE).read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == [STATE_FILE]


def test_an_epoch_record_is_the_mean_of_its_steps_and_a_non_finite_loss_stops_the_run() -> None:
    record = epoch_record(3, {"loss": 2.0, "aux": 5.0}, steps=2)
    assert record == {"epoch": 3, "loss": 1.0, "aux": 2.5}
    assert epoch_line(record, 10, "7 s") == "epoch 3/10: loss 1.0000 aux 2.5000 [7 s]"
    with pytest.raises(GanrevError, match="diverged in epoch 3"):
        epoch_record(3, {"loss": float("nan"), "aux": 1.0}, steps=2)
    # only the watched figures decide: a non-finite auxiliary figure is recorded as it is
    assert epoch_record(1, {"loss": 1.0, "aux": float("inf")}, steps=1, watched=("loss",))["aux"] == float("inf")


def test_the_best_epoch_is_the_latest_of_the_best_in_either_direction() -> None:
    history = [{"epoch": 1, "val_loss": 2.0}, {"epoch": 2, "val_loss": 1.0}, {"epoch": 3, "val_loss": 1.0}]
    assert is_best_epoch(history, "val_loss", lower_is_better=True)  # a tie: the later epoch
    assert not is_best_epoch(history, "val_loss")
    assert not is_best_epoch([{"epoch": 1, "loss": 1.0}], "val_ssim")  # no validation: no best epoch


def test_epoch_batches_are_whole_capped_and_drawn_from_the_epoch_seed() -> None:
    def batches(epoch: int, max_steps: int | None = None) -> list[torch.Tensor]:
        return epoch_batches(10, 3, max_steps, torch.Generator().manual_seed(epoch_seed(7, epoch)))

    first = batches(0)
    assert [len(batch) for batch in first] == [3, 3, 3]  # the 10th image waits for another epoch
    assert len(set(torch.cat(first).tolist())) == 9
    assert all(torch.equal(a, b) for a, b in zip(first, batches(0)))  # a resumed run draws the same order
    assert not all(torch.equal(a, b) for a, b in zip(first, batches(1)))
    assert len(batches(0, max_steps=2)) == 2


def test_stack_images_makes_one_tensor_of_a_dataset() -> None:
    images = [torch.full((3, 4, 4), float(i)) for i in range(5)]
    stacked = stack_images(images)
    assert stacked.shape == (5, 3, 4, 4) and torch.equal(stacked[4], images[4])
