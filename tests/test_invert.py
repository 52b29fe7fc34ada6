"""The batched latent search: correctness against per-image runs, determinism, early stopping, losses."""

from __future__ import annotations

import pytest
import torch

from ganrev.errors import GanrevError
from ganrev.invert import LOSSES, SearchOptions, invert, per_image_loss, starting_points
from ganrev.models import Generator, GeneratorConfig, init_weights


@pytest.fixture(scope="module")
def generator() -> Generator:
    torch.manual_seed(3)
    g = Generator(GeneratorConfig(latent_dim=12, channels=3, resolution=32, width=8))
    g.apply(init_weights)
    return g.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def targets(generator) -> torch.Tensor:
    """Images the generator can make exactly, so the search has a known optimum (loss 0)."""
    with torch.no_grad():
        return generator.images(torch.randn(4, 12, generator=torch.Generator().manual_seed(9)).clamp(-2, 2))


def test_search_reduces_loss_and_keeps_the_best_restart(generator, targets):
    options = SearchOptions(iters=150, restarts=3, pool=0, lr=0.05)
    result = invert(generator, targets, options)
    start = per_image_loss("ssim")(generator.images(starting_points(generator, targets, options, torch.device("cpu"))),
                                   targets.repeat_interleave(3, 0)).view(4, 3)
    assert (result.restart_loss <= start + 1e-6).all()
    assert (result.loss < start.min(dim=1).values).all()
    assert torch.equal(result.loss, result.restart_loss.min(dim=1).values)
    recomputed = per_image_loss("ssim")(generator.images(result.z), targets)
    assert torch.allclose(recomputed, result.loss, atol=1e-5)
    assert result.z.abs().max() <= options.clip


def test_batched_equals_one_image_at_a_time(generator, targets):
    options = SearchOptions(iters=40, restarts=2, pool=32, batch_size=64)
    together = invert(generator, targets, options)
    for k in range(len(targets)):
        alone = invert(generator, targets[k:k + 1], options)
        assert torch.allclose(alone.z[0], together.z[k], atol=1e-4)
        assert torch.allclose(alone.loss[0], together.loss[k], atol=1e-5)


def test_chunking_does_not_change_results(generator, targets):
    options = SearchOptions(iters=30, restarts=3, pool=0, batch_size=64)
    whole = invert(generator, targets, options)
    chunked = invert(generator, targets, SearchOptions(iters=30, restarts=3, pool=0, batch_size=5))
    assert torch.allclose(whole.z, chunked.z, atol=1e-4)


def test_deterministic_for_a_seed_and_seed_matters(generator, targets):
    options = SearchOptions(iters=20, restarts=2, pool=0)
    first, second = invert(generator, targets, options), invert(generator, targets, options)
    assert torch.equal(first.z, second.z)
    other = invert(generator, targets, SearchOptions(iters=20, restarts=2, pool=0, seed=1))
    assert not torch.equal(first.z, other.z)


def test_early_stopping_stops_rows_that_stall(generator, targets):
    options = SearchOptions(iters=400, restarts=2, pool=0, patience=10, min_delta=1e-3)
    result = invert(generator, targets, options)
    assert result.iterations.min() < 400
    assert result.image_iterations == int(result.iterations.sum())
    patient = invert(generator, targets, SearchOptions(iters=60, restarts=2, pool=0, patience=10_000))
    assert (patient.iterations == 60).all()


def test_pool_starts_are_closer_than_random_ones(generator, targets):
    device = torch.device("cpu")
    loss = per_image_loss("l2")
    random_start = starting_points(generator, targets, SearchOptions(restarts=1, pool=0), device)
    pool_start = starting_points(generator, targets, SearchOptions(restarts=1, pool=256), device)
    assert loss(generator.images(pool_start), targets).mean() < loss(generator.images(random_start), targets).mean()


@pytest.mark.parametrize("name", LOSSES)
def test_every_loss_is_zero_at_the_target_and_runs(generator, targets, name):
    fn = per_image_loss(name)
    assert torch.allclose(fn(targets, targets), torch.zeros(len(targets)), atol=1e-5)
    result = invert(generator, targets[:2], SearchOptions(iters=5, restarts=1, pool=0, loss=name))
    assert torch.isfinite(result.loss).all()


def test_bad_inputs_are_refused(generator, targets):
    with pytest.raises(GanrevError, match="images must be"):
        invert(generator, targets[:, :1], SearchOptions(iters=1))
    with pytest.raises(GanrevError, match="unknown loss"):
        per_image_loss("perceptual")
    with pytest.raises(GanrevError, match="at least 1"):
        invert(generator, targets, SearchOptions(iters=0))
