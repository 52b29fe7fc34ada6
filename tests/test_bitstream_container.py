"""The .grv container, format version 2: layout, round trips, and refusal of damaged or forged files.

Decoding whole files with a generator (and version-1 files) is tested in test_codec.py.
"""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ganrev.bitstream.container import (
    FILM_CODEC,
    FINGERPRINT_BYTES,
    LAYER_CODECS,
    MODES,
    Header,
    LatentCoding,
    Layer,
    crc24,
    pack_file,
    unpack_file,
)
from ganrev.errors import GanrevError

LATENT_64 = Header(64, 64, False, LatentCoding(b"\x02\xad", 6, 3.0, 1.0))

latent_codings = st.builds(
    LatentCoding,
    fingerprint=st.binary(min_size=FINGERPRINT_BYTES, max_size=FINGERPRINT_BYTES),
    bits=st.integers(2, 16),
    clip=st.integers(1, 255).map(lambda units: units / 16),
    sigma=st.integers(1, 255).map(lambda units: units / 32),
    leading=st.one_of(st.none(), st.integers(1, 2**20)),
)
layers = st.builds(Layer, st.sampled_from([codec for codec in LAYER_CODECS if codec != FILM_CODEC]),
                   st.binary(max_size=300))
film_layers = st.builds(Layer, st.just(FILM_CODEC), st.binary(max_size=300))
image_sizes = st.one_of(st.integers(0, 15).map(lambda k: (1 << k, 1 << k)),
                        st.tuples(st.integers(1, 2**30), st.integers(1, 2**30)))


@st.composite
def grv_files(draw: st.DrawFn) -> tuple[Header, bytes]:
    """A header of any mode with a latent payload (empty in fallback mode), as pack_file takes them."""
    mode = draw(st.sampled_from(MODES), label="mode")
    width, height = draw(image_sizes, label="size")
    latent = None if mode == "fallback" else draw(latent_codings, label="latent")
    extra = () if mode == "latent" else (draw(film_layers if mode == "latent+modulation" else layers, label="layer"),)
    payload = b"" if mode == "fallback" else draw(st.binary(max_size=200), label="payload")
    return Header(width, height, draw(st.booleans(), label="gray"), latent, extra), payload


def with_check(body: bytes) -> bytes:
    """``body`` made a file whose CRC-24 holds: what a forger (or a buggy writer) produces."""
    return body + crc24(body).to_bytes(3, "little")


def test_crc24_is_openpgps():
    assert crc24(b"123456789") == 0x21CF02  # the catalogued check value of CRC-24/OPENPGP
    assert crc24(b"") == 0xB704CE


def test_a_64x64_latent_file_spends_9_bytes_on_header_and_check():
    data = pack_file(LATENT_64, b"p" * 70)
    assert len(data) - 70 == 9
    assert data[:1] == b"\xb2"  # marker: ganrev, format version 2


@pytest.mark.parametrize("header, payload", [
    (LATENT_64, b"payload"),
    (Header(1000, 3, True, LatentCoding(b"\x01\x02", 16, 2.5, 1 / 32)), b""),
    (Header(64, 64, False, LatentCoding(b"\xff\x00", 2, 3.0, 255 / 32), (Layer("webp", b"RIFF webp"),)), b"z"),
    (Header(64, 64, False, LatentCoding(b"\x01\x02", 5, 3.0, 1.0), (Layer("film", b"\x22\x20film"),)), b"lat"),
    (Header(64, 64, False, LatentCoding(b"\x01\x02", 4, 2.5, 1.0, leading=300), (Layer("vp8", b"vp8"),)), b"k"),
    (Header(40, 24, True, None, (Layer("avif", b"avif bytes"),)), b""),
    (Header(1, 1, False, None, (Layer("png", b""),)), b""),
])
def test_header_round_trip_in_every_mode(header, payload):
    data = pack_file(header, payload)
    assert unpack_file(data) == (header, payload)
    assert unpack_file(data)[0].version == 2


def test_leading_coordinates_cost_a_varint_after_sigma_and_clip():
    whole = pack_file(LATENT_64, b"p")
    leading = pack_file(Header(64, 64, False, LatentCoding(b"\x02\xad", 6, 3.0, 1.0, leading=48)), b"p")
    assert len(leading) == len(whole) + 1
    assert leading[2] == whole[2] | 0x20 and leading[4] == 48 and leading[5:7] == b"\x02\xad"
    assert unpack_file(leading)[0].latent.leading == 48 and unpack_file(whole)[0].latent.leading is None
    assert unpack_file(leading)[0].latent.coded(160) == 48 and unpack_file(whole)[0].latent.coded(160) == 160
    with pytest.raises(GanrevError, match="at least 1 leading"):
        pack_file(Header(64, 64, False, LatentCoding(b"\x02\xad", 6, 3.0, 1.0, leading=0)), b"p")


def test_mode_follows_from_latent_and_layers():
    layer = Layer("jpeg", b"jpeg")
    assert LATENT_64.mode == "latent"
    assert Header(8, 8, False, LATENT_64.latent, (layer,)).mode == "latent+residual"
    assert Header(8, 8, False, None, (layer,)).mode == "fallback"
    assert Header(8, 8, False, LATENT_64.latent, (Layer("film", b""),)).mode == "latent+modulation"
    with pytest.raises(GanrevError, match="needs a latent"):
        Header(8, 8, False, None, (Layer("film", b""),))
    with pytest.raises(GanrevError, match="at most one layer"):
        Header(8, 8, False, LATENT_64.latent, (layer, layer))
    with pytest.raises(GanrevError, match="one layer alone"):
        Header(8, 8, False, None)


def test_layer_lengths_and_codec_ids_are_in_the_header():
    residual = Layer("webp", b"W" * 300)
    data = pack_file(Header(64, 64, False, LATENT_64.latent, (residual,)), b"L" * 50)
    header_end = 1 + 1 + 2 + 2  # marker, image byte, latent byte and sigma, fingerprint
    assert data[header_end] == LAYER_CODECS.index("webp")
    assert data[header_end + 1:header_end + 3] == bytes([300 & 0x7F | 0x80, 300 >> 7])  # varint 300
    assert data[header_end + 3:-3] == b"L" * 50 + b"W" * 300


@pytest.mark.parametrize("header, payload, message", [
    (Header(64, 64, False, LatentCoding(b"\x01\x02", 6, 3.0, 0.3)), b"", "sigma 0.3"),
    (Header(64, 64, False, LatentCoding(b"\x01\x02", 6, 16.0, 1.0)), b"", "clip 16"),
    (Header(64, 64, False, LatentCoding(b"\x01\x02", 17, 3.0, 1.0)), b"", "bits"),
    (Header(64, 64, False, LatentCoding(b"\x01\x02\x03\x04", 6, 3.0, 1.0)), b"", "fingerprint"),
    (Header(64, 64, False, LatentCoding(b"\x01\x02", 6, 3.0, 1.0), version=1), b"", "version 2 only"),
    (Header(0, 64, False, None, (Layer("png", b"png"),)), b"", "at least 1x1"),
    (Header(64, 64, False, None, (Layer("png", b"png"),)), b"latent", "no latent"),
    (Header(64, 64, False, None, (Layer("gif", b"gif"),)), b"", "unknown layer codec 'gif'"),
])
def test_pack_refuses_what_the_format_cannot_hold_exactly(header, payload, message):
    with pytest.raises(GanrevError, match=message):
        pack_file(header, payload)


@pytest.mark.parametrize("data, message", [
    (b"", "bad magic"),
    (b"\x89PNG\r\n\x1a\n" + bytes(40), "bad magic"),
    (b"\xb3" + bytes(20), "version 3"),
    (b"GRV\x03" + bytes(16) + struct.pack("<I", zlib.crc32(b"GRV\x03" + bytes(16))), "version 3"),
    (b"\xb2\x60\x00", "truncated"),
    (with_check(b"\xb2\x63\x05\x20\x01\x02\x00\x01x"), "out of range"),  # mode latent+modulation, a png layer
    (with_check(b"\xb2\x61\x05\x20\x01\x02\x09\x01x"), "out of range"),  # mode latent+residual, a film layer
    (with_check(b"\xb2\x62\x09\x01x"), "out of range"),  # a fallback film layer
    (with_check(b"\xb2\x68\x07\x07"), "out of range"),  # explicit size and a side
    (with_check(b"\xb2\x08\x00\x07"), "out of range"),  # width 0
    (with_check(b"\xb2\x60\x00\x20\x01\x02"), "out of range"),  # bits field 0
    (with_check(b"\xb2\x60\x45\x20\x01\x02"), "out of range"),  # a reserved bit of the latent byte
    (with_check(b"\xb2\x60\x25\x20\x00\x01\x02"), "out of range"),  # 0 leading coordinates
    (with_check(b"\xb2\x60\x05\x00\x01\x02"), "out of range"),  # sigma 0
    (with_check(b"\xb2\x60\x15\x20\x00\x01\x02"), "out of range"),  # explicit clip 0
    (with_check(b"\xb2\x61\x05\x20\x01\x02\x0a\x01x"), "out of range"),  # codec id 10
    (with_check(b"\xb2\x61\x05\x20\x01\x02\x00\x05xx"), "do not add up"),  # layer longer than the file
    (with_check(b"\xb2\x62\x00\x01xy"), "do not add up"),  # fallback with a latent payload
    (with_check(b"\xb2\x60\x05\x20"), "runs past the end"),  # no fingerprint
    (with_check(b"\xb2\x08\xff\xff\xff\xff\xff\x01\x01"), "variable-length"),
])
def test_unpack_names_the_cause(data, message):
    with pytest.raises(GanrevError, match=message):
        unpack_file(data)


@settings(max_examples=200, deadline=None)
@given(grv_files())
def test_any_header_round_trips(file):
    header, payload = file
    data = pack_file(header, payload)
    assert unpack_file(data) == (header, payload)
    assert pack_file(*unpack_file(data)) == data


@settings(max_examples=100, deadline=None)
@given(file=grv_files(), data=st.data())
def test_any_changed_byte_is_detected(file, data):
    """CRC-24 detects every burst of up to 24 bits, so every single-byte change, with certainty."""
    original = pack_file(*file)
    position = data.draw(st.integers(0, len(original) - 1), label="byte")
    damaged = bytearray(original)
    damaged[position] ^= data.draw(st.integers(1, 255), label="xor")
    with pytest.raises(GanrevError):
        unpack_file(bytes(damaged))


@settings(max_examples=100, deadline=None)
@given(file=grv_files(), data=st.data())
def test_scattered_damage_is_detected(file, data):
    """Damage to several bytes anywhere passes the check with probability 2**-24 per file: never, in practice."""
    original = pack_file(*file)
    damaged = bytearray(original)
    for _ in range(data.draw(st.integers(2, 8), label="changes")):
        damaged[data.draw(st.integers(0, len(original) - 1), label="byte")] ^= data.draw(st.integers(1, 255))
    assume(damaged != original)
    with pytest.raises(GanrevError):
        unpack_file(bytes(damaged))


@settings(max_examples=50, deadline=None)
@given(grv_files())
def test_every_truncation_and_extension_is_detected(file):
    original = pack_file(*file)
    for cut in range(len(original)):
        with pytest.raises(GanrevError):
            unpack_file(original[:cut])
    with pytest.raises(GanrevError):
        unpack_file(original + b"\0")


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=100), st.binary(max_size=100).map(lambda tail: b"\xb2" + tail),
                 st.binary(max_size=100).map(lambda tail: with_check(b"\xb2" + tail))))
def test_garbage_and_forged_files_raise_only_ganrev_errors(blob):
    """Garbage fails the check; bytes a forger gave a valid check are parsed without crashing."""
    try:
        header, payload = unpack_file(blob)
    except GanrevError:
        return
    assert isinstance(header, Header) and isinstance(payload, bytes)


def test_version_1_layout_is_still_read():
    """A version-1 file written here by the layout README documents (independently of ganrev's reader)."""
    body = struct.pack("<3sB4sBBBB", b"GRV", 1, b"\x01\x02\x03\x04", 7, 48, 40, 1) + bytes([100, 64, 0xE8, 0x07, 3])
    body += b"payload"
    header, payload = unpack_file(body + struct.pack("<I", zlib.crc32(body)))
    assert header == Header(1000, 3, True, LatentCoding(b"\x01\x02\x03\x04", 7, 3.0, 1.25, 100, 64), version=1)
    assert header.mode == "latent" and payload == b"payload"
