"""The GAN-reversal codec (ganrev.codecs.gan) and its files (ganrev.bitstream.container): round trips, bad files refused."""

from __future__ import annotations

import struct
import zlib
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ganrev.codecs.base import bits_per_pixel
from ganrev.codecs.classical import PNGCodec, WebPCodec
from ganrev.codecs.gan import REFINE_ITERS, RESIDUAL_MID, GanCodec, add_residual, residual_image
from ganrev.bitstream.container import Header, LatentCoding, Layer, crc24, pack_file, unpack_file
from ganrev.errors import GanrevError
from ganrev.invert import SearchOptions, default_search
from ganrev.io import from_uint8, list_images, load_image, to_uint8
from ganrev.metrics import ssim
from ganrev.models import load_generator, save_generator
from ganrev.nets.dcgan import Encoder, Generator, GeneratorConfig, init_weights
from ganrev.bitstream.quantize import Quantizer, latent_entropy_bits

SHIPPED = Path(__file__).resolve().parent.parent / "pretrained" / "emoji64"
# Written by ganrev 0.x (format version 1) from heldout/1f0cf.png with the generator shipped as emoji64 then (now
# emoji64-google), with the image it decoded to then.
PREVIOUS = SHIPPED.parent / "emoji64-google"
V1_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "grv_v1" / "emoji64_6bit.grv"
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


def eight_bit(image: torch.Tensor) -> torch.Tensor:
    return from_uint8(to_uint8(image))


def gradient_like(image: torch.Tensor) -> torch.Tensor:
    """An 8-bit image of ``image``'s shape unlike anything the tiny generator draws (its images are near gray)."""
    channels, height, width = image.shape
    y, x = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    return eight_bit(torch.stack([x, y, (x + y) / 2][:channels]))


def with_layer(data: bytes, layer: Layer) -> bytes:
    """A latent file turned into a latent+residual one by adding ``layer``."""
    header, payload = unpack_file(data)
    return pack_file(Header(header.width, header.height, header.gray, header.latent, (layer,)), payload)


@pytest.fixture(scope="module")
def mode_files(compressed):
    """One file of each mode for the first (RGB) image: latent, latent + lossless residual, PNG fallback."""
    codec, images, results = compressed
    target = gradient_like(images[0])
    residual = residual_image(target, codec.decode(results[0].data))
    return {
        "latent": results[0].data,
        "latent+residual": with_layer(results[0].data, Layer("png", PNGCodec().encode(residual))),
        "fallback": pack_file(Header(32, 32, False, None, (Layer("png", PNGCodec().encode(target)),)), b""),
    }


def v1_file(header: Header, payload: bytes, latent_dim: int, resolution: int) -> bytes:
    """The version-1 layout of README, written independently of ganrev's writer (which writes version 2 only)."""
    latent = header.latent
    body = struct.pack("<3sB4sBBBB", b"GRV", 1, latent.fingerprint, latent.bits, round(latent.clip * 16),
                       round(latent.sigma * 32), int(header.gray))
    for value in (latent_dim, resolution, header.width, header.height):
        while value >= 0x80:
            body, value = body + bytes([value & 0x7F | 0x80]), value >> 7
        body += bytes([value])
    body += payload
    return body + struct.pack("<I", zlib.crc32(body))


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


def test_a_file_of_leading_coordinates_codes_only_them_and_decodes_the_rest_as_zero(compressed):
    codec, images, whole = compressed
    leading = GanCodec(codec.checkpoint, bits=6, search=replace(FAST, leading=6), refine_iters=10)
    results = leading.compress(images[:2])
    for image, result, full in zip(images, results, whole):
        header, payload = unpack_file(result.data)
        assert header.latent.leading == 6 and unpack_file(full.data)[0].latent.leading is None
        assert len(payload) < len(unpack_file(full.data)[1])  # 6 of the 16 coordinates
        symbols = Quantizer(6, 3.0).decode_symbols(payload, 6, header.latent.sigma)
        z = torch.zeros(1, 16)
        z[0, :6] = Quantizer(6, 3.0).dequantize(torch.from_numpy(symbols))
        with torch.no_grad():
            expected = eight_bit(codec.checkpoint.generator.images(z)[0])
        assert torch.equal(leading.decode(result.data), expected) and torch.equal(codec.decode(result.data), expected)
        assert ssim(expected[None], image[None]).item() == pytest.approx(result.ssim_refined, abs=0.02)
        assert result.ssim_refined >= result.ssim_quantized - 1e-6
    with pytest.raises(GanrevError, match="fewer than the 17 leading"):
        GanCodec(codec.checkpoint, search=replace(FAST, leading=17))


def test_a_file_coding_more_coordinates_than_the_generator_has_is_refused(compressed):
    codec, _, results = compressed
    header, payload = unpack_file(results[0].data)
    forged = pack_file(replace(header, latent=replace(header.latent, leading=17)), payload)
    with pytest.raises(GanrevError, match="codes 17 latent coordinates, the generator has 16"):
        codec.decode(forged)


def test_refinement_never_worse_than_rounding(compressed):
    _, _, results = compressed
    for result in results:
        assert result.ssim_refined >= result.ssim_quantized - 1e-6


def test_a_search_that_tracked_the_files_grid_gives_the_file_its_tracked_point(tiny):
    torch.manual_seed(4)
    with torch.no_grad():
        targets = list(tiny.generator.images(torch.randn(3, 16)))
    search = replace(FAST, rounded_bits=(2,), precision="fp32")
    result = GanCodec(tiny, search=search).search_latents(targets)
    for bits, chosen in ((2, result.rounded[2]), (3, result.z)):  # 3 bits was not tracked: the best point rounds
        codec = GanCodec(tiny, bits=bits, search=search, refine_iters=0)
        quantizer = Quantizer(bits, search.clip)
        for target, packed, z in zip(targets, codec.compress_latents(targets, result), chosen):
            decoded = codec.decode(packed.data)
            with torch.no_grad():
                expected = tiny.generator.images(quantizer.dequantize(quantizer.quantize(z))[None])[0]
            assert torch.equal(decoded, from_uint8(to_uint8(expected)))


def test_file_from_another_generator_is_refused(compressed, other):
    _, _, results = compressed
    with pytest.raises(GanrevError, match="another generator"):
        GanCodec(other).decode(results[0].data)


def test_unknown_version_is_refused(compressed):
    data = bytearray(compressed[2][0].data)
    data[0] = 0xB3  # format version 3
    data[-3:] = crc24(bytes(data[:-3])).to_bytes(3, "little")
    with pytest.raises(GanrevError, match="version 3"):
        compressed[0].decode(bytes(data))


def test_new_files_are_version_2_and_spend_9_bytes_on_header_and_check(compressed):
    _, _, results = compressed
    header, payload = unpack_file(results[0].data)
    assert (header.version, header.mode, header.layers) == (2, "latent", ())
    assert len(results[0].data) - len(payload) == 9
    header, payload = unpack_file(results[2].data)  # 40x24 gray: its size takes two varints
    assert len(results[2].data) - len(payload) == 11 and header.gray


def test_version_1_files_decode_like_version_2(compressed):
    codec, _, results = compressed
    for result in results:
        header, payload = unpack_file(result.data)
        fingerprint = codec.checkpoint.fingerprint_bytes[:4]
        old = Header(header.width, header.height, header.gray, LatentCoding(
            fingerprint, header.latent.bits, header.latent.clip, header.latent.sigma), version=1)
        data = v1_file(old, payload, 16, 32)
        assert unpack_file(data)[0].version == 1
        assert torch.equal(codec.decode(data), codec.decode(result.data))
    with pytest.raises(GanrevError, match="does not match the generator"):
        codec.decode(v1_file(old, payload, 17, 32))


@pytest.mark.skipif(not (PREVIOUS / "config.json").is_file(), reason="shipped generator not present")
def test_a_file_written_by_format_version_1_still_decodes():
    data = V1_FIXTURE.read_bytes()
    header, payload = unpack_file(data)
    assert (header.version, header.latent.latent_dim, header.latent.resolution, len(data)) == (1, 100, 64, 88)
    codec = GanCodec(load_generator(PREVIOUS))
    decoded = codec.decode(data)
    then = load_image(V1_FIXTURE.with_suffix(".decoded.png"))
    assert (decoded - then).abs().max() <= 1 / 255 + 1e-6  # exact where torch computes as it did then
    # The same latent in a version-2 file: 11 bytes smaller, the same pixels.
    latent = LatentCoding(header.latent.fingerprint[:2], header.latent.bits, header.latent.clip, header.latent.sigma)
    repacked = pack_file(Header(64, 64, False, latent), payload)
    assert len(repacked) == len(data) - 11
    assert torch.equal(codec.decode(repacked), decoded)


def test_zero_residual_is_mid_gray_and_adds_nothing(compressed):
    codec, _, results = compressed
    base = codec.decode(results[0].data)
    residual = residual_image(base, base)
    assert (to_uint8(residual) == 128).all() and RESIDUAL_MID * 255 == 128
    assert torch.equal(add_residual(base, residual), base)


@pytest.mark.parametrize("index", [0, 2])
def test_latent_plus_lossless_residual_decodes_within_one_level(compressed, index):
    """G(z) + residual, with the residual halved to fit 8 bits: a lossless layer restores the image to 1 level."""
    codec, images, results = compressed
    target = gradient_like(images[index])
    base = codec.decode(results[index].data)
    data = with_layer(results[index].data, Layer("png", PNGCodec().encode(residual_image(target, base))))
    assert unpack_file(data)[0].mode == "latent+residual"
    decoded = codec.decode(data)
    assert decoded.shape == target.shape
    assert (decoded - target).abs().max() <= 1 / 255 + 1e-6
    assert (base - target).abs().max() > 2 / 255  # the residual did the work


def test_latent_plus_lossy_residual_improves_on_the_latent(compressed):
    """A WebP residual of an RGB image: WebP cannot say "RGB", the header's channel count decides."""
    codec, images, results = compressed
    target = gradient_like(images[0])
    base = codec.decode(results[0].data)
    decoded = codec.decode(with_layer(results[0].data, Layer("webp", WebPCodec(90).encode(
        residual_image(target, base)))))
    assert decoded.shape == target.shape
    assert ((decoded - target) ** 2).mean() < ((base - target) ** 2).mean() / 2


@pytest.mark.parametrize("index", [0, 2])
def test_fallback_file_decodes_its_classical_layer(compressed, other, index):
    """No latent: any generator decodes it, the one that would have made a latent file or not."""
    codec, images, _ = compressed
    target = gradient_like(images[index])
    gray = target.shape[0] == 1
    layer = Layer("png", PNGCodec().encode(target))
    data = pack_file(Header(target.shape[2], target.shape[1], gray, None, (layer,)), b"")
    assert torch.equal(codec.decode(data), target)
    assert torch.equal(GanCodec(other).decode(data), target)


def test_a_layer_of_another_size_is_refused(compressed, mode_files):
    codec, _, _ = compressed
    layer = Layer("png", PNGCodec().encode(torch.zeros(3, 8, 8)))
    with pytest.raises(GanrevError, match="png layer is 8x8, the header says 32x32"):
        codec.decode(with_layer(mode_files["latent"], layer))
    with pytest.raises(GanrevError, match="cannot decode"):
        codec.decode(with_layer(mode_files["latent"], Layer("jpeg", b"not a jpeg")))


def test_a_header_claiming_a_huge_image_is_refused(compressed):
    codec, _, results = compressed
    header, payload = unpack_file(results[0].data)
    with pytest.raises(GanrevError, match="pixels"):
        codec.decode(pack_file(Header(2**20, 2**20, False, header.latent), payload))


def test_every_changed_byte_of_a_file_is_detected(compressed, mode_files):
    """CRC-24 catches any change within 24 consecutive bits: every byte, every value, exhaustively."""
    codec, _, _ = compressed
    original = mode_files["latent"]
    for position in range(len(original)):
        for xor in range(1, 256):
            damaged = bytearray(original)
            damaged[position] ^= xor
            with pytest.raises(GanrevError):
                codec.decode(bytes(damaged))


def test_not_a_ganrev_file(compressed, tmp_path):
    with pytest.raises(GanrevError, match="not a ganrev"):
        compressed[0].decode(b"\x89PNG\r\n\x1a\n" + bytes(40))


def test_every_mode_round_trips(compressed, mode_files):
    codec, images, _ = compressed
    target, files = gradient_like(images[0]), mode_files
    assert [unpack_file(data)[0].mode for data in files.values()] == list(files)
    assert (codec.decode(files["latent+residual"]) - target).abs().max() <= 1 / 255 + 1e-6
    assert torch.equal(codec.decode(files["fallback"]), target)


@settings(max_examples=90, deadline=None)
@given(data=st.data())
def test_truncated_or_bit_flipped_files_raise_clear_error(compressed, mode_files, data):
    codec, _, _ = compressed
    original = mode_files[data.draw(st.sampled_from(sorted(mode_files)), label="mode")]
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


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_well_formed_files_with_garbage_inside_decode_or_raise_ganrev_errors(compressed, data):
    """Files with a valid check (as a buggy writer or a forger makes them): garbage latent and layer bytes."""
    codec, _, _ = compressed
    width, height = data.draw(st.integers(1, 48), label="width"), data.draw(st.integers(1, 48), label="height")
    latent = LatentCoding(codec.checkpoint.fingerprint_bytes[:2], data.draw(st.integers(2, 16), label="bits"),
                          3.0, data.draw(st.integers(1, 255), label="sigma") / 32)
    mode = data.draw(st.sampled_from(["latent", "latent+residual", "fallback"]), label="mode")
    layers = () if mode == "latent" else (Layer(data.draw(st.sampled_from(["png", "jpeg", "webp"])),
                                                data.draw(st.binary(max_size=64), label="layer")),)
    payload = b"" if mode == "fallback" else data.draw(st.binary(max_size=64), label="payload")
    header = Header(width, height, data.draw(st.booleans()), None if mode == "fallback" else latent, layers)
    try:
        image = codec.decode(pack_file(header, payload))
    except GanrevError:
        return
    assert image.shape == (1 if header.gray else 3, height, width)


@pytest.mark.skipif(not (SHIPPED / "config.json").is_file(), reason="shipped generator not present")
def test_shipped_generator_8_bits_costs_little_ssim():
    """Issue #4's bar: at 8 bits quantization loses < 0.01 SSIM, and files stay < 100 bytes + latent entropy."""
    checkpoint = load_generator(SHIPPED)
    images = [load_image(path) for path in list_images(SHIPPED / "heldout")[:3]]
    codec = GanCodec(checkpoint, bits=8, search=SearchOptions(iters=60, restarts=1, pool=64), refine_iters=20)
    for result in codec.compress(images):
        assert result.ssim_latent - result.ssim_refined < 0.01
        latent = unpack_file(result.data)[0].latent
        quantizer = Quantizer(latent.bits, latent.clip)
        symbols = quantizer.quantize(codec_latent(codec, result.data))
        assert len(result.data) < 100 + latent_entropy_bits(symbols.numpy(), quantizer, latent.sigma) / 8


def codec_latent(codec: GanCodec, data: bytes) -> torch.Tensor:
    header, payload = unpack_file(data)
    quantizer = Quantizer(header.latent.bits, header.latent.clip)
    symbols = quantizer.decode_symbols(payload, codec.checkpoint.config.latent_dim, header.latent.sigma)
    return quantizer.dequantize(torch.from_numpy(symbols))


def checkpoint_with_encoder(folder: Path, seed: int):
    """A tiny random generator + encoder saved to ``folder`` and loaded back as a checkpoint."""
    torch.manual_seed(seed)
    config = GeneratorConfig(latent_dim=16, channels=3, resolution=32, width=8)
    generator, encoder = Generator(config), Encoder(config)
    generator.apply(init_weights)
    encoder.apply(init_weights)
    save_generator(generator, folder, {"dataset": "test"}, encoder=encoder)
    return load_generator(folder)


def test_codec_starts_the_search_at_the_checkpoints_encoder(tmp_path):
    """A checkpoint with an encoder: GanCodec passes it to the search, so --init encoder works end to end
    and a one-iteration search from E(x) decodes exactly to the encoder's (quantized, refined) latent."""
    checkpoint = checkpoint_with_encoder(tmp_path, seed=3)
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


def test_refinement_length_defaults_by_search_start(tmp_path):
    """No refinement after an encoder start unless asked (the file is plain rounding of the search's
    latent), 50 steps after a pool start, none after no search (--effort 0, also from the pool); an explicit count
    wins either way."""
    checkpoint = checkpoint_with_encoder(tmp_path, seed=4)
    encoder_start = default_search(True, iters=3)
    assert GanCodec(checkpoint, search=encoder_start).refine_iters == REFINE_ITERS["encoder"] == 0
    assert GanCodec(checkpoint, search=default_search(True, init="pool")).refine_iters == REFINE_ITERS["pool"] == 50
    assert GanCodec(checkpoint, search=default_search(True, init="pool", effort=0)).refine_iters == 0
    assert GanCodec(checkpoint, search=default_search(True, init="pool", iters=0), refine_iters=5).refine_iters == 5
    assert GanCodec(checkpoint, search=encoder_start, refine_iters=7).refine_iters == 7
    [result] = GanCodec(checkpoint, bits=4, search=encoder_start).compress([torch.rand(3, 32, 32)])
    assert result.ssim_refined == pytest.approx(result.ssim_quantized, abs=1e-6)


def test_a_checkpoint_without_encoder_refuses_encoder_init_but_compresses_with_pool(tiny):
    images = [torch.rand(3, 32, 32)]
    with pytest.raises(GanrevError, match="encoder"):
        GanCodec(tiny, search=SearchOptions(iters=2, restarts=1, init="encoder")).compress(images)
    assert len(GanCodec(tiny, search=default_search(tiny.encoder is not None, iters=2)).compress(images)) == 1
