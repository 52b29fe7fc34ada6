"""Codecs by name: ``"jpeg:10"``, ``"webp-down4:50"``, ``"arcnn:10"``... the specs ``ganrev table --codecs``,
``--learned`` and the ``.grv`` layers name codecs by (:func:`codec_from_spec`), and the table's default set."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

from ganrev.codecs import classical
from ganrev.codecs.base import ImageCodec
from ganrev.codecs.classical import (
    DOWNSCALE_FACTORS,
    AVIFCodec,
    DownscaledWebPCodec,
    JPEGCodec,
    KMeansCodec,
    PNGCodec,
    WebPCodec,
    WebPLosslessCodec,
)
from ganrev.errors import GanrevError
from ganrev.nets.hyperprior import MODELS as COMPRESSAI_MODELS

__all__ = ["DEFAULT_SPECS", "LEARNED", "baseline_codecs", "codec_from_spec"]

_FACTORIES: dict[str, tuple[Callable[[int], ImageCodec] | None, int | None]] = {
    "png": (None, None),
    "jpeg": (JPEGCodec, 75),
    "webp": (WebPCodec, 80),
    "avif": (AVIFCodec, 75),
    "jpeg444": (functools.partial(JPEGCodec, subsampling="4:4:4"), 75),
    "avif444": (functools.partial(AVIFCodec, subsampling="4:4:4"), 75),
    "webp-lossless": (WebPLosslessCodec, 1),
    "kmeans": (KMeansCodec, 4),
    **{f"webp-down{scale}": (functools.partial(DownscaledWebPCodec, scale=scale), 80) for scale in DOWNSCALE_FACTORS},
}
_ALIASES = {"jpg": "jpeg", "k-means": "kmeans"}
LEARNED = ("arcnn", "arcnn-blind", "comcnn", *(f"compressai-{model}" for model in COMPRESSAI_MODELS))
"""Trained models on shipped weights: :mod:`ganrev.codecs.learned`."""

DEFAULT_SPECS = ("png", "jpeg:10", "webp:10", "avif:10", "kmeans:4")


def codec_from_spec(spec: str) -> ImageCodec:
    """Build a codec from ``"png"``, ``"jpeg:10"``, ``"webp:50"``, ``"avif:30"``, ``"kmeans:4"`` or
    ``"webp-down4:50"`` (WebP of the image shrunk 4x, :class:`DownscaledWebPCodec`; ``webp-down2`` too);
    ``"jpeg444:Q"`` and ``"avif444:Q"`` without chroma subsampling; ``"webp-lossless"`` (or
    ``"webp-lossless:STEP"``, posterized first, :class:`WebPLosslessCodec`); the learned ``"arcnn:Q"`` (JPEG
    at Q restored by the shipped AR-CNN + ASPP for Q; ``"arcnn-blind:Q"``: by the shipped blind one) and
    ``"comcnn:Q"`` (shipped ComCNN/RecCNN, JPEG at Q), and ``"compressai-mean:L"`` (the shipped CompressAI
    model at rate level L; also ``compressai-MODEL:L`` for every other of :data:`ganrev.nets.hyperprior.MODELS`),
    :mod:`ganrev.codecs.learned`.

    The number is the quality (0-100), the palette size K for k-means, the step for WebP lossless. Without
    it the defaults are JPEG 75, WebP 80 (also downscaled), AVIF 75 (Pillow's), K = 4 and step 1. Unknown or
    malformed specs raise :class:`GanrevError`.
    """
    name, sep, arg = str(spec).strip().lower().partition(":")
    name = _ALIASES.get(name.strip(), name.strip())
    if name in LEARNED:
        from ganrev.codecs.learned import learned_codec_from_spec  # imports torch nets: only when asked for

        return learned_codec_from_spec(name, _spec_int(spec, arg) if sep else None)
    if name not in _FACTORIES:
        raise GanrevError(f"unknown baseline codec {spec!r}; known: {', '.join(sorted([*_FACTORIES, *LEARNED]))} "
                          "(e.g. 'png', 'jpeg:10', 'webp:50', 'avif:30', 'kmeans:4', 'webp-down4:50')")
    factory, default = _FACTORIES[name]
    if factory is None:
        if sep:
            raise GanrevError(f"codec {name!r} takes no parameter, got {spec!r}")
        return PNGCodec()
    if not sep:
        return factory(default)
    return factory(_spec_int(spec, arg))


def _spec_int(spec: str, arg: str) -> int:
    try:
        return int(arg.strip())
    except ValueError:
        raise GanrevError(f"codec spec {spec!r}: {arg.strip()!r} is not an integer") from None


def baseline_codecs(specs: Iterable[str] | None = None, *, skip_unavailable: bool = True) -> list[ImageCodec]:
    """Codecs for ``specs`` (default :data:`DEFAULT_SPECS`), in order.

    With ``skip_unavailable`` AVIF specs are dropped when this Pillow cannot write AVIF.
    """
    specs = DEFAULT_SPECS if specs is None else tuple(specs)
    codecs = []
    for spec in specs:
        is_avif = str(spec).strip().lower().partition(":")[0].strip() in ("avif", "avif444")
        if is_avif and skip_unavailable and not classical.avif_available():
            continue
        codecs.append(codec_from_spec(spec))
    return codecs


def parse_learned_specs(learned: str | None) -> tuple[str, ...] | None:
    """``table --learned``: None (the defaults), () for 'none', else the specs, each loaded once now so a bad spec
    or a missing model is reported before minutes of work."""
    if learned is None:
        return None
    if learned.strip().lower() == "none":
        return ()
    specs = tuple(spec.strip() for spec in learned.split(",") if spec.strip())
    for spec in specs:
        codec_from_spec(spec)
    return specs
