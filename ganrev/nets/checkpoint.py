"""Checkpoints of the learned baselines: ``<name>.safetensors`` per network + ``config.json``.

config.json records the format, the architecture and its config, the codec settings the nets were trained
for (e.g. the JPEG quality), training metadata, and each network's file with the SHA-256 fingerprint of its
weights (:func:`ganrev.models.weights_fingerprint`). Loading refuses a file whose weights do not match its
fingerprint -- a network from another run or a changed file -- with one-line :class:`GanrevError`\\ s.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save
from torch import nn

from ganrev.errors import GanrevError
from ganrev.io import atomic_write_text, atomic_writer
from ganrev.models import read_fingerprinted, weights_fingerprint

FORMAT = "ganrev-baseline"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"


@dataclass
class BaselineCheckpoint:
    """Loaded networks (eval mode, frozen), keyed by name, with the config.json they came with."""

    architecture: str
    nets: dict[str, nn.Module]
    metadata: dict[str, Any]
    path: Path | None = None
    fingerprints: dict[str, str] = field(default_factory=dict)


def save_baseline(directory: str | os.PathLike[str], architecture: str, net_config: dict[str, Any],
                  nets: dict[str, nn.Module], metadata: dict[str, Any]) -> dict[str, str]:
    """Write every net of ``nets`` to ``<name>.safetensors`` and config.json, atomically; return the fingerprints."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, net in nets.items():
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        with atomic_writer(out / f"{name}.safetensors") as handle:
            handle.write(save(state))
        files[name] = {"file": f"{name}.safetensors", "fingerprint": weights_fingerprint(state)}
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "architecture": architecture,
              "net": net_config, "files": files, **metadata}
    atomic_write_text(out / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    return {name: spec["fingerprint"] for name, spec in files.items()}


def read_baseline_config(directory: str | os.PathLike[str], architecture: str) -> dict[str, Any]:
    """config.json of a baseline checkpoint of ``architecture``; a one-line GanrevError for anything else."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise GanrevError(f"{Path(directory)} is not a learned-baseline checkpoint: it has no {CONFIG_FILE}")
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise GanrevError(f"cannot read {path}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise GanrevError(f"{path} is not a ganrev learned-baseline config")
    if not isinstance(meta.get("format_version"), int) or meta["format_version"] > FORMAT_VERSION:
        raise GanrevError(f"{path} has format version {meta.get('format_version')!r}; this ganrev reads up to "
                          f"{FORMAT_VERSION}")
    if meta.get("architecture") != architecture:
        raise GanrevError(f"{path} holds a {meta.get('architecture')!r} model, not {architecture!r}")
    if not isinstance(meta.get("net"), dict) or not isinstance(meta.get("files"), dict):
        raise GanrevError(f"{path} lacks its 'net' config or its 'files'")
    return meta


def load_baseline(directory: str | os.PathLike[str], architecture: str, nets: dict[str, nn.Module],
                  device: str | torch.device = "cpu") -> BaselineCheckpoint:
    """Fill the freshly built ``nets`` from ``directory``, checking every file's fingerprint; eval mode, frozen."""
    path = Path(directory)
    meta = read_baseline_config(path, architecture)
    fingerprints = {}
    for name, net in nets.items():
        spec = meta["files"].get(name)
        if not isinstance(spec, dict) or not isinstance(spec.get("fingerprint"), str):
            raise GanrevError(f"{path / CONFIG_FILE} lists no fingerprinted file for the {name!r} network")
        weights = path / f"{name}.safetensors"
        if spec.get("file") != weights.name:
            raise GanrevError(f"{path / CONFIG_FILE} lists {spec.get('file')!r} for the {name!r} network, not "
                              f"{weights.name}")
        state = read_fingerprinted(weights, spec["fingerprint"], path / CONFIG_FILE, f"the {name!r} network")
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise GanrevError(f"{weights} does not fit the {architecture} config in {path / CONFIG_FILE}: "
                              f"{str(exc).strip().splitlines()[0]}") from exc
        net.eval().requires_grad_(False).to(device)
        fingerprints[name] = spec["fingerprint"]
    return BaselineCheckpoint(architecture, nets, meta, path, fingerprints)
