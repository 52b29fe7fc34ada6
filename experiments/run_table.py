"""Regenerate the README's results table and rate-distortion curves from scratch.

    python experiments/run_table.py                      # shipped generator, its 64 held-out images
    python experiments/run_table.py --limit 8 --iters 200  # a quick look

Writes into ``--out`` (default experiments/results/): table.json (summary, per-image records, rate
matching, metadata: device, versions, generator fingerprint, settings, time taken), table.md, table.csv,
grid.png (the first --grid-images images as every scheme decoded them), curves.json, curves.png and
curves-compressai/ (one file per series in CompressAI's results-JSON layout). The curves re-use the table's
latent search (it does not depend on bits).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from ganrev.cli import TABLE_GRID_IMAGES  # noqa: E402
from ganrev.pretrained import COMPARE_GENERATORS  # noqa: E402
from ganrev.errors import GanrevError  # noqa: E402
from ganrev.evaluate import (  # noqa: E402
    CURVE_BITS,
    CURVE_JPEG_QUALITIES,
    CURVE_WEBP_QUALITIES,
    EvalOptions,
    plot_curves,
    run_curves,
    run_table,
    write_compressai_results,
    write_curves_json,
    write_table_csv,
    write_table_grid,
    write_table_json,
    write_table_markdown,
)


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--generator", type=Path, default=ROOT / "pretrained" / "emoji64")
    parser.add_argument("--images", type=Path, default=None, help="default: GENERATOR/heldout")
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "results")
    parser.add_argument("--compare", type=Path, nargs="*",
                        default=[ROOT / "pretrained" / name for name in COMPARE_GENERATORS],
                        help="more generators, one row each")
    parser.add_argument("--init", default=None, help="search start (default: compress's, per generator)")
    parser.add_argument("--iters", type=int, default=None, help="latent-search iterations (default: compress's)")
    parser.add_argument("--restarts", type=int, default=None, help="default: compress's")
    parser.add_argument("--bits", type=int, default=None, help="bits per latent coordinate in the table "
                        "[each generator's own, what compress uses]")
    parser.add_argument("--limit", type=int, default=None, help="first N images only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--lpips-weights", type=Path, default=None, help="AlexNet backbone weights for LPIPS")
    parser.add_argument("--bits-list", type=_ints, default=list(CURVE_BITS), help="GAN curve: bits settings")
    parser.add_argument("--jpeg-qualities", type=_ints, default=list(CURVE_JPEG_QUALITIES))
    parser.add_argument("--webp-qualities", type=_ints, default=list(CURVE_WEBP_QUALITIES))
    parser.add_argument("--iters-list", type=_ints, default=[],
                        help="GAN curve over search iterations, e.g. 100,300,1000 (one search each)")
    parser.add_argument("--grid-images", type=int, default=TABLE_GRID_IMAGES,
                        help="images (columns) in grid.png; 0: no grid")
    parser.add_argument("--no-curves", action="store_true", help="table only")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    overrides = tuple((key, value) for key, value in (("init", args.init), ("iters", args.iters),
                                                      ("restarts", args.restarts), ("seed", args.seed))
                      if value is not None)
    try:
        options = EvalOptions(search_overrides=overrides, bits=args.bits, limit=args.limit, seed=args.seed,
                              device=args.device, progress=not args.quiet, lpips_weights=args.lpips_weights,
                              compare=tuple(args.compare), jpeg_qualities=tuple(args.jpeg_qualities),
                              webp_qualities=tuple(args.webp_qualities), bits_list=tuple(args.bits_list),
                              iters_list=tuple(args.iters_list), grid_images=args.grid_images)
        result = run_table(args.generator, args.images, options)
        out = args.out
        write_table_json(result, out / "table.json")
        write_table_markdown(result, out / "table.md")
        write_table_csv(result.records, out / "table.csv")
        print(result.markdown())
        print(result.matched_rate_line())
        written = ["table.json", "table.md", "table.csv"]
        if args.grid_images:
            write_table_grid(result, out / "grid.png")
            written.append("grid.png")
        if not args.no_curves:
            curves = run_curves(args.generator, args.images, options, search=result.search)
            write_curves_json(curves, out / "curves.json")
            plot_curves(curves, out / "curves.png")
            written += ["curves.json", "curves.png"]
            written += [path.relative_to(out).as_posix()
                        for path in write_compressai_results(curves, out / "curves-compressai")]
    except GanrevError as exc:
        print(f"run_table: error: {exc}", file=sys.stderr)
        return 2
    meta = result.metadata
    print(f"\n{meta['images']} images, {meta['device']}, torch {meta['versions']['torch']}; "
          f"table {meta['wall_s']:.0f} s, total {time.perf_counter() - started:.0f} s")
    print(f"wrote {', '.join(written)} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
