"""Tests for ganrev.density (the fitted density of E(x) that `generate` samples from) and its place in a
generator checkpoint (ganrev.models.attach_density / load_generator)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from ganrev.density import (
    DensityFit,
    GaussianMixture,
    choose_density,
    fit_gaussian_mixture,
    normal_log_likelihood,
)
from ganrev.errors import GanrevError
from ganrev.models import DENSITY_FILE, attach_density, load_generator, save_generator
from ganrev.nets.dcgan import Encoder, Generator, GeneratorConfig, init_weights


def _clusters(n_per: int, centres: list[list[float]], std: float, seed: int = 0) -> torch.Tensor:
    rng = torch.Generator().manual_seed(seed)
    return torch.cat([torch.tensor(c) + std * torch.randn(n_per, len(c), generator=rng) for c in centres])


def _random_mixture(k: int, d: int, seed: int = 0) -> GaussianMixture:
    rng = torch.Generator().manual_seed(seed)
    weights = torch.rand(k, generator=rng, dtype=torch.float64) + 0.1
    tril = torch.randn(k, d, d, generator=rng, dtype=torch.float64).tril() * 0.3
    tril.diagonal(dim1=1, dim2=2).copy_(torch.rand(k, d, generator=rng, dtype=torch.float64) + 0.5)
    return GaussianMixture(weights / weights.sum(), torch.randn(k, d, generator=rng, dtype=torch.float64) * 2, tril)


def test_log_prob_matches_torch_distributions() -> None:
    mixture = _random_mixture(3, 4)
    oracle = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=mixture.weights),
        torch.distributions.MultivariateNormal(mixture.means, scale_tril=mixture.scale_tril))
    z = torch.randn(50, 4, dtype=torch.float64) * 3
    torch.testing.assert_close(mixture.log_prob(z), oracle.log_prob(z))


def test_sample_is_seeded_and_follows_the_mixture() -> None:
    mixture = _random_mixture(2, 3, seed=1)
    first = mixture.sample(20_000, torch.Generator().manual_seed(5))
    again = mixture.sample(20_000, torch.Generator().manual_seed(5))
    assert first.dtype == torch.float32 and first.shape == (20_000, 3) and torch.equal(first, again)
    w, mu = mixture.weights, mixture.means
    cov = mixture.scale_tril @ mixture.scale_tril.transpose(1, 2)
    mean = (w[:, None] * mu).sum(0)
    total_cov = (w[:, None, None] * (cov + mu[:, :, None] * mu[:, None, :])).sum(0) - mean[:, None] * mean[None]
    torch.testing.assert_close(first.double().mean(0), mean, atol=0.06, rtol=0)
    torch.testing.assert_close(torch.cov(first.double().T), total_cov, atol=0.15, rtol=0.05)


def test_fit_recovers_separated_gaussians() -> None:
    codes = torch.cat([_clusters(600, [[4.0, 0.0, 0.0]], 0.5), _clusters(300, [[-4.0, 1.0, 0.0]], 1.0, seed=1)])
    mixture = fit_gaussian_mixture(codes, 2, shrinkage=1e-4)
    order = mixture.means[:, 0].argsort(descending=True)
    torch.testing.assert_close(mixture.means[order], torch.tensor([[4.0, 0, 0], [-4.0, 1, 0]], dtype=torch.float64),
                               atol=0.15, rtol=0)
    torch.testing.assert_close(mixture.weights[order], torch.tensor([2 / 3, 1 / 3], dtype=torch.float64), atol=0.01,
                               rtol=0)
    variances = (mixture.scale_tril @ mixture.scale_tril.transpose(1, 2)).diagonal(dim1=1, dim2=2)[order]
    torch.testing.assert_close(variances, torch.tensor([[0.25] * 3, [1.0] * 3], dtype=torch.float64), atol=0.1,
                               rtol=0.15)


def test_shrinkage_is_added_to_every_covariance() -> None:
    codes = _clusters(400, [[0.0, 0.0]], 1.0)
    plain, shrunk = fit_gaussian_mixture(codes, 1, 1e-6), fit_gaussian_mixture(codes, 1, 0.5)
    cov = lambda m: m.scale_tril[0] @ m.scale_tril[0].T  # noqa: E731
    torch.testing.assert_close(cov(shrunk) - cov(plain), 0.5 * torch.eye(2, dtype=torch.float64), atol=1e-4, rtol=0)


def test_choose_density_keeps_the_most_likely_on_validation() -> None:
    centres = [[5.0, 0.0], [-5.0, 0.0], [0.0, 6.0]]
    fit = choose_density(_clusters(100, centres, 0.7), _clusters(30, centres, 0.7, seed=3), components=(1, 3),
                         shrinkages=(0.01, 0.1))
    assert fit.components == 3 and len(fit.candidates) == 4
    assert fit.validation_log_likelihood == pytest.approx(
        max(c["validation_log_likelihood"] for c in fit.candidates), abs=1e-3)
    assert fit.normal_log_likelihood == pytest.approx(normal_log_likelihood(_clusters(30, centres, 0.7, seed=3)))
    assert fit.validation_log_likelihood > fit.normal_log_likelihood
    record = fit.record()
    assert record["components"] == 3 and record["validation_codes"] == 90 and record["fit_codes"] == 300


def test_choose_density_without_validation_fits_one_gaussian() -> None:
    fit = choose_density(_clusters(50, [[0.0, 1.0]], 1.0), None)
    assert fit.components == 1 and fit.validation_log_likelihood is None and fit.candidates == []


def test_fit_rejects_too_few_codes_and_bad_settings() -> None:
    with pytest.raises(GanrevError, match="at least 2 codes"):
        fit_gaussian_mixture(torch.zeros(1, 3), 1, 0.1)
    with pytest.raises(GanrevError, match="invalid mixture"):
        fit_gaussian_mixture(torch.zeros(5, 3), 1, 0.0)


@settings(max_examples=60, deadline=None)
@given(key=st.sampled_from(["weights", "means", "scale_tril"]), index=st.integers(0, 20),
       value=st.sampled_from([float("nan"), float("inf"), -1.0, 0.0, 1e30]))
def test_from_state_dict_accepts_valid_or_raises_the_project_error(key: str, index: int, value: float) -> None:
    state = _random_mixture(2, 3).state_dict()
    flat = state[key].reshape(-1)
    flat[index % len(flat)] = value
    try:
        mixture = GaussianMixture.from_state_dict(state, 3)
    except GanrevError:
        return
    assert torch.isfinite(mixture.log_prob(torch.zeros(1, 3))).all()  # accepted only if it still is a density


def test_from_state_dict_rejects_wrong_shapes_and_missing_tensors() -> None:
    state = _random_mixture(2, 3).state_dict()
    with pytest.raises(GanrevError, match="expected"):
        GaussianMixture.from_state_dict(state, 4)
    with pytest.raises(GanrevError, match="no 'means'"):
        GaussianMixture.from_state_dict({k: v for k, v in state.items() if k != "means"}, 3)


# ------------------------------------------------------------------------------------------ in a checkpoint

def _checkpoint(directory: Path, seed: int, with_encoder: bool = True) -> Path:
    torch.manual_seed(seed)
    config = GeneratorConfig(latent_dim=3, channels=3, resolution=32, width=4)
    generator, encoder = Generator(config), Encoder(config)
    generator.apply(init_weights)
    encoder.apply(init_weights)
    save_generator(generator, directory, {"dataset": "test"}, encoder=encoder if with_encoder else None)
    return directory


def _fit(seed: int = 0) -> DensityFit:
    return choose_density(_clusters(40, [[0.0, 1.0, -1.0]], 1.0, seed), _clusters(10, [[0.0, 1.0, -1.0]], 1.0, 9),
                          components=(1, 2), shrinkages=(0.1,))


def test_attached_density_round_trips_and_is_recorded(tmp_path: Path) -> None:
    directory = _checkpoint(tmp_path / "ckpt", 0)
    fit = _fit()
    fingerprint = attach_density(directory, fit)
    loaded = load_generator(directory)
    assert loaded.density is not None
    for name, tensor in fit.mixture.state_dict().items():
        assert torch.equal(loaded.density.state_dict()[name], tensor)
    record = json.loads((directory / "config.json").read_text())["density"]
    assert record["fingerprint"] == fingerprint and record["components"] == fit.components
    encoder = json.loads((directory / "config.json").read_text())["encoder"]
    assert record["encoder_fingerprint"] == encoder["fingerprint"]


def test_a_changed_density_file_is_refused(tmp_path: Path) -> None:
    directory = _checkpoint(tmp_path / "ckpt", 0)
    attach_density(directory, _fit())
    state = _fit(seed=1).mixture.state_dict()
    save_file(state, str(directory / DENSITY_FILE))
    with pytest.raises(GanrevError, match="does not match the fingerprint of the latent density"):
        load_generator(directory)
    (directory / DENSITY_FILE).unlink()
    with pytest.raises(GanrevError, match="is missing"):
        load_generator(directory)


def test_a_density_fitted_to_another_encoder_is_refused(tmp_path: Path) -> None:
    first, second = _checkpoint(tmp_path / "a", 0), _checkpoint(tmp_path / "b", 1)
    attach_density(first, _fit())
    config = json.loads((second / "config.json").read_text())
    config["density"] = json.loads((first / "config.json").read_text())["density"]
    (second / "config.json").write_text(json.dumps(config))
    (second / DENSITY_FILE).write_bytes((first / DENSITY_FILE).read_bytes())
    with pytest.raises(GanrevError, match="another encoder's codes"):
        load_generator(second)


def test_saving_a_generator_drops_its_old_density_and_unlisted_files_are_ignored(tmp_path: Path) -> None:
    directory = _checkpoint(tmp_path / "ckpt", 0)
    attach_density(directory, _fit())
    stale = (directory / DENSITY_FILE).read_bytes()
    _checkpoint(directory, 1)  # a new epoch's weights: the old density described another encoder's codes
    assert not (directory / DENSITY_FILE).exists() and load_generator(directory).density is None
    (directory / DENSITY_FILE).write_bytes(stale)  # e.g. a fit interrupted before config.json listed it
    assert load_generator(directory).density is None


def test_a_checkpoint_without_an_encoder_takes_no_density(tmp_path: Path) -> None:
    directory = _checkpoint(tmp_path / "ckpt", 0, with_encoder=False)
    with pytest.raises(GanrevError, match="no encoder"):
        attach_density(directory, _fit())
