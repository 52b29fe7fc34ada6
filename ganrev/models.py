"""The generator checkpoint format (the networks themselves are :mod:`ganrev.nets.dcgan`'s).

A generator checkpoint is a directory holding
- ``generator.safetensors``: the weights (safetensors never unpickles code),
- ``encoder.safetensors`` (optional): an encoder E trained with the generator, mapping images to latents,
  used to start the latent search near the answer, and
- ``config.json``: architecture, latent size, resolution, channels, data set, split, training figures,
  and ``fingerprint``, the SHA-256 of the weights that every compressed file carries, so a file is never
  decoded with a generator it was not made with; with an encoder, ``encoder.fingerprint`` likewise, so an
  encoder from another run is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save
from torch import nn

from ganrev.density import DensityFit, GaussianMixture
from ganrev.errors import GanrevError
from ganrev.io import atomic_write_text, atomic_writer
from ganrev.nets.dcgan import Encoder, Generator, GeneratorConfig

CHECKPOINT_FORMAT = "ganrev-generator"
CHECKPOINT_VERSION = 1
WEIGHTS_FILE = "generator.safetensors"
ENCODER_FILE = "encoder.safetensors"
DENSITY_FILE = "density.safetensors"  # a density of E(x) for `ganrev generate` (ganrev.density)
CONFIG_FILE = "config.json"
DEFAULT_COMPRESS_BITS = 6
"""Bits per latent coordinate ``compress`` uses with a generator whose config.json names none (``compress_bits``).
For the 100-dimensional latent of emoji64-google, 6 bits gave SSIM 0.7914 at 81 bytes on 64 validation emoji, 8 bits
0.7924 at 106 (+0.001 for +30 % bytes), 5 bits 0.7885 at 69 (experiments/results/default_bits-emoji64-google). A
generator with a larger latent is shipped with fewer bits, so that its files stay as small: emoji64 (latent 160)
with 4."""


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


def read_fingerprinted(weights: Path, fingerprint: str, listed_in: Path, what: str) -> dict[str, torch.Tensor]:
    """The tensors of the safetensors file ``weights``, checked against the ``fingerprint`` that ``listed_in``
    records for ``what``; a one-line GanrevError when the file is missing, unreadable or another one."""
    if not weights.is_file():
        raise GanrevError(f"{listed_in} lists {what} but {weights} is missing")
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own SafetensorError for damaged files
        raise GanrevError(f"cannot load {what} from {weights}: {exc}") from exc
    if weights_fingerprint(state) != fingerprint:
        raise GanrevError(f"{weights} does not match the fingerprint of {what} in {listed_in}: it comes from "
                          "another run or was changed")
    return state


@dataclass
class GeneratorCheckpoint:
    """A loaded generator (eval mode, frozen) with the metadata from its config.json."""

    generator: Generator
    config: GeneratorConfig
    fingerprint: str
    path: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    encoder: Encoder | None = None  # present when the generator was trained with one (``--objective aegan``)
    density: GaussianMixture | None = None  # fitted to the encoder's codes (``ganrev fit-density``)
    compress_bits: int = DEFAULT_COMPRESS_BITS  # compress's default bits per latent coordinate for this generator

    @property
    def fingerprint_bytes(self) -> bytes:
        return bytes.fromhex(self.fingerprint)


def _write_weights(module: nn.Module, path: Path) -> str:
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with atomic_writer(path) as handle:
        handle.write(save(state))
    return weights_fingerprint(state)


def save_generator(generator: Generator, directory: str | os.PathLike[str], metadata: dict[str, Any],
                   encoder: Encoder | None = None) -> str:
    """Write ``generator.safetensors`` (+ ``encoder.safetensors``) + ``config.json`` into ``directory``
    atomically; return the generator's fingerprint. Without an encoder, a stale encoder file is removed so
    the directory never pairs a generator with an encoder from another run; a latent density, which belongs
    to the codes of the encoder it was fitted to, is always removed (see :func:`attach_density`)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    fingerprint = _write_weights(generator, out / WEIGHTS_FILE)
    config: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "architecture": "dcgan",
        **asdict(generator.config),
        "fingerprint": fingerprint,
    }
    if encoder is not None:
        config["encoder"] = {"width": encoder.config.width, "file": ENCODER_FILE,
                             "fingerprint": _write_weights(encoder, out / ENCODER_FILE)}
    else:
        (out / ENCODER_FILE).unlink(missing_ok=True)
    config.update({key: value for key, value in metadata.items() if key != "density"})
    atomic_write_text(out / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=False) + "\n")
    (out / DENSITY_FILE).unlink(missing_ok=True)
    return fingerprint


def attach_density(directory: str | os.PathLike[str], fit: DensityFit) -> str:
    """Add ``fit``'s mixture to the checkpoint in ``directory`` as ``density.safetensors``, listed in its
    config.json with its fingerprint and the fingerprint of the encoder whose codes it models; return the
    density's fingerprint. The file is written before the config lists it, so an interrupted call leaves an
    unlisted file, which loading ignores, never a listed file that is missing."""
    path = Path(directory)
    meta = json.loads((path / CONFIG_FILE).read_text())
    encoder = meta.get("encoder")
    if not isinstance(encoder, dict) or not isinstance(encoder.get("fingerprint"), str):
        raise GanrevError(f"{path} has no encoder: a latent density models the codes E(x) of one")
    state = fit.mixture.state_dict()
    with atomic_writer(path / DENSITY_FILE) as handle:
        handle.write(save(state))
    fingerprint = weights_fingerprint(state)
    meta["density"] = {"file": DENSITY_FILE, "fingerprint": fingerprint, "encoder_fingerprint": encoder["fingerprint"],
                       **fit.record()}
    atomic_write_text(path / CONFIG_FILE, json.dumps(meta, indent=2, sort_keys=False) + "\n")
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
    if not isinstance(meta.get("fingerprint"), str):
        raise GanrevError(f"{config_path} has no weights fingerprint: it cannot be checked against "
                          f"{weights_path}, so it is refused")
    if meta["fingerprint"] != fingerprint:
        raise GanrevError(f"{weights_path} does not match the fingerprint in {config_path}: "
                          "the weights were changed or the files come from different checkpoints")
    generator = Generator(config)
    _fit_weights(generator, state, f"weights in {weights_path} do not fit the architecture in {config_path}")
    generator.eval().requires_grad_(False).to(device)
    encoder = _load_encoder(path, meta, config, config_path)
    if encoder is not None:
        encoder.eval().requires_grad_(False).to(device)
    density = _load_density(path, meta, config, config_path)
    return GeneratorCheckpoint(generator, config, fingerprint, path, meta, encoder, density,
                               _compress_bits(meta, config_path))


def _compress_bits(meta: dict[str, Any], config_path: Path) -> int:
    """config.json's ``compress_bits`` (an integer 2-16), or :data:`DEFAULT_COMPRESS_BITS` where it names none."""
    bits = meta.get("compress_bits", DEFAULT_COMPRESS_BITS)
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16:
        raise GanrevError(f"{config_path} has an invalid compress_bits {bits!r}: an integer from 2 to 16")
    return bits


def set_compress_bits(directory: str | os.PathLike[str], bits: int) -> None:
    """Record in a checkpoint's config.json the bits per latent coordinate ``compress`` uses by default with it
    (chosen when the generator is shipped: the operating point its published figures are measured at)."""
    _compress_bits({"compress_bits": bits}, Path(directory) / CONFIG_FILE)
    update_config(directory, {"compress_bits": bits})


def update_config(directory: str | os.PathLike[str], changes: dict[str, Any]) -> None:
    """Set top-level fields of a checkpoint's config.json (the others kept as they are), written atomically."""
    config_path = Path(directory) / CONFIG_FILE
    meta = json.loads(config_path.read_text())
    meta.update(changes)
    atomic_write_text(config_path, json.dumps(meta, indent=2) + "\n")


def _load_encoder(path: Path, meta: dict[str, Any], config: GeneratorConfig, config_path: Path) -> Encoder | None:
    """The checkpoint's encoder, verified against ``encoder.fingerprint`` in config.json; None if it has none."""
    spec = meta.get("encoder")
    encoder_path = path / ENCODER_FILE
    if spec is None:
        if encoder_path.exists():
            raise GanrevError(f"{encoder_path} is not listed in {config_path}: it may come from another run; "
                              "remove it or restore the config it was saved with")
        return None
    if not isinstance(spec, dict) or not isinstance(spec.get("fingerprint"), str) or "width" not in spec:
        raise GanrevError(f"{config_path} has an invalid 'encoder' entry (needs width and fingerprint)")
    if not encoder_path.is_file():
        raise GanrevError(f"{config_path} lists an encoder but {encoder_path} is missing")
    try:
        state = load_file(str(encoder_path))
        encoder = Encoder(GeneratorConfig(config.latent_dim, config.channels, config.resolution, int(spec["width"])))
    except (TypeError, ValueError) as exc:
        raise GanrevError(f"cannot load encoder from {path}: {exc}") from exc
    except Exception as exc:  # SafetensorError for damaged files
        raise GanrevError(f"cannot load encoder weights {encoder_path}: {exc}") from exc
    if weights_fingerprint(state) != spec["fingerprint"]:
        raise GanrevError(f"{encoder_path} does not match the encoder fingerprint in {config_path}: "
                          "the encoder comes from another run or was changed")
    _fit_weights(encoder, state, f"weights in {encoder_path} do not fit the encoder in {config_path}")
    return encoder


def _load_density(path: Path, meta: dict[str, Any], config: GeneratorConfig,
                  config_path: Path) -> GaussianMixture | None:
    """The checkpoint's latent density, verified against its fingerprint and its encoder's; None if it has
    none. An unlisted density file is ignored: nothing uses it (unlike an unlisted encoder, it cannot change
    what compress writes)."""
    spec = meta.get("density")
    if spec is None:
        return None
    density_path = path / DENSITY_FILE
    if not isinstance(spec, dict) or not isinstance(spec.get("fingerprint"), str):
        raise GanrevError(f"{config_path} has an invalid 'density' entry (needs a fingerprint)")
    encoder = meta.get("encoder")
    if not isinstance(encoder, dict) or spec.get("encoder_fingerprint") != encoder.get("fingerprint"):
        raise GanrevError(f"the latent density in {config_path} was fitted to another encoder's codes: "
                          "refit it with `ganrev fit-density --force`")
    state = read_fingerprinted(density_path, spec["fingerprint"], config_path, "the latent density")
    return GaussianMixture.from_state_dict(state, config.latent_dim)


def _fit_weights(module: nn.Module, state: dict[str, torch.Tensor], problem: str) -> None:
    """``module.load_state_dict(state)``; a mismatch is a one-line GanrevError ``problem: <torch's first line>``
    (torch lists every mismatched tensor; one line is enough)."""
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise GanrevError(f"{problem}: {str(exc).strip().splitlines()[0]}") from exc


__all__ = ["GeneratorCheckpoint", "attach_density", "load_generator", "read_fingerprinted", "save_generator",
           "weights_fingerprint"]
