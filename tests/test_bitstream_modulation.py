"""Latent + modulation: the generator's modulation, the film layer's bytes, fitting, and whole files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ganrev.codecs.gan import MODULATION_CLIP, GanCodec, decode_modulation, encode_modulation
from ganrev.bitstream.container import Layer, unpack_file
from ganrev.errors import GanrevError
from ganrev.invert import default_search, per_image_loss
from ganrev.io import load_image
from ganrev.metrics import ssim
from ganrev.models import load_generator
from ganrev.bitstream.modulation import ModulationSearch, fit_modulation, modulated_files, refine_modulated, resolve_layer
from ganrev.nets.dcgan import Generator, GeneratorConfig, Modulation
from ganrev.bitstream.quantize import Quantizer

SHIPPED = Path(__file__).resolve().parent.parent / "pretrained" / "emoji64"
EMOJI = SHIPPED / "heldout" / "1f0cf.png"
FAST = ModulationSearch(iters=40, refine_iters=10, layers=(-2,), bits=(3,))

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def tiny() -> Generator:
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(latent_dim=8, channels=3, resolution=16, width=8)).eval()
    with torch.no_grad():  # batch-norm statistics of a trained net, not the identity of a fresh one
        for module in generator.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.uniform_(0.5, 2.0)
    return generator.requires_grad_(False)


@pytest.fixture(scope="module")
def shipped():
    checkpoint = load_generator(SHIPPED)
    return checkpoint, GanCodec(checkpoint, search=default_search(True, iters=20))


# --- the generator's modulation ------------------------------------------------------------------------

def test_zero_modulation_changes_nothing_and_any_other_changes_the_image(tiny):
    z = torch.randn(3, 8)
    channels = tiny.norm_channels()
    assert channels == [16, 8]
    for layer, count in enumerate(channels):
        assert torch.equal(tiny.images(z, Modulation(layer, torch.zeros(3, 2 * count))), tiny.images(z))
        shifted = tiny.images(z, Modulation(layer, torch.full((3, 2 * count), 0.5)))
        assert (shifted - tiny.images(z)).abs().max() > 0.01


def test_each_row_of_a_modulation_goes_with_its_own_latent(tiny):
    z = torch.randn(2, 8)
    params = torch.randn(2, 16)
    together = tiny.images(z, Modulation(1, params))
    for row in range(2):
        assert torch.allclose(tiny.images(z[row:row + 1], Modulation(1, params[row:row + 1])), together[row:row + 1],
                              atol=1e-6)


@pytest.mark.parametrize("layer, params", [(-1, torch.zeros(1, 16)), (0, torch.zeros(16)), (0, torch.zeros(1, 15))])
def test_a_malformed_modulation_is_refused(layer, params):
    with pytest.raises(GanrevError, match="modulation"):
        Modulation(layer, params)


def test_layers_count_from_either_end(tiny):
    assert [resolve_layer(tiny, layer) for layer in (0, 1, -1, -2)] == [0, 1, 1, 0]
    for layer in (2, -3):
        with pytest.raises(GanrevError, match="batch-norm layers 0-1"):
            resolve_layer(tiny, layer)


# --- the film layer's bytes ----------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(bits=st.integers(2, 8), layer=st.integers(0, 3), seed=st.integers(0, 2**16))
def test_film_layer_round_trips_exactly(bits, layer, seed):
    channels = [32, 16, 8, 4]
    quantizer = Quantizer(bits, MODULATION_CLIP)
    rng = np.random.default_rng(seed)
    symbols = rng.integers(0, quantizer.levels, 2 * channels[layer])
    film = encode_modulation(layer, quantizer, symbols)
    assert film.codec == "film" and film.data[0] == (bits - 1) | layer << 4
    decoded = decode_modulation(film, channels)
    assert decoded.layer == layer
    assert torch.equal(decoded.params, quantizer.dequantize(torch.from_numpy(symbols)).view(1, -1))


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=40))
def test_any_film_layer_bytes_decode_or_raise_only_ganrev_errors(data):
    try:
        modulation = decode_modulation(Layer("film", data), [16, 8])
    except GanrevError:
        return
    assert modulation.params.shape == (1, 2 * [16, 8][modulation.layer])


@pytest.mark.parametrize("data, message", [(b"\x22", "too short"), (b"\x22\x00", "out of range"),
                                           (b"\x20\x20", "out of range"), (b"\x00\x20", "out of range")])
def test_bad_film_layer_fields_are_named(data, message):
    # \x22\x00: sigma 0; \x20\x20: layer 2 of a 2-layer generator; \x00\x20: 1 bit per value
    with pytest.raises(GanrevError, match=message):
        decode_modulation(Layer("film", data), [16, 8])


def test_encode_refuses_what_the_layer_cannot_say():
    with pytest.raises(GanrevError, match="clip"):
        encode_modulation(0, Quantizer(3, 2.0), np.zeros(4, dtype=np.int64))
    with pytest.raises(GanrevError, match="layer 16"):
        encode_modulation(16, Quantizer(3, MODULATION_CLIP), np.zeros(4, dtype=np.int64))


# --- fitting and whole files, on a held-out emoji and the shipped generator ----------------------------

def test_fitting_a_modulation_lowers_the_loss_below_the_latent_alone(shipped):
    checkpoint, codec = shipped
    image = load_image(EMOJI)[None]
    search = codec.search_latents([image[0]])
    z, params = fit_modulation(checkpoint.generator, image, search.z, -2, FAST, clip=3.0)  # -2 of 4: layer 2
    loss = per_image_loss("ssim")
    with torch.no_grad():
        alone = loss(checkpoint.generator.images(search.z), image)
        modulated = loss(checkpoint.generator.images(z, Modulation(2, params)), image)
    assert params.shape == (1, 2 * checkpoint.generator.norm_channels()[2])
    assert params.abs().max() <= MODULATION_CLIP and z.abs().max() <= 3.0
    assert modulated < alone - 0.02


def test_modulated_files_decode_better_than_the_latent_alone_at_the_same_latent_bits(shipped):
    _, codec = shipped
    image = load_image(EMOJI)
    search = codec.search_latents([image])
    (files,) = modulated_files(codec, [image], search, (4,), FAST)
    assert list(files) == [(4, 2, 3)]  # layer -2 of 4 is layer 2
    header, _ = unpack_file(files[4, 2, 3])
    assert header.mode == "latent+modulation" and header.latent.bits == 4 and header.layers[0].codec == "film"
    latent_alone = GanCodec(codec.checkpoint, bits=4, search=codec.search).compress_latents([image], search)[0]

    def score(data: bytes) -> float:
        return float(ssim(codec.decode(data)[None], image[None])[0])

    assert score(files[4, 2, 3]) > score(latent_alone.data) + 0.02


def test_refining_several_precision_pairs_in_one_batch_gives_what_each_pair_alone_gives(shipped):
    """One image, three pairs of (latent, modulation) precisions refined together (the batch a single image
    gets, rather than one generator row at a time): each pair's grid indices equal its refinement alone."""
    checkpoint, codec = shipped
    image = load_image(EMOJI)[None]
    search = codec.search_latents([image[0]])
    z, params = fit_modulation(checkpoint.generator, image, search.z, -1, FAST, clip=3.0)
    pairs = [(Quantizer(bits, 3.0), Quantizer(modulation_bits, MODULATION_CLIP))
             for bits, modulation_bits in ((3, 3), (5, 4), (6, 3))]
    together = refine_modulated(checkpoint.generator, image, z, params, 3, pairs, FAST)
    assert len(together) == 3
    for pair, (latent_symbols, modulation_symbols) in zip(pairs, together):
        ((latent_alone, modulation_alone),) = refine_modulated(checkpoint.generator, image, z, params, 3, [pair],
                                                               FAST)
        assert latent_symbols.shape == (1, checkpoint.config.latent_dim) and modulation_symbols.shape == params.shape
        assert torch.equal(latent_symbols, latent_alone) and torch.equal(modulation_symbols, modulation_alone)


def test_a_film_layer_for_a_layer_the_generator_lacks_is_refused_on_decode(shipped):
    _, codec = shipped
    film = encode_modulation(9, Quantizer(3, MODULATION_CLIP), np.zeros(8, dtype=np.int64))
    with pytest.raises(GanrevError, match="out of range"):
        decode_modulation(film, codec.generator.norm_channels())


def test_bad_modulation_search_options_are_refused():
    for given_options in (dict(iters=-1), dict(lr=0.0), dict(refine_lr=float("nan")), dict(bits=()), dict(bits=(1,)),
                          dict(loss="ssim+l3")):
        with pytest.raises(GanrevError):
            ModulationSearch(**given_options)


def test_a_modulated_file_names_the_generator_it_needs_before_reading_its_modulation(shipped):
    _, codec = shipped
    image = load_image(EMOJI)
    (files,) = modulated_files(codec, [image], codec.search_latents([image]), (3,),
                               ModulationSearch(iters=2, refine_iters=1, layers=(-1,), bits=(3,)))
    other = GanCodec(load_generator(SHIPPED.parent / "emoji64-gan"))
    with pytest.raises(GanrevError, match="another generator"):
        other.decode(files[3, 3, 3])
