"""The .grv conformance vectors (tests/fixtures/conformance, docs/format.md section 11) against their manifest.

Three readers: ganrev's own (every header field, the latent and modulation grid indices, the rebuilt layer files,
the decoded image), ganrev's writer (re-coding each file gives its exact bytes), and a small reader written from
docs/format.md alone (``SpecReader`` below: no ganrev import), which checks that the page says enough.
Regenerate the vectors with ``python experiments/make_conformance_vectors.py --force`` when the format changes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import struct
import zlib
from functools import lru_cache
from pathlib import Path

import pytest
import torch

from ganrev.codecs.gan import MODULATION_CLIP, GanCodec, encode_modulation, film_fields
from ganrev.bitstream.container import (
    FORMAT_VERSION,
    LAYER_CODECS,
    READABLE_VERSIONS,
    Header,
    LatentCoding,
    pack_file,
    unpack_file,
)
from ganrev.errors import GanrevError
from ganrev.io import from_uint8, load_image, to_uint8
from ganrev.bitstream.layers import complete_file
from ganrev.metrics import ssim
from ganrev.models import load_generator
from ganrev.bitstream.quantize import Quantizer

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "tests" / "fixtures" / "conformance"
MANIFEST = json.loads((FOLDER / "manifest.json").read_text())
VECTORS = {entry["name"]: entry for entry in MANIFEST["vectors"]}
GOOD = [name for name, entry in VECTORS.items() if "expected_error" not in entry]
DAMAGED = [name for name, entry in VECTORS.items() if "expected_error" in entry]
CROP = (slice(13, 50), slice(9, 54))  # the 45x37 crop of experiments/make_conformance_vectors.py
SSIM_TOLERANCE = 0.01  # the generator's float arithmetic and the codec libraries may differ a little


def data_of(name: str) -> bytes:
    return (FOLDER / name).read_bytes()


@lru_cache(maxsize=None)
def checkpoint(name: str):
    return load_generator(ROOT / name)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the folder and the format version

def test_the_manifest_lists_every_file_and_the_folder_is_small():
    files = {path.name for path in FOLDER.iterdir()}
    assert files == set(VECTORS) | {"manifest.json"}
    assert sum(path.stat().st_size for path in FOLDER.iterdir()) < 100_000
    for name, entry in VECTORS.items():
        assert sha256(data_of(name)) == entry["sha256"], name
    modes = {VECTORS[name]["mode"] for name in GOOD}
    assert modes == {"latent", "latent+residual", "latent+modulation", "fallback"}
    written = {VECTORS[name]["layer"]["codec"] for name in GOOD if VECTORS[name]["layer"]}
    assert written == {"av1", "vp8", "vp8l", "vp8-down2", "vp8-down4", "jpeg", "film"}
    assert {VECTORS[name]["version"] for name in GOOD} == set(READABLE_VERSIONS)


def test_the_format_version_written_is_the_manifests():
    """A change of the format must change the version number and the vectors."""
    assert FORMAT_VERSION == MANIFEST["format_version"]
    assert list(READABLE_VERSIONS) == MANIFEST["readable_versions"]
    assert list(LAYER_CODECS) == MANIFEST["layer_codecs"]
    written = pack_file(Header(64, 64, False, LatentCoding(b"\x10\x8d", 4, 3.0, 1.0)), b"")
    assert written[0] == 0xB0 | MANIFEST["format_version"]
    for name in GOOD:
        if VECTORS[name]["version"] == MANIFEST["format_version"]:
            assert data_of(name)[0] == written[0], name


# -- ganrev's reader and writer

def _vectors_script():
    """experiments/make_conformance_vectors.py, whose ``header_fields`` defines the manifest's header entries."""
    spec = importlib.util.spec_from_file_location("make_conformance_vectors",
                                                  ROOT / "experiments" / "make_conformance_vectors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


header_fields = _vectors_script().header_fields


@pytest.mark.parametrize("name", GOOD)
def test_ganrevs_reader_gives_every_field_of_the_manifest(name):
    entry, data = VECTORS[name], data_of(name)
    header, payload = unpack_file(data)
    assert (header.version, header.mode) == (entry["version"], entry["mode"])
    assert header_fields(header, data) == entry["header"]
    layer_bytes = sum(len(layer.data) for layer in header.layers)
    assert (len(data), len(payload), layer_bytes) == (entry["bytes"], entry["latent_bytes"], entry["layer_bytes"])
    assert len(data) - len(payload) - layer_bytes == entry["header_bytes"]
    assert data[-3 if header.version == 2 else -4:].hex() == entry["check"]
    if header.latent is not None:
        generator = MANIFEST["generators"][entry["generator"]]
        assert generator["fingerprint"].startswith(entry["header"]["fingerprint_prefix"])
        assert entry["latent_count"] == header.latent.coded(generator["latent_dim"])
        quantizer = Quantizer(header.latent.bits, header.latent.clip)
        symbols = quantizer.decode_symbols(payload, entry["latent_count"], header.latent.sigma)
        assert symbols.tolist() == entry["latent_symbols"]
    else:
        assert "latent_symbols" not in entry
    if not header.layers:
        assert entry["layer"] is None
        return
    layer, expected = header.layers[0], entry["layer"]
    assert (layer.codec, LAYER_CODECS.index(layer.codec), len(layer.data), sha256(layer.data)) == (
        expected["codec"], expected["codec_id"], expected["length"], expected["sha256"])
    if layer.codec == "film":
        norm_layer, bits = film_fields(layer.data)
        channels = MANIFEST["generators"][entry["generator"]]["norm_channels"][norm_layer]
        symbols = Quantizer(bits, MODULATION_CLIP).decode_symbols(layer.data[2:], 2 * channels, layer.data[1] / 32)
        assert (norm_layer, channels, bits, layer.data[1]) == (
            expected["norm_layer"], expected["channels"], expected["bits"], expected["sigma_units"])
        assert symbols.tolist() == expected["symbols"]
    elif "rebuilt_file" in expected:
        _, rebuilt = complete_file(layer.codec, layer.data, header.width, header.height, header.gray)
        if layer.codec.startswith("vp8-down"):
            rebuilt = rebuilt[:-1]  # ganrev's downscaled-WebP decoder takes one byte of its own after the file
        assert (len(rebuilt), sha256(rebuilt)) == (expected["rebuilt_file"]["bytes"],
                                                   expected["rebuilt_file"]["sha256"])


@pytest.mark.parametrize("name", [name for name in GOOD if VECTORS[name]["version"] == FORMAT_VERSION])
def test_ganrevs_writer_recodes_each_file_to_its_exact_bytes(name):
    """The writer's header layout, range coder and sigma choice (with its tie rule) are those of the vectors."""
    entry, data = VECTORS[name], data_of(name)
    header, payload = unpack_file(data)
    latent, layers = header.latent, header.layers
    if latent is not None:
        quantizer = Quantizer(latent.bits, latent.clip)
        symbols = torch.tensor(entry["latent_symbols"])
        assert quantizer.best_sigma(symbols.numpy()) == (latent.sigma, payload)
    if layers and layers[0].codec == "film":
        film = entry["layer"]
        recoded = encode_modulation(film["norm_layer"], Quantizer(film["bits"], MODULATION_CLIP),
                                    torch.tensor(film["symbols"]).numpy())
        assert recoded == layers[0]
    assert pack_file(Header(header.width, header.height, header.gray, latent, layers), payload) == data


@pytest.mark.parametrize("name", DAMAGED)
def test_the_damaged_file_is_refused_with_a_one_line_error(name):
    entry = VECTORS[name]
    assert "\n" not in entry["expected_error"]
    with pytest.raises(GanrevError) as caught:
        unpack_file(data_of(name))
    assert str(caught.value) == entry["expected_error"]
    with pytest.raises(GanrevError, match="CRC-24 mismatch"):
        GanCodec(checkpoint("pretrained/emoji64-google-twitter")).decode(data_of(name))


@pytest.mark.parametrize("name", GOOD)
def test_each_file_decodes_to_the_pixels_the_manifest_describes(name):
    entry = VECTORS[name]
    decoded = GanCodec(checkpoint(entry["generator"] or "pretrained/emoji64-google-twitter")).decode(data_of(name))
    size = entry["decoded"]
    assert tuple(decoded.shape) == (size["channels"], size["height"], size["width"])
    assert size["channels"] == (1 if entry["header"]["gray"] else 3)
    if entry["source"] is not None:
        source = from_uint8(to_uint8(load_image(ROOT / entry["source"])))
        if "45x37" in name:
            source = source[:, CROP[0], CROP[1]]
        measured = float(ssim(decoded[None], source[None])[0])
        assert measured == pytest.approx(size["ssim_vs_source"], abs=SSIM_TOLERANCE)


def test_a_file_is_refused_by_another_generator():
    with pytest.raises(GanrevError, match="another generator"):
        GanCodec(checkpoint("pretrained/fashion-mnist32")).decode(data_of("latent.grv"))


# -- a reader written from docs/format.md alone

class SpecReader:
    """Parses .grv files as docs/format.md specifies them, without ganrev: fields, indices, rebuilt layers."""

    MODES = ("latent", "latent+residual", "fallback", "latent+modulation")
    CODECS = ("png", "jpeg", "webp", "avif", "vp8", "vp8l", "vp8-down2", "vp8-down4", "av1", "film")

    @staticmethod
    def crc24(data: bytes) -> int:
        crc = 0xB704CE
        for byte in data:
            crc ^= byte << 16
            for _ in range(8):
                crc <<= 1
                if crc & 0x1000000:
                    crc ^= 0x1864CFB
        return crc

    @staticmethod
    def varint(data: bytes, pos: int) -> tuple[int, int]:
        value = 0
        for shift in range(0, 35, 7):
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value, pos
        raise ValueError("varint longer than 5 bytes")

    @staticmethod
    def cumulative(levels: int, std: float) -> list[int]:
        """C(0..L) of section 4: the discretised Gaussian in index units, 24-bit frequencies."""
        free, mean = (1 << 24) - levels, (levels - 1) / 2
        table = [0]
        for k in range(1, levels):
            phi = (1.0 + math.erf((k - 0.5 - mean) / (std * math.sqrt(2)))) / 2.0
            table.append(math.floor(free * phi) + k)
        return table + [1 << 24]

    @classmethod
    def indices(cls, payload: bytes, count: int, bits: int, clip: float, sigma: float) -> list[int]:
        """The range decoder of section 4."""
        levels = 2**bits
        table = cls.cumulative(levels, sigma / (2 * clip / (levels - 1)))
        padded = payload + bytes(-len(payload) % 4)
        words = [int.from_bytes(padded[i:i + 4], "little") for i in range(0, len(padded), 4)]

        def word(i: int) -> int:
            return words[i] if i < len(words) else 0

        mask = (1 << 64) - 1
        lower, span, point, following, out = 0, mask, word(0) << 32 | word(1), 2, []
        for _ in range(count):
            scale = span >> 24
            quantile = ((point - lower) & mask) // scale
            if quantile >= 1 << 24:
                raise ValueError("invalid payload")
            k = next(k for k in range(levels) if table[k] <= quantile < table[k + 1])
            lower = (lower + scale * table[k]) & mask
            span = scale * (table[k + 1] - table[k])
            if span < 1 << 32:
                lower, span = (lower << 32) & mask, span << 32
                point = (point << 32) & mask | word(following)
                following += 1
            out.append(k)
        return out

    @classmethod
    def parse(cls, data: bytes) -> tuple[dict, bytes, tuple[str, bytes] | None]:
        """(header fields as the manifest names them, latent payload, (codec, layer bytes) or None)."""
        if data[:3] == b"GRV":
            if data[3] != 1 or zlib.crc32(data[:-4]) != int.from_bytes(data[-4:], "little"):
                raise ValueError("version or CRC-32")
            pos, values = 12, []
            for _ in range(4):
                value, pos = cls.varint(data, pos)
                values.append(value)
            return {"version": 1, "mode": "latent", "width": values[2], "height": values[3],
                    "gray": bool(data[11] & 1), "bits": data[8], "sigma_units": data[10], "sigma": data[10] / 32,
                    "clip_units": data[9], "clip": data[9] / 16, "fingerprint_prefix": data[4:8].hex(),
                    "latent_dim": values[0], "resolution": values[1]}, data[pos:-4], None
        if data[0] != 0xB2 or len(data) < 5 or cls.crc24(data[:-3]) != int.from_bytes(data[-3:], "little"):
            raise ValueError("not version 2, or the CRC-24 fails")
        body, image_byte, pos = data[:-3], data[1], 2
        mode = cls.MODES[image_byte & 3]
        fields = {"version": 2, "mode": mode, "gray": bool(image_byte & 4), "explicit_size": bool(image_byte & 8)}
        if image_byte & 8:
            fields["width"], pos = cls.varint(body, pos)
            fields["height"], pos = cls.varint(body, pos)
        else:
            fields["width"] = fields["height"] = 1 << (image_byte >> 4)
        if mode != "fallback":
            latent_byte, sigma_units = body[pos], body[pos + 1]
            pos += 2
            clip_units = 48
            if latent_byte & 0x10:
                clip_units, pos = body[pos], pos + 1
            if latent_byte & 0x20:
                fields["leading"], pos = cls.varint(body, pos)
            fields |= {"bits": (latent_byte & 0x0F) + 1, "sigma_units": sigma_units, "sigma": sigma_units / 32,
                       "clip_units": clip_units, "clip": clip_units / 16,
                       "explicit_clip": bool(latent_byte & 0x10), "fingerprint_prefix": body[pos:pos + 2].hex()}
            pos += 2
        if mode == "latent":
            return fields, body[pos:], None
        codec_id = body[pos]
        length, pos = cls.varint(body, pos + 1)
        return fields, body[pos:len(body) - length], (cls.CODECS[codec_id], body[len(body) - length:])

    @staticmethod
    def webp(fourcc: bytes, payload: bytes) -> bytes:
        chunk = fourcc + struct.pack("<I", len(payload)) + payload + bytes(len(payload) % 2)
        return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk

    @staticmethod
    def avif(layer: bytes, width: int, height: int, gray: bool) -> bytes:
        def box(kind: bytes, body: bytes) -> bytes:
            return struct.pack(">I", 8 + len(body)) + kind + body

        def full(kind: bytes, body: bytes, version: int = 0) -> bytes:
            return box(kind, bytes([version, 0, 0, 0]) + body)

        config, bitstream = layer[:2], layer[2:]
        brands = b"avifmif1miaf" + (b"" if gray else b"MA1A" if config[0] >> 5 == 1 else b"MA1B")
        ftyp = box(b"ftyp", b"avif" + bytes(4) + brands)
        ipco = box(b"ipco", full(b"ispe", struct.pack(">II", width, height))
                   + full(b"pixi", b"\x01\x08" if gray else b"\x03\x08\x08\x08")
                   + box(b"av1C", b"\x81" + config + b"\x00")
                   + bytes.fromhex("00000013636F6C726E636C780001000D000680"))

        def meta(offset: int) -> bytes:
            return full(b"meta", full(b"hdlr", bytes(4) + b"pict" + bytes(13)) + full(b"pitm", b"\x00\x01")
                        + full(b"iloc", b"\x44\x00" + struct.pack(">HHHHII", 1, 1, 0, 1, offset, len(bitstream)))
                        + full(b"iinf", b"\x00\x01" + full(b"infe", b"\x00\x01\x00\x00av01Color\x00", version=2))
                        + box(b"iprp", ipco + full(b"ipma", struct.pack(">IHB", 1, 1, 4) + b"\x01\x02\x83\x04")))

        head_size = len(ftyp) + len(meta(0)) + 8
        return ftyp + meta(head_size) + struct.pack(">I", 8 + len(bitstream)) + b"mdat" + bitstream


@pytest.mark.parametrize("name", GOOD)
def test_a_reader_written_from_the_spec_agrees_with_the_manifest(name):
    entry, data = VECTORS[name], data_of(name)
    fields, payload, layer = SpecReader.parse(data)
    assert (fields.pop("version"), fields.pop("mode")) == (entry["version"], entry["mode"])
    assert fields == entry["header"]
    if "latent_symbols" in entry:
        generator = MANIFEST["generators"][entry["generator"]]
        assert generator["fingerprint"].startswith(fields["fingerprint_prefix"])
        indices = SpecReader.indices(payload, fields.get("leading", generator["latent_dim"]), fields["bits"],
                                     fields["clip"], fields["sigma"])
        assert indices == entry["latent_symbols"]
    if layer is None:
        assert entry["layer"] is None
        return
    codec, layer_bytes = layer
    expected = entry["layer"]
    assert (codec, sha256(layer_bytes)) == (expected["codec"], expected["sha256"])
    if codec == "film":
        bits, norm_layer = (layer_bytes[0] & 0x0F) + 1, layer_bytes[0] >> 4
        channels = MANIFEST["generators"][entry["generator"]]["norm_channels"][norm_layer]
        values = SpecReader.indices(layer_bytes[2:], 2 * channels, bits, 3.0, layer_bytes[1] / 32)
        assert (norm_layer, bits, values) == (expected["norm_layer"], expected["bits"], expected["symbols"])
    elif codec == "av1":
        rebuilt = SpecReader.avif(layer_bytes, fields["width"], fields["height"], fields["gray"])
        assert sha256(rebuilt) == expected["rebuilt_file"]["sha256"]
    elif codec.startswith("vp8"):
        rebuilt = SpecReader.webp(b"VP8L" if codec == "vp8l" else b"VP8 ", layer_bytes)
        assert sha256(rebuilt) == expected["rebuilt_file"]["sha256"]


def test_the_spec_readers_range_decoder_matches_ganrevs_on_other_streams():
    """Beyond the vectors: random indices at several precisions and sigmas, and garbage payloads."""
    generator = torch.Generator().manual_seed(0)
    for bits, clip, sigma_units in ((2, 3.0, 8), (5, 3.0, 40), (8, 2.5, 255), (12, 3.0, 1)):
        quantizer = Quantizer(bits, clip)
        symbols = torch.randint(0, 2**bits, (300,), generator=generator).numpy()
        payload = quantizer.encode_symbols(symbols, sigma_units / 32)
        assert SpecReader.indices(payload, 300, bits, clip, sigma_units / 32) == symbols.tolist()
        garbage = bytes(torch.randint(0, 256, (40,), generator=generator).tolist())
        assert decoded_or_refused(lambda: SpecReader.indices(garbage, 30, bits, clip, sigma_units / 32)) == \
            decoded_or_refused(lambda: quantizer.decode_symbols(garbage, 30, sigma_units / 32).tolist())


def decoded_or_refused(decode) -> list[int] | str:
    try:
        return decode()
    except (ValueError, GanrevError):
        return "refused"
