"""ganrev.sampling: generate's draws and fit-density's checks, on a tiny checkpoint."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import torch

from ganrev.density import GaussianMixture
from ganrev.errors import GanrevError
from ganrev.models import load_generator, save_generator
from ganrev.nets.dcgan import Generator, GeneratorConfig, init_weights
from ganrev.sampling import add_density, check_prior, sample_images


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(latent_dim=8, channels=3, resolution=16, width=4))
    generator.apply(init_weights)
    save_generator(generator, tmp_path, {"dataset": "test"})
    return load_generator(tmp_path)


def test_samples_are_seeded_images(checkpoint) -> None:
    first, again, other = (sample_images(checkpoint, 3, seed) for seed in (0, 0, 1))
    assert first.shape == (3, 3, 16, 16) and 0 <= first.min() and first.max() <= 1
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_the_prior_decides_where_latents_come_from(checkpoint) -> None:
    assert not check_prior("auto", checkpoint) and not check_prior("normal", checkpoint)
    with pytest.raises(GanrevError, match="no latent density"):
        check_prior("fitted", checkpoint)
    with pytest.raises(GanrevError, match="invalid --prior 'uniform'"):
        check_prior("uniform", checkpoint)
    mixture = GaussianMixture(torch.ones(1), torch.full((1, 8), 5.0), torch.eye(8)[None] * 1e-3)
    fitted = replace(checkpoint, density=mixture)
    assert check_prior("auto", fitted) and not check_prior("normal", fitted)
    drawn = sample_images(fitted, 2, 0, "fitted")
    assert not torch.equal(drawn, sample_images(fitted, 2, 0, "normal"))


def test_add_density_refuses_before_fitting(checkpoint, monkeypatch) -> None:
    with pytest.raises(GanrevError, match="has no encoder"):
        add_density(checkpoint, torch.device("cpu"))
    with_encoder = replace(checkpoint, encoder=torch.nn.Identity(), density=None)
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(GanrevError, match="cannot write into"):
        add_density(with_encoder, torch.device("cpu"))
