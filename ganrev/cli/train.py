"""The commands that make models: fetch (data), fit-generator, fit-baseline, fit-density, and generate (look at
a generator before trusting it)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import typer

from ganrev.batch import check_outputs
from ganrev.cli.common import (
    DeviceOption,
    GeneratorOption,
    app,
    check_seed,
    device_for,
    require,
)
from ganrev.errors import GanrevError
from ganrev.pretrained import load_named_generator


@app.command()
def fetch(dataset: str = typer.Argument(..., help="built-in data set to download once: emoji (every openly "
                                         "licensed vendor) or emoji:google,twitter")) -> None:
    """Download a built-in data set into $GANREV_DATA (default ~/.cache/ganrev) using only package registries."""
    from ganrev.data import (
        EMOJI_VENDORS,
        emoji_vendors,
        fetch_emoji,
        is_emoji_source,
        locate_fashion_mnist,
    )

    if is_emoji_source(dataset):
        vendors = list(EMOJI_VENDORS) if dataset == "emoji" else emoji_vendors(dataset, fetched_only=False)
        for vendor in vendors:
            typer.echo(f"emoji ({vendor}) ready in {fetch_emoji(vendor=vendor)}")
    elif dataset == "fashion-mnist":
        typer.echo(f"Fashion-MNIST found in {locate_fashion_mnist()}")
    else:
        raise GanrevError(f"nothing to fetch for {dataset!r}: fetch emoji; Fashion-MNIST comes from "
                          "`apt-get install dataset-fashion-mnist`; torchvision sets download on first use")


@app.command("fit-generator")
def fit_generator_command(
    out: Path = typer.Option(..., "--out", "-o", help="checkpoint directory to write (or resume)"),
    data: str = typer.Option("emoji", help="emoji (every fetched vendor), emoji:google,twitter (those vendors), fashion-mnist, cifar10, mnist, celeba or an image folder"),
    objective: str = typer.Option("aegan", help="aegan: reconstruction-trained generator + encoder, with an "
                                  "optional adversarial term (default); gan: the plain DCGAN game"),
    resolution: int = typer.Option(64, help="image size (power of two: 32, 64, ...)"),
    channels: int = typer.Option(3, help="1 (gray) or 3 (RGB)"),
    latent_dim: Optional[int] = typer.Option(None, help="latent size [aegan 160, gan 100]"),
    width: Optional[int] = typer.Option(None, help="generator width (ngf) [aegan 32, gan 64]"),
    disc_width: Optional[int] = typer.Option(None, help="discriminator width (ndf) [aegan 32, gan 64]"),
    encoder_width: Optional[int] = typer.Option(None, help="aegan: encoder width (default: --width)"),
    epochs: Optional[int] = typer.Option(None, help="total epochs (with --resume: the new total) [as many as make "
                                         "14,000 steps, emoji64's length; with --max-minutes, as many as fit]"),
    batch_size: int = typer.Option(64, help="images per step (clamped, with a warning, to a smaller data set)"),
    lr: Optional[float] = typer.Option(None, help="Adam step for G (and E) [aegan 2e-3, gan 2e-4]"),
    disc_lr: Optional[float] = typer.Option(None, help="aegan: Adam step for D [2e-4; with --resume: the saved "
                                            "run's]"),
    disc_steps: Optional[int] = typer.Option(None, help="aegan: D updates per G update [1; with --resume: the "
                                             "saved run's]"),
    beta1: float = typer.Option(0.5),
    beta2: Optional[float] = typer.Option(None, help="Adam's second-moment decay (G, E and D) [aegan 0.99, gan "
                                          "0.999]"),
    recon_loss: str = typer.Option("ssim+l1", help="aegan reconstruction loss: ssim+l1 (0.84 (1-SSIM) + 0.16 L1) "
                                   "[best SSIM after the search in full-length runs], ms-ssim+l1 (also: mix), ssim, "
                                   "ms-ssim, l1, l2, bce, ms-ssim+l2"),
    adv_weight: Optional[float] = typer.Option(None, help="aegan: weight of the adversarial term (0: plain "
                                               "autoencoder) [0; with --resume: the saved run's]"),
    adv_warmup: Optional[int] = typer.Option(None, help="aegan: reconstruction-only epochs before the adversarial "
                                             "term [10; with --resume: the saved run's]"),
    prior_weight: float = typer.Option(0.1, help="aegan: weight of the penalty keeping E(x) ~ N(0, I)"),
    latent_noise: float = typer.Option(0.2, help="aegan: std of the noise added to E(x) before G in training"),
    nested_dropout: Optional[float] = typer.Option(None, help="aegan: share of each batch decoded from only its "
                                                   "first k latent coordinates (the rest 0), so that files can code "
                                                   "fewer of them [0.5; 0: off]"),
    ema: float = typer.Option(0.995, help="aegan: decay of the weight average of G and E that is saved"),
    validation: bool = typer.Option(True, help="aegan: hold back 10% of training groups to pick the best epoch "
                                    "(OUT/best/)"),
    init_from: str = typer.Option("auto", help="aegan: start G and E from this generator (a path or a name "
                                  "`ganrev models` lists, same --latent-dim and widths) and fine-tune it on --data; "
                                  "none: random weights [auto: the shipped emoji64 where the run has its shape "
                                  "(64x64 RGB, latent 160, width 32), else random weights]"),
    seed: int = typer.Option(0),
    hflip: bool = typer.Option(True, help="random horizontal flips"),
    augment: bool = typer.Option(False, help="aegan: also zoom, rotate, shift and recolour (channel order) the "
                                 "training images the encoder and generator learn to reconstruct"),
    resume: bool = typer.Option(False, help="continue from OUT/train_state.pt (the saved options, except --epochs "
                                "and any --adv-weight / --adv-warmup / --disc-lr / --disc-steps / --cooldown "
                                "given)"),
    device: str = DeviceOption,
    workers: int = typer.Option(0, help="data-loader worker processes"),
    max_steps_per_epoch: Optional[int] = typer.Option(None, help="cap steps per epoch (smoke tests)"),
    max_minutes: Optional[float] = typer.Option(None, help="time budget: the run plans as many epochs as fit, "
                                                "cool-down included, and stops after the first epoch past it "
                                                "(--resume goes on); the closing measurement comes after it"),
    cooldown: Optional[int] = typer.Option(None, help="the last N epochs' steps (G, E, D) fall linearly towards "
                                           "zero [2/15 of the epochs, emoji64's 20 of 150; with --resume: the "
                                           "saved run's]"),
    precision: str = typer.Option("auto", help="auto (bf16 autocast where the CPU has AMX-BF16 or the GPU bf16, "
                                  "else fp32), fp32 or bf16"),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch [every available core]"),
) -> None:
    """Train a generator; writes OUT/generator.safetensors (+ encoder.safetensors) + config.json and samples
    every epoch.

    Under `torchrun --nproc-per-node N ganrev fit-generator ...` training is data-parallel (DDP).
    """
    from ganrev.training.common import use_threads
    from ganrev.training.generator import TrainOptions, fit_generator

    device_for(device)  # a bad --device is one line now, not a traceback after the data has loaded
    use_threads(threads)
    schedule = {"epochs": epochs, "adv_weight": adv_weight, "adv_warmup": adv_warmup, "disc_lr": disc_lr,
                "disc_steps": disc_steps, "cooldown": cooldown}
    given = {name: value for name, value in schedule.items() if value is not None}
    options = TrainOptions(**given, data=data, resolution=resolution, channels=channels, latent_dim=latent_dim, width=width,
                           disc_width=disc_width, batch_size=batch_size, lr=lr, beta1=beta1, beta2=beta2,
                           seed=seed, hflip=hflip, augment=augment, max_steps_per_epoch=max_steps_per_epoch,
                           objective=objective, recon_loss=recon_loss, prior_weight=prior_weight,
                           latent_noise=latent_noise, nested_dropout=nested_dropout, encoder_width=encoder_width, ema=ema, validation=validation,
                           init_from=None if init_from == "none" else init_from)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = fit_generator(options, out, resume=resume, device=device, workers=workers,
                                resume_changes=tuple(given), max_minutes=max_minutes, precision=precision)
    for note in sorted({str(w.message) for w in caught}):
        typer.echo(f"warning: {note}", err=True)
    stopped = f" of {summary['planned_epochs']} (--max-minutes spent; --resume goes on)" if summary["out_of_time"] else ""
    typer.echo(f"trained {summary['epochs']} epochs{stopped}; generator in {out}")
    if summary["report"] is not None:
        for line in summary["report"].summary_lines():
            typer.echo(line)
        typer.echo(f"model card: {out / 'MODEL_CARD.md'}")


@app.command("fit-baseline")
def fit_baseline_command(
    model: str = typer.Argument(..., help="arcnn (JPEG artefact removal, seed 004), comcnn (ComCNN/RecCNN, seed "
                                "003) or compressai (CompressAI's learned codecs, see --model)"),
    out: Path = typer.Option(..., "--out", "-o", help="checkpoint directory to write (or resume)"),
    data: str = typer.Option("emoji", help="emoji (every fetched vendor), emoji:google,twitter (those vendors), "
                             "fashion-mnist, cifar10, mnist, celeba or an image folder"),
    resolution: int = typer.Option(64, help="image size"),
    channels: int = typer.Option(3, help="1 (gray) or 3 (RGB); compressai: RGB only"),
    quality: Optional[str] = typer.Option(None, help="arcnn/comcnn: JPEG quality 1-100 (comma-separated: several, "
                                          "one drawn per batch): arcnn restores it [10; several: a blind model]; "
                                          "comcnn stores its compact image at it [5,10,20,30,50]"),
    compressai_model: str = typer.Option("mean", "--model", help="compressai: factorized (bmshj2018-factorized), "
                                         "hyperprior (bmshj2018-hyperprior), mean (mbt2018-mean), joint (mbt2018, "
                                         "with the context model) or cheng2020-anchor"),
    lmbda: Optional[float] = typer.Option(None, help="compressai: the rate-distortion trade-off, loss = λ·D + bpp "
                                          "(D of --loss; mse is 255²·MSE as in CompressAI) [0.01]"),
    hidden_channels: int = typer.Option(64, help="compressai: N, the hidden and hyper-latent channels"),
    latent_channels: Optional[int] = typer.Option(None, help="compressai: M, the latent channels [96; "
                                                  "cheng2020-anchor: N, its only channel count]"),
    loss: str = typer.Option("ssim+l1", help="ssim+l1 (0.84 (1-SSIM) + 0.16 L1), l2 (MSE, the seeds' loss), ssim, "
                             "ms-ssim, l1, ms-ssim+l1, ...; compressai also mse (255²·MSE)"),
    epochs: int = typer.Option(10, help="total epochs (with --resume: the new total)"),
    batch_size: int = typer.Option(32, help="images per step"),
    lr: Optional[float] = typer.Option(None, help="Adam step [1e-3; compressai 1e-4]"),
    seed: int = typer.Option(0),
    hflip: bool = typer.Option(True, help="random horizontal flips"),
    validation: bool = typer.Option(True, help="hold back 10% of training groups to pick the best epoch (OUT/best/)"),
    resume: bool = typer.Option(False, help="continue from OUT/train_state.pt (its saved options; --epochs is the "
                                "new total)"),
    force: bool = typer.Option(False, help="start afresh over an existing checkpoint in OUT"),
    device: str = DeviceOption,
    max_steps_per_epoch: Optional[int] = typer.Option(None, help="cap steps per epoch (smoke tests)"),
    max_minutes: Optional[float] = typer.Option(None, help="time budget: stop after the first epoch that ends "
                                                "past it, as a finished run (--resume goes on)"),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch [every available core]"),
) -> None:
    """Train a learned baseline; writes OUT/<net>.safetensors + config.json, OUT/best/ and a sample picture every
    epoch. arcnn and comcnn learn on real JPEG outputs; compressai trains one of CompressAI's codecs end to end."""
    from ganrev.training.baselines import options_for, train_baseline
    from ganrev.training.common import STATE_FILE, use_threads

    device_for(device)
    use_threads(threads)
    options = options_for(model, data=data, resolution=resolution, channels=channels, quality=quality, loss=loss,
                          epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, hflip=hflip, validation=validation,
                          max_steps_per_epoch=max_steps_per_epoch, compressai_model=compressai_model, lmbda=lmbda,
                          hidden_channels=hidden_channels, latent_channels=latent_channels)
    if not resume and not force and ((out / STATE_FILE).exists() or (out / "config.json").exists()):
        raise GanrevError(f"{out} already holds a checkpoint: --resume to continue it, --force to start afresh")
    summary = train_baseline(options, out, resume=resume, device=device, max_minutes=max_minutes)
    stopped = f" of {options.epochs} (--max-minutes spent; --resume goes on)" if summary["out_of_time"] else ""
    typer.echo(f"trained {summary['epochs']} epochs{stopped}; {model} in {out} (best epoch in {out / 'best'})")


@app.command()
def generate(
    generator: Optional[str] = GeneratorOption,
    n: int = typer.Option(64, "-n", help="number of samples (>= 1)"),
    out: Path = typer.Option(Path("samples.png"), "--out", "-o", help="grid image to write: .png, .bmp, .tif or "
                             ".tiff"),
    force: bool = typer.Option(False, "--force", "-f", help="overwrite the output if it exists"),
    prior: str = typer.Option("auto", help="where the latents come from: fitted (the checkpoint's density of "
                              "E(x), see fit-density), normal (N(0, I)), auto (fitted when the checkpoint has one)"),
    seed: int = typer.Option(0),
    device: str = DeviceOption,
) -> None:
    """Draw samples from a generator as one image grid (look before you trust a generator)."""
    from ganrev.io import image_output_format, save_image
    from ganrev.sampling import PRIORS, check_prior, sample_images
    from ganrev.training.common import image_grid

    require(n >= 1, "-n", n, ">= 1")
    require(prior in PRIORS, "--prior", prior, f"one of {', '.join(PRIORS)}")
    check_seed(seed)
    dev = device_for(device)
    if out.is_dir():
        raise GanrevError(f"-o {out} is a directory: name the grid image file")
    image_output_format(out)
    check_outputs([(None, out)], force, "generate")
    ckpt = load_named_generator(generator, dev)
    source = "the fitted density" if check_prior(prior, ckpt) else "N(0, I)"
    save_image(image_grid(sample_images(ckpt, n, seed, prior)), out)
    typer.echo(f"wrote {n} samples to {out} (latents from {source})")


@app.command("fit-density")
def fit_density_command(
    generator: Optional[str] = GeneratorOption,
    force: bool = typer.Option(False, "--force", "-f", help="replace the checkpoint's density if it has one"),
    seed: int = typer.Option(0),
    device: str = DeviceOption,
) -> None:
    """Fit the density of E(x) that `generate` samples from, and add it to a generator + encoder checkpoint
    (fit-generator does this at the end of training; this command is for checkpoints without one).

    Encodes the training side of the checkpoint's data set and chooses a Gaussian mixture (size and shrinkage)
    by the likelihood of the validation groups carved from it. Compressed files are unaffected.
    """
    from ganrev.sampling import add_density

    check_seed(seed)
    dev = device_for(device)
    ckpt = load_named_generator(generator, dev)
    fit = add_density(ckpt, dev, seed=seed, replace=force)
    gain = (f"; validation log-likelihood {fit.validation_log_likelihood:.1f} per code vs "
            f"{fit.normal_log_likelihood:.1f} under N(0, I)" if fit.validation_log_likelihood is not None else
            " (no validation groups to choose with)")
    typer.echo(f"fitted a {fit.components}-component Gaussian mixture (shrinkage {fit.shrinkage}) to "
               f"{fit.fit_codes} codes{gain}; added to {ckpt.path}")
