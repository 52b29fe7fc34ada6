"""The seeds' learned baselines as codecs: real JPEG files, decoded through trained networks.

- :class:`ArcnnCodec` ("JPEG (10%) + ARCNN-ASPP"): the bytes are exactly :class:`ganrev.codecs.classical.JPEGCodec`'s
  file, so the rate is JPEG's; decoding restores the JPEG decode with AR-CNN + ASPP (seed 004).
- :class:`ComCnnCodec` ("ComCNN/RecCNN (JPEG q10)"): ComCNN's half-size compact image as a JPEG file plus one
  trailing byte (whether height and width are odd; JPEG viewers ignore it, the rate counts it); decoding
  upscales the JPEG decode (bicubic) and restores it with RecCNN (seed 003).

Models are checkpoint directories written by ``ganrev fit-baseline`` (:mod:`ganrev.nets.checkpoint`); the
shipped ones live in ``pretrained/baselines/``. A gray image goes through an RGB model as three equal channels
and comes back as their mean, so ``decode(encode(x))`` keeps the channel count of ``x``.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ganrev.codecs.base import ImageCodec
from ganrev.codecs.classical import JPEGCodec
from ganrev.codecs.hyperprior import NAME_PREFIX, HyperpriorCodec
from ganrev.data import emoji_vendors, heldout_vendor, is_emoji_source, saved_source
from ganrev.errors import GanrevError
from ganrev.nets import arcnn, comcnn
from ganrev.nets.hyperprior import MODELS as COMPRESSAI_MODELS
from ganrev.nets.hyperprior import compressai_available
from ganrev.nets.checkpoint import BaselineCheckpoint, load_baseline, read_baseline_config
from ganrev.pretrained import shipped_path

SHIPPED_DIR = shipped_path("baselines")  # absent from a wheel, which carries no baseline: the table has no such rows
# shipped directory per model: arcnn one per quality (the table's rows); arcnn-blind one for every quality it was
# trained at (the curves' sweep)
SHIPPED = {"arcnn": "arcnn-q{quality}", "arcnn-blind": "arcnn-blind", "comcnn": "comcnn"}
# CompressAI's codecs: one directory per model and rate level (1 = the lowest rate), as CompressAI's zoo numbers
# its qualities; the spec is compressai-MODEL:LEVEL
COMPRESSAI_SPECS = tuple(f"compressai-{model}" for model in COMPRESSAI_MODELS)
SHIPPED_COMPRESSAI = "{name}-q{level}"

__all__ = ["ArcnnCodec", "COMCNN_TABLE_QUALITY", "COMPRESSAI_SPECS", "ComCnnCodec", "HyperpriorCodec", "SHIPPED_DIR",
           "default_curve_sweeps", "default_table_specs", "learned_codec_from_spec", "shipped_arcnn_qualities",
           "shipped_compressai_levels"]


def _net_config(cls: type, meta: dict[str, Any], path: Path) -> Any:
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["net"].items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise GanrevError(f"{path}: invalid network config: {exc}") from exc


def _qualities(meta: dict[str, Any], path: Path) -> tuple[int, ...]:
    qualities = meta.get("codec", {}).get("qualities") if isinstance(meta.get("codec"), dict) else None
    if not isinstance(qualities, list) or not qualities or not all(isinstance(q, int) and 1 <= q <= 100
                                                                   for q in qualities):
        raise GanrevError(f"{path}: config.json does not say which JPEG qualities the model was trained for")
    return tuple(qualities)


def _through(net: torch.nn.Module, image: torch.Tensor, channels: int) -> torch.Tensor:
    """``net`` on one ``[C, H, W]`` image; a gray image through an RGB net as three equal channels."""
    gray = image.shape[0] == 1 and channels == 3
    batch = (image.expand(3, -1, -1) if gray else image).unsqueeze(0)
    with torch.no_grad():
        out = net(batch)[0].clamp(0, 1)
    return out.mean(0, keepdim=True) if gray else out


def _check_channels(image: torch.Tensor, channels: int, what: str) -> None:
    if image.shape[0] not in (1, channels):
        raise GanrevError(f"{what} was trained on {channels}-channel images; got {image.shape[0]} channels")


class ArcnnCodec:
    """JPEG at the model's quality, decoded through AR-CNN + ASPP."""

    def __init__(self, checkpoint: str | os.PathLike[str], quality: int | None = None) -> None:
        path = Path(checkpoint)
        meta = read_baseline_config(path, arcnn.ARCHITECTURE)
        self.config = _net_config(arcnn.ArcnnConfig, meta, path)
        self.checkpoint: BaselineCheckpoint = load_baseline(path, arcnn.ARCHITECTURE,
                                                            {"arcnn": arcnn.ArcnnAspp(self.config)})
        trained = _qualities(meta, path)
        if quality is None:
            if len(trained) > 1:
                raise GanrevError(f"{path} is a blind ARCNN for JPEG qualities {trained}: give the quality")
            quality = trained[0]
        if len(trained) == 1 and quality != trained[0]:
            raise GanrevError(f"{path} restores JPEG quality {trained[0]} only, not {quality}")
        self.jpeg = JPEGCodec(quality)
        self.quality = quality
        self.name = f"JPEG ({quality}%) + ARCNN-ASPP" + (" blind" if len(trained) > 1 else "")

    def encode(self, image: torch.Tensor) -> bytes:
        _check_channels(image, self.config.channels, "this ARCNN")
        return self.jpeg.encode(image)

    def decode(self, data: bytes) -> torch.Tensor:
        return _through(self.checkpoint.nets["arcnn"], self.jpeg.decode(data), self.config.channels)

    def __repr__(self) -> str:
        return f"ArcnnCodec({str(self.checkpoint.path)!r}, quality={self.quality})"


class ComCnnCodec:
    """ComCNN's compact image as JPEG at ``quality`` (+ 1 byte), restored by RecCNN."""

    def __init__(self, checkpoint: str | os.PathLike[str], quality: int) -> None:
        path = Path(checkpoint)
        meta = read_baseline_config(path, comcnn.ARCHITECTURE)
        self.config = _net_config(comcnn.ComCnnConfig, meta, path)
        self.checkpoint = load_baseline(path, comcnn.ARCHITECTURE, {"comcnn": comcnn.ComCNN(self.config),
                                                                   "reccnn": comcnn.RecCNN(self.config)})
        _qualities(meta, path)  # a config that does not say its qualities is refused, as for ARCNN
        self.jpeg = JPEGCodec(quality)
        self.quality = quality
        self.name = f"ComCNN/RecCNN (JPEG q{quality})"

    def encode(self, image: torch.Tensor) -> bytes:
        _check_channels(image, self.config.channels, "this ComCNN")
        height, width = image.shape[-2:]
        compact = _through(self.checkpoint.nets["comcnn"], image, self.config.channels)
        return self.jpeg.encode(compact) + bytes([(height % 2) | (width % 2) << 1])

    def decode(self, data: bytes) -> torch.Tensor:
        if len(data) < 2 or data[-1] > 3:
            raise GanrevError("not a ComCNN/RecCNN file: its last byte must hold the odd-size flags (0-3)")
        compact = self.jpeg.decode(data[:-1])
        height = 2 * compact.shape[-2] - (data[-1] & 1)
        width = 2 * compact.shape[-1] - (data[-1] >> 1)
        upscaled = comcnn.upscale(compact.unsqueeze(0), height, width)[0]
        return _through(self.checkpoint.nets["reccnn"], upscaled, self.config.channels)

    def __repr__(self) -> str:
        return f"ComCnnCodec({str(self.checkpoint.path)!r}, quality={self.quality})"


def shipped_arcnn_qualities() -> list[int]:
    """JPEG qualities with a shipped per-quality ARCNN model under :data:`SHIPPED_DIR`."""
    found = []
    for path in SHIPPED_DIR.glob("arcnn-q*"):
        suffix = path.name.removeprefix("arcnn-q")
        if suffix.isdigit() and (path / "config.json").is_file():
            found.append(int(suffix))
    return sorted(found)


def shipped_compressai_levels(name: str) -> list[int]:
    """Rate levels with a shipped model for ``compressai-MODEL`` under :data:`SHIPPED_DIR`, ascending."""
    found = []
    for path in SHIPPED_DIR.glob(f"{name}-q*"):
        suffix = path.name.removeprefix(f"{name}-q")
        if suffix.isdigit() and (path / "config.json").is_file():
            found.append(int(suffix))
    return sorted(found)


def learned_codec_from_spec(name: str, quality: int | None) -> ArcnnCodec | ComCnnCodec | HyperpriorCodec:
    """``arcnn:Q`` (the shipped ARCNN for JPEG quality Q), ``arcnn-blind:Q`` (the shipped blind ARCNN at one of
    its qualities), ``comcnn:Q`` (shipped ComCNN/RecCNN, JPEG at Q) or ``compressai-MODEL:L`` (the shipped
    CompressAI model at rate level L, MODEL one of :data:`ganrev.nets.hyperprior.MODELS`)."""
    if name in COMPRESSAI_SPECS:
        levels = shipped_compressai_levels(name)
        if quality not in levels:
            raise GanrevError(f"no shipped {name} model at rate level {quality} (shipped: "
                              f"{', '.join(map(str, levels)) or 'none'}); train one with `ganrev fit-baseline "
                              f"compressai --model {name.removeprefix('compressai-')} --lmbda L`")
        return HyperpriorCodec.load(SHIPPED_DIR / SHIPPED_COMPRESSAI.format(name=name, level=quality))
    quality = 10 if quality is None else quality
    if name == "arcnn":
        shipped = shipped_arcnn_qualities()
        if quality not in shipped:
            raise GanrevError(f"no shipped ARCNN model for JPEG quality {quality} (shipped: "
                              f"{', '.join(map(str, shipped)) or 'none'}); train one with "
                              f"`ganrev fit-baseline arcnn --quality {quality}`")
        return ArcnnCodec(SHIPPED_DIR / SHIPPED["arcnn"].format(quality=quality))
    if name not in SHIPPED:
        raise GanrevError(f"unknown learned codec {name!r}: {', '.join(SHIPPED)}")
    path = SHIPPED_DIR / SHIPPED[name]
    if not (path / "config.json").is_file():
        raise GanrevError(f"no shipped {name} model in {path}; train one with `ganrev fit-baseline "
                          f"{name.removesuffix('-blind')}`")
    return ComCnnCodec(path, quality) if name == "comcnn" else ArcnnCodec(path, quality)


COMCNN_TABLE_QUALITY = 10  # the table's ComCNN row stores its compact image at JPEG 10, like the table's JPEG row
LearnedSweep = tuple[str, Callable[[int], ImageCodec], list[int]]


def _arcnn_qualities_for(dataset: str) -> list[int]:
    """Qualities of the shipped per-quality ARCNN models trained on ``dataset``, ascending."""
    return [q for q in shipped_arcnn_qualities() if _in_domain(SHIPPED_DIR / SHIPPED["arcnn"].format(quality=q),
                                                                dataset)]


def default_table_specs(dataset: str | None) -> list[str]:
    """Specs of the table's learned rows: the shipped models trained on ``dataset`` (others would be out of domain)."""
    if dataset is None:
        return []
    specs = [f"arcnn:{q}" for q in reversed(_arcnn_qualities_for(dataset))]
    if _in_domain(SHIPPED_DIR / SHIPPED["comcnn"], dataset):
        specs.append(f"comcnn:{COMCNN_TABLE_QUALITY}")
    return specs + [f"{name}:{level}" for name, level in _compressai_for(dataset)]


def _compressai_for(dataset: str) -> list[tuple[str, int]]:
    """(spec name, level) of every shipped CompressAI model trained on ``dataset`` (none without CompressAI)."""
    if not compressai_available():
        return []
    return [(name, level) for name in COMPRESSAI_SPECS for level in shipped_compressai_levels(name)
            if _in_domain(SHIPPED_DIR / SHIPPED_COMPRESSAI.format(name=name, level=level), dataset)]


def _in_domain(path: Path, dataset: str) -> bool:
    """Whether the model in ``path`` was trained on the images the table of a generator trained on ``dataset``
    measures: the same data set or, for emoji, a set of vendors holding the vendor of the generator's held-out
    images (its first vendor: Google's for Google + Twemoji). A baseline trained on more or fewer vendors than the
    generator stays a row: it has seen the table's style, as the generator has."""
    try:
        trained = json.loads((path / "config.json").read_text()).get("dataset")
    except (OSError, json.JSONDecodeError):
        return False
    if not isinstance(trained, str):
        return False
    if is_emoji_source(trained) and is_emoji_source(dataset):
        return heldout_vendor(dataset) in emoji_vendors(saved_source(trained), fetched_only=False)
    return trained == dataset


def default_curve_sweeps(dataset: str | None) -> list[LearnedSweep]:
    """Rate-distortion sweeps of the shipped learned models trained on ``dataset``: JPEG + ARCNN-ASPP over the
    qualities with a shipped per-quality model, the blind ARCNN and ComCNN/RecCNN over the qualities they were
    trained at."""
    if dataset is None:
        return []
    sweeps: list[LearnedSweep] = []
    arcnn_qualities = _arcnn_qualities_for(dataset)
    if arcnn_qualities:
        sweeps.append(("JPEG + ARCNN-ASPP", lambda q: learned_codec_from_spec("arcnn", q), arcnn_qualities))
    blind = SHIPPED_DIR / SHIPPED["arcnn-blind"]
    if _in_domain(blind, dataset):
        qualities = list(_qualities(read_baseline_config(blind, arcnn.ARCHITECTURE), blind))
        sweeps.append(("JPEG + ARCNN-ASPP blind", lambda q: ArcnnCodec(blind, q), qualities))
    path = SHIPPED_DIR / SHIPPED["comcnn"]
    if _in_domain(path, dataset):
        qualities = list(_qualities(read_baseline_config(path, comcnn.ARCHITECTURE), path))
        sweeps.append(("ComCNN/RecCNN", lambda q: ComCnnCodec(path, q), qualities))
    for name in COMPRESSAI_SPECS:  # one series per CompressAI model, a point per shipped rate level
        levels = [level for spec, level in _compressai_for(dataset) if spec == name]
        if levels:
            sweeps.append((f"{NAME_PREFIX}{COMPRESSAI_MODELS[name.removeprefix('compressai-')]}",
                           functools.partial(learned_codec_from_spec, name), levels))
    return sweeps
