"""ganrev.bitstream.fileinfo: a .grv file's fields, read without a generator."""

from __future__ import annotations

import numpy as np
import pytest

from ganrev.codecs.gan import MODULATION_CLIP, encode_modulation
from ganrev.bitstream.container import Header, LatentCoding, Layer, pack_file
from ganrev.errors import GanrevError
from ganrev.bitstream.fileinfo import describe_file, format_description
from ganrev.bitstream.quantize import Quantizer

LATENT = LatentCoding(fingerprint=b"\x12\x34", bits=6, clip=3.0, sigma=1.0)


def test_a_latent_file_counts_every_byte() -> None:
    data = pack_file(Header(width=64, height=48, gray=False, latent=LATENT), b"\x01" * 30)
    described = describe_file(data)
    assert described["mode"] == "latent" and described["generator_fingerprint"] == "1234"
    assert (described["width"], described["height"], described["channels"], described["bits"]) == (64, 48, 3, 6)
    assert described["bytes"] == len(data) and described["latent_bytes"] == 30 and described["layers"] == []
    assert described["header_bytes"] == len(data) - 30
    assert described["bpp"] == pytest.approx(len(data) * 8 / (64 * 48))
    assert described["leading_latents"] is None  # the payload holds the whole latent


def test_a_file_of_leading_coordinates_says_how_many() -> None:
    latent = LatentCoding(fingerprint=b"\x12\x34", bits=4, clip=3.0, sigma=1.0, leading=48)
    described = describe_file(pack_file(Header(width=64, height=64, gray=False, latent=latent), b"\x01" * 20))
    assert described["leading_latents"] == 48 and described["header_bytes"] == 10
    assert "leading_latents        48" in format_description(described)


def test_a_fallback_file_has_no_latent_fields_and_names_its_layer() -> None:
    data = pack_file(Header(width=16, height=16, gray=True, latent=None, layers=(Layer("webp", b"\x00" * 9),)), b"")
    described = describe_file(data)
    assert described["mode"] == "fallback" and described["channels"] == 1
    assert described["generator_fingerprint"] is None and described["bits"] is None
    assert described["layers"] == [{"codec": "webp", "bytes": 9}]
    assert "layers                 webp 9 bytes" in format_description(described)


def test_a_modulation_layer_shows_its_batch_norm_layer_and_bits() -> None:
    layer = encode_modulation(2, Quantizer(bits=5, clip=MODULATION_CLIP), np.full(8, 16))
    described = describe_file(pack_file(Header(width=64, height=64, gray=False, latent=LATENT, layers=(layer,)),
                                        b"\x01" * 20))
    assert described["mode"] == "latent+modulation"
    assert described["layers"][0] | {"bytes": 0} == {"codec": "film", "bytes": 0, "norm_layer": 2, "bits": 5}
    assert "(batch-norm layer 2, 5 bits)" in format_description(described)


def test_a_damaged_file_is_refused() -> None:
    data = pack_file(Header(width=64, height=64, gray=False, latent=LATENT), b"\x01" * 30)
    with pytest.raises(GanrevError):
        describe_file(data[:-3])
