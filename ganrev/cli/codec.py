"""The codec commands: compress, decompress, info, metrics."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import List, Optional

import typer

from ganrev.batch import barrier, read_bytes
from ganrev.cli.common import (
    DeviceOption,
    GeneratorOption,
    app,
    check_seed,
    device_for,
    echo_error,
    echo_json,
    fmt,
    report_skipped,
    require,
)
from ganrev.errors import GanrevError
from ganrev.pretrained import load_named_generator


@app.command()
def compress(
    inputs: List[Path] = typer.Argument(..., help="images or folders of images (searched recursively)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output .grv file (one image) or directory "
                                       "(default: beside each input, NAME.grv); a folder's images keep their "
                                       "sub-folders under it"),
    generator: Optional[str] = GeneratorOption,
    init: Optional[str] = typer.Option(None, help="search start: encoder (E(x); default when the generator has "
                                       "an encoder), pool (best prior samples; the default otherwise), random"),
    effort: Optional[int] = typer.Option(None, help="speed against quality in one option, 0-6 (as cwebp -m, avifenc "
                                         "--speed or zstd levels): 0 is no search, the encoder alone (or the best "
                                         "pool sample), in milliseconds; each level above searches longer, 6 from 4 "
                                         "times the starts [4: the defaults below]; --iters, --restarts, --patience, "
                                         "--lr and --refine-iters given with it override its values"),
    iters: Optional[int] = typer.Option(None, help="latent-search iterations, an upper bound: rows stop early "
                                        "[200 with --init encoder, else 1000; 0: no search]"),
    restarts: Optional[int] = typer.Option(None, help="starting points per image [1 with --init encoder, else 4]"),
    bits: Optional[int] = typer.Option(None, help="bits per latent coordinate before entropy coding (2-16) [the "
                                       "generator's own: 4 for emoji64, 6 for the others; with a target the "
                                       "engine chooses]"),
    leading: Optional[int] = typer.Option(None, help="code only the latent's first K coordinates, the others decoding "
                                          "as 0: smaller files, for generators trained with --nested-dropout "
                                          "[all; with a target the engine chooses]"),
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
                                               "--init encoder or no search, else 50]"),
    batch_size: Optional[int] = typer.Option(None, help="latent rows optimised together (default: 64 on CPU, "
                                             "4096 on CUDA)"),
    precision: Optional[str] = typer.Option(None, help="the generator's arithmetic in the search: auto (bf16 on CPUs "
                                            "with AMX-BF16 or AVX-512 BF16, where it takes 0.66-0.93x the time for "
                                            "the same SSIM; else fp32) [default], fp32 or bf16; files decode the same "
                                            "either way"),
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
    from ganrev.batch import (
        InputsRefused,
        compress_files,
        compress_targets,
        process_group,
        torchrun_env,
    )
    from ganrev.codecs.gan import GanCodec
    from ganrev.invert import check_effort, chunk_rows, default_search
    from ganrev.bitstream.ratecontrol import rate_target

    goal = rate_target(target_ssim, target_bpp, modulation_iters=modulation_iters, bits=bits, leading=leading)
    if effort is not None:
        check_effort(effort)
    require(bits is None or 2 <= bits <= 16, "--bits", bits, "between 2 and 16")
    require(refine_iters is None or refine_iters >= 0, "--refine-iters", refine_iters, ">= 0")
    check_seed(seed)
    rank, world, local_rank = torchrun_env()
    dev = device_for(device, local_rank)
    pairs = compress_targets(inputs, out, force)
    ckpt = load_named_generator(generator, dev)
    search = default_search(ckpt.encoder is not None, init=init, effort=effort, iters=iters, restarts=restarts,
                            loss=loss, lr=lr, seed=seed, pool=pool, patience=patience, batch_size=batch_size,
                            leading=leading, precision=precision)
    codec = GanCodec(ckpt, bits=ckpt.compress_bits if bits is None else bits, search=search, refine_iters=refine_iters,
                     progress=not as_json and rank == 0)
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
                echo_error(exc)
            barrier(world)
            raise typer.Exit(2) from None
    if rank != 0:
        return  # rank 0 reports, and carries the exit status (torchrun would stop it if another rank failed)
    for note in report.notes:
        typer.echo(f"warning: {note}", err=True)
    if as_json:
        echo_json(report.rows)
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
        report_skipped(report.skipped)
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

    dev = device_for(device)
    pairs = decompress_targets(files, out, force)
    codec = GanCodec(load_named_generator(generator, dev))

    def explain(exc: GanrevError) -> str:
        return shipped_generator_hint(exc.fingerprint) if isinstance(exc, WrongGeneratorError) else ""

    def on_file(path: Path, target: Path, image) -> None:
        typer.echo(f"{path} -> {target} ({image.shape[2]}x{image.shape[1]})")

    skipped = decompress_files(codec, pairs, keep_going=keep_going, explain=explain, on_file=on_file)
    if skipped:
        report_skipped(skipped)
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
    from ganrev.bitstream.fileinfo import describe_file, format_description

    rows = []
    for path in files:
        data = read_bytes(path)
        try:
            rows.append({"file": str(path), **describe_file(data)})
        except GanrevError as exc:
            raise GanrevError(f"{path}: {exc}") from exc
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        typer.echo(format_description(row))


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
        echo_json(values)
        return
    for key in ("mse", "psnr", "ssim", "ms_ssim"):
        typer.echo(f"{key.upper().replace('_', '-'):8} {fmt(values[key], 6)}")
    lp = values["lpips"]
    typer.echo(f"LPIPS    {fmt(lp, 6) if lp is not None else 'n/a: ' + str(values['lpips_note'])}")
