"""Layers inside .grv files: every coder round-trips, bare layers rebuild real files, headers refuse damage."""

from __future__ import annotations

import pytest
import torch

from ganrev.codecs.classical import AVIFCodec, JPEGCodec, WebPLosslessCodec, posterize
from ganrev.codecs.gan import decode_layer
from ganrev.codecs.specs import codec_from_spec
from ganrev.bitstream.container import FILM_CODEC, LAYER_CODECS, Header, Layer, pack_file, unpack_file
from ganrev.errors import GanrevError
from ganrev.io import from_uint8, to_uint8
from ganrev.bitstream.layers import BARE_CODECS, CODER_LEVELS, COMPLETE_FILE_CODECS, LAYER_CODERS, complete_file, encode_layer


def image(channels: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A smooth 8-bit image with an edge: what a lossy coder meets in practice."""
    rng = torch.Generator().manual_seed(seed)
    base = torch.rand(channels, 4, 4, generator=rng)
    smooth = torch.nn.functional.interpolate(base[None], size=(height, width), mode="bilinear")[0]
    smooth[:, : height // 2, : width // 3] = 0.9
    return from_uint8(to_uint8(smooth))


def test_the_container_knows_every_layer_codec():
    # every image layer, and the modulation layer (ganrev.bitstream.modulation), which is no image
    assert set(LAYER_CODECS) == set(COMPLETE_FILE_CODECS) | set(BARE_CODECS) | {FILM_CODEC}


@pytest.mark.parametrize("coder", LAYER_CODERS)
@pytest.mark.parametrize("shape", [(3, 64, 64), (1, 24, 40), (3, 37, 53)])
def test_every_coder_round_trips_through_a_grv_file_and_quality_helps(coder, shape):
    picture = image(*shape)
    errors = []
    for level in (CODER_LEVELS[coder][0], CODER_LEVELS[coder][-1]):
        codec_id, data = encode_layer(coder, picture, level)
        header = Header(shape[2], shape[1], shape[0] == 1, None, (Layer(codec_id, data),))
        read_header, _ = unpack_file(pack_file(header, b""))
        decoded = decode_layer(read_header.layers[0], read_header)
        assert decoded.shape == picture.shape
        errors.append((decoded - picture).abs().mean().item())
    assert errors[1] <= errors[0]


@pytest.mark.parametrize("gray", [False, True])
def test_a_bare_av1_layer_rebuilds_the_exact_avif_file(gray):
    picture = image(1 if gray else 3, 64, 64)
    codec_id, data = encode_layer("av1", picture, 40)
    assert codec_id == "av1"  # this Pillow/libavif writes the layout ganrev.bitstream.layers rebuilds
    spec, rebuilt = complete_file(codec_id, data, 64, 64, gray)
    assert rebuilt == AVIFCodec(40, subsampling="4:4:4").encode(picture)  # the file libavif wrote, byte for byte
    assert spec == "avif" and len(data) < len(rebuilt) - 250


def test_bare_webp_layers_are_20_bytes_under_the_webp_file():
    picture = image(3, 64, 64)
    codec_id, data = encode_layer("vp8", picture, 50)
    spec, rebuilt = complete_file(codec_id, data, 64, 64, False)
    assert len(rebuilt) == len(data) + 20 + len(data) % 2 and codec_from_spec(spec).decode(rebuilt).shape == (3, 64, 64)


def test_a_damaged_bare_layer_is_the_projects_error():
    with pytest.raises(GanrevError):
        decode_layer(Layer("av1", b"\x20"), Header(64, 64, False, None, (Layer("av1", b"\x20"),)))
    with pytest.raises(GanrevError):
        decode_layer(Layer("vp8", b"junk"), Header(64, 64, False, None, (Layer("vp8", b"junk"),)))


def test_lossless_webp_is_exact_and_posterizing_keeps_mid_gray():
    picture = image(3, 32, 32)
    codec = WebPLosslessCodec()
    assert torch.equal(codec.decode(codec.encode(picture)), picture)
    levels = posterize(to_uint8(picture), 16)
    assert set(levels.ravel().tolist()) <= {v for v in range(256) if (v - 128) % 16 == 0} | {0, 255}
    assert posterize(to_uint8(picture), 1).tolist() == to_uint8(picture).tolist()
    assert WebPLosslessCodec(16).name == "WebP lossless (step 16)"
    with pytest.raises(GanrevError):
        WebPLosslessCodec(0)


def test_jpeg_444_keeps_colour_edges_that_420_blurs():
    picture = torch.zeros(3, 32, 32)
    picture[0, :, ::2] = 1.0  # one-pixel red stripes: all chroma detail
    full, subsampled = JPEGCodec(90, "4:4:4"), JPEGCodec(90)
    error = {c.name: (c.decode(c.encode(picture)) - picture).abs().mean().item() for c in (full, subsampled)}
    assert error["JPEG 4:4:4 (90%)"] < error["JPEG (90%)"]
    assert codec_from_spec("jpeg444:30").name == "JPEG 4:4:4 (30%)"
    with pytest.raises(GanrevError):
        JPEGCodec(50, "4:1:1")
