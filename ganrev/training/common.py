"""What every training run here shares: the device, sample grids, checkpoint directories' state files, and the
bookkeeping of the epoch loop (resume, per-epoch records and log lines, the best epoch, the time budget)."""

from __future__ import annotations

import contextlib
import io as _io
import math
import os
import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from ganrev.data import saved_source
from ganrev.errors import GanrevError
from ganrev.io import atomic_write_bytes

STATE_FILE = "train_state.pt"  # everything --resume needs: weights, optimisers, epoch, history
BEST_DIR = "best"  # the checkpoint of the epoch with the best validation figure
PRECISIONS = ("auto", "fp32", "bf16")
BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})  # CPUs where bf16 autocast measured faster than fp32


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what :mod:`platform` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """The CPU feature flags the kernel reports (empty where /proc/cpuinfo is absent)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def resolve_precision(requested: str, device: torch.device) -> str:
    """``fp32`` or ``bf16`` for ``--precision``: ``auto`` is bf16 autocast where the hardware runs it faster --
    a CUDA GPU with bf16 support, or a CPU with bf16 instructions (``amx_bf16`` or ``avx512_bf16``) -- else fp32.
    Measured by experiments/bench_train.py (width 32, batch 64, the full aegan step): bf16 was 1.85x fp32's
    speed on one thread of an Intel Xeon with AMX-BF16 and 1.54x on an AMD EPYC with AVX-512 BF16 only."""
    if requested not in PRECISIONS:
        raise GanrevError(f"invalid --precision {requested!r}: use {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_flags() & BF16_CPU_FLAGS else "fp32"


def autocast_for(precision: str, device: torch.device) -> Any:
    """The autocast context of a resolved precision (bf16 needs no loss scaler: its range is fp32's)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type if device.type in ("cpu", "cuda") else "cpu", enabled=False)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's total)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def use_threads(threads: int | None) -> int:
    """Set torch's intra-op threads: ``None`` is every available core. Returns the count in use."""
    count = available_cores() if threads is None else threads
    if count < 1:
        raise GanrevError(f"invalid --threads {threads}: at least 1")
    torch.set_num_threads(count)
    return count


def choose_device(requested: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """The torch device for ``--device``, checked before anything runs: ``auto`` is CUDA when present, else CPU.
    ``auto`` and ``cuda`` without an index take GPU ``local_rank`` (modulo the GPUs present), so each torchrun
    process gets its own. Unknown names and absent GPUs are a one-line :class:`GanrevError`."""
    hint = "use auto, cpu, cuda or cuda:N"
    text = str(requested).strip()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise GanrevError(f"invalid --device {requested!r}: {hint}") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise GanrevError(f"--device {requested}: no CUDA GPU is available (use --device cpu)")
        if device.index is None:
            return torch.device("cuda", local_rank % count)
        if device.index >= count:
            raise GanrevError(f"--device {requested}: this machine has {count} CUDA device(s), cuda:0 to "
                              f"cuda:{count - 1}")
        return device
    if device.type == "mps" and torch.backends.mps.is_available():
        return device
    raise GanrevError(f"invalid --device {requested!r}: {hint}")


def image_grid(images: torch.Tensor, nrow: int = 8, pad: int = 2) -> torch.Tensor:
    """Tile ``[N, C, H, W]`` images in [0, 1] into one ``[C, H', W']`` grid on a white background."""
    n, c, h, w = images.shape
    nrow = max(1, min(nrow, n))  # fewer images than a row: no blank tiles
    rows = math.ceil(n / nrow)
    grid = torch.ones(c, rows * (h + pad) + pad, nrow * (w + pad) + pad)
    for k in range(n):
        r, col = divmod(k, nrow)
        grid[:, pad + r * (h + pad):pad + r * (h + pad) + h, pad + col * (w + pad):pad + col * (w + pad) + w] = images[k]
    return grid


def training_device_name(device: torch.device) -> str:
    """The device a checkpoint's config.json records: the GPU's name, or the CPU and torch's thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({cpu_model()}, {torch.get_num_threads()} threads)"


def read_train_state(out: Path, name: str = STATE_FILE) -> dict[str, Any]:
    """``out/name`` for ``--resume``, read with ``torch.load(weights_only=True)`` (never unpickles code); a missing,
    damaged or foreign file is a one-line GanrevError."""
    state_path = out / name
    if not state_path.is_file():
        raise GanrevError(f"--resume: no {name} in {out}")
    try:
        return torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged or foreign file: name it, in one line
        raise GanrevError(f"cannot read {state_path}: {str(exc).strip().splitlines()[0]}") from exc


class TimeBudget:
    """``--max-minutes``: the wall-clock minutes a training call may spend on its epochs (None: no limit).

    The epoch that ends past the budget is the last one: it is saved like every epoch and the run is finished
    as a complete one is, so ``--resume`` goes on from it. A bad value is refused on construction, before any
    data loads."""

    def __init__(self, minutes: float | None) -> None:
        if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
            raise GanrevError(f"invalid --max-minutes {minutes!r}: must be finite and > 0")
        self.minutes = minutes
        self.started = time.perf_counter()

    def start(self) -> None:
        """Count from now (the first epoch's start), not from construction."""
        self.started = time.perf_counter()

    def elapsed(self, device: torch.device, world: int = 1) -> float:
        """Seconds since :meth:`start`; under DDP rank 0's clock, the same for every process, so that all of them
        take the same decisions from it (none waits for a step the others skip)."""
        seconds = torch.tensor([time.perf_counter() - self.started], device=device)
        if world > 1:
            dist.broadcast(seconds, src=0)
        return float(seconds)

    def spent(self, device: torch.device, world: int = 1) -> bool:
        """Whether the budget is used up (rank 0's clock under DDP)."""
        return self.minutes is not None and self.elapsed(device, world) >= self.minutes * 60


# The epoch loop's bookkeeping: every trainer resumes, records, logs and keeps its best epoch the same way.

OptionsT = TypeVar("OptionsT")


def resumed_options(options: OptionsT, saved: dict[str, Any], changes: Iterable[str]) -> OptionsT:
    """The options a resumed run trains with: the saved run's (``saved``, its data source read with
    :func:`~ganrev.data.saved_source`), except the fields named in ``changes``, taken from ``options`` where given
    (not None). Built anew, so the options class checks the mix as it checks any."""
    saved = saved | {"data": saved_source(saved.get("data", "emoji"))}
    given = {name: getattr(options, name) for name in changes if getattr(options, name) is not None}
    return type(options)(**(saved | given))


def saved_progress(state: dict[str, Any] | None) -> tuple[list[dict[str, float]], int, float]:
    """(history, epochs done, wall-clock seconds) of a saved state, or a new run's ``([], 0, 0.0)``: a resumed run
    counts its epochs, history and ``wall_s`` on from where the saved one stopped."""
    if state is None:
        return [], 0, 0.0
    return list(state["history"]), int(state["epoch"]), float(state["wall_s"])


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s (0-based) random order: it depends on (seed, epoch) alone, so a resumed run
    sees what an uninterrupted one would."""
    return seed * 100_003 + epoch


def epoch_batches(count: int, batch_size: int, max_steps: int | None, rng: torch.Generator) -> list[torch.Tensor]:
    """One epoch's batches of indices into ``count`` images: a permutation drawn from ``rng``, cut into whole
    batches, at most ``max_steps`` of them (``--max-steps-per-epoch``)."""
    order = torch.randperm(count, generator=rng)
    steps = count // batch_size
    if max_steps:
        steps = min(steps, max_steps)
    return [order[step * batch_size:(step + 1) * batch_size] for step in range(steps)]


def stack_images(images: Any) -> torch.Tensor:
    """Every item of an image dataset in one ``[N, C, H, W]`` tensor: small sets train from memory."""
    return torch.stack([images[i] for i in range(len(images))])


def epoch_record(epoch: int, sums: dict[str, float], steps: int,
                 watched: Iterable[str] | None = None) -> dict[str, float]:
    """The history's record of epoch ``epoch`` (1-based): each figure's mean over its ``steps``. A non-finite sum of
    the ``watched`` figures (None: all) stops the run with a one-line GanrevError: the weights are lost, and
    saving them would overwrite the last good epoch."""
    watched_sum = sum(sums.values()) if watched is None else sum(sums[key] for key in watched)
    if not math.isfinite(watched_sum):
        raise GanrevError(f"training diverged in epoch {epoch} (non-finite loss); try a lower --lr")
    return {"epoch": epoch, **{key: value / max(steps, 1) for key, value in sums.items()}}


def epoch_line(record: dict[str, float], epochs: int, details: str) -> str:
    """The log line of an epoch: ``epoch N/E: figure value ... [details]``."""
    figures = " ".join(f"{key} {value:.4f}" for key, value in record.items() if key != "epoch")
    return f"epoch {record['epoch']}/{epochs}: {figures} [{details}]"


def is_best_epoch(history: list[dict[str, float]], figure: str, lower_is_better: bool = False) -> bool:
    """Whether the last epoch of ``history`` has the best validation ``figure`` so far (ties: the later epoch)."""
    scores = [record[figure] for record in history if figure in record]
    best = min if lower_is_better else max
    return bool(scores) and history[-1].get(figure) == best(scores)


def save_latest_and_best(out: Path, metadata: dict[str, Any], history: list[dict[str, float]],
                         save: Callable[[Path, dict[str, Any]], None], *, figure: str,
                         lower_is_better: bool = False) -> None:
    """Save the epoch's checkpoint with ``save(directory, metadata)`` in ``out``, and also in ``out/best/`` (its
    ``training.best_epoch`` recorded) when its validation ``figure`` is the best so far: ``best/`` is the one
    to ship, the latest the one to go on from."""
    save(out, metadata)
    if is_best_epoch(history, figure, lower_is_better):
        epoch = int(history[-1]["epoch"])
        save(out / BEST_DIR, metadata | {"training": metadata["training"] | {"best_epoch": epoch}})


def write_train_state(out: Path, options: Any, epoch: int, history: list[dict[str, float]], wall_s: float,
                      **parts: Any) -> None:
    """Write ``out/train_state.pt``: the options, ``epoch`` (epochs done), history and wall-clock seconds that every
    trainer's ``--resume`` reads back, then the trainer's own ``parts`` (weights, optimisers, ...). Serialised in
    memory first and written atomically, so a kill mid-write leaves the last epoch's state, never half a file."""
    buffer = _io.BytesIO()
    torch.save({"options": asdict(options), "epoch": epoch, "history": history, "wall_s": wall_s, **parts}, buffer)
    atomic_write_bytes(out / STATE_FILE, buffer.getvalue())
