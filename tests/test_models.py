"""Tests for ganrev.models: DCGAN shapes and ranges, and the safetensors + config.json checkpoint format."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ganrev.errors import GanrevError
from ganrev.models import (
    CONFIG_FILE,
    DEFAULT_COMPRESS_BITS,
    ENCODER_FILE,
    WEIGHTS_FILE,
    load_generator,
    save_generator,
    set_compress_bits,
    weights_fingerprint,
)
from ganrev.nets.dcgan import Discriminator, Encoder, Generator, GeneratorConfig, init_weights

META = {"dataset": "unit-test", "split": {"rule": "none", "train_images": 3, "test_images": 1}}


def _generator(latent_dim: int = 8, channels: int = 3, resolution: int = 32, width: int = 4,
               seed: int = 0) -> Generator:
    torch.manual_seed(seed)
    gen = Generator(GeneratorConfig(latent_dim, channels, resolution, width))
    gen.apply(init_weights)
    return gen


@pytest.fixture()
def saved(tmp_path: Path) -> tuple[Generator, Path, str]:
    gen = _generator()
    # Give BatchNorm running statistics non-default values so they are checked by the round trip too.
    gen.train()
    with torch.no_grad():
        gen(torch.randn(6, 8))
    gen.eval()
    ckpt = tmp_path / "ckpt"
    fingerprint = save_generator(gen, ckpt, META)
    return gen, ckpt, fingerprint


# ------------------------------------------------------------------------------------------ architecture

@pytest.mark.parametrize("resolution", [8, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("latent_dim", [1, 16, 100])
def test_generator_output_shape_and_range(resolution: int, channels: int, latent_dim: int) -> None:
    gen = _generator(latent_dim, channels, resolution, width=4).eval()
    z = torch.randn(3, latent_dim) * 3
    with torch.no_grad():
        out = gen(z)
        images = gen.images(z)
    assert out.shape == (3, channels, resolution, resolution)
    assert out.dtype == torch.float32
    assert out.min() >= -1.0 and out.max() <= 1.0
    assert images.min() >= 0.0 and images.max() <= 1.0
    torch.testing.assert_close(images, (out + 1) / 2)
    # a 4-D latent [N, latent, 1, 1] (the pytorch/examples layout) gives the same images
    with torch.no_grad():
        torch.testing.assert_close(gen(z.view(3, latent_dim, 1, 1)), out)


def test_generator_upsampling_count() -> None:
    assert GeneratorConfig(resolution=8).upsamplings == 1
    assert GeneratorConfig(resolution=32).upsamplings == 3
    assert GeneratorConfig(resolution=64).upsamplings == 4
    gen = Generator(GeneratorConfig(latent_dim=8, resolution=64, width=4))
    convs = [m for m in gen.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(convs) == 5  # 1 -> 4 seed, then 8, 16, 32, 64
    assert convs[0].in_channels == 8 and convs[-1].out_channels == 3 and convs[-1].in_channels == 4


def test_generator_outputs_differ_for_different_latents() -> None:
    gen = _generator().eval()
    with torch.no_grad():
        out = gen(torch.randn(2, 8))
    assert not torch.allclose(out[0], out[1])


def _trained_looking_generator(channels: int) -> Generator:
    """A generator whose batch norms hold statistics and affine parameters far from the identity, as a trained one's
    do, so that folding them has something to get wrong."""
    torch.manual_seed(5)
    gen = Generator(GeneratorConfig(latent_dim=12, channels=channels, resolution=32, width=8))
    gen.apply(init_weights)
    for module in gen.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.2, 3.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.3, 0.3)
    return gen.eval().requires_grad_(False)


@pytest.mark.parametrize("channels", [1, 3])
def test_folded_generator_computes_the_eval_generator(channels: int) -> None:
    gen = _trained_looking_generator(channels)
    folded = gen.folded()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    z = torch.randn(6, 12, requires_grad=True)
    want = gen.images(z)
    got = folded.images(z)
    assert got.dtype == torch.float32 and got.is_contiguous() and got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5)
    (grad_want,) = torch.autograd.grad(want.square().sum(), z)
    (grad_got,) = torch.autograd.grad(got.square().sum(), z)
    assert torch.allclose(grad_got, grad_want, atol=1e-4, rtol=1e-4)
    assert not any(p.requires_grad for p in folded.parameters())


def test_folding_leaves_torchs_global_generator_alone() -> None:
    gen = _trained_looking_generator(3)
    state = torch.get_rng_state()
    gen.folded()
    assert torch.equal(state, torch.get_rng_state())  # a search must not change what later random draws give


def test_folded_generator_in_bf16_is_close_and_leaves_the_original_alone() -> None:
    gen = _trained_looking_generator(3)
    before = {name: value.clone() for name, value in gen.state_dict().items()}
    folded = gen.folded(torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in folded.parameters())
    z = torch.randn(6, 12)
    with torch.no_grad():
        got, want = folded.images(z), gen.images(z)
    assert got.dtype == torch.float32
    assert (got - want).abs().max() < 0.05  # bf16 keeps 8 significant bits
    assert all(torch.equal(gen.state_dict()[name], value) for name, value in before.items())


@pytest.mark.parametrize("resolution", [8, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_discriminator_one_logit_per_image(resolution: int, channels: int) -> None:
    torch.manual_seed(0)
    disc = Discriminator(GeneratorConfig(latent_dim=8, channels=channels, resolution=resolution, width=4))
    disc.apply(init_weights)
    x = torch.rand(5, channels, resolution, resolution) * 2 - 1
    logits = disc(x)
    assert logits.shape == (5,)
    assert torch.isfinite(logits).all()
    # logits, not probabilities: no sigmoid at the end, so values are not confined to [0, 1]
    assert not isinstance(list(disc.main)[-1], torch.nn.Sigmoid)
    logits.sum().backward()  # differentiable end to end
    assert all(p.grad is not None for p in disc.parameters())


def test_discriminator_accepts_generator_output() -> None:
    cfg = GeneratorConfig(latent_dim=8, channels=1, resolution=32, width=4)
    gen, disc = Generator(cfg), Discriminator(cfg)
    assert disc(gen(torch.randn(4, 8))).shape == (4,)


@pytest.mark.parametrize("kwargs", [
    {"resolution": 48}, {"resolution": 4}, {"resolution": 0}, {"channels": 2}, {"channels": 4},
    {"latent_dim": 0}, {"width": 0},
])
def test_config_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(GanrevError):
        GeneratorConfig(**kwargs)


def test_init_weights_dcgan_statistics() -> None:
    torch.manual_seed(0)
    gen = Generator(GeneratorConfig(latent_dim=64, resolution=32, width=32))
    gen.apply(init_weights)
    conv = gen.main[0].weight
    assert abs(conv.mean().item()) < 0.002 and conv.std().item() == pytest.approx(0.02, rel=0.05)
    bn = gen.main[1]
    assert bn.weight.mean().item() == pytest.approx(1.0, abs=0.01)
    assert bn.weight.std().item() == pytest.approx(0.02, rel=0.3)
    assert torch.count_nonzero(bn.bias) == 0


# ------------------------------------------------------------------------------------------- checkpoints

def test_round_trip_identical_outputs_frozen_eval(saved) -> None:
    gen, ckpt, fingerprint = saved
    loaded = load_generator(ckpt)
    assert loaded.fingerprint == fingerprint
    assert loaded.fingerprint_bytes == bytes.fromhex(fingerprint) and len(loaded.fingerprint_bytes) == 32
    assert loaded.config == gen.config
    assert loaded.path == ckpt
    assert not loaded.generator.training
    assert all(not m.training for m in loaded.generator.modules())
    assert all(not p.requires_grad for p in loaded.generator.parameters())
    z = torch.randn(5, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded.generator(z), gen(z), rtol=0, atol=0)
    for name, tensor in gen.state_dict().items():
        assert torch.equal(loaded.generator.state_dict()[name], tensor), name


def test_load_accepts_file_inside_checkpoint(saved) -> None:
    _, ckpt, fingerprint = saved
    assert load_generator(ckpt / WEIGHTS_FILE).fingerprint == fingerprint
    assert load_generator(str(ckpt / CONFIG_FILE)).fingerprint == fingerprint


def test_config_json_fields(saved) -> None:
    gen, ckpt, fingerprint = saved
    config = json.loads((ckpt / CONFIG_FILE).read_text())
    assert config["format"] == "ganrev-generator"
    assert config["format_version"] == 1
    assert config["architecture"] == "dcgan"
    assert (config["latent_dim"], config["channels"], config["resolution"], config["width"]) == (8, 3, 32, 4)
    assert config["fingerprint"] == fingerprint
    assert len(fingerprint) == 64 and int(fingerprint, 16) >= 0
    assert config["dataset"] == "unit-test"
    assert config["split"] == META["split"]
    assert load_generator(ckpt).metadata["dataset"] == "unit-test"


def test_weights_file_is_safetensors_not_pickle(saved) -> None:
    gen, ckpt, _ = saved
    raw = (ckpt / WEIGHTS_FILE).read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    assert 0 < header_len < len(raw)
    header = json.loads(raw[8:8 + header_len])
    names = {k for k in header if k != "__metadata__"}
    assert names == set(gen.state_dict())
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert list(info["shape"]) == list(gen.state_dict()[name].shape)
        assert set(info) == {"dtype", "shape", "data_offsets"}
    # the last tensor ends exactly at the end of the file: nothing else (no pickle) is stored
    end = max(info["data_offsets"][1] for k, info in header.items() if k != "__metadata__")
    assert 8 + header_len + end == len(raw)
    assert not raw.startswith(b"\x80") and not raw.startswith(b"PK")  # neither a pickle nor a torch zip


def test_loading_never_unpickles(saved, monkeypatch) -> None:
    _, ckpt, fingerprint = saved

    def forbidden(*args, **kwargs):
        raise AssertionError("load_generator must not unpickle anything")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    assert load_generator(ckpt).fingerprint == fingerprint


def test_fingerprint_stable_across_save_load_resave(saved, tmp_path: Path) -> None:
    gen, ckpt, fingerprint = saved
    assert weights_fingerprint(gen.state_dict()) == fingerprint
    assert weights_fingerprint(load_file(str(ckpt / WEIGHTS_FILE))) == fingerprint
    loaded = load_generator(ckpt)
    again = save_generator(loaded.generator, tmp_path / "again", {"dataset": "other"})
    assert again == fingerprint
    assert load_generator(tmp_path / "again").fingerprint == fingerprint
    # saving into the same directory again replaces the files and keeps the fingerprint
    assert save_generator(gen, ckpt, META) == fingerprint
    # a different but identically shaped network has another fingerprint
    assert weights_fingerprint(_generator(seed=1).state_dict()) != fingerprint


def test_fingerprint_independent_of_dict_order_and_device_layout(saved) -> None:
    gen, _, fingerprint = saved
    state = gen.state_dict()
    reversed_state = {k: state[k] for k in reversed(list(state))}
    assert weights_fingerprint(reversed_state) == fingerprint
    non_contiguous = {k: (v.t().contiguous().t() if v.ndim == 2 else v) for k, v in state.items()}
    assert weights_fingerprint(non_contiguous) == fingerprint


def test_fingerprint_changes_with_one_weight(saved) -> None:
    gen, _, fingerprint = saved
    state = {k: v.clone() for k, v in gen.state_dict().items()}
    name = "main.0.weight"
    flat = state[name].view(-1)
    flat[7] = torch.nextafter(flat[7], torch.tensor(1.0))  # smallest possible change
    assert weights_fingerprint(state) != fingerprint
    # a change of dtype or of a name changes it as well, even with equal values
    state = {k: v.clone() for k, v in gen.state_dict().items()}
    assert weights_fingerprint({**state, name: state[name].double()}) != fingerprint
    renamed = dict(state)
    renamed["renamed"] = renamed.pop(name)
    assert weights_fingerprint(renamed) != fingerprint


def test_load_refuses_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(GanrevError, match="not a generator checkpoint"):
        load_generator(tmp_path / "does-not-exist")
    with pytest.raises(GanrevError):
        load_generator(tmp_path)  # exists, but empty


def test_load_refuses_missing_weights_or_config(saved) -> None:
    _, ckpt, _ = saved
    (ckpt / WEIGHTS_FILE).unlink()
    with pytest.raises(GanrevError, match=WEIGHTS_FILE):
        load_generator(ckpt)


def test_load_refuses_tampered_weights(saved) -> None:
    _, ckpt, _ = saved
    state = load_file(str(ckpt / WEIGHTS_FILE))
    state["main.0.weight"].view(-1)[0] += 1e-3
    save_file(state, str(ckpt / WEIGHTS_FILE))
    with pytest.raises(GanrevError, match="fingerprint"):
        load_generator(ckpt)


def test_load_refuses_weights_from_another_checkpoint(saved, tmp_path: Path) -> None:
    _, ckpt, _ = saved
    other = tmp_path / "other"
    save_generator(_generator(seed=5), other, META)
    (ckpt / WEIGHTS_FILE).write_bytes((other / WEIGHTS_FILE).read_bytes())
    with pytest.raises(GanrevError, match="fingerprint"):
        load_generator(ckpt)


@pytest.mark.parametrize("change", [{"width": 8}, {"latent_dim": 9}, {"resolution": 64}, {"channels": 1}])
def test_load_refuses_config_of_another_architecture(saved, change: dict) -> None:
    _, ckpt, _ = saved
    config = json.loads((ckpt / CONFIG_FILE).read_text())
    config.update(change)
    (ckpt / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(GanrevError, match="do not fit the architecture"):
        load_generator(ckpt)


def test_load_refuses_invalid_architecture_values(saved) -> None:
    _, ckpt, _ = saved
    config = json.loads((ckpt / CONFIG_FILE).read_text())
    config["resolution"] = 33
    (ckpt / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(GanrevError):
        load_generator(ckpt)
    del config["resolution"]
    (ckpt / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(GanrevError):
        load_generator(ckpt)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "header-only"])
def test_load_refuses_damaged_safetensors(saved, damage: str) -> None:
    _, ckpt, _ = saved
    path = ckpt / WEIGHTS_FILE
    raw = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(bytes(range(256)) * 20)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        (header_len,) = struct.unpack("<Q", raw[:8])
        path.write_bytes(raw[: 8 + header_len])
    with pytest.raises(GanrevError):
        load_generator(ckpt)


@pytest.mark.parametrize("version", [2, 99])
def test_load_refuses_future_format_version(saved, version: int) -> None:
    _, ckpt, _ = saved
    config = json.loads((ckpt / CONFIG_FILE).read_text())
    config["format_version"] = version
    (ckpt / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(GanrevError, match="upgrade"):
        load_generator(ckpt)


def test_load_refuses_foreign_or_broken_config(saved) -> None:
    _, ckpt, _ = saved
    good = json.loads((ckpt / CONFIG_FILE).read_text())
    (ckpt / CONFIG_FILE).write_text("{not json")
    with pytest.raises(GanrevError, match="cannot read"):
        load_generator(ckpt)
    (ckpt / CONFIG_FILE).write_text(json.dumps({**good, "format": "something-else"}))
    with pytest.raises(GanrevError):
        load_generator(ckpt)
    (ckpt / CONFIG_FILE).write_text(json.dumps({**good, "architecture": "stylegan"}))
    with pytest.raises(GanrevError):
        load_generator(ckpt)
    (ckpt / CONFIG_FILE).write_text(json.dumps(good))
    load_generator(ckpt)  # and the untouched config still loads


@pytest.mark.parametrize("config", [
    "[1, 2, 3]", '"a string"', "null",
    {"format_version": "2"}, {"format_version": None}, {"latent_dim": None}, {"latent_dim": [8]},
    {"channels": "three"},
])
def test_load_refuses_malformed_config_values(saved, config) -> None:
    # errors.py: anything but GanrevError escaping is a bug, so odd config.json contents must be refused cleanly
    _, ckpt, _ = saved
    if isinstance(config, dict):
        config = json.dumps({**json.loads((ckpt / CONFIG_FILE).read_text()), **config})
    (ckpt / CONFIG_FILE).write_text(config)
    with pytest.raises(GanrevError):
        load_generator(ckpt)


def test_compress_bits_come_from_the_config_or_the_default(saved) -> None:
    _, ckpt, fingerprint = saved
    assert load_generator(ckpt).compress_bits == DEFAULT_COMPRESS_BITS == 6
    set_compress_bits(ckpt, 4)
    loaded = load_generator(ckpt)
    assert loaded.compress_bits == 4 and loaded.fingerprint == fingerprint  # the weights are untouched
    assert json.loads((ckpt / CONFIG_FILE).read_text())["compress_bits"] == 4


@pytest.mark.parametrize("bits", [1, 17, 4.0, "4", True, None])
def test_invalid_compress_bits_are_refused(saved, bits) -> None:
    _, ckpt, _ = saved
    with pytest.raises(GanrevError, match="compress_bits"):
        set_compress_bits(ckpt, bits)
    config = json.loads((ckpt / CONFIG_FILE).read_text())
    (ckpt / CONFIG_FILE).write_text(json.dumps({**config, "compress_bits": bits}))
    with pytest.raises(GanrevError, match="compress_bits"):
        load_generator(ckpt)


def test_save_is_atomic_no_temporary_files_left(saved) -> None:
    _, ckpt, _ = saved
    assert sorted(p.name for p in ckpt.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]


# ------------------------------------------------------------------------------------------------ encoder

def _encoder(config: GeneratorConfig, seed: int = 1) -> Encoder:
    torch.manual_seed(seed)
    enc = Encoder(config)
    enc.apply(init_weights)
    return enc.eval()


@pytest.mark.parametrize("resolution,channels", [(32, 3), (64, 1)])
def test_encoder_maps_images_to_latents(resolution: int, channels: int) -> None:
    enc = _encoder(GeneratorConfig(16, channels, resolution, 4))
    with torch.no_grad():
        z = enc(torch.rand(5, channels, resolution, resolution))
    assert z.shape == (5, 16) and torch.isfinite(z).all()


def test_spectral_discriminator_has_no_batch_norm_and_bounded_layers() -> None:
    disc = Discriminator(GeneratorConfig(8, 3, 32, 4), spectral=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in disc.modules())
    disc.train()
    for _ in range(20):  # power iterations converge; every layer's spectral norm is then ~1
        disc(torch.randn(4, 3, 32, 32))
    conv = disc.main[0]
    matrix = conv.weight.detach().flatten(1)
    assert torch.linalg.matrix_norm(matrix, ord=2) == pytest.approx(1.0, rel=0.05)


def test_checkpoint_with_encoder_round_trips(saved, tmp_path: Path) -> None:
    gen, _, _ = saved
    enc = _encoder(gen.config)
    out = tmp_path / "with-encoder"
    fingerprint = save_generator(gen, out, META, encoder=enc)
    config = json.loads((out / CONFIG_FILE).read_text())
    assert config["encoder"]["file"] == ENCODER_FILE and config["encoder"]["width"] == 4
    assert config["encoder"]["fingerprint"] == weights_fingerprint(enc.state_dict())
    loaded = load_generator(out)
    assert loaded.fingerprint == fingerprint and loaded.encoder is not None
    assert not any(p.requires_grad for p in loaded.encoder.parameters()) and not loaded.encoder.training
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.encoder(images), enc(images))


def test_checkpoint_without_encoder_has_none_and_saving_removes_a_stale_one(saved, tmp_path: Path) -> None:
    gen, ckpt, _ = saved
    assert load_generator(ckpt).encoder is None
    out = tmp_path / "reused"
    save_generator(gen, out, META, encoder=_encoder(gen.config))
    save_generator(gen, out, META)  # a later save without an encoder must not leave the old one behind
    assert not (out / ENCODER_FILE).exists() and load_generator(out).encoder is None


def test_encoder_from_another_run_is_refused(saved, tmp_path: Path) -> None:
    gen, _, _ = saved
    first, second = tmp_path / "first", tmp_path / "second"
    save_generator(gen, first, META, encoder=_encoder(gen.config, seed=1))
    save_generator(gen, second, META, encoder=_encoder(gen.config, seed=2))
    (first / ENCODER_FILE).write_bytes((second / ENCODER_FILE).read_bytes())
    with pytest.raises(GanrevError, match="encoder fingerprint"):
        load_generator(first)


def test_encoder_file_not_in_config_or_missing_is_refused(saved, tmp_path: Path) -> None:
    gen, ckpt, _ = saved
    other = tmp_path / "other"
    save_generator(gen, other, META, encoder=_encoder(gen.config))
    (ckpt / ENCODER_FILE).write_bytes((other / ENCODER_FILE).read_bytes())
    with pytest.raises(GanrevError, match="not listed"):
        load_generator(ckpt)
    (other / ENCODER_FILE).unlink()
    with pytest.raises(GanrevError, match="missing"):
        load_generator(other)


def test_config_without_fingerprint_is_refused(saved) -> None:
    _, ckpt, _ = saved
    config = json.loads((ckpt / CONFIG_FILE).read_text())
    del config["fingerprint"]
    (ckpt / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(GanrevError, match="no weights fingerprint"):
        load_generator(ckpt)


def test_weights_that_do_not_fit_give_one_line(saved, tmp_path: Path) -> None:
    _, ckpt, _ = saved
    wide = _generator(width=8)
    state = {k: v.contiguous() for k, v in wide.state_dict().items()}
    save_file(state, str(ckpt / WEIGHTS_FILE))
    config = json.loads((ckpt / CONFIG_FILE).read_text())
    config["fingerprint"] = weights_fingerprint(state)
    (ckpt / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(GanrevError, match="do not fit") as info:
        load_generator(ckpt)
    assert "\n" not in str(info.value)
