"""The generators shipped under ``pretrained/``: finding one by name, and naming the one a file was made with.

Imports no torch until a generator is loaded, so the command line starts fast."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ganrev.errors import GanrevError

if TYPE_CHECKING:
    import torch

    from ganrev.models import GeneratorCheckpoint

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
DEFAULT_GENERATOR = "emoji64"
COMPARE_GENERATORS = (  # table rows beside the default generator
    "emoji64-google",  # the previous default: latent 100, Google's emoji only, 49 epochs on one fp32 thread
    "emoji64-gan",  # the seed's purely adversarial generator
)
GENERATOR_ENV = "GANREV_GENERATOR"


def resolve_generator_path(generator: str | None) -> Path:
    """A checkpoint directory from a path, a shipped generator's name, $GANREV_GENERATOR or the default."""
    name = generator or os.environ.get(GENERATOR_ENV) or DEFAULT_GENERATOR
    path = Path(name).expanduser()
    if path.exists():
        return path
    shipped = PRETRAINED_DIR / name
    if shipped.exists():
        return shipped
    available = sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / "config.json").is_file()) \
        if PRETRAINED_DIR.is_dir() else []
    raise GanrevError(f"generator {name!r} not found (as a path or under {PRETRAINED_DIR}); "
                      f"shipped generators: {', '.join(available) or 'none'}")


def load_named_generator(generator: str | None, device: torch.device) -> GeneratorCheckpoint:
    """:func:`resolve_generator_path`, loaded onto ``device``."""
    from ganrev.models import load_generator

    return load_generator(resolve_generator_path(generator), device)


def default_comparisons(generator: str | None) -> list[str]:
    """The table's extra GAN-reversal rows when none are asked for: the previous default and the seed's generator
    beside the default one."""
    if generator is not None or os.environ.get(GENERATOR_ENV):
        return []
    return [name for name in COMPARE_GENERATORS if (PRETRAINED_DIR / name).is_dir()]


def shipped_generator_hint(fingerprint: bytes) -> str:
    """' (made with the shipped generator NAME: add -g NAME)' when one under pretrained/ has this fingerprint."""
    prefix = fingerprint.hex()
    for config in sorted(PRETRAINED_DIR.glob("*/config.json")):
        try:
            if str(json.loads(config.read_text()).get("fingerprint", "")).startswith(prefix):
                name = config.parent.name
                return f" (it was made with the shipped generator {name}: add -g {name})"
        except (OSError, ValueError, AttributeError):
            continue
    return ""
