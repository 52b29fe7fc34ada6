"""What ``ganrev info`` shows of a ``.grv`` file: its header fields, mode, layers, size and bits per pixel, read
without a generator."""

from __future__ import annotations

from typing import Any

from ganrev.codecs.base import bits_per_pixel
from ganrev.codecs.gan import film_fields
from ganrev.bitstream.container import FILM_CODEC, Layer, unpack_file


def describe_file(data: bytes) -> dict[str, Any]:
    """The fields of one file's bytes (raises GanrevError on a damaged file).

    Fields a file does not hold are None: the latent's in a fallback file, latent size and model resolution in
    format version 2 (the generator the fingerprint names fixes them), the leading coordinates coded where the
    payload holds all of them. ``header_bytes`` counts everything that is
    not the latent payload or a layer's bytes: header, layer lengths and integrity check.
    """
    header, payload = unpack_file(data)
    latent = header.latent
    layers = [{"codec": layer.codec, "bytes": len(layer.data), **_modulation_fields(layer)}
              for layer in header.layers]
    return {
        "version": header.version, "mode": header.mode,
        "generator_fingerprint": latent.fingerprint.hex() if latent else None,
        "bits": latent and latent.bits, "clip": latent and latent.clip, "sigma": latent and latent.sigma,
        "latent_dim": latent and latent.latent_dim, "leading_latents": latent and latent.leading,
        "model_resolution": latent and latent.resolution,
        "width": header.width, "height": header.height, "channels": 1 if header.gray else 3,
        "bytes": len(data), "latent_bytes": len(payload), "layers": layers,
        "header_bytes": len(data) - len(payload) - sum(layer["bytes"] for layer in layers),
        "bpp": bits_per_pixel(len(data), header.width, header.height),
    }


def format_description(description: dict[str, Any]) -> str:
    """One ``key value`` line per field, the layers on one line."""
    layers = ", ".join(f"{layer['codec']} {layer['bytes']} bytes"
                       + (f" (batch-norm layer {layer['norm_layer']}, {layer['bits']} bits)"
                          if "norm_layer" in layer else "") for layer in description["layers"]) or "none"
    return "\n".join(f"{key:22} {layers if key == 'layers' else value}" for key, value in description.items())


def _modulation_fields(layer: Layer) -> dict[str, int]:
    """A modulation layer's batch-norm layer and bits per value (its first byte, see ganrev.codecs.gan)."""
    if layer.codec != FILM_CODEC or not layer.data:
        return {}
    norm_layer, bits = film_fields(layer.data)
    return {"norm_layer": norm_layer, "bits": bits}
