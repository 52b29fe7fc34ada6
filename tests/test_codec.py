"""The GAN-reversal codec: quantizer, container, round trips, and refusal of bad files."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ganrev.codec import (
    FORMAT_VERSION,
    GanCodec,
    Header,
    Quantizer,
    bits_per_pixel,
    latent_entropy_bits,
    pack_file,
    unpack_file,
)
from ganrev.errors import GanrevError
from ganrev.invert import SearchOptions, default_search
from ganrev.io import load_image, list_images
from ganrev.metrics import ssim
from ganrev.models import Encoder, Generator, GeneratorConfig, init_weights, load_generator, save_generator

SHIPPED = Path(__file__).resolve().parent.parent / "pretrained" / "emoji64"
FAST = SearchOptions(iters=20, restarts=2, pool=16, batch_size=64)


def make_generator(path: Path, seed: int, resolution: int = 32, channels: int = 3):
    torch.manual_seed(seed)
    generator = Generator(GeneratorConfig(latent_dim=16, channels=channels, resolution=resolution, width=8))
    generator.apply(init_weights)
    save_generator(generator, path, {"dataset": "test"})
    return load_generator(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_generator(tmp_path_factory.mktemp("gen"), seed=1)


@pytest.fixture(scope="module")
def other(tmp_path_factory):
    return make_generator(tmp_path_factory.mktemp("other"), seed=2)


@pytest.fixture(scope="module")
def compressed(tiny):
    """Two images at the model size and one 40x24 gray image that needs resizing, compressed once."""
    torch.manual_seed(0)
    with torch.no_grad():
        targets = list(tiny.generator.images(torch.randn(2, 16)))
    gray = torch.rand(1, 24, 40)
    codec = GanCodec(tiny, bits=6, search=FAST, refine_iters=10)
    with pytest.warns(UserWarning, match="resized"):
        results = codec.compress(targets + [gray])
    return codec, targets + [gray], results


def test_quantizer_grid_round_trip():
    q = Quantizer(bits=4, clip=3.0)
    z = torch.linspace(-5, 5, 101)
    symbols = q.quantize(z)
    assert symbols.min() == 0 and symbols.max() == 15
    grid = q.dequantize(torch.arange(16))
    assert torch.allclose(grid[[0, -1]], torch.tensor([-3.0, 3.0]))
    inside = z.abs() <= 3
    assert (q.dequantize(symbols)[inside] - z[inside]).abs().max() <= q.step / 2 + 1e-6
    assert torch.equal(q.quantize(grid), torch.arange(16))


@pytest.mark.parametrize("bits", [2, 5, 8, 12, 16])
def test_entropy_coder_round_trip_and_rate(bits):
    q = Quantizer(bits=bits, clip=3.0)
    z = torch.randn(100, generator=torch.Generator().manual_seed(bits)).clamp(-3, 3)
    symbols = q.quantize(z).numpy()
    sigma, payload = q.best_sigma(symbols)
    assert np.array_equal(q.decode_symbols(payload, len(symbols), sigma), symbols)
    # The range coder stays within a few bytes of the ideal code length under its own model.
    assert len(payload) * 8 <= latent_entropy_bits(symbols, q, sigma) + 40


def test_quantizer_rejects_bad_settings():
    for bits in (1, 17):
        with pytest.raises(GanrevError, match="bits"):
            Quantizer(bits=bits, clip=3.0)


def test_header_round_trip():
    header = Header(b"\x01\x02\x03\x04", 7, 3.0, 1.25, 100, 64, 1000, 3, True)
    data = pack_file(header, b"payload")
    assert unpack_file(data) == (header, b"payload")


def test_round_trip_reproduces_reported_pixels(compressed):
    codec, images, results = compressed
    for image, result in zip(images, results):
        decoded = codec.decode(result.data)
        assert decoded.shape == image.shape
        assert torch.equal(decoded, codec.decode(result.data))  # deterministic
        assert bits_per_pixel(len(result.data), image.shape[2], image.shape[1]) == len(result.data) * 8 / (
            image.shape[1] * image.shape[2])
    header, _ = unpack_file(results[2].data)
    assert (header.width, header.height, header.gray) == (40, 24, True)
    # What compress reports at model resolution is what the file decodes to (before 8-bit rounding).
    decoded = torch.stack([codec.decode(r.data) for r in results[:2]])
    reported = torch.tensor([r.ssim_refined for r in results[:2]])
    assert torch.allclose(ssim(decoded, torch.stack(images[:2])), reported, atol=0.02)


def test_refinement_never_worse_than_rounding(compressed):
    _, _, results = compressed
    for result in results:
        assert result.ssim_refined >= result.ssim_quantized - 1e-6


def test_file_from_another_generator_is_refused(compressed, other):
    _, _, results = compressed
    with pytest.raises(GanrevError, match="another generator"):
        GanCodec(other).decode(results[0].data)


def test_unknown_version_is_refused(compressed):
    data = bytearray(compressed[2][0].data)
    data[3] = FORMAT_VERSION + 1
    data[-4:] = struct.pack("<I", zlib.crc32(bytes(data[:-4])))
    with pytest.raises(GanrevError, match="version"):
        compressed[0].decode(bytes(data))


def test_not_a_ganrev_file(compressed, tmp_path):
    with pytest.raises(GanrevError, match="not a ganrev"):
        compressed[0].decode(b"\x89PNG\r\n\x1a\n" + bytes(40))


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_truncated_or_bit_flipped_files_raise_clear_error(compressed, data):
    codec, _, results = compressed
    original = results[0].data
    if data.draw(st.booleans(), label="truncate"):
        cut = data.draw(st.integers(0, len(original) - 1), label="length")
        damaged = original[:cut]
    else:
        position = data.draw(st.integers(0, len(original) - 1), label="byte")
        bit = data.draw(st.integers(0, 7), label="bit")
        damaged = bytearray(original)
        damaged[position] ^= 1 << bit
        damaged = bytes(damaged)
    with pytest.raises(GanrevError):
        codec.decode(damaged)


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash(compressed, blob):
    try:
        compressed[0].decode(blob)
    except GanrevError:
        pass


@pytest.mark.skipif(not (SHIPPED / "config.json").is_file(), reason="shipped generator not present")
def test_shipped_generator_8_bits_costs_little_ssim():
    """Issue #4's bar: at 8 bits quantization loses < 0.01 SSIM, and files stay < 100 bytes + latent entropy."""
    checkpoint = load_generator(SHIPPED)
    images = [load_image(path) for path in list_images(SHIPPED / "heldout")[:3]]
    codec = GanCodec(checkpoint, bits=8, search=SearchOptions(iters=60, restarts=1, pool=64), refine_iters=20)
    for result in codec.compress(images):
        assert result.ssim_latent - result.ssim_refined < 0.01
        header, _ = unpack_file(result.data)
        quantizer = Quantizer(header.bits, header.clip)
        symbols = quantizer.quantize(codec_latent(codec, result.data))
        assert len(result.data) < 100 + latent_entropy_bits(symbols.numpy(), quantizer, header.sigma) / 8


def codec_latent(codec: GanCodec, data: bytes) -> torch.Tensor:
    header, payload = unpack_file(data)
    quantizer = Quantizer(header.bits, header.clip)
    return quantizer.dequantize(torch.from_numpy(quantizer.decode_symbols(payload, header.latent_dim, header.sigma)))


def test_codec_starts_the_search_at_the_checkpoints_encoder(tmp_path):
    """A checkpoint with an encoder: GanCodec passes it to the search, so --init encoder works end to end
    and a one-iteration search from E(x) decodes exactly to the encoder's (quantized, refined) latent."""
    torch.manual_seed(3)
    config = GeneratorConfig(latent_dim=16, channels=3, resolution=32, width=8)
    generator, encoder = Generator(config), Encoder(config)
    generator.apply(init_weights)
    encoder.apply(init_weights)
    save_generator(generator, tmp_path, {"dataset": "test"}, encoder=encoder)
    checkpoint = load_generator(tmp_path)
    images = [torch.rand(3, 32, 32) for _ in range(2)]
    codec = GanCodec(checkpoint, bits=8, search=SearchOptions(iters=0, restarts=1, init="encoder"), refine_iters=0)
    results = codec.compress(images)
    with torch.no_grad():
        codes = checkpoint.encoder(torch.stack(images)).clamp(-3, 3)
    for result, code in zip(results, codes):
        assert result.iterations == 0
        assert torch.allclose(codec_latent(codec, result.data), codec.quantizer.dequantize(
            codec.quantizer.quantize(code)), atol=1e-6)
    pool = GanCodec(checkpoint, bits=8, search=SearchOptions(iters=2, restarts=1, pool=8, init="pool"))
    assert len(pool.compress(images)) == 2


def test_a_checkpoint_without_encoder_refuses_encoder_init_but_compresses_with_pool(tiny):
    images = [torch.rand(3, 32, 32)]
    with pytest.raises(GanrevError, match="encoder"):
        GanCodec(tiny, search=SearchOptions(iters=2, restarts=1, init="encoder")).compress(images)
    assert len(GanCodec(tiny, search=default_search(tiny.encoder is not None, iters=2)).compress(images)) == 1
