"""Classical image codecs to compare against: PNG, JPEG, WebP (lossy and lossless), AVIF, k-means colour
quantization, and WebP of a downscaled image (built from specs such as ``"jpeg:10"`` by :mod:`ganrev.codecs.specs`).

Every codec implements :class:`ganrev.codecs.base.ImageCodec`: ``encode`` returns the complete bytes of an
ordinary image file (write them to disk and any viewer opens them) and ``decode`` needs nothing but
those bytes, so ``ganrev.codec.bits_per_pixel`` (``len(data) * 8 / (H * W)``) is an honest rate. The one
addition: :class:`DownscaledWebPCodec` appends one byte after its WebP file (scale, size remainder, gray),
which viewers ignore and which counts in the rate.

Gray and RGB. ``decode(encode(x))`` has the channel count of ``x``. PNG, JPEG and AVIF store gray
natively. Lossy WebP always stores colour, and a k-means palette is always RGB, so for those two the
decoder reads an image whose three channels agree (within one level) as gray. When that guess would
be wrong -- a gray-valued RGB image -- the encoder adds an EXIF ``PhotometricInterpretation`` tag
(1 = gray, 2 = RGB) to the file, which then decides; its bytes count like any others.
"""

from __future__ import annotations

import functools
import inspect
import io
import warnings
from typing import Any

import numpy as np
import torch
from PIL import Image

from ganrev.errors import GanrevError
from ganrev.io import from_uint8, to_uint8

__all__ = [
    "AVIFCodec",
    "DOWNSCALE_FACTORS",
    "DownscaledWebPCodec",
    "JPEGCodec",
    "KMeansCodec",
    "PNGCodec",
    "SUBSAMPLINGS",
    "WebPCodec",
    "WebPLosslessCodec",
    "avif_available",
    "posterize",
]

_PHOTOMETRIC = 0x0106  # EXIF/TIFF PhotometricInterpretation: 1 = BlackIsZero (gray), 2 = RGB
_GRAY_TOLERANCE = 1  # decoded channels differing by at most this many levels read as gray


def _check_image(image: torch.Tensor) -> None:
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] not in (1, 3):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise GanrevError(f"expected an image tensor [C, H, W] with C = 1 or 3, got {shape}")
    if image.shape[1] == 0 or image.shape[2] == 0:
        raise GanrevError(f"image has no pixels: shape {tuple(image.shape)}")
    if not torch.isfinite(image).all():
        raise GanrevError("image contains NaN or infinite values")


def _channel_tag(channels: int) -> Image.Exif:
    exif = Image.Exif()
    exif[_PHOTOMETRIC] = 1 if channels == 1 else 2
    return exif


def _save(img: Image.Image, fmt: str, options: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    try:
        img.save(buffer, format=fmt, **options)
    except (OSError, ValueError) as exc:
        raise GanrevError(f"{fmt} cannot encode a {img.width}x{img.height} {img.mode} image: {exc}") from exc
    return buffer.getvalue()


def _load(data: bytes, fmt: str) -> tuple[Image.Image, int | None]:
    """Decode ``data`` as a ``fmt`` file: the image and its EXIF channel tag (1, 2 or None).

    Any failure is a :class:`GanrevError`.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise GanrevError(f"expected {fmt} bytes, got {type(data).__name__}")
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as img:
            img.load()
            tag = img.getexif().get(_PHOTOMETRIC)
            return img.copy(), tag if tag in (1, 2) else None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on bad input; all mean "not a valid file"
        raise GanrevError(f"cannot decode {len(data)} bytes as {fmt}: {exc}") from exc


def _channels(img: Image.Image, tag: int | None, guess_gray: bool) -> int:
    """How many channels the decoded ``img`` stands for (see the module docstring)."""
    if tag is not None:
        return 1 if tag == 1 else 3
    if img.mode == "L":
        return 1
    if not guess_gray:
        return 3
    rgb = np.asarray(img.convert("RGB"), dtype=np.int16)
    spread = max(np.abs(rgb[..., 0] - rgb[..., 1]).max(), np.abs(rgb[..., 2] - rgb[..., 1]).max())
    return 1 if spread <= _GRAY_TOLERANCE else 3


def _to_tensor(img: Image.Image, channels: int) -> torch.Tensor:
    return from_uint8(np.array(img.convert("L" if channels == 1 else "RGB")))  # a writable copy for torch


def _encode(img: Image.Image, channels: int, fmt: str, options: dict[str, Any], guess_gray: bool) -> bytes:
    """Save ``img``; where the decoder's gray guess would get ``channels`` wrong, add the EXIF tag."""
    data = _save(img, fmt, options)
    if guess_gray and _channels(*_load(data, fmt), guess_gray) != channels:
        data = _save(img, fmt, {**options, "exif": _channel_tag(channels)})
    return data


def _decode(data: bytes, fmt: str, guess_gray: bool) -> torch.Tensor:
    img, tag = _load(data, fmt)
    return _to_tensor(img, _channels(img, tag, guess_gray))


class _PillowCodec:
    """Shared encode/decode through Pillow and an in-memory buffer; subclasses set the format and options."""

    name: str
    format: str
    guess_gray = False  # True where the file format cannot say "gray" by itself

    def _options(self) -> dict[str, Any]:
        return {}

    def _to_pil(self, image: torch.Tensor) -> Image.Image:
        return Image.fromarray(to_uint8(image))

    def encode(self, image: torch.Tensor) -> bytes:
        _check_image(image)
        return _encode(self._to_pil(image), image.shape[0], self.format, self._options(), self.guess_gray)

    def decode(self, data: bytes) -> torch.Tensor:
        return _decode(data, self.format, self.guess_gray)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def _check_quality(quality: int, codec: str) -> int:
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 0 <= quality <= 100:
        raise GanrevError(f"{codec} quality must be an integer from 0 to 100, got {quality!r}")
    return int(quality)


class PNGCodec(_PillowCodec):
    """Lossless PNG, maximum zlib effort."""

    name = "PNG"
    format = "PNG"

    def _options(self) -> dict[str, Any]:
        return {"optimize": True, "compress_level": 9}


SUBSAMPLINGS = ("4:2:0", "4:4:4")
"""Chroma subsampling JPEG and AVIF can be asked for: 4:2:0 (the usual default) or none (4:4:4), which keeps
thin coloured edges on small images at a price in bytes."""


def _check_subsampling(subsampling: str, codec: str) -> str:
    if subsampling not in SUBSAMPLINGS:
        raise GanrevError(f"{codec} chroma subsampling must be one of {', '.join(SUBSAMPLINGS)}, got {subsampling!r}")
    return subsampling


def _subsampling_label(subsampling: str) -> str:
    return "" if subsampling == "4:2:0" else f" {subsampling}"


class JPEGCodec(_PillowCodec):
    """Baseline JPEG (libjpeg via Pillow) with optimized Huffman tables, 4:2:0 chroma subsampling by default."""

    format = "JPEG"

    def __init__(self, quality: int, subsampling: str = "4:2:0") -> None:
        self.quality = _check_quality(quality, "JPEG")
        self.subsampling = _check_subsampling(subsampling, "JPEG")
        self.name = f"JPEG{_subsampling_label(self.subsampling)} ({self.quality}%)"

    def _options(self) -> dict[str, Any]:
        return {"quality": self.quality, "subsampling": self.subsampling, "optimize": True}


class WebPCodec(_PillowCodec):
    """Lossy WebP (libwebp via Pillow) at its slowest, best ``method=6``."""

    format = "WEBP"
    guess_gray = True

    def __init__(self, quality: int) -> None:
        self.quality = _check_quality(quality, "WebP")
        self.name = f"WebP ({self.quality})"

    def _options(self) -> dict[str, Any]:
        return {"quality": self.quality, "method": 6, "lossless": False}

    def _to_pil(self, image: torch.Tensor) -> Image.Image:
        return super()._to_pil(image).convert("RGB")


POSTERIZE_CENTRE = 128  # the level posterization keeps: mid-gray, a residual layer's zero


def posterize(pixels: np.ndarray, step: int) -> np.ndarray:
    """8-bit ``pixels`` moved to the nearest of the levels ``128 + k * step`` (step 1: unchanged).

    Fewer distinct values make a lossless coder's job easier: this is the lossy knob of
    :class:`WebPLosslessCodec`, as libwebp's own near-lossless mode pre-quantizes pixel values.
    """
    levels = np.round((pixels.astype(np.int16) - POSTERIZE_CENTRE) / step) * step + POSTERIZE_CENTRE
    return np.clip(levels, 0, 255).astype(np.uint8)


class WebPLosslessCodec(_PillowCodec):
    """Lossless WebP (no chroma subsampling) of the image, posterized to every ``step``-th level first
    (:func:`posterize`; ``step`` 1, the default, is exactly lossless). ``method=4``: on 64x64 images it is
    within a few percent of ``method=6``'s size at a twentieth of the time."""

    format = "WEBP"
    guess_gray = True

    def __init__(self, step: int = 1) -> None:
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or not 1 <= step <= 128:
            raise GanrevError(f"WebP lossless posterization step must be an integer from 1 to 128, got {step!r}")
        self.step = int(step)
        self.name = "WebP lossless" + (f" (step {self.step})" if self.step > 1 else "")

    def _options(self) -> dict[str, Any]:
        return {"lossless": True, "quality": 100, "method": 4}

    def _to_pil(self, image: torch.Tensor) -> Image.Image:
        return Image.fromarray(posterize(to_uint8(image), self.step)).convert("RGB")


DOWNSCALE_FACTORS = (2, 4)
"""The scales :class:`DownscaledWebPCodec` shrinks images by (each side divided by it)."""

_RIFF_HEADER = 8  # "RIFF" + little-endian payload size; the WebP file is these 8 bytes plus the payload
_GRAY_FLAG = 0x80


class DownscaledWebPCodec:
    """What a user squeezing a file to ~90 bytes does: shrink, WebP, and enlarge again on display.

    ``encode`` shrinks each side by ``scale`` (rounding the size up; antialiased bicubic), stores lossy WebP
    at ``quality`` (as :class:`WebPCodec`), and appends one byte: bit 7 gray, bits 4-6 the scale, bits 2-3
    and 0-1 how many rows and columns the enlarged image has beyond the original (``scale * ceil(H / scale)
    - H``), so that ``decode`` can restore the exact size. The bytes before it are a complete WebP file of
    the small image (its RIFF header gives its length). ``decode`` enlarges with bicubic interpolation.
    """

    def __init__(self, quality: int, scale: int) -> None:
        self.quality = _check_quality(quality, "WebP")
        if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale not in DOWNSCALE_FACTORS:
            raise GanrevError(f"downscaled WebP scale must be one of {DOWNSCALE_FACTORS}, got {scale!r}")
        self.scale = int(scale)
        self.name = f"WebP ({self.quality}), downscaled {self.scale}x"

    def encode(self, image: torch.Tensor) -> bytes:
        _check_image(image)
        channels, height, width = image.shape
        small_height, small_width = -(-height // self.scale), -(-width // self.scale)
        small = Image.fromarray(to_uint8(image)).resize((small_width, small_height), Image.Resampling.BICUBIC)
        webp = _save(small.convert("RGB"), "WEBP", {"quality": self.quality, "method": 6, "lossless": False})
        extra_rows, extra_cols = small_height * self.scale - height, small_width * self.scale - width
        trailer = (_GRAY_FLAG if channels == 1 else 0) | self.scale << 4 | extra_rows << 2 | extra_cols
        return webp + bytes([trailer])

    def decode(self, data: bytes) -> torch.Tensor:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise GanrevError(f"expected downscaled WebP bytes, got {type(data).__name__}")
        data = bytes(data)
        riff_size = int.from_bytes(data[4:_RIFF_HEADER], "little")
        if len(data) < _RIFF_HEADER + 1 or len(data) != _RIFF_HEADER + riff_size + 1:
            raise GanrevError(f"cannot decode {len(data)} bytes as downscaled WebP: not a WebP file and one byte")
        trailer = data[-1]
        scale, extra_rows, extra_cols = trailer >> 4 & 0x7, trailer >> 2 & 0x3, trailer & 0x3
        if scale not in DOWNSCALE_FACTORS or extra_rows >= scale or extra_cols >= scale:
            raise GanrevError(f"cannot decode downscaled WebP: bad trailing byte {trailer:#04x}")
        small, _ = _load(data[:-1], "WEBP")
        size = (small.width * scale - extra_cols, small.height * scale - extra_rows)
        gray = bool(trailer & _GRAY_FLAG)
        return _to_tensor(small.convert("L" if gray else "RGB").resize(size, Image.Resampling.BICUBIC),
                          1 if gray else 3)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


@functools.lru_cache(maxsize=1)
def avif_available() -> bool:
    """Whether this Pillow can write (and read back) AVIF files."""
    try:
        data = _save(Image.new("RGB", (8, 8), (200, 100, 50)), "AVIF", {"quality": 50})
        _load(data, "AVIF")
    except (GanrevError, KeyError, ImportError):
        return False
    return True


class AVIFCodec(_PillowCodec):
    """Lossy AVIF (libavif via Pillow): colour in 4:2:0 (Pillow's default) or 4:4:4, gray as monochrome 4:0:0.

    Only where :func:`avif_available`; constructing it elsewhere raises :class:`GanrevError`.
    """

    format = "AVIF"

    def __init__(self, quality: int, speed: int = 6, subsampling: str = "4:2:0") -> None:
        if not avif_available():
            raise GanrevError("this Pillow build cannot write AVIF (needs Pillow >= 11.2 built with libavif)")
        self.quality = _check_quality(quality, "AVIF")
        if isinstance(speed, bool) or not isinstance(speed, (int, np.integer)) or not 0 <= speed <= 10:
            raise GanrevError(f"AVIF speed must be an integer from 0 (slowest, best) to 10, got {speed!r}")
        self.speed = int(speed)
        self.subsampling = _check_subsampling(subsampling, "AVIF")
        self.name = f"AVIF{_subsampling_label(self.subsampling)} ({self.quality})"

    def _options(self) -> dict[str, Any]:
        return {"quality": self.quality, "speed": self.speed}

    def encode(self, image: torch.Tensor) -> bytes:
        _check_image(image)
        # Only for colour: Pillow stores a gray image asked for any subsampling as 3 planes, not as monochrome
        subsampling = {"subsampling": self.subsampling} if image.shape[0] == 3 else {}
        return _encode(self._to_pil(image), image.shape[0], self.format, self._options() | subsampling,
                       self.guess_gray)


class KMeansCodec(_PillowCodec):
    """Colour quantization: k-means (k-means++ init, seeded) on the 8-bit pixels, stored as a palette PNG.

    The PNG holds the k palette colours (PLTE) and one index per pixel packed at 1, 2, 4 or 8 bits.
    An image with at most ``k`` distinct colours is stored exactly. Gray input clusters gray levels.
    """

    format = "PNG"
    guess_gray = True

    def __init__(self, k: int = 4, seed: int = 0, iterations: int = 20) -> None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= 256:
            raise GanrevError(f"k-means needs 1 <= K <= 256 palette colours, got {k!r}")
        self.k, self.seed, self.iterations = int(k), int(seed), int(iterations)
        self.name = f"K-means (K={self.k})"

    def _palette(self, pixels: np.ndarray) -> np.ndarray:
        """At most ``k`` distinct colours (rows, uint8-valued floats) for ``pixels`` ``[N, C]``."""
        # scipy is imported here, not with the module: it costs ~2 s, and `ganrev compress` loads this module
        # (through its residual layers) without ever needing k-means.
        from scipy.cluster.vq import kmeans2

        distinct = np.unique(pixels, axis=0)
        if len(distinct) <= self.k:
            return distinct
        rng_arg = "rng" if "rng" in inspect.signature(kmeans2).parameters else "seed"  # scipy < 1.15: seed
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "one of the clusters is empty": harmless, it is dropped below
            centroids, _ = kmeans2(pixels, self.k, iter=self.iterations, minit="++",
                                   **{rng_arg: np.random.default_rng(self.seed)})
        return np.unique(np.clip(np.rint(centroids), 0, 255), axis=0)

    def _to_pil(self, image: torch.Tensor) -> Image.Image:
        from scipy.cluster.vq import vq

        pixels = to_uint8(image).reshape(-1, image.shape[0]).astype(np.float64)
        palette = self._palette(pixels)
        labels, _ = vq(pixels, palette, check_finite=False)
        used, labels = np.unique(labels, return_inverse=True)  # drop colours no pixel maps to
        rgb = np.repeat(palette[used], 3 // image.shape[0], axis=1).astype(np.uint8)
        img = Image.frombytes("P", (image.shape[2], image.shape[1]), labels.astype(np.uint8).tobytes())
        img.putpalette(rgb.tobytes(), rawmode="RGB")
        return img

    def _options(self) -> dict[str, Any]:
        return {"optimize": True, "compress_level": 9}
