"""Reading images into tensors, writing them back, and writing every ganrev output atomically.

Conventions used across ganrev:
- an image tensor is float32, shape ``[C, H, W]``, values in ``[0, 1]``, C = 1 (gray) or 3 (RGB);
- RGBA, LA and palette images with transparency are composited on a **white** background, because
  that is how they look in a viewer and because the emoji domain is drawn on white;
- 16-bit and 32-bit integer images are scaled by their full integer range, so 16-bit white is 1.0.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ganrev.errors import GanrevError

ColourMode = Literal["auto", "gray", "rgb"]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str], mode: str = "wb") -> Iterator:
    """Open a temporary file beside ``path``; on success rename it over ``path``, else delete it.

    A crash or Ctrl-C while writing leaves either the old file or no file, never a half-written one.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, _final_mode(target))  # mkstemp makes 0600 files
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def _final_mode(target: Path) -> int:
    """Permissions for a finished file: those of the file it replaces, else the umask's default for a new file."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0o022)  # there is no way to read the umask without setting it
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_writer(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def _to_float_array(img: Image.Image) -> np.ndarray:
    """Convert any PIL image to a float array in [0, 1], shape [H, W] or [H, W, 3]."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(img, dtype=np.float64) / 65535.0
    if img.mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        # PNG 16-bit gray often arrives as mode "I" holding 0..65535; true 32-bit data is rarer.
        top = 65535.0 if arr.max(initial=0) <= 65535 else float(2**31 - 1)
        return np.clip(arr / top, 0.0, 1.0)
    if img.mode == "F":
        return np.clip(np.asarray(img, dtype=np.float64), 0.0, 1.0)
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode in ("RGB", "L") and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float64) / 255.0
        alpha = rgba[..., 3:4]
        rgb = rgba[..., :3] * alpha + (1.0 - alpha)
        if img.mode in ("LA", "L"):
            return rgb[..., 0]
        return rgb
    if img.mode == "1":
        img = img.convert("L")
    if img.mode not in ("L", "RGB"):
        img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV
    return np.asarray(img, dtype=np.float64) / 255.0


def load_image(path: str | os.PathLike[str], colour: ColourMode = "auto") -> torch.Tensor:
    """Read any PIL-readable image file as a float32 tensor ``[C, H, W]`` in ``[0, 1]``.

    ``colour="auto"`` keeps gray images as one channel and everything else as RGB;
    ``"gray"`` converts to luma (ITU-R 601), ``"rgb"`` replicates gray to three channels.
    Raises :class:`GanrevError` for missing, unreadable or empty files.
    """
    p = Path(path)
    if not p.exists():
        raise GanrevError(f"image not found: {p}")
    if p.is_dir():
        raise GanrevError(f"expected an image file, got a directory: {p}")
    try:
        with Image.open(p) as img:
            img.load()
            arr = _to_float_array(img)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise GanrevError(f"cannot read image {p}: {exc}") from exc
    if arr.size == 0:
        raise GanrevError(f"image {p} has no pixels")
    tensor = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    tensor = tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()
    return convert_channels(tensor, colour)


def convert_channels(image: torch.Tensor, colour: ColourMode) -> torch.Tensor:
    """Convert a ``[C, H, W]`` (or ``[N, C, H, W]``) tensor between gray and RGB."""
    channels = image.shape[-3]
    if colour == "auto" or (colour == "gray" and channels == 1) or (colour == "rgb" and channels == 3):
        return image
    if colour == "rgb":
        return image.expand(*image.shape[:-3], 3, *image.shape[-2:]).contiguous()
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image * weights).sum(dim=-3, keepdim=True)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """Round a ``[C, H, W]`` float tensor in [0, 1] to an 8-bit array ``[H, W]`` or ``[H, W, 3]``."""
    arr = (image.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu()
    arr = arr.permute(1, 2, 0).numpy()
    return arr[..., 0] if arr.shape[2] == 1 else arr


def from_uint8(array: np.ndarray) -> torch.Tensor:
    """Inverse of :func:`to_uint8`: ``[H, W]`` or ``[H, W, C]`` uint8 to ``[C, H, W]`` float in [0, 1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(array)).float() / 255.0
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1).contiguous()


def to_pil(image: torch.Tensor) -> Image.Image:
    """A ``[C, H, W]`` float tensor as an 8-bit PIL image (mode L or RGB)."""
    return Image.fromarray(to_uint8(image))


IMAGE_OUTPUT_SUFFIXES = {".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}
"""The suffixes the CLI writes images as (decompress, generate): lossless formats that keep gray images gray,
so a decoded file holds exactly the pixels that compress measured."""


def image_output_format(path: str | os.PathLike[str]) -> str:
    """The PIL format for an image output of the CLI, from its suffix; any other suffix is an error."""
    p = Path(path)
    fmt = IMAGE_OUTPUT_SUFFIXES.get(p.suffix.lower())
    if fmt is None:
        raise GanrevError(f"{p}: an image output's name must end in {', '.join(IMAGE_OUTPUT_SUFFIXES)} "
                          "(lossless formats)")
    return fmt


def save_image(image: torch.Tensor, path: str | os.PathLike[str]) -> None:
    """Save a ``[C, H, W]`` tensor as an 8-bit image, format from the suffix (PNG if unknown), atomically."""
    p = Path(path)
    fmt = Image.registered_extensions().get(p.suffix.lower(), "PNG")
    with atomic_writer(p) as handle:
        to_pil(image).save(handle, format=fmt)


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """All image files under ``folder`` (recursive), sorted, by suffix."""
    root = Path(folder)
    if not root.is_dir():
        raise GanrevError(f"not a directory: {root}")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize ``[C, H, W]`` or ``[N, C, H, W]`` with antialiased bicubic, clamped to [0, 1]."""
    if tuple(image.shape[-2:]) == (height, width):
        return image
    batch = image if image.ndim == 4 else image.unsqueeze(0)
    out = torch.nn.functional.interpolate(batch, size=(height, width), mode="bicubic", antialias=True,
                                          align_corners=False).clamp(0, 1)
    return out if image.ndim == 4 else out[0]


def center_crop_resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """Centre-crop ``[C, H, W]`` (or a batch ``[N, C, H, W]``) to a square, then resize to ``size`` x ``size``."""
    h, w = image.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return resize(image[..., top:top + side, left:left + side], size, size)
