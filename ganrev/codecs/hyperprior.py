"""CompressAI's learned codecs (:mod:`ganrev.nets.hyperprior`) behind the :class:`ImageCodec` interface.

The file holds everything a decoder needs besides the model, and every byte counts in bpp::

    byte 0        format version (high 4 bits), gray flag (bit 3), model (low 3 bits: factorized,
                  hyperprior, mean, joint, cheng2020-anchor)
    bytes 1-2     the first two bytes of the model's weights fingerprint (a file decoded by another model
                  is refused, not decoded to noise)
    varint        image width; varint: image height
    varint        length of the first rANS string (y), for the models with a hyper-latent; z's
                  string is what follows, up to the check
    ...           CompressAI's rANS strings, as ``model.compress`` returns them
    3 bytes       CRC-24 (:func:`ganrev.bitstream.container.crc24`) of everything before it

An image is padded (edge pixels repeated) to a multiple of the model's alignment (16 or 64 pixels) and the
decode cropped back, so any size codes. A gray image goes through the RGB model as three equal channels and
comes back as their mean. Loading a checkpoint runs ``model.update`` only if it was saved without its CDF
tables; ``fit-baseline compressai`` saves them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ganrev.bitstream.container import crc24, read_varint, varint
from ganrev.errors import GanrevError
from ganrev.nets.checkpoint import load_baseline, read_baseline_config
from ganrev.nets.hyperprior import ARCHITECTURE, MODELS, HyperpriorConfig, build_model

FORMAT_VERSION = 1
MODEL_IDS = {name: index for index, name in enumerate(MODELS)}
MAX_SIDE = 4096  # the largest side a file may claim: bounds the decoder's memory (and its padding, below)
CHECK_BYTES = 3
WHAT = "CompressAI file"  # how errors name the file
NAME_PREFIX = "CompressAI "  # every model's codec name starts so: the table's peer rows and the curves' series


class HyperpriorCodec:
    """A trained CompressAI model (a ``fit-baseline compressai`` checkpoint directory) as a codec."""

    def __init__(self, model: Any, config: HyperpriorConfig, fingerprint: str, *, lmbda: float | None = None,
                 path: Path | None = None) -> None:
        """``model``: a CompressAI model of ``config`` with its CDF tables updated; ``fingerprint``: its weights'
        (:func:`ganrev.models.weights_fingerprint`), whose first two bytes every file carries."""
        self.model, self.config, self.path, self.lmbda = model, config, path, lmbda
        self.device = next(model.parameters()).device
        self.fingerprint = bytes.fromhex(fingerprint)[:2]
        self.name = f"{NAME_PREFIX}{config.name}" + (f" (λ={lmbda:g})" if lmbda is not None else "")

    @classmethod
    def load(cls, checkpoint: str | os.PathLike[str], device: str | torch.device = "cpu") -> HyperpriorCodec:
        """The codec of a ``fit-baseline compressai`` checkpoint directory (fingerprints checked)."""
        path = Path(checkpoint)
        meta = read_baseline_config(path, ARCHITECTURE)
        try:
            config = HyperpriorConfig(**meta["net"])
        except (TypeError, GanrevError) as exc:
            raise GanrevError(f"{path}: invalid CompressAI network config: {exc}") from exc
        loaded = load_baseline(path, ARCHITECTURE, {"model": build_model(config)}, device)
        codec_meta = meta.get("codec") if isinstance(meta.get("codec"), dict) else {}
        lmbda = codec_meta.get("lmbda")
        return cls(loaded.nets["model"], config, loaded.fingerprints["model"],
                   lmbda=float(lmbda) if isinstance(lmbda, (int, float)) else None, path=path)

    def encode(self, image: torch.Tensor) -> bytes:
        if image.dim() != 3 or image.shape[0] not in (1, 3):
            raise GanrevError(f"CompressAI's models code gray or RGB images, got shape {tuple(image.shape)}")
        channels, height, width = image.shape
        align = self.config.alignment
        rgb = image.expand(3, -1, -1) if channels == 1 else image
        pad = (0, -width % align, 0, -height % align)
        batch = F.pad(rgb.unsqueeze(0).to(self.device), pad, mode="replicate")
        with torch.no_grad():
            strings = [string[0] for string in self.model.compress(batch)["strings"]]
        head = bytes([FORMAT_VERSION << 4 | (channels == 1) << 3 | MODEL_IDS[self.config.model]]) + self.fingerprint
        body = varint(width) + varint(height)
        if len(strings) == 2:
            body += varint(len(strings[0]))
        data = head + body + b"".join(strings)
        return data + crc24(data).to_bytes(CHECK_BYTES, "big")

    def decode(self, data: bytes) -> torch.Tensor:
        gray, width, height, strings = self._unpack(data)
        # the grid of the latent that is decoded first: y (16-pixel cells) for factorized, z (64) otherwise
        align = self.config.alignment
        grid = (-(-height // align), -(-width // align))
        # CompressAI's rANS decoder does not check where its string ends: on a damaged string (the CRC cannot rule
        # out a crafted one) it reads on, one 32-bit word per symbol and per escape, at most 60 words per byte of
        # string (15-nibble escapes, up to 16 per word read). Zero bytes past the end end every escape, so that
        # much padding keeps every read inside the buffer; a valid string never reaches it.
        symbols = max(self.config.n, self.config.m) * -(-height // 16) * -(-width // 16)
        padded = [[string + bytes(4 * (60 * len(string) + symbols + 512))] for string in strings]
        try:
            with torch.no_grad():
                decoded = self.model.decompress(padded, list(grid))["x_hat"]
        except (RuntimeError, ValueError, IndexError) as exc:  # the CRC matched yet the strings do not decode
            raise GanrevError(f"damaged CompressAI file: its bitstream does not decode ({exc})") from exc
        image = decoded[0, :, :height, :width].clamp(0, 1).float().cpu()
        return image.mean(0, keepdim=True) if gray else image

    def _unpack(self, data: bytes) -> tuple[bool, int, int, list[bytes]]:
        if len(data) < 3 + 2 + CHECK_BYTES:
            raise GanrevError(f"not a CompressAI file: {len(data)} bytes is too short")
        body, check = data[:-CHECK_BYTES], data[-CHECK_BYTES:]
        if crc24(body).to_bytes(CHECK_BYTES, "big") != check:
            raise GanrevError("damaged CompressAI file: its check (CRC-24) does not match")
        version, gray, model = data[0] >> 4, bool(data[0] >> 3 & 1), data[0] & 7
        if version != FORMAT_VERSION:
            raise GanrevError(f"CompressAI file format version {version}; this ganrev reads {FORMAT_VERSION}")
        if model != MODEL_IDS[self.config.model] or data[1:3] != self.fingerprint:
            raise GanrevError(f"this CompressAI file was made by another model (fingerprint {data[1:3].hex()}, "
                              f"{list(MODELS)[model] if model < len(MODELS) else 'unknown'}); this one is "
                              f"{self.fingerprint.hex()}, {self.config.model}")
        width, pos = read_varint(body, 3, WHAT)
        height, pos = read_varint(body, pos, WHAT)
        if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
            raise GanrevError(f"damaged CompressAI file: image size {width}x{height}")
        if self.config.model == "factorized":
            return gray, width, height, [body[pos:]]
        first, pos = read_varint(body, pos, WHAT)
        if pos + first > len(body):
            raise GanrevError("damaged CompressAI file: its first string runs past the end")
        return gray, width, height, [body[pos:pos + first], body[pos + first:]]

    def __repr__(self) -> str:
        return f"HyperpriorCodec.load({str(self.path)!r})"
