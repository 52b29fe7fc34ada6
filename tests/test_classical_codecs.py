"""Tests for ganrev.codecs.classical and .specs: classical codecs that encode to the bytes of real image files."""

from __future__ import annotations

import io
import os
import tempfile

import numpy as np
import pytest
import skimage.data
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ganrev.codecs import classical
from ganrev.codecs.base import ImageCodec, bits_per_pixel
from ganrev.codecs.classical import (
    DOWNSCALE_FACTORS,
    AVIFCodec,
    DownscaledWebPCodec,
    JPEGCodec,
    KMeansCodec,
    PNGCodec,
    WebPCodec,
    avif_available,
)
from ganrev.codecs.specs import baseline_codecs, codec_from_spec
from ganrev.errors import GanrevError
from ganrev.io import from_uint8, resize, to_uint8

needs_avif = pytest.mark.skipif(not avif_available(), reason="this Pillow build cannot write AVIF")


def _photo(array: np.ndarray, height: int, width: int) -> torch.Tensor:
    """A bundled scikit-image photo resized to ``height`` x ``width``, on the 8-bit grid."""
    return from_uint8(to_uint8(resize(from_uint8(array), height, width)))


IMAGES = {
    "astronaut-64x64": _photo(skimage.data.astronaut(), 64, 64),
    "coffee-96x80": _photo(skimage.data.coffee(), 96, 80),
    "camera-gray-64x64": _photo(skimage.data.camera(), 64, 64),
}

LOSSY_SPECS = ["jpeg:10", "jpeg:90", "webp:10", "webp:75", "kmeans:4", "kmeans:16"]
ALL_SPECS = ["png", *LOSSY_SPECS, pytest.param("avif:30", marks=needs_avif)]
SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "AVIF": ".avif"}


@pytest.fixture(params=list(IMAGES), ids=list(IMAGES))
def image(request) -> torch.Tensor:
    return IMAGES[request.param]


@pytest.fixture(params=ALL_SPECS)
def codec(request) -> ImageCodec:
    return codec_from_spec(request.param)


def _pil_mode(channels: int) -> str:
    return "L" if channels == 1 else "RGB"


def _distinct_colours(image: torch.Tensor) -> int:
    return len(np.unique(to_uint8(image).reshape(-1, image.shape[0]), axis=0))


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


# --- every codec ----------------------------------------------------------------------------------

def test_codecs_implement_the_protocol(codec):
    assert isinstance(codec, ImageCodec)
    assert isinstance(codec.name, str) and codec.name


def test_round_trip_keeps_shape_and_range(codec, image):
    data = codec.encode(image)
    assert isinstance(data, bytes) and len(data) > 0
    out = codec.decode(data)
    assert out.shape == image.shape
    assert out.dtype == torch.float32
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0


def test_bytes_are_a_real_file_that_plain_pillow_opens(codec, image, tmp_path):
    data = codec.encode(image)
    assert bits_per_pixel(len(data), image.shape[2], image.shape[1]) == len(data) * 8 / (image.shape[1] * image.shape[2])
    path = tmp_path / f"img{SUFFIX[codec.format]}"
    path.write_bytes(data)
    decoded = codec.decode(path.read_bytes())
    with Image.open(path) as img:
        assert img.format == codec.format
        assert img.size == (image.shape[2], image.shape[1])
        pixels = np.asarray(img.convert(_pil_mode(decoded.shape[0])))
    np.testing.assert_array_equal(pixels, to_uint8(decoded))


def test_encoding_is_deterministic(codec, image):
    assert codec.encode(image) == codec.encode(image)


@pytest.mark.parametrize("garbage", [b"", b"not an image at all", bytes(range(256)) * 4], ids=["empty", "text", "noise"])
def test_garbage_bytes_raise_ganrev_error(codec, garbage):
    with pytest.raises(GanrevError):
        codec.decode(garbage)


def test_truncated_bytes_raise_ganrev_error(codec):
    data = codec.encode(IMAGES["astronaut-64x64"])
    for cut in (8, len(data) // 2):
        with pytest.raises(GanrevError):
            codec.decode(data[:cut])


def test_corrupted_bytes_decode_or_raise_ganrev_error(codec):
    """Flipped bytes may still decode (JPEG and WebP have no checksums) but never raise anything else."""
    rng = np.random.default_rng(0)
    image = IMAGES["coffee-96x80"]
    data = codec.encode(image)
    for _ in range(40):
        corrupt = bytearray(data)
        for position in rng.integers(0, len(data), 3):
            corrupt[position] = int(rng.integers(0, 256))
        try:
            out = codec.decode(bytes(corrupt))
        except GanrevError:
            continue
        assert out.shape[0] in (1, 3) and out.ndim == 3


def test_decoding_another_format_raises_ganrev_error():
    png = PNGCodec().encode(IMAGES["astronaut-64x64"])
    jpeg = JPEGCodec(50).encode(IMAGES["astronaut-64x64"])
    with pytest.raises(GanrevError, match="JPEG"):
        JPEGCodec(50).decode(png)
    with pytest.raises(GanrevError, match="WEBP"):
        WebPCodec(50).decode(jpeg)
    with pytest.raises(GanrevError):
        PNGCodec().decode(jpeg)


def test_decode_rejects_non_bytes():
    with pytest.raises(GanrevError):
        PNGCodec().decode("a string")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [
    torch.rand(2, 8, 8), torch.rand(8, 8), torch.rand(1, 3, 8, 8), torch.rand(3, 0, 5),
    torch.full((3, 4, 4), float("nan")), np.zeros((8, 8, 3), np.uint8),
], ids=["2-channels", "2d", "batched", "empty", "nan", "numpy"])
def test_encode_rejects_bad_images(codec, bad):
    with pytest.raises(GanrevError):
        codec.encode(bad)


def test_encode_writes_no_files(monkeypatch, tmp_path):
    def forbidden(*args, **kwargs):
        raise AssertionError("a codec tried to create a temporary file")

    for name in ("mkstemp", "mkdtemp", "NamedTemporaryFile", "TemporaryFile", "SpooledTemporaryFile"):
        monkeypatch.setattr(tempfile, name, forbidden)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    for codec in baseline_codecs(["png", "jpeg:10", "webp:10", "kmeans:4", "avif:30", "webp-down4:30"]):
        for image in IMAGES.values():
            codec.decode(codec.encode(image))
    assert os.listdir(tmp_path) == []


# --- PNG ------------------------------------------------------------------------------------------

def test_png_is_lossless(image):
    codec = PNGCodec()
    assert codec.name == "PNG"
    assert torch.equal(codec.decode(codec.encode(image)), image)


def test_png_is_maximally_compressed():
    image = IMAGES["astronaut-64x64"]
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buffer, format="PNG", compress_level=1)
    assert len(PNGCodec().encode(image)) < len(buffer.getvalue())


# --- JPEG -----------------------------------------------------------------------------------------

def test_jpeg_size_grows_with_quality(image):
    sizes = [len(JPEGCodec(q).encode(image)) for q in (1, 10, 90)]
    assert sizes[0] < sizes[1] < sizes[2]


def test_jpeg_quality_improves_fidelity():
    image = IMAGES["astronaut-64x64"]
    low, high = (JPEGCodec(q).decode(JPEGCodec(q).encode(image)) for q in (10, 90))
    assert _psnr(image, high) > _psnr(image, low) > 18


def test_jpeg_gray_stays_gray_and_colour_uses_420():
    gray = IMAGES["camera-gray-64x64"]
    with Image.open(io.BytesIO(JPEGCodec(50).encode(gray))) as img:
        assert img.mode == "L"
    with Image.open(io.BytesIO(JPEGCodec(50).encode(IMAGES["coffee-96x80"]))) as img:
        assert img.mode == "RGB"
        # 4:2:0: luma sampled 2x2, both chroma components 1x1
        assert [layer[1:3] for layer in img.layer] == [(2, 2), (1, 1), (1, 1)]


def test_jpeg_name():
    assert JPEGCodec(10).name == "JPEG (10%)"


# --- WebP -----------------------------------------------------------------------------------------

def test_webp_round_trips_with_reasonable_fidelity(image):
    codec = WebPCodec(90)
    assert codec.name == "WebP (90)"
    data = codec.encode(image)
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    out = codec.decode(data)
    assert out.shape == image.shape
    assert _psnr(image, out) > 25


def test_webp_size_grows_with_quality():
    image = IMAGES["coffee-96x80"]
    assert len(WebPCodec(5).encode(image)) < len(WebPCodec(50).encode(image)) < len(WebPCodec(95).encode(image))


def test_webp_gray_input_needs_no_channel_tag():
    data = WebPCodec(50).encode(IMAGES["camera-gray-64x64"])
    with Image.open(io.BytesIO(data)) as img:
        assert "exif" not in img.info
    assert WebPCodec(50).decode(data).shape[0] == 1


@pytest.mark.parametrize("spec", ["webp:50", "kmeans:4"])
def test_gray_valued_rgb_image_decodes_as_rgb(spec):
    codec = codec_from_spec(spec)
    gray = IMAGES["camera-gray-64x64"]
    rgb = gray.expand(3, -1, -1).contiguous()
    out_rgb, out_gray = codec.decode(codec.encode(rgb)), codec.decode(codec.encode(gray))
    assert out_rgb.shape == rgb.shape
    assert out_gray.shape == gray.shape
    # the tag that makes the difference costs a few bytes, and only for the gray-valued RGB image
    assert len(codec.encode(rgb)) > len(codec.encode(gray))


# --- AVIF -----------------------------------------------------------------------------------------

@needs_avif
def test_avif_round_trips(image):
    codec = AVIFCodec(60)
    assert codec.name == "AVIF (60)"
    out = codec.decode(codec.encode(image))
    assert out.shape == image.shape
    assert _psnr(image, out) > 22
    assert len(AVIFCodec(10).encode(image)) < len(AVIFCodec(90).encode(image))


def test_avif_unavailable_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(classical, "avif_available", lambda: False)
    with pytest.raises(GanrevError, match="AVIF"):
        AVIFCodec(30)
    with pytest.raises(GanrevError, match="AVIF"):
        codec_from_spec("avif:30")
    assert [c.name for c in baseline_codecs(["png", "avif:30"])] == ["PNG"]
    with pytest.raises(GanrevError):
        baseline_codecs(["avif:30"], skip_unavailable=False)


# --- k-means --------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 2, 4, 16])
def test_kmeans_uses_at_most_k_colours(image, k):
    codec = KMeansCodec(k)
    assert codec.name == f"K-means (K={k})"
    out = codec.decode(codec.encode(image))
    assert out.shape == image.shape
    assert _distinct_colours(out) <= k


def test_kmeans_png_carries_the_palette(image):
    k = 4
    data = KMeansCodec(k).encode(image)
    assert b"PLTE" in data and data[25] == 3  # IHDR colour type 3: indexed colour
    assert data[24] <= 2  # at most 4 colours: 2-bit indices
    out = KMeansCodec(k).decode(data)
    with Image.open(io.BytesIO(data)) as img:
        assert img.mode == "P"
        palette = np.asarray(img.getpalette(), dtype=np.uint8).reshape(-1, 3)
    assert 1 <= len(palette) <= k
    if image.shape[0] == 1:
        assert (palette == palette[:, :1]).all()  # a gray image gets a gray palette
        palette = palette[:, :1]
    used = np.unique(to_uint8(out).reshape(-1, image.shape[0]), axis=0)
    assert {tuple(c) for c in used} <= {tuple(c) for c in palette}


def test_kmeans_is_deterministic_for_a_seed(image):
    first = KMeansCodec(4, seed=3).encode(image)
    assert KMeansCodec(4, seed=3).encode(image) == first
    assert KMeansCodec(4, seed=3).encode(image.clone()) == first


def test_kmeans_beats_fewer_clusters_in_fidelity():
    image = IMAGES["astronaut-64x64"]
    errors = [_psnr(image, KMeansCodec(k).decode(KMeansCodec(k).encode(image))) for k in (2, 8, 32)]
    assert errors[0] < errors[1] < errors[2]


def test_kmeans_with_fewer_colours_than_k_is_exact():
    two = torch.zeros(3, 10, 12)
    two[0, :, :6] = 1.0  # red left half, black right half
    two[2, 5:, :] = 0.2  # one more colour below: 4 colours in all
    codec = KMeansCodec(8)
    assert torch.equal(codec.decode(codec.encode(two)), from_uint8(to_uint8(two)))
    flat = torch.full((1, 5, 7), 0.5)
    assert torch.equal(codec.decode(codec.encode(flat)), from_uint8(to_uint8(flat)))


@pytest.mark.parametrize("k", [0, 257, -1, 2.5, True])
def test_kmeans_rejects_bad_k(k):
    with pytest.raises(GanrevError):
        KMeansCodec(k)  # type: ignore[arg-type]


# --- WebP of a downscaled image -------------------------------------------------------------------

@pytest.mark.parametrize("scale", DOWNSCALE_FACTORS)
@pytest.mark.parametrize(("channels", "height", "width"), [(3, 64, 64), (3, 33, 50), (1, 33, 50), (1, 64, 64),
                                                            (3, 7, 5), (1, 1, 1), (3, 2, 3)])
def test_downscaled_webp_round_trips_to_the_original_size(scale, channels, height, width):
    source = IMAGES["astronaut-64x64"] if channels == 3 else IMAGES["camera-gray-64x64"]
    image = _photo(to_uint8(source), height, width)
    codec = DownscaledWebPCodec(80, scale)
    assert isinstance(codec, ImageCodec)
    data = codec.encode(image)
    out = codec.decode(data)
    assert out.shape == image.shape and out.dtype == torch.float32
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    assert codec.encode(image) == data  # deterministic


@pytest.mark.parametrize("scale", DOWNSCALE_FACTORS)
def test_downscaled_webp_is_a_small_webp_file_and_one_byte(scale, tmp_path):
    image = IMAGES["coffee-96x80"]  # 96 x 80: not a multiple of 4 -> 24 x 20 at scale 4, 48 x 40 at 2
    data = DownscaledWebPCodec(50, scale).encode(image)
    with Image.open(io.BytesIO(data[:-1])) as small:
        assert small.format == "WEBP" and small.size == (-(-80 // scale), -(-96 // scale))
    assert data[:-1] == _webp_of_downscaled(image, scale, 50)
    path = tmp_path / "img.webp"
    path.write_bytes(data)  # with the trailing byte, still a file viewers open
    with Image.open(path) as img:
        assert img.format == "WEBP"


def _webp_of_downscaled(image: torch.Tensor, scale: int, quality: int) -> bytes:
    """What plain Pillow writes for ``image`` shrunk ``scale`` times (sides rounded up)."""
    height, width = image.shape[1:]
    small = Image.fromarray(to_uint8(image)).resize((-(-width // scale), -(-height // scale)), Image.BICUBIC)
    buffer = io.BytesIO()
    small.convert("RGB").save(buffer, format="WEBP", quality=quality, method=6, lossless=False)
    return buffer.getvalue()


def test_downscaled_webp_keeps_gray_and_gray_valued_rgb_apart():
    gray = IMAGES["camera-gray-64x64"]
    gray_valued_rgb = gray.expand(3, -1, -1).contiguous()
    codec = DownscaledWebPCodec(50, 2)
    assert codec.decode(codec.encode(gray)).shape[0] == 1
    assert codec.decode(codec.encode(gray_valued_rgb)).shape[0] == 3
    assert len(codec.encode(gray)) == len(codec.encode(gray_valued_rgb))  # the trailing byte says which


def test_downscaled_webp_trades_fidelity_for_size():
    image = IMAGES["astronaut-64x64"]
    full, half, quarter = WebPCodec(50), DownscaledWebPCodec(50, 2), DownscaledWebPCodec(50, 4)
    sizes = [len(codec.encode(image)) for codec in (full, half, quarter)]
    assert sizes[0] > sizes[1] > sizes[2]
    errors = [_psnr(codec.decode(codec.encode(image)), image) for codec in (full, half, quarter)]
    assert errors[0] > errors[1] > errors[2] > 15


def test_downscaled_webp_rejects_bad_bytes():
    codec = DownscaledWebPCodec(50, 4)
    data = codec.encode(IMAGES["astronaut-64x64"])
    webp, trailer = data[:-1], data[-1]
    assert trailer == 0x40  # colour, scale 4, 64 x 64: nothing to crop
    bad_trailers = [0x28, 0x22, 0x10, 0x70, 0x00]  # scale 2 with 2 extra rows / 2 extra columns; scales 1, 7, 0
    garbage_webp = webp[:8] + bytes(len(webp) - 8)  # the right length, no WebP inside
    for bad in [b"", b"RIFF", webp, data[:-2], data + b"\x00", garbage_webp + bytes([trailer])] + [
            webp + bytes([t]) for t in bad_trailers]:
        with pytest.raises(GanrevError):
            codec.decode(bad)
    with pytest.raises(GanrevError):
        codec.decode("not bytes")  # type: ignore[arg-type]


@pytest.mark.parametrize("scale", [0, 1, 3, 8, True, 2.0])
def test_downscaled_webp_rejects_bad_scales(scale):
    with pytest.raises(GanrevError, match="scale"):
        DownscaledWebPCodec(50, scale)


# --- specs ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "name"), [
    ("png", "PNG"), ("PNG", "PNG"), ("jpeg:10", "JPEG (10%)"), (" jpg : 10 ", "JPEG (10%)"), ("jpeg", "JPEG (75%)"),
    ("webp:50", "WebP (50)"), ("kmeans:4", "K-means (K=4)"), ("kmeans", "K-means (K=4)"),
    ("k-means:8", "K-means (K=8)"), pytest.param("avif:30", "AVIF (30)", marks=needs_avif),
    ("webp-down2:50", "WebP (50), downscaled 2x"), (" WebP-Down4 : 0 ", "WebP (0), downscaled 4x"),
    ("webp-down4", "WebP (80), downscaled 4x"),
])
def test_codec_from_spec(spec, name):
    assert codec_from_spec(spec).name == name


@pytest.mark.parametrize("spec", ["gif", "", "jpeg2000:10", "jpeg:abc", "jpeg:101", "jpeg:-1", "jpeg:", "png:9",
                                  "webp:1.5", "kmeans:0", "kmeans:300", "webp-down3:50", "webp-down:50",
                                  "webp-down2:101", "webp-down4:x"])
def test_bad_specs_raise_ganrev_error(spec):
    with pytest.raises(GanrevError):
        codec_from_spec(spec)


def test_unknown_spec_error_lists_known_codecs():
    with pytest.raises(GanrevError, match="jpeg.*kmeans"):
        codec_from_spec("bpg:30")


def test_baseline_codecs_default_list():
    names = [c.name for c in baseline_codecs()]
    assert names[0] == "PNG" and "JPEG (10%)" in names and "K-means (K=4)" in names
    assert any(n.startswith("WebP") for n in names)
    assert any(n.startswith("AVIF") for n in names) == avif_available()


def test_bits_per_pixel():
    assert bits_per_pixel(100, 20, 10) == 4.0
    assert bits_per_pixel(0, 5, 5) == 0.0


# --- property test --------------------------------------------------------------------------------

@st.composite
def small_images(draw) -> torch.Tensor:
    """Random 8-bit-grid images, 1..40 pixels a side, gray or RGB, of a few kinds that stress the codecs."""
    height, width = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    channels = draw(st.sampled_from([1, 3]))
    kind = draw(st.sampled_from(["noise", "constant", "gray-valued", "few-colours", "smooth"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "noise":
        arr = rng.integers(0, 256, (channels, height, width))
    elif kind == "constant":
        arr = np.broadcast_to(rng.integers(0, 256, (channels, 1, 1)), (channels, height, width))
    elif kind == "gray-valued":
        arr = np.broadcast_to(rng.integers(0, 256, (1, height, width)), (channels, height, width))
    elif kind == "few-colours":
        colours = rng.integers(0, 256, (3, channels))
        arr = colours[rng.integers(0, 3, (height, width))].transpose(2, 0, 1)
    else:
        yy, xx = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
        arr = np.rint(np.stack([255 * (yy * (c + 1) / 3 + xx * (2 - c) / 3) for c in range(channels)]))
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32) / 255.0)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_images())
def test_random_small_images_round_trip(image):
    png = PNGCodec()
    assert torch.equal(png.decode(png.encode(image)), image)
    lossy: list[ImageCodec] = [JPEGCodec(10), WebPCodec(50), KMeansCodec(4), DownscaledWebPCodec(50, 2),
                               DownscaledWebPCodec(50, 4)]
    if avif_available():
        lossy.append(AVIFCodec(50))
    for codec in lossy:
        out = codec.decode(codec.encode(image))
        assert out.shape == image.shape, codec.name
        assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    assert _distinct_colours(KMeansCodec(4).decode(KMeansCodec(4).encode(image))) <= 4
