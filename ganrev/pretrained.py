"""Where ganrev's models live: generators by name (``-g NAME``, ``ganrev models``), the shipped LPIPS weights and
learned baselines, and naming the generator a file was made with.

``-g NAME`` takes an existing path first, then the first folder ``NAME`` holding a config.json in
:func:`model_places`, in this order:

1. ``$GANREV_MODELS``: a folder of the user's own models (each sub-folder with a config.json is one), so that one
   of them shadows a shipped model of the same name;
2. the checkout's ``pretrained/`` (:data:`PRETRAINED_DIR`), which an editable install (``pip install -e``) reads
   in place: every shipped model;
3. the installed package's ``ganrev/_shipped/`` (:data:`PACKAGED_DIR`), where pyproject.toml puts the models a
   wheel carries: the default generator and the LPIPS weights.

The LPIPS weights and the learned baselines are found by :func:`shipped_path`: the checkout's, else the package's.

Imports no torch until a generator is loaded or its default bits are needed, so the command line starts fast."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ganrev.errors import GanrevError

if TYPE_CHECKING:
    import torch

    from ganrev.models import GeneratorCheckpoint

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"  # the checkout's; absent beside a wheel
PACKAGED_DIR = Path(__file__).resolve().parent / "_shipped"  # a wheel's pretrained/ subset; absent in a checkout
MODELS_ENV = "GANREV_MODELS"
DEFAULT_GENERATOR = "emoji64"
COMPARE_GENERATORS = (  # table rows beside the default generator
    "emoji64-google-twitter",  # the previous default: Google and Twemoji, no nested dropout
    "emoji64-gan",  # the seed's purely adversarial generator
)
GENERATOR_ENV = "GANREV_GENERATOR"
CONFIG_FILE = "config.json"  # what makes a folder a model (ganrev.models.CONFIG_FILE, named here without torch)


def model_places() -> list[tuple[str, Path]]:
    """(label, folder) of the places generators are looked up by name, in lookup order: ``$GANREV_MODELS`` (when
    set), ``checkout`` (:data:`PRETRAINED_DIR`), ``package`` (:data:`PACKAGED_DIR`); a folder may be absent."""
    places = [("checkout", PRETRAINED_DIR), ("package", PACKAGED_DIR)]
    own = os.environ.get(MODELS_ENV)
    return [(f"${MODELS_ENV}", Path(own).expanduser()), *places] if own else places


@dataclass(frozen=True)
class NamedGenerator:
    """A generator ``-g NAME`` loads: where it was found and its config.json (empty when unreadable)."""

    name: str
    where: str  # the label of its place in model_places()
    path: Path
    config: dict[str, Any]

    @property
    def domain(self) -> str | None:
        """The data set it was trained on (config.json ``dataset``)."""
        dataset = self.config.get("dataset")
        return dataset if isinstance(dataset, str) else None

    @property
    def resolution(self) -> int | None:
        return _integer(self.config.get("resolution"))

    @property
    def latent_dim(self) -> int | None:
        return _integer(self.config.get("latent_dim"))

    @property
    def compress_bits(self) -> int | None:
        """The bits per latent coordinate compress uses with it by default: config.json's ``compress_bits``,
        :data:`ganrev.models.DEFAULT_COMPRESS_BITS` where it names none."""
        if "compress_bits" in self.config:
            return _integer(self.config["compress_bits"])
        from ganrev.models import DEFAULT_COMPRESS_BITS

        return DEFAULT_COMPRESS_BITS

    @property
    def headline(self) -> str | None:
        """Its model card's headline figure from config.json's ``report`` ({"set", "images", "ssim", "bpp",
        "classical_ssim"}), e.g. ``SSIM 0.870 @ 0.171 bpp (validation; best classical file at those bytes 0.550)``;
        None without a well-formed report: a figure is never made up."""
        report = self.config.get("report")
        if not isinstance(report, dict) or not all(_number(report.get(key)) for key in ("ssim", "bpp")):
            return None
        notes = [str(report["set"])] if isinstance(report.get("set"), str) else []
        if _number(report.get("classical_ssim")):
            notes.append(f"best classical file at those bytes {report['classical_ssim']:.3f}")
        figure = f"SSIM {report['ssim']:.3f} @ {report['bpp']:.3f} bpp"
        return f"{figure} ({'; '.join(notes)})" if notes else figure


def _integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_config(path: Path) -> dict[str, Any]:
    """A config.json read without loading weights; {} where it is missing or not a JSON object."""
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def named_generators() -> list[NamedGenerator]:
    """Every generator ``-g NAME`` can name, sorted by name: per name the one it loads, the first in
    :func:`model_places` order (a model in ``$GANREV_MODELS`` shadows a shipped one of the same name)."""
    found: dict[str, NamedGenerator] = {}
    for where, folder in model_places():
        for config in sorted(folder.glob(f"*/{CONFIG_FILE}")):
            if config.is_file() and config.parent.name not in found:
                found[config.parent.name] = NamedGenerator(config.parent.name, where, config.parent,
                                                           read_config(config))
    return [found[name] for name in sorted(found)]


def _find_named(name: str) -> Path | None:
    """The folder ``-g NAME`` loads by name, the first in :func:`model_places` order, or None."""
    for _, folder in model_places():
        if (folder / name / CONFIG_FILE).is_file():
            return folder / name
    return None


def resolve_generator_path(generator: str | None) -> Path:
    """A checkpoint directory from ``generator`` (else $GANREV_GENERATOR, else the default): an existing path,
    else the generator of that name in ``$GANREV_MODELS``, the checkout's ``pretrained/`` or the package."""
    name = generator or os.environ.get(GENERATOR_ENV) or DEFAULT_GENERATOR
    path = Path(name).expanduser()
    if path.exists():
        return path
    found = _find_named(name)
    if found is not None:
        return found
    looked = "; ".join(f"{where} {folder}" for where, folder in model_places() if folder.is_dir())
    raise GanrevError(f"generator {name!r} not found: no such path, and no model of that name in "
                      f"{looked or 'any model folder'}; `ganrev models` lists: "
                      f"{', '.join(entry.name for entry in named_generators()) or 'none'}")


def load_named_generator(generator: str | None, device: torch.device) -> GeneratorCheckpoint:
    """:func:`resolve_generator_path`, loaded onto ``device``."""
    from ganrev.models import load_generator

    return load_generator(resolve_generator_path(generator), device)


def default_comparisons(generator: str | None) -> list[str]:
    """The table's extra GAN-reversal rows when none are asked for: the previous default and the seed's generator
    beside the default one."""
    if generator is not None or os.environ.get(GENERATOR_ENV):
        return []
    return [name for name in COMPARE_GENERATORS if _find_named(name) is not None]


def shipped_generator_hint(fingerprint: bytes) -> str:
    """' (made with the shipped generator NAME: add -g NAME)' when a generator ``-g NAME`` names (see
    :func:`named_generators`) has this fingerprint."""
    prefix = fingerprint.hex()
    for entry in named_generators():
        if str(entry.config.get("fingerprint", "")).startswith(prefix):
            return f" (it was made with the shipped generator {entry.name}: add -g {entry.name})"
    return ""


def shipped_path(relative: str) -> Path:
    """``pretrained/RELATIVE`` (e.g. ``lpips``, ``baselines``): the checkout's, else the package's (a wheel carries
    only some). Where neither has it, the path it would have in this installation, for messages to name."""
    for folder in (PRETRAINED_DIR, PACKAGED_DIR):
        if (folder / relative).exists():
            return folder / relative
    return (PRETRAINED_DIR if PRETRAINED_DIR.is_dir() else PACKAGED_DIR) / relative
