"""DCGAN generator and discriminator (after pytorch/examples' dcgan) and the generator checkpoint format.

A generator checkpoint is a directory holding
- ``generator.safetensors``: the weights (safetensors never unpickles code), and
- ``config.json``: architecture, latent size, resolution, channels, data set, split, training figures,
  and ``fingerprint``, the SHA-256 of the weights that every compressed file carries, so a file is never
  decoded with a generator it was not made with.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save
from torch import nn

from ganrev.errors import GanrevError
from ganrev.io import atomic_write_text, atomic_writer

CHECKPOINT_FORMAT = "ganrev-generator"
CHECKPOINT_VERSION = 1
WEIGHTS_FILE = "generator.safetensors"
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything needed to rebuild a generator: its architecture hyper-parameters."""

    latent_dim: int = 100
    channels: int = 3
    resolution: int = 64
    width: int = 64  # ngf in pytorch/examples: channels of the last hidden layer

    def __post_init__(self) -> None:
        if self.resolution < 8 or self.resolution & (self.resolution - 1):
            raise GanrevError(f"resolution must be a power of two >= 8, got {self.resolution}")
        if self.channels not in (1, 3):
            raise GanrevError(f"channels must be 1 or 3, got {self.channels}")
        if self.latent_dim < 1 or self.width < 1:
            raise GanrevError("latent_dim and width must be positive")

    @property
    def upsamplings(self) -> int:
        """Number of stride-2 layers between the 4x4 seed and the output."""
        return int(math.log2(self.resolution)) - 2


class Generator(nn.Module):
    """z ``[N, latent_dim]`` -> image ``[N, C, R, R]`` in [-1, 1] (tanh)."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        mult = 2 ** (config.upsamplings - 1)
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(config.latent_dim, config.width * mult, 4, 1, 0, bias=False),
            nn.BatchNorm2d(config.width * mult),
            nn.ReLU(True),
        ]
        while mult > 1:
            layers += [
                nn.ConvTranspose2d(config.width * mult, config.width * mult // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(config.width * mult // 2),
                nn.ReLU(True),
            ]
            mult //= 2
        layers += [nn.ConvTranspose2d(config.width, config.channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z.view(z.shape[0], -1, 1, 1))

    def images(self, z: torch.Tensor) -> torch.Tensor:
        """Generated images mapped to the [0, 1] range ganrev uses everywhere else."""
        return (self(z) + 1.0) * 0.5


class Discriminator(nn.Module):
    """image ``[N, C, R, R]`` in [-1, 1] -> one logit per image (no sigmoid: trained with BCE-with-logits)."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(config.channels, config.width, 4, 2, 1, bias=False),
                                   nn.LeakyReLU(0.2, inplace=True)]
        mult = 1
        for _ in range(config.upsamplings - 1):
            layers += [
                nn.Conv2d(config.width * mult, config.width * mult * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(config.width * mult * 2),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            mult *= 2
        layers.append(nn.Conv2d(config.width * mult, 1, 4, 1, 0, bias=False))
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1)


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: N(0, 0.02) convolutions, N(1, 0.02) BatchNorm scales."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def weights_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and little-endian bytes of all tensors, in sorted name order.

    Independent of file layout, so re-saving the same weights keeps the fingerprint.
    """
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(repr(tuple(tensor.shape)).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass
class GeneratorCheckpoint:
    """A loaded generator (eval mode, frozen) with the metadata from its config.json."""

    generator: Generator
    config: GeneratorConfig
    fingerprint: str
    path: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint_bytes(self) -> bytes:
        return bytes.fromhex(self.fingerprint)


def save_generator(generator: Generator, directory: str | os.PathLike[str], metadata: dict[str, Any]) -> str:
    """Write ``generator.safetensors`` + ``config.json`` into ``directory`` atomically; return the fingerprint."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    fingerprint = weights_fingerprint(state)
    with atomic_writer(out / WEIGHTS_FILE) as handle:
        handle.write(save(state))
    config = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "architecture": "dcgan",
        **asdict(generator.config),
        "fingerprint": fingerprint,
        **metadata,
    }
    atomic_write_text(out / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=False) + "\n")
    return fingerprint


def load_generator(directory: str | os.PathLike[str], device: str | torch.device = "cpu") -> GeneratorCheckpoint:
    """Load a generator checkpoint directory; verify its fingerprint; return it frozen in eval mode."""
    path = Path(directory)
    if path.is_file() and path.name in (WEIGHTS_FILE, CONFIG_FILE):
        path = path.parent
    config_path, weights_path = path / CONFIG_FILE, path / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise GanrevError(f"{path} is not a generator checkpoint: it needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    try:
        meta = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise GanrevError(f"cannot read {config_path}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT or meta.get("architecture") != "dcgan":
        raise GanrevError(f"{config_path} is not a ganrev DCGAN generator config")
    if not isinstance(meta.get("format_version", 0), int):
        raise GanrevError(f"{config_path} has an invalid format_version {meta['format_version']!r}")
    if meta.get("format_version", 0) > CHECKPOINT_VERSION:
        raise GanrevError(f"{config_path} has format version {meta['format_version']}; this ganrev reads "
                          f"up to {CHECKPOINT_VERSION}: upgrade ganrev")
    try:
        config = GeneratorConfig(**{k: int(meta[k]) for k in ("latent_dim", "channels", "resolution", "width")})
        state = load_file(str(weights_path))
    except (KeyError, TypeError, ValueError) as exc:
        raise GanrevError(f"cannot load generator from {path}: {exc}") from exc
    except Exception as exc:  # safetensors raises its own SafetensorError for damaged files
        raise GanrevError(f"cannot load generator weights {weights_path}: {exc}") from exc
    fingerprint = weights_fingerprint(state)
    if meta.get("fingerprint") and meta["fingerprint"] != fingerprint:
        raise GanrevError(f"{weights_path} does not match the fingerprint in {config_path}: "
                          "the weights were changed or the files come from different checkpoints")
    generator = Generator(config)
    try:
        generator.load_state_dict(state)
    except RuntimeError as exc:
        raise GanrevError(f"weights in {weights_path} do not fit the architecture in {config_path}: {exc}") from exc
    generator.eval().requires_grad_(False).to(device)
    return GeneratorCheckpoint(generator, config, fingerprint, path, meta)


__all__ = [
    "Discriminator", "Generator", "GeneratorCheckpoint", "GeneratorConfig", "init_weights", "load_generator",
    "save_generator", "weights_fingerprint",
]
