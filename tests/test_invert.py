"""The batched latent search: correctness against per-image runs, determinism, early stopping, losses."""

from __future__ import annotations

import pytest
import torch

from ganrev.errors import GanrevError
from ganrev.invert import (
    DEFAULT_EFFORT,
    DEFAULT_SEARCH_LOSS,
    EFFORTS,
    ENCODER_SEARCH,
    INITS,
    LOSSES,
    SearchOptions,
    default_search,
    invert,
    per_image_loss,
    resolve_search_precision,
    starting_points,
    target_loss,
)
import ganrev.invert as invert_module
from ganrev.metrics import ms_ssim
from ganrev.nets.dcgan import Encoder, Generator, GeneratorConfig, init_weights


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
    starts = starting_points(generator, targets, options, torch.device("cpu"))
    start = per_image_loss(options.loss)(generator.images(starts), targets.repeat_interleave(3, 0)).view(4, 3)
    assert (result.restart_loss <= start + 1e-6).all()
    assert (result.loss < start.min(dim=1).values).all()
    assert torch.equal(result.loss, result.restart_loss.min(dim=1).values)
    recomputed = per_image_loss(options.loss)(generator.images(result.z), targets)
    assert torch.allclose(recomputed, result.loss, atol=1e-5)
    assert result.z.abs().max() <= options.clip


# The targets are images G draws, so the search reaches loss ~0, where z is no longer pinned down: an L1 term's
# gradient there flips sign with float rounding, which differs with the batch size (and thread count). The
# latents are compared under the smooth SSIM loss; under the default loss the losses must still agree.
def test_batched_equals_one_image_at_a_time(generator, targets):
    for loss in ("ssim", DEFAULT_SEARCH_LOSS):
        options = SearchOptions(iters=40, restarts=2, pool=32, batch_size=64, loss=loss)
        together = invert(generator, targets, options)
        for k in range(len(targets)):
            alone = invert(generator, targets[k:k + 1], options)
            assert torch.allclose(alone.loss[0], together.loss[k], atol=1e-5)
            if loss == "ssim":
                assert torch.allclose(alone.z[0], together.z[k], atol=1e-4)


def test_chunking_does_not_change_results(generator, targets):
    for loss in ("ssim", DEFAULT_SEARCH_LOSS):
        whole = invert(generator, targets, SearchOptions(iters=30, restarts=3, pool=0, batch_size=64, loss=loss))
        chunked = invert(generator, targets, SearchOptions(iters=30, restarts=3, pool=0, batch_size=5, loss=loss))
        assert torch.allclose(whole.loss, chunked.loss, atol=1e-5)
        if loss == "ssim":
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


@pytest.mark.parametrize("name", LOSSES)
def test_the_loss_against_fixed_targets_is_the_per_image_loss(targets, name):
    outputs = (targets.flip(0) * 0.7 + 0.15).clamp(0, 1)
    rows = torch.tensor([2, 0])
    fixed = target_loss(name, targets)
    assert torch.allclose(fixed(outputs[rows], rows), per_image_loss(name)(outputs[rows], targets[rows]), atol=1e-6)
    assert torch.allclose(fixed(outputs, torch.arange(len(targets))), per_image_loss(name)(outputs, targets), atol=1e-6)
    assert torch.equal(fixed(outputs), fixed(outputs, torch.arange(len(targets))))  # no rows: all of them


def test_bce_and_the_mixtures_match_their_definitions(targets):
    out = (targets * 0.8 + 0.1).double()
    reference = targets.double()
    p, t = out.clamp(1e-6, 1 - 1e-6), reference.clamp(1e-6, 1 - 1e-6)
    cross = -(reference * p.log() + (1 - reference) * (1 - p).log()).flatten(1).mean(1)
    entropy = -(reference * t.log() + (1 - reference) * (1 - t).log()).flatten(1).mean(1)
    bce = per_image_loss("bce")(out, reference)
    assert torch.allclose(bce, cross - entropy) and (bce > 0).all()  # BCE minus the target's own entropy
    l2 = (out - reference).square().flatten(1).mean(1)
    expected = 0.84 * (1 - ms_ssim(out, reference)) + 0.16 * l2
    assert torch.allclose(per_image_loss("ms-ssim+l2")(out, reference), expected)
    # "mix" is the older name of MS-SSIM + L1.
    assert torch.equal(per_image_loss("mix")(out, reference), per_image_loss("ms-ssim+l1")(out, reference))


def test_bad_inputs_are_refused(generator, targets):
    with pytest.raises(GanrevError, match="images must be"):
        invert(generator, targets[:, :1], SearchOptions(iters=1))
    with pytest.raises(GanrevError, match="unknown loss"):
        per_image_loss("perceptual")
    with pytest.raises(GanrevError, match="invalid --iters -1"):
        invert(generator, targets, SearchOptions(iters=-1))


def test_a_bf16_search_finds_what_the_fp32_search_finds(generator, targets):
    options = SearchOptions(iters=150, restarts=2, pool=32, precision="fp32")
    exact = invert(generator, targets, options)
    fast = invert(generator, targets, SearchOptions(iters=150, restarts=2, pool=32, precision="bf16"))
    starts = starting_points(generator, targets, options, torch.device("cpu"))
    start = per_image_loss(options.loss)(generator.images(starts), targets.repeat_interleave(2, 0)).view(4, 2)
    assert (fast.loss < start.min(dim=1).values / 2).all()  # it searches, not just runs
    # the reported loss is the bf16 generator's: close to the exact generator's at the same latent
    recomputed = per_image_loss(options.loss)(generator.images(fast.z), targets)
    assert torch.allclose(recomputed, fast.loss, atol=0.01)
    assert (recomputed < exact.loss + 0.05).all()
    assert not torch.equal(fast.z, exact.z)  # and it did run in bf16


@pytest.mark.parametrize("flags,device,want", [
    ({"amx_bf16", "avx512_bf16"}, "cpu", "bf16"), ({"avx512_bf16", "avx512f"}, "cpu", "bf16"),
    ({"avx512f"}, "cpu", "fp32"), (set(), "cpu", "fp32"),
    ({"amx_bf16"}, "cuda", "fp32"),
])
def test_auto_precision_is_bf16_only_on_cpus_with_bf16_instructions(monkeypatch, flags, device, want):
    monkeypatch.setattr(invert_module, "cpu_flags", lambda: flags)
    assert resolve_search_precision("auto", torch.device(device)) == want
    assert resolve_search_precision("fp32", torch.device("cpu")) == "fp32"
    assert resolve_search_precision("bf16", torch.device("cpu")) == "bf16"
    assert SearchOptions().precision == "auto"


def test_zero_iterations_keeps_the_best_start(generator, targets):
    options = SearchOptions(iters=0, restarts=3, pool=0, precision="fp32")  # the loss to compare exactly
    result = invert(generator, targets, options)
    starts = starting_points(generator, targets, options, torch.device("cpu")).view(4, 3, -1)
    assert (result.iterations == 0).all()
    assert torch.equal(result.z, starts[torch.arange(4), result.restart_loss.argmin(dim=1)])
    assert torch.allclose(result.loss, per_image_loss(options.loss)(generator.images(result.z), targets), atol=1e-6)


@pytest.mark.parametrize("field,value", [
    ("iters", -1), ("restarts", 0), ("patience", 0), ("pool", -1), ("batch_size", 0), ("lr", float("nan")),
    ("lr", float("inf")), ("lr", -1.0), ("lr", 0.0), ("clip", 0.0), ("min_delta", -1e-3), ("loss", "perceptual"),
    ("init", "zeros"), ("precision", "fp16"),
])
def test_search_options_are_checked_on_construction(field, value):
    with pytest.raises(GanrevError, match=f"invalid --{field.replace('_', '-')}"):
        SearchOptions(**{field: value})


def _encoder_for(generator: Generator) -> Encoder:
    torch.manual_seed(5)
    encoder = Encoder(generator.config)
    encoder.apply(init_weights)
    return encoder.eval().requires_grad_(False)


def test_encoder_start_begins_at_e_of_x_and_spreads_further_restarts(generator, targets):
    encoder = _encoder_for(generator)
    options = SearchOptions(iters=1, restarts=3, init="encoder")
    starts = starting_points(generator, targets, options, torch.device("cpu"), encoder).view(4, 3, -1)
    with torch.no_grad():
        codes = encoder(targets).clamp(-options.clip, options.clip)
    assert torch.allclose(starts[:, 0], codes, atol=1e-6)  # restart 1 is E(x) itself
    spread = (starts[:, 1:] - codes[:, None]).std()
    assert 0.1 < spread < 0.3  # small offsets (ENCODER_NOISE 0.2), clamped to the clip range
    with pytest.raises(GanrevError, match="encoder"):
        starting_points(generator, targets, options, torch.device("cpu"), None)


def test_search_from_a_good_encoder_start_is_better_than_from_the_prior(generator, targets):
    # An "encoder" that knows the answer up to noise: the search must start from it, so after a few
    # iterations it is far closer than a random start after the same iterations.
    class NearlyRight(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return truth[: len(images)] + 0.05

    truth = torch.randn(4, 12, generator=torch.Generator().manual_seed(9)).clamp(-2, 2)
    near = invert(generator, targets, SearchOptions(iters=5, restarts=1, init="encoder"), encoder=NearlyRight())
    far = invert(generator, targets, SearchOptions(iters=5, restarts=1, init="random"))
    assert (near.loss < far.loss).all()
    assert near.loss.max() < 0.05


@pytest.mark.parametrize("init", INITS)
def test_every_init_runs_and_is_deterministic(generator, targets, init):
    encoder = _encoder_for(generator)
    options = SearchOptions(iters=4, restarts=2, pool=16, init=init)
    first = invert(generator, targets, options, encoder=encoder)
    again = invert(generator, targets, options, encoder=encoder)
    assert torch.equal(first.z, again.z) and first.iterations.shape == (4, 2)


def test_default_search_follows_the_checkpoint():
    assert default_search(True) == SearchOptions(init="encoder", **ENCODER_SEARCH)
    assert default_search(False) == SearchOptions(init="pool")
    assert default_search(True, init="pool").iters == SearchOptions().iters
    assert default_search(True, iters=7, restarts=None).iters == 7
    assert default_search(True, restarts=None).restarts == ENCODER_SEARCH["restarts"]
    with pytest.raises(GanrevError, match="no encoder"):
        default_search(False, init="encoder")


# --effort: (iters, restarts, patience) of each level, from an encoder start and from a prior (pool, random) one, as
# EFFORTS documents them; lr stays the start's default (0.3 from E(x), 0.05 from the prior) at every level.
DOCUMENTED_EFFORTS = {
    0: ((0, 1, 20), (0, 4, 100)),
    1: ((6, 1, 6), (30, 4, 30)),
    2: ((25, 1, 5), (125, 4, 25)),
    3: ((100, 1, 10), (500, 4, 50)),
    4: ((200, 1, 20), (1000, 4, 100)),
    5: ((400, 1, 40), (2000, 4, 200)),
    6: ((400, 4, 40), (2000, 16, 200)),
}


@pytest.mark.parametrize("effort", sorted(DOCUMENTED_EFFORTS))
def test_effort_levels_map_to_the_documented_searches(effort):
    assert sorted(EFFORTS) == sorted(DOCUMENTED_EFFORTS)
    encoder, prior = DOCUMENTED_EFFORTS[effort]
    for has_encoder, init, expected, lr in ((True, None, encoder, 0.3), (False, None, prior, 0.05),
                                            (True, "random", prior, 0.05)):
        search = default_search(has_encoder, init=init, effort=effort)
        assert (search.iters, search.restarts, search.patience, search.lr) == (*expected, lr)
        assert search.init == (init or ("encoder" if has_encoder else "pool"))


def test_the_default_effort_is_the_default_search():
    assert DEFAULT_EFFORT == 4 and EFFORTS[DEFAULT_EFFORT] == {"encoder": {}, "prior": {}}
    for has_encoder in (True, False):
        assert default_search(has_encoder, effort=DEFAULT_EFFORT) == default_search(has_encoder, effort=None)
    assert default_search(True, effort=DEFAULT_EFFORT) == SearchOptions(init="encoder", **ENCODER_SEARCH)
    assert default_search(False, effort=DEFAULT_EFFORT) == SearchOptions(init="pool")


def test_options_given_override_the_effort():
    assert default_search(True, effort=0, iters=7, restarts=None).iters == 7
    search = default_search(True, effort=6, restarts=2, patience=3, lr=0.1)
    assert (search.iters, search.restarts, search.patience, search.lr) == (400, 2, 3, 0.1)
    assert default_search(False, effort=2, iters=60).patience == 25


@pytest.mark.parametrize("effort", [-1, max(DOCUMENTED_EFFORTS) + 1])
def test_an_effort_without_a_level_is_refused(effort):
    with pytest.raises(GanrevError, match=f"invalid --effort {effort}: must be a level from 0 to 6"):
        default_search(True, effort=effort)


def test_effort_0_is_the_encoder_start_itself(generator, targets):
    encoder = _encoder_for(generator)
    search = default_search(True, effort=0)
    result = invert(generator, targets, search, encoder=encoder)
    with torch.no_grad():
        codes = encoder(targets).clamp(-search.clip, search.clip)
    assert (result.iterations == 0).all() and result.iterations.shape == (4, 1)
    assert torch.equal(result.z, codes)


@pytest.mark.parametrize("init", INITS)
def test_a_leading_search_moves_only_the_first_coordinates(generator, targets, init):
    encoder = _encoder_for(generator) if init == "encoder" else None
    options = SearchOptions(iters=40, restarts=2, pool=16, init=init, leading=5)
    result = invert(generator, targets, options, encoder=encoder)
    assert torch.all(result.z[:, 5:] == 0) and result.z[:, :5].abs().sum() > 0
    start = invert(generator, targets, SearchOptions(iters=0, restarts=2, pool=16, init=init, leading=5),
                   encoder=encoder)
    assert torch.all(result.loss <= start.loss)
    whole = invert(generator, targets, SearchOptions(iters=40, restarts=2, pool=16, init=init), encoder=encoder)
    assert whole.loss.mean() < result.loss.mean()  # 12 free coordinates fit these images better than 5


def test_more_leading_coordinates_than_the_latent_has_are_refused(generator, targets):
    with pytest.raises(GanrevError, match="fewer than the 13 leading"):
        invert(generator, targets, SearchOptions(iters=1, leading=13))
    with pytest.raises(GanrevError, match="invalid --leading"):
        SearchOptions(leading=0)


def _rounded(z: torch.Tensor, bits: int, clip: float = 3.0) -> torch.Tensor:
    step = 2 * clip / (2**bits - 1)
    return ((z + clip) / step).round() * step - clip


def test_rounded_tracking_keeps_the_iterate_whose_rounding_scores_best(generator, targets):
    options = SearchOptions(iters=60, restarts=2, pool=0, lr=0.1, precision="fp32", rounded_bits=(3, 2))
    result = invert(generator, targets, options)
    loss = per_image_loss(options.loss)
    assert sorted(result.rounded) == [2, 3] and options.rounded_bits == (2, 3)
    for bits, z in result.rounded.items():
        assert z.shape == result.z.shape and z.abs().max() <= options.clip
        rounded_loss = loss(generator.images(_rounded(z, bits)), targets)
        assert torch.allclose(rounded_loss, result.rounded_loss[bits], atol=1e-5)
        # the best point's rounding was scored too, so the tracked point's rounding is never worse
        assert (result.rounded_loss[bits] <= loss(generator.images(_rounded(result.z, bits)), targets) + 1e-5).all()
        assert torch.equal(result.latents_for(bits), z)
    assert torch.equal(result.latents_for(4), result.z)  # a grid not tracked: the best point
    assert result.rounded_loss[2].mean() > result.rounded_loss[3].mean()  # the coarser grid costs more


def test_rounded_tracking_leaves_the_best_point_alone_without_early_stopping(generator, targets):
    common = dict(iters=30, restarts=2, pool=0, patience=10_000)
    plain = invert(generator, targets, SearchOptions(**common))
    tracked = invert(generator, targets, SearchOptions(**common, rounded_bits=(2,)))
    assert torch.equal(plain.z, tracked.z) and torch.equal(plain.loss, tracked.loss)
    assert not plain.rounded and not torch.equal(tracked.rounded[2], tracked.z)


def test_rounded_tracking_of_a_leading_search_rounds_only_the_coded_coordinates(generator, targets):
    result = invert(generator, targets, SearchOptions(iters=30, restarts=1, pool=0, leading=5, rounded_bits=(2,),
                                                      precision="fp32"))
    assert torch.all(result.rounded[2][:, 5:] == 0)
    coded = torch.cat([_rounded(result.rounded[2][:, :5], 2), torch.zeros(4, 7)], dim=1)
    assert torch.allclose(per_image_loss(DEFAULT_SEARCH_LOSS)(generator.images(coded), targets),
                          result.rounded_loss[2], atol=1e-5)


def test_no_search_tracks_no_rounding(generator, targets):
    result = invert(generator, targets, SearchOptions(iters=0, restarts=1, pool=0, rounded_bits=(2,)))
    assert not result.rounded and torch.equal(result.latents_for(2), result.z)


@pytest.mark.parametrize("bits", [(1,), (17,), (4, 0)])
def test_rounded_bits_outside_the_files_precisions_are_refused(bits):
    with pytest.raises(GanrevError, match="invalid --rounded-bits"):
        SearchOptions(rounded_bits=bits)
