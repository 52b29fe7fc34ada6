"""What the table and the curves share: their options (:class:`EvalOptions`), the images and generator they
run on, the run's metadata (device, data, versions) and strict JSON.

JSON outputs spell non-finite numbers as the strings ``"inf"``, ``"-inf"`` and ``"nan"`` so that strict
JSON parsers read them; CSV writes them as ``inf``. Every file is written atomically.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import ganrev
from ganrev.codecs.classical import avif_available
from ganrev.codecs.gan import GanCodec
from ganrev.codecs.learned import default_table_specs
from ganrev.errors import GanrevError
from ganrev.evaluate.records import GAN_SCHEME
from ganrev.invert import (
    DEFAULT_EFFORT,
    InversionResult,
    SearchOptions,
    check_effort,
    default_search,
)
from ganrev.io import list_images, load_image
from ganrev.metrics import lpips_status
from ganrev.models import GeneratorCheckpoint, load_generator
from ganrev.training.common import choose_device

__all__ = [
    "CURVE_AVIF_QUALITIES",
    "CURVE_BITS",
    "CURVE_JPEG_QUALITIES",
    "CURVE_REFERENCE_BPP",
    "CURVE_WEBP_QUALITIES",
    "display_path",
    "dump_json",
    "EvalOptions",
    "generator_label",
    "HELDOUT_DIR",
    "load_image_folder",
    "REPO_ROOT",
    "resolve_checkpoint",
    "resolve_images_dir",
    "run_metadata",
    "search_latents",
    "settings_record",
]

REPO_ROOT = Path(ganrev.__file__).resolve().parent.parent
HELDOUT_DIR = "heldout"  # a shipped generator's held-out images live in <generator>/heldout/

CURVE_JPEG_QUALITIES = (1, 2, 3, 5, 8, 10, 15, 20, 30, 50, 75)
CURVE_WEBP_QUALITIES = (0, 2, 5, 10, 20, 30, 50, 75)
CURVE_AVIF_QUALITIES = (0, 5, 10, 20, 30, 50, 75)
CURVE_BITS = (2, 3, 4, 5, 6, 8)
CURVE_REFERENCE_BPP = (0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)  # budgets of the per-image reference


@dataclass(frozen=True)
class EvalOptions:
    """How :func:`~ganrev.evaluate.table.run_table` and :func:`~ganrev.evaluate.curves.run_curves` measure: one
    object from the CLI (or a script) down.

    Each generator is searched with the CLI's own defaults for it (:func:`ganrev.invert.default_search`: an
    encoder start when the checkpoint has an encoder, else the best-of-pool start) at each of ``efforts``,
    changed by ``search_overrides`` (e.g. ``(("iters", 500),)``), so the table measures what ``ganrev compress
    --effort N`` does. ``compare`` names further generator checkpoints; every generator gets a GAN-reversal row
    per effort on the same images (the rate matching and the curves follow the first generator's first effort).
    """

    search_overrides: tuple[tuple[str, Any], ...] = ()  # SearchOptions fields changed from compress's defaults
    # --effort levels (ganrev.invert.EFFORTS), each a GAN-reversal row per generator; several: rows named with theirs
    efforts: tuple[int, ...] = (DEFAULT_EFFORT,)
    bits: int | None = None  # None: each generator's own (GeneratorCheckpoint.compress_bits), what compress uses
    refine_iters: int | None = None  # None: compress's default for the search's start (codec.REFINE_ITERS)
    limit: int | None = None
    seed: int = 0  # K-means initialisation (the search's seed is one of ``search_overrides``)
    device: str | torch.device = "auto"
    progress: bool = False
    lpips_weights: str | os.PathLike[str] | None = None
    kmeans_k: int = 4
    rate_step: int = 5  # coarse step of the rate-matching sweeps (1: exhaustive)
    compare: tuple[str | os.PathLike[str], ...] = ()
    jpeg_qualities: tuple[int, ...] = CURVE_JPEG_QUALITIES
    webp_qualities: tuple[int, ...] = CURVE_WEBP_QUALITIES
    avif_qualities: tuple[int, ...] = CURVE_AVIF_QUALITIES  # empty: no AVIF curve
    reference_bpp: tuple[float, ...] = CURVE_REFERENCE_BPP  # the best classical file per image (empty: no curve)
    bits_list: tuple[int, ...] = CURVE_BITS
    iters_list: tuple[int, ...] = ()  # a GAN curve over search iterations (one search each)
    grid_images: int = 0  # the table keeps the decoded first N images of every scheme for a grid (0: none)
    # Learned-baseline rows ("arcnn:10", "comcnn:10", ...; ganrev.codecs.learned). None: the shipped models trained
    # on the generator's data set, as table rows and curve sweeps; (): none.
    learned: tuple[str, ...] | None = None

    def learned_specs(self, checkpoint: GeneratorCheckpoint) -> list[str]:
        if self.learned is not None:
            return list(self.learned)
        return default_table_specs(checkpoint.metadata.get("dataset"))

    def __post_init__(self) -> None:
        if self.bits is not None and not 2 <= self.bits <= 16:
            raise GanrevError(f"invalid --bits {self.bits}: must be 2..16")
        refine_ok = self.refine_iters is None or self.refine_iters >= 0
        if not refine_ok or self.kmeans_k < 1 or self.rate_step < 1 or self.grid_images < 0:
            raise GanrevError("refine_iters and grid_images must be >= 0, kmeans_k and rate_step >= 1")
        if not self.efforts or len(set(self.efforts)) < len(self.efforts):
            raise GanrevError(f"invalid --efforts {','.join(map(str, self.efforts))!r}: must name levels, each once")
        for effort in self.efforts:
            check_effort(effort)
        if self.limit is not None and self.limit < 1:
            raise GanrevError(f"invalid --limit {self.limit}: must be >= 1")
        if any(not (math.isfinite(bpp) and bpp > 0) for bpp in self.reference_bpp):
            raise GanrevError(f"reference budgets must be finite and > 0 bpp, got {self.reference_bpp!r}")

    def bits_for(self, checkpoint: GeneratorCheckpoint) -> int:
        """The bits per latent coordinate of ``checkpoint``'s GAN-reversal rows."""
        return checkpoint.compress_bits if self.bits is None else self.bits

    def search_for(self, checkpoint: GeneratorCheckpoint, effort: int | None = None) -> SearchOptions:
        """Compress's defaults for this checkpoint at ``effort`` (None: the first of ``efforts``) with
        ``search_overrides`` applied."""
        return default_search(checkpoint.encoder is not None, effort=self.efforts[0] if effort is None else effort,
                              **dict(self.search_overrides))

    def gan_label(self, checkpoint: GeneratorCheckpoint, effort: int) -> str:
        """The scheme name of ``checkpoint``'s GAN-reversal row at ``effort``: :func:`generator_label`, with the
        effort where the rows have several."""
        return generator_label(checkpoint, effort if len(self.efforts) > 1 else None)


def display_path(path: str | os.PathLike[str] | None) -> str | None:
    """A path as results files show it: relative to the repository when inside it (no machine paths)."""
    if path is None:
        return None
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(path)


def generator_label(checkpoint: GeneratorCheckpoint, effort: int | None = None) -> str:
    """A GAN-reversal row's scheme name: ``GAN reversal (<checkpoint directory name>)``, or with an ``effort``
    ``GAN reversal (<checkpoint directory name>, effort <N>)``."""
    parts = [checkpoint.path.name] if checkpoint.path is not None else []
    if effort is not None:
        parts.append(f"effort {effort}")
    return f"{GAN_SCHEME} ({', '.join(parts)})" if parts else GAN_SCHEME


def load_image_folder(folder: str | os.PathLike[str], limit: int | None = None) -> tuple[list[str], list[torch.Tensor]]:
    """Names (paths relative to ``folder``) and tensors of the images in ``folder``, sorted, first ``limit``."""
    root = Path(folder)
    if not root.is_dir():
        raise GanrevError(f"image folder not found: {root}")
    paths = list_images(root)
    if limit is not None:
        if limit < 1:
            raise GanrevError(f"--limit must be at least 1, got {limit}")
        paths = paths[:limit]
    if not paths:
        raise GanrevError(f"no images in {root}")
    return [p.relative_to(root).as_posix() for p in paths], [load_image(p) for p in paths]


def search_latents(codec: GanCodec, images: Sequence[torch.Tensor]) -> InversionResult:
    """The batched latent search :meth:`GanCodec.compress` runs, on its own, so that it can be re-used.

    ``codec.compress_latents(images, search_latents(codec, images))`` gives the same files as
    ``codec.compress(images)``.
    """
    return codec.search_latents(list(images))


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"CUDA {torch.cuda.get_device_name(device)}"
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU {model} ({os.cpu_count()} logical cores, torch uses {torch.get_num_threads()} threads)"


def run_metadata(checkpoint: GeneratorCheckpoint, device: torch.device, *, images_dir: Path | None = None,
                 images: int | None = None, lpips_weights: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Where and with what a run happened: device, versions, generator, data, LPIPS status, date."""
    import PIL

    lpips_ok, lpips_reason = lpips_status(lpips_weights)
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": _device_name(device),
        "torch_device": str(device),
        "versions": {"ganrev": ganrev.__version__, "torch": torch.__version__, "pillow": PIL.__version__,
                     "python": platform.python_version()},
        "platform": platform.platform(),
        "generator": {"path": display_path(checkpoint.path),
                      "fingerprint": checkpoint.fingerprint, "config": asdict(checkpoint.config),
                      "dataset": checkpoint.metadata.get("dataset"),
                      "training_epochs": (checkpoint.metadata.get("training") or {}).get("epochs")},
        "images_dir": display_path(images_dir),
        "images": images,
        "lpips": {"available": lpips_ok, "reason": lpips_reason},
        "avif_available": avif_available(),
        "command": " ".join([Path(sys.argv[0]).name] + [display_path(a) if os.path.isabs(a) else a
                                                        for a in sys.argv[1:]]),
    }


def resolve_checkpoint(generator: str | os.PathLike[str] | GeneratorCheckpoint,
                       device: str | torch.device) -> tuple[GeneratorCheckpoint, torch.device]:
    """The generator to evaluate (loaded from its directory unless given loaded) and the device to run on."""
    dev = choose_device(device) if isinstance(device, str) else torch.device(device)
    if isinstance(generator, GeneratorCheckpoint):
        return generator, dev
    return load_generator(generator, dev), dev


def resolve_images_dir(checkpoint: GeneratorCheckpoint, images_dir: str | os.PathLike[str] | None) -> Path:
    """``images_dir`` if given, else the generator's shipped ``heldout/`` folder; neither is a GanrevError."""
    if images_dir is not None:
        return Path(images_dir)
    if checkpoint.path is None:
        raise GanrevError("no image folder given and the generator has no directory to find heldout/ in")
    default = checkpoint.path / HELDOUT_DIR
    if not default.is_dir():
        raise GanrevError(f"no image folder given and the generator has no {HELDOUT_DIR}/ folder ({default}): "
                          "pass --images DIR")
    return default


def settings_record(options: EvalOptions, checkpoint: GeneratorCheckpoint) -> dict[str, Any]:
    """The options as recorded in results files (JSON-ready; paths relative to the repository)."""
    settings = asdict(options)
    settings["search"] = asdict(options.search_for(checkpoint))  # at the first effort, the rate-matched row's
    settings["bits"] = options.bits_for(checkpoint)
    settings["search_overrides"] = dict(options.search_overrides)
    settings["device"] = str(options.device)
    settings["lpips_weights"] = display_path(options.lpips_weights)
    settings["compare"] = [display_path(p) for p in options.compare]
    return settings


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def dump_json(payload: Any) -> str:
    """Strict JSON (non-finite numbers as strings), indented, with a final newline."""
    return json.dumps(_json_safe(payload), indent=2, allow_nan=False) + "\n"
