"""Write the .grv conformance vectors: a small file of every kind ganrev writes, and a manifest of their fields.

    python experiments/make_conformance_vectors.py [--out tests/fixtures/conformance] [--force]

Every file is made through the library, on shipped held-out images (``pretrained/*/heldout/``):

- ``latent``: :meth:`GanCodec.compress` (what ``ganrev compress`` writes, at the generator's own bits);
- ``latent+residual``, one file per residual coder rate control tries (:data:`ganrev.bitstream.ratecontrol.RESIDUAL_CODERS`),
  and ``fallback``, one per fallback coder (:data:`ganrev.bitstream.ratecontrol.FALLBACK_CODERS`): the candidate files of
  :func:`ganrev.bitstream.ratecontrol.choose_file` (``ganrev compress --target-ssim/--target-bpp``), each at one fixed
  quality, so that every layer codec appears whatever the engine would pick for these images;
- ``latent+modulation``: :func:`ganrev.bitstream.modulation.modulated_files` (rate control's modulation search);
- gray and 32x32: the same on ``pretrained/fashion-mnist32``; an explicit size (odd sides) and an explicit clip
  (``SearchOptions(clip=2.5)``, a library option) on a crop of a held-out emoji;
- leading coordinates: a latent file coding only the latent's first 48 coordinates (``SearchOptions(leading=48)``,
  the files rate control makes at low rates);
- version 1: a copy of ``tests/fixtures/grv_v1/emoji64_6bit.grv`` (made by an earlier ganrev with
  ``pretrained/emoji64-google``; version 1 is read, no longer written);
- one damaged file: the ``latent`` file with one payload byte flipped, which the CRC-24 catches.

The manifest (``manifest.json``) holds per file every header field, the latent grid indices (what the range
decoder yields), each layer's codec, length and digest (and, for a bare layer, the digest of the complete file
the decoder rebuilds), the modulation's fields and grid indices, and the SSIM of ganrev's decode against the
source image; docs/format.md ("Conformance vectors") describes it. tests/test_conformance.py checks the files
against it. An existing folder is replaced only with ``--force``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ganrev.codecs.gan import MODULATION_CLIP, GanCodec, decode_modulation, film_fields, residual_image  # noqa: E402
from ganrev.bitstream.container import (  # noqa: E402
    FORMAT_VERSION,
    LAYER_CODECS,
    READABLE_VERSIONS,
    Header,
    Layer,
    pack_file,
    unpack_file,
)
from ganrev.errors import GanrevError  # noqa: E402
from ganrev.invert import default_search  # noqa: E402
from ganrev.io import atomic_write_bytes, atomic_write_text, from_uint8, load_image, to_uint8  # noqa: E402
from ganrev.bitstream.layers import BARE_CODECS, complete_file, encode_layer  # noqa: E402
from ganrev.metrics import ssim  # noqa: E402
from ganrev.models import load_generator  # noqa: E402
from ganrev.bitstream.modulation import ModulationSearch, modulated_files  # noqa: E402
from ganrev.bitstream.quantize import Quantizer  # noqa: E402
from ganrev.bitstream.ratecontrol import FALLBACK_CODERS, RESIDUAL_CODERS  # noqa: E402

DEFAULT_OUT = ROOT / "tests" / "fixtures" / "conformance"
V1_SOURCE = ROOT / "tests" / "fixtures" / "grv_v1" / "emoji64_6bit.grv"
# The vectors were made with the default generator of their time, now emoji64-google-twitter; they stay as they are
# (a search on another CPU may differ in its last bits, so a rerun can change files that are still valid).
EMOJI, GOOGLE, FASHION = "pretrained/emoji64-google-twitter", "pretrained/emoji64-google", "pretrained/fashion-mnist32"
EMOJI_IMAGE = f"{EMOJI}/heldout/1f431.png"  # cat face
CROP_IMAGE = f"{EMOJI}/heldout/1f355.png"  # pizza, cropped to 45x37 (odd sides, explicit size)
FASHION_IMAGE = f"{FASHION}/heldout/test-1049.png"
CROP = (slice(13, 50), slice(9, 54))  # rows, columns: 37 x 45
EXPLICIT_CLIP = 2.5
LEADING = 48  # the leading-coordinates vector codes the first 48 of the latent's coordinates
# One quality per coder (CODER_LEVELS' knob): mid-range settings, files of a few hundred bytes at most.
LEVELS = {"av1": 20, "vp8": 30, "vp8l": 24, "vp8-down2": 50, "vp8-down4": 50, "jpeg444": 20}
MODULATION_KEY_LAYER, MODULATION_KEY_BITS = -2, 3  # the film vector: batch-norm layer 2 of 0-3, 3 bits per value
MANIFEST = "manifest.json"
WRITTEN_CODECS = {"av1", "vp8", "vp8l", "vp8-down2", "vp8-down4", "jpeg", "film"}  # the layer codecs ganrev writes


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Vectors:
    """The files made so far and their manifest entries."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.entries: list[dict] = []
        self.checkpoints: dict[str, object] = {}

    def checkpoint(self, name: str):
        if name not in self.checkpoints:
            self.checkpoints[name] = load_generator(ROOT / name)
        return self.checkpoints[name]

    def add(self, name: str, data: bytes, made_by: str, source: str | None, generator: str | None,
            image: torch.Tensor | None) -> None:
        """Record ``data`` as vector ``name``: its fields as ganrev's reader sees them, and its decode's SSIM."""
        entry = describe(data, self.checkpoint(generator) if generator else None)
        decoder = GanCodec(self.checkpoint(generator or EMOJI))
        decoded = decoder.decode(data)
        expected = (1 if entry["header"]["gray"] else 3, entry["header"]["height"], entry["header"]["width"])
        if tuple(decoded.shape) != expected:
            raise GanrevError(f"{name} decodes to {tuple(decoded.shape)}, not {expected}")
        entry = {"name": name, "made_by": made_by, "source": source, "generator": generator, **entry,
                 "decoded": {"width": decoded.shape[2], "height": decoded.shape[1], "channels": decoded.shape[0],
                             "ssim_vs_source": None if image is None else round(float(
                                 ssim(decoded[None], image[None])[0]), 6)}}
        self.files[name] = data
        self.entries.append(entry)


def header_fields(header: Header, data: bytes) -> dict:
    """The manifest's ``header`` of one file: its header as ganrev's reader gives it, in the spec's units."""
    fields: dict = {"width": header.width, "height": header.height, "gray": header.gray}
    if header.version == 2:
        fields["explicit_size"] = bool(data[1] & 0x08)
    latent = header.latent
    if latent is not None:
        fields |= {"bits": latent.bits, "sigma_units": round(latent.sigma * 32), "sigma": latent.sigma,
                   "clip_units": round(latent.clip * 16), "clip": latent.clip,
                   "fingerprint_prefix": latent.fingerprint.hex()}
        if header.version == 2:
            fields["explicit_clip"] = latent.clip != 3.0
        else:
            fields |= {"latent_dim": latent.latent_dim, "resolution": latent.resolution}
        if latent.leading is not None:
            fields["leading"] = latent.leading
    return fields


def describe(data: bytes, checkpoint) -> dict:
    """Every field of a valid file as ganrev's reader (ganrev.bitstream.container, ganrev.bitstream.quantize) returns it."""
    header, payload = unpack_file(data)
    latent = header.latent
    entry: dict = {"bytes": len(data), "sha256": sha256(data), "version": header.version, "mode": header.mode,
                   "header": header_fields(header, data)}
    layer_bytes = sum(len(layer.data) for layer in header.layers)
    entry |= {"latent_bytes": len(payload), "layer_bytes": layer_bytes,
              "header_bytes": len(data) - len(payload) - layer_bytes,
              "check": data[-3:].hex() if header.version == 2 else data[-4:].hex()}
    if latent is not None:
        count = latent.coded(checkpoint.config.latent_dim)
        symbols = Quantizer(latent.bits, latent.clip).decode_symbols(payload, count, latent.sigma)
        entry |= {"latent_count": count, "latent_symbols": [int(s) for s in symbols]}
    entry["layer"] = describe_layer(header, checkpoint) if header.layers else None
    return entry


def describe_layer(header: Header, checkpoint) -> dict:
    layer = header.layers[0]
    out = {"codec": layer.codec, "codec_id": LAYER_CODECS.index(layer.codec), "length": len(layer.data),
           "sha256": sha256(layer.data)}
    if layer.codec == "film":
        norm_layer, bits = film_fields(layer.data)
        channels = checkpoint.generator.norm_channels()[norm_layer]
        quantizer = Quantizer(bits, MODULATION_CLIP)
        symbols = quantizer.decode_symbols(layer.data[2:], 2 * channels, layer.data[1] / 32)
        decode_modulation(layer, checkpoint.generator.norm_channels())  # ganrev's own check of the fields
        out |= {"norm_layer": norm_layer, "channels": channels, "bits": bits, "sigma_units": layer.data[1],
                "symbols": [int(s) for s in symbols]}
    elif layer.codec in BARE_CODECS:
        decoder, data = complete_file(layer.codec, layer.data, header.width, header.height, header.gray)
        if layer.codec.startswith("vp8-down"):
            # ganrev's downscaled-WebP decoder takes the WebP file plus one byte of its own (scale, size remainder,
            # gray), which the .grv header implies; the file a WebP decoder reads is the bytes before it
            scale = int(layer.codec.removeprefix("vp8-down"))
            data = data[:-1]
            with Image.open(io.BytesIO(data), formats=["WEBP"]) as small:
                shrunk = list(small.size)
            if shrunk != [-(-header.width // scale), -(-header.height // scale)]:
                raise GanrevError(f"a {layer.codec} layer of a {header.width}x{header.height} image is {shrunk}")
            out["shrunk_size"] = shrunk
        out["rebuilt_file"] = {"format": "avif" if decoder == "avif" else "webp", "bytes": len(data),
                               "sha256": sha256(data)}
    return out


def latent_file(checkpoint, image: torch.Tensor, *, clip: float | None = None, leading: int | None = None) -> bytes:
    """What ``ganrev compress`` writes (default search, the generator's own bits); ``clip``: a library option;
    ``leading``: a file of the latent's first coordinates, as rate control makes them."""
    search = default_search(checkpoint.encoder is not None)
    if clip is not None:
        search = replace(search, clip=clip)
    if leading is not None:
        search = replace(search, leading=leading)
    codec = GanCodec(checkpoint, bits=checkpoint.compress_bits, search=search)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "resized 45x37 -> 64x64 for the generator": expected for the crop
        return codec.compress([image])[0].data


def residual_file(checkpoint, image: torch.Tensor, latent: bytes, coder: str) -> bytes:
    """A latent+residual candidate of rate control (choose_file's ``layered``) at the coder's LEVELS quality."""
    header, payload = unpack_file(latent)
    prediction = GanCodec(checkpoint).decode(latent)  # what decompress makes of the latent alone
    layer = Layer(*encode_layer(coder, residual_image(image, prediction), LEVELS[coder]))
    return pack_file(replace(header, layers=(layer,)), payload)


def fallback_file(image: torch.Tensor, coder: str) -> bytes:
    """A fallback candidate of rate control (choose_file's ``alone``) at the coder's LEVELS quality."""
    layer = Layer(*encode_layer(coder, image, LEVELS[coder]))
    return pack_file(Header(image.shape[2], image.shape[1], image.shape[0] == 1, None, (layer,)), b"")


def modulation_file(checkpoint, image: torch.Tensor) -> bytes:
    """A latent+modulation file of rate control's modulation search (its default fit, one layer and bits)."""
    codec = GanCodec(checkpoint, bits=checkpoint.compress_bits, search=default_search(checkpoint.encoder is not None))
    options = ModulationSearch(layers=(MODULATION_KEY_LAYER,), bits=(MODULATION_KEY_BITS,))
    files = modulated_files(codec, [image], codec.search_latents([image]), (checkpoint.compress_bits,), options)[0]
    layer = MODULATION_KEY_LAYER % len(checkpoint.generator.norm_channels())
    return files[checkpoint.compress_bits, layer, MODULATION_KEY_BITS]


def damaged(data: bytes) -> tuple[bytes, int]:
    """``data`` with its first payload byte (after the 6-byte header of a 64x64 latent file) inverted."""
    offset = 6
    return data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1:], offset


def make(vectors: Vectors) -> None:
    emoji = vectors.checkpoint(EMOJI)
    image = from_uint8(to_uint8(load_image(ROOT / EMOJI_IMAGE)))
    latent = latent_file(emoji, image)
    vectors.add("latent.grv", latent, "GanCodec.compress", EMOJI_IMAGE, EMOJI, image)
    vectors.add(f"latent-leading{LEADING}.grv", latent_file(emoji, image, leading=LEADING),
                f"GanCodec.compress with SearchOptions(leading={LEADING})", EMOJI_IMAGE, EMOJI, image)
    for coder in RESIDUAL_CODERS:
        vectors.add(f"residual-{coder}.grv", residual_file(emoji, image, latent, coder),
                    f"residual_image + encode_layer({coder!r}, level {LEVELS[coder]}) + pack_file", EMOJI_IMAGE,
                    EMOJI, image)
    vectors.add("modulation-film.grv", modulation_file(emoji, image),
                f"modulated_files (batch-norm layer {MODULATION_KEY_LAYER}, {MODULATION_KEY_BITS} bits)", EMOJI_IMAGE,
                EMOJI, image)
    for coder in FALLBACK_CODERS:
        vectors.add(f"fallback-{coder.removesuffix('444')}.grv", fallback_file(image, coder),
                    f"encode_layer({coder!r}, level {LEVELS[coder]}) + pack_file", EMOJI_IMAGE, None, image)

    crop = from_uint8(to_uint8(load_image(ROOT / CROP_IMAGE)))[:, CROP[0], CROP[1]].contiguous()
    vectors.add("latent-45x37-clip2.5.grv", latent_file(emoji, crop, clip=EXPLICIT_CLIP),
                f"GanCodec.compress with SearchOptions(clip={EXPLICIT_CLIP}), a 45x37 crop", CROP_IMAGE, EMOJI, crop)
    vectors.add("fallback-vp8-down2-45x37.grv", fallback_file(crop, "vp8-down2"),
                f"encode_layer('vp8-down2', level {LEVELS['vp8-down2']}) + pack_file, a 45x37 crop", CROP_IMAGE,
                None, crop)

    fashion = vectors.checkpoint(FASHION)
    gray = from_uint8(to_uint8(load_image(ROOT / FASHION_IMAGE)))
    if gray.shape[0] != 1:
        raise GanrevError(f"{FASHION_IMAGE} is not gray")
    gray_latent = latent_file(fashion, gray)
    vectors.add("gray32-latent.grv", gray_latent, "GanCodec.compress", FASHION_IMAGE, FASHION, gray)
    vectors.add("gray32-residual-av1.grv", residual_file(fashion, gray, gray_latent, "av1"),
                f"residual_image + encode_layer('av1', level {LEVELS['av1']}) + pack_file", FASHION_IMAGE, FASHION,
                gray)
    vectors.add("gray32-fallback-vp8.grv", fallback_file(gray, "vp8"),
                f"encode_layer('vp8', level {LEVELS['vp8']}) + pack_file", FASHION_IMAGE, None, gray)

    vectors.add("v1-latent.grv", V1_SOURCE.read_bytes(), f"a copy of {V1_SOURCE.relative_to(ROOT)} (format version 1)",
                None, GOOGLE, None)

    broken, offset = damaged(latent)
    try:
        unpack_file(broken)
    except GanrevError as exc:
        error = str(exc)
    else:
        raise GanrevError("the damaged vector was not refused")
    vectors.files["damaged-crc.grv"] = broken
    vectors.entries.append({"name": "damaged-crc.grv", "made_by": f"latent.grv with byte {offset} inverted (XOR 0xFF)",
                            "damaged_from": "latent.grv", "flipped_offset": offset, "bytes": len(broken),
                            "sha256": sha256(broken), "expected_error": error})

    written = {entry["layer"]["codec"] for entry in vectors.entries if entry.get("layer")}
    if written != WRITTEN_CODECS:  # e.g. "avif" instead of "av1": this libavif lays its boxes out otherwise
        raise GanrevError(f"the vectors hold layer codecs {sorted(written)}, not {sorted(WRITTEN_CODECS)}")


def manifest(vectors: Vectors) -> dict:
    generators = {}
    for name, checkpoint in sorted(vectors.checkpoints.items()):
        cfg = checkpoint.config
        generators[name] = {"fingerprint": checkpoint.fingerprint, "latent_dim": cfg.latent_dim,
                            "channels": cfg.channels, "resolution": cfg.resolution, "width": cfg.width,
                            "norm_channels": checkpoint.generator.norm_channels()}
    return {"format_version": FORMAT_VERSION, "readable_versions": list(READABLE_VERSIONS),
            "layer_codecs": list(LAYER_CODECS), "made_by": "experiments/make_conformance_vectors.py",
            "description": "docs/format.md, section 'Conformance vectors'", "generators": generators,
            "vectors": vectors.entries}


def to_json(value: dict) -> str:
    """Indented JSON with each list of numbers on one line (the grid indices)."""
    text = json.dumps(value, indent=1)
    return re.sub(r"\[\s*(-?\d+(?:,\s*-?\d+)*)\s*\]",
                  lambda m: "[" + ", ".join(n.strip() for n in m.group(1).split(",")) + "]", text) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--force", action="store_true", help="replace an existing folder of vectors")
    args = parser.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()) and not args.force:
        print(f"{args.out} exists and is not empty: pass --force to replace its vectors", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    vectors = Vectors()
    make(vectors)
    for stale in [*args.out.glob("*.grv"), args.out / MANIFEST]:  # --force: the previous vectors, nothing else
        stale.unlink(missing_ok=True)
    for name, data in vectors.files.items():
        atomic_write_bytes(args.out / name, data)
    atomic_write_text(args.out / MANIFEST, to_json(manifest(vectors)))
    total = sum(len(data) for data in vectors.files.values())
    for entry in vectors.entries:
        layer = entry.get("layer")
        print(f"{entry['name']:32} {entry['bytes']:5d} bytes  {entry.get('mode', 'damaged'):18} "
              f"{layer['codec'] if layer else ''}")
    print(f"{len(vectors.files)} files, {total} bytes, in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
