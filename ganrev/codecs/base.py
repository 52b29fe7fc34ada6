"""The one interface every compression scheme in ganrev implements, and the rate they are all measured in."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class ImageCodec(Protocol):
    """One compression scheme: ``encode`` an image to the bytes of a file a user could store, and back.

    Images are float32 tensors ``[C, H, W]`` in [0, 1] (see :mod:`ganrev.io`). ``decode(encode(x))`` has the
    shape and channel count of ``x``. ``name`` is the row label used in tables, e.g. ``"JPEG (10%)"``.
    """

    name: str

    def encode(self, image: torch.Tensor) -> bytes: ...

    def decode(self, data: bytes) -> torch.Tensor: ...


def bits_per_pixel(num_bytes: int, width: int, height: int) -> float:
    """Every byte of the file counts: bpp = bytes * 8 / pixels."""
    return num_bytes * 8 / (width * height)
