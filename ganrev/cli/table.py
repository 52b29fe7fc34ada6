"""The evaluation command: table (with its curves and grid)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ganrev.cli.common import (
    TABLE_GRID_IMAGES,
    DeviceOption,
    GeneratorOption,
    app,
    device_for,
    require,
)
from ganrev.errors import GanrevError


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
    effort: Optional[int] = typer.Option(None, help="search effort of the GAN-reversal rows, 0-6 as compress's "
                                         "--effort [4]; --init, --iters and --restarts override its values"),
    efforts: Optional[str] = typer.Option(None, "--efforts", help="several efforts, comma-separated (e.g. 0,2,4): "
                                          "a GAN-reversal row per generator and effort, named with it; the rates "
                                          "are matched to the first, and the curves follow it"),
    iters: Optional[int] = typer.Option(None, help="latent-search iterations [compress's default for the start]"),
    restarts: Optional[int] = typer.Option(None, help="starting points per image [compress's default]"),
    bits: Optional[int] = typer.Option(None, help="bits per latent coordinate before entropy coding (2-16) [each "
                                       "generator's own, what compress uses with it]"),
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
    speed: Optional[Path] = typer.Option(None, "--speed", help="write a .png of every lossy row's SSIM against its "
                                         "encode and decode time per image, a generator's --efforts joined "
                                         "beside the learned peer's levels, each point labelled with its bpp"),
    grid: Optional[Path] = typer.Option(None, "--grid", help="write a .png of the first images as every scheme "
                                        "decoded them, each tile captioned with bytes and SSIM"),
    grid_images: Optional[int] = typer.Option(None, "--grid-images", help="images (columns) in --grid "
                                               f"(default: {TABLE_GRID_IMAGES})"),
    force: bool = typer.Option(False, "--force", "-f", help="overwrite output files (--json, --csv, --md, --grid, "
                               "--speed, --curves-out and its -compressai/ files) that exist"),
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
    One GAN-reversal row per generator (--generator, then each --compare) and effort (--efforts). WebP, WebP of
    the image downscaled 2x or 4x, and AVIF run at the quality (and scale) whose mean bpp is closest to the first
    GAN-reversal row's.
    """
    from ganrev.codecs.specs import parse_learned_specs
    from ganrev.evaluate import EvalOptions, run_table
    from ganrev.evaluate.outputs import TableOutputs
    from ganrev.invert import DEFAULT_EFFORT
    from ganrev.pretrained import default_comparisons, resolve_generator_path

    device_for(device)
    if grid is None and grid_images is not None:
        raise GanrevError("--grid-images needs --grid FILE.png")
    require(grid_images is None or grid_images >= 1, "--grid-images", grid_images, ">= 1")
    if effort is not None and efforts is not None:
        raise GanrevError("--effort and --efforts: give one of them")
    outputs = TableOutputs(json=json_out, csv=csv_out, markdown=md_out, grid=grid, speed=speed,
                           curves=curves_out if curves_out is not None else (Path("curves.png") if curves else None))
    outputs.check(force)
    learned_specs = parse_learned_specs(learned)
    path = resolve_generator_path(generator)
    compared = tuple(resolve_generator_path(name)
                     for name in (default_comparisons(generator) if compare is None else compare))
    overrides = tuple((key, value) for key, value in
                      (("init", init), ("iters", iters), ("restarts", restarts), ("seed", seed)) if value is not None)
    shown = 0 if grid is None else (TABLE_GRID_IMAGES if grid_images is None else grid_images)
    levels = _effort_levels(efforts) if efforts is not None else (DEFAULT_EFFORT if effort is None else effort,)
    options = EvalOptions(search_overrides=overrides, efforts=levels, bits=bits, limit=limit, seed=seed, device=device,
                          progress=progress, lpips_weights=lpips_weights, compare=compared, grid_images=shown,
                          learned=learned_specs)
    result = run_table(path, images, options)
    typer.echo(result.markdown())
    typer.echo(result.matched_rate_line())
    meta = result.metadata
    typer.echo(f"\n{meta['images']} images from {meta['images_dir']}; {meta['device']}; {meta['wall_s']:.1f} s")
    if not meta["lpips"]["available"]:
        typer.echo(f"LPIPS n/a: {meta['lpips']['reason']}")
    for target in outputs.write(result, path, images, options):
        typer.echo(f"wrote {target}")


def _effort_levels(text: str) -> tuple[int, ...]:
    """``--efforts 0,2,4`` as levels; EvalOptions checks that each is one (ganrev.invert.EFFORTS), once."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise GanrevError(f"invalid --efforts {text!r}: must be comma-separated effort levels, e.g. 0,2,4") from None
