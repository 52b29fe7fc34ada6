"""Where the quality and the speed come from: generator objective x search start, seen vs unseen emoji.

    python experiments/ablation_init.py              # ~15 min on 2 CPU cores; needs `ganrev fetch emoji`
    python experiments/ablation_init.py --limit 8    # a quick look

Every row compresses a folder with the `ganrev compress` CLI (`--bits 6`, otherwise that row's options) and
decodes the files with `ganrev decompress`; metrics compare the decoded PNGs with the originals. Rows:
- pure GAN (`pretrained/emoji64-gan`, the seed's method) + pool start (the CLI defaults for a checkpoint
  without an encoder: 4 restarts x <= 1000 iterations);
- reconstruction-trained generator (`pretrained/emoji64`) + pool start, the same search;
- the same generator + encoder start (the CLI defaults: 1 restart x <= 200 iterations at lr 0.3, a row
  stopping after 20 iterations without improvement, no refinement);
- the encoder alone: `--iters 0 --refine-iters 0`, E(x) quantized, no search.
Seconds per image are the CLI's wall time over the folder (model loading included) divided by its images,
for rows run one after the other in this one process on this one machine.

Image sets: `unseen` = the generator's `heldout/` (test groups, never trained on); `seen` = the same number
of training images (one per base emoji, from the part of the training side the generator was fitted on);
`validation` = images from the validation groups carved from the training side, used only for the sweep of
the search after an encoder start that set the CLI defaults (the test images are not used to choose it).
Writes experiments/results/ablation_init.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ganrev.codecs.gan import REFINE_ITERS  # noqa: E402
from ganrev.data import carve_validation, export_one_per_group, open_dataset  # noqa: E402
from ganrev.invert import default_search  # noqa: E402
from ganrev.io import load_image  # noqa: E402
from ganrev.metrics import image_metrics, lpips_status  # noqa: E402
from ganrev.models import load_generator  # noqa: E402

GANREV = [sys.executable, "-m", "ganrev"]


def run_row(generator: Path, images: Path, work: Path, options: list[str]) -> dict:
    """Compress ``images`` with the CLI, decode with the CLI; per-image metrics and the wall time."""
    encoded, decoded = work / "grv", work / "png"
    started = time.perf_counter()
    report = subprocess.run(GANREV + ["compress", str(images), "-o", str(encoded), "-g", str(generator),
                                      "--bits", "6", "--json", *options], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if report.returncode != 0:
        raise SystemExit(f"compress failed: {report.stderr.strip()}")
    records = json.loads(report.stdout)
    files = sorted(encoded.glob("*.grv"))
    decode = subprocess.run(GANREV + ["decompress", *map(str, files), "-o", str(decoded), "-g", str(generator)],
                            capture_output=True, text=True)
    if decode.returncode != 0:
        raise SystemExit(f"decompress failed: {decode.stderr.strip()}")
    per_image = []
    for record in sorted(records, key=lambda r: r["input"]):
        original = load_image(Path(record["input"]))
        grv = Path(record["output"])
        candidates = [p for p in decoded.iterdir() if p.name.startswith(grv.stem + ".")]
        values = image_metrics(original, load_image(candidates[0]))
        per_image.append({"image": Path(record["input"]).name, "bytes": grv.stat().st_size,
                          "bpp": grv.stat().st_size * 8 / (original.shape[1] * original.shape[2]),
                          "iterations": record["iterations"], **{k: values[k] for k in ("ssim", "ms_ssim", "psnr",
                                                                                       "lpips")}})
    return {"images": len(per_image), "seconds_per_image": seconds / len(per_image), "records": per_image,
            **{key: _mean([r[key] for r in per_image]) for key in ("bpp", "bytes", "ssim", "ms_ssim", "psnr",
                                                                    "lpips", "iterations")}}


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _subset(folder: Path, out: Path, limit: int | None) -> Path:
    files = sorted(folder.glob("*.png"))[:limit]
    out.mkdir(parents=True, exist_ok=True)
    for f in files:
        (out / f.name).write_bytes(f.read_bytes())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gan", type=Path, default=ROOT / "pretrained" / "emoji64-gan")
    parser.add_argument("--aegan", type=Path, default=ROOT / "pretrained" / "emoji64")
    parser.add_argument("--unseen", type=Path, default=None, help="unseen images (default: AEGAN/heldout)")
    parser.add_argument("--limit", type=int, default=None, help="first N images of each set")
    parser.add_argument("--sweep", default="0,100:1:0.05:100:50,100:1:0.3:100:50,100:1:0.3:100:0,200:1:0.3:20:0,"
                        "200:1:0.3:20:50,400:1:0.3:20:0,100:2:0.3:20:0,pool",
                        help="validation settings: ITERS[:RESTARTS[:LR[:PATIENCE[:REFINE]]]] after an encoder start "
                        "(omitted fields: compress's defaults for that start), or pool (1000 x 4)")
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "results")
    parser.add_argument("--rows", default="all", help="semicolon-separated row names to run (they hold commas), or all (with --reuse, "
                        "the rest come from an earlier run)")
    parser.add_argument("--reuse", type=Path, nargs="*", default=[], help="earlier ablation JSON files: rows "
                        "measured with the same generator fingerprint and image count are taken from them")
    parser.add_argument("--sweep-from", type=Path, default=None, help="take the validation sweep from an earlier "
                        "ablation JSON made with the same --aegan generator instead of running it")
    args = parser.parse_args(argv)

    count = args.limit or 64
    rows, sweep = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sets = {"unseen": _subset(args.unseen or args.aegan / "heldout", work / "unseen", args.limit)}
        fit, validation_part = carve_validation(open_dataset("emoji:google", "train", resolution=64, channels=3), "emoji")
        assert validation_part is not None
        export_one_per_group(fit, "emoji", work / "seen", count)
        export_one_per_group(validation_part, "emoji", work / "validation", count)
        sets["seen"], validation = work / "seen", work / "validation"

        if args.sweep_from is not None:
            sweep = json.loads(args.sweep_from.read_text())["iters_sweep_validation"]
        for setting in (args.sweep.split(",") if args.sweep and args.sweep_from is None else []):
            if setting == "pool":
                start, given = "pool", []
                search = default_search(True, init="pool", iters=1000, restarts=4)
            else:
                start, given = "encoder", setting.split(":")
                names, kinds = ("iters", "restarts", "lr", "patience"), (int, int, float, int)
                search = default_search(True, **{name: kind(value) for name, kind, value in zip(names, kinds, given)})
            refine = int(given[4]) if len(given) > 4 else REFINE_ITERS[start]
            options = ["--init", start, "--iters", str(search.iters), "--restarts", str(search.restarts),
                       "--lr", str(search.lr), "--patience", str(search.patience), "--refine-iters", str(refine)]
            result = run_row(args.aegan, validation, work / f"sweep-{setting.replace(':', '-')}", options)
            sweep.append({"init": start, "iters": search.iters, "restarts": search.restarts, "lr": search.lr,
                          "patience": search.patience, "refine_iters": refine,
                          **{k: v for k, v in result.items() if k != "records"}})
            print(f"validation, {' '.join(options)}: "
                  f"SSIM {result['ssim']:.4f}, "
                  f"{result['seconds_per_image']:.3f} s/image", flush=True)

        plan = [
            ("pure GAN + pool start", args.gan, [], ("unseen", "seen")),
            ("aegan + pool start", args.aegan, ["--init", "pool", "--iters", "1000", "--restarts", "4"], ("unseen",)),
            ("aegan + encoder start (default)", args.aegan, [], ("unseen", "seen")),
            ("aegan, encoder alone", args.aegan, ["--init", "encoder", "--iters", "0", "--refine-iters", "0"],
             ("unseen", "seen")),
        ]
        earlier = [row for path in args.reuse for row in json.loads(path.read_text())["rows"]]
        for name, generator, options, which in plan:
            if args.rows != "all" and name not in args.rows.split(";"):
                continue
            for image_set in which:
                fingerprint = load_generator(generator).fingerprint
                again = [r for r in earlier if (r["row"], r["images_set"], r.get("fingerprint"), r["images"])
                         == (name, image_set, fingerprint, len(list(sets[image_set].glob("*.png"))))]
                if again:
                    rows.append(again[0])
                    continue
                result = run_row(generator, sets[image_set], work / f"{len(rows)}", options)
                rows.append({"row": name, "generator": generator.name, "fingerprint": fingerprint, "images_set": image_set,
                             "options": " ".join(["--bits", "6", *options]), **result})
                print(f"{name:34} {image_set:7} bpp {result['bpp']:.4f} SSIM {result['ssim']:.4f} "
                      f"{result['seconds_per_image']:.3f} s/image", flush=True)

    by = {(r["row"], r["images_set"]): r for r in rows}
    if args.rows != "all":  # a partial run, to be completed with --reuse: record the rows only
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "ablation_init.partial.json").write_text(json.dumps({"rows": rows, "iters_sweep_validation": sweep},
                                                                        indent=2) + "\n")
        return 0
    pool, default = by[("aegan + pool start", "unseen")], by[("aegan + encoder start (default)", "unseen")]
    speedup = pool["seconds_per_image"] / default["seconds_per_image"]
    cpu = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else cpu
    lpips_ok, lpips_note = lpips_status()
    payload = {
        "rows": [{k: v for k, v in r.items()} for r in rows], "iters_sweep_validation": sweep,
        "speedup_default_vs_pool": speedup, "ssim_default_minus_pool": default["ssim"] - pool["ssim"],
        "metadata": {"device": device, "torch": torch.__version__, "date": datetime.now(timezone.utc).isoformat(),
                     "gan": {"path": "pretrained/" + args.gan.name, "fingerprint": load_generator(args.gan).fingerprint},
                     "aegan": {"path": "pretrained/" + args.aegan.name,
                               "fingerprint": load_generator(args.aegan).fingerprint},
                     "images_per_set": count, "sweep_reused": args.sweep_from is not None,
                     "rows_reused": sum(1 for r in rows if r in earlier) if args.reuse else 0,
                     "lpips": {"available": lpips_ok, "note": lpips_note}},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation_init.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = ["| row | images | bpp | SSIM | MS-SSIM | PSNR | LPIPS | iterations | s/image |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lp = f"{r['lpips']:.4f}" if r["lpips"] is not None else "n/a"
        lines.append(f"| {r['row']} | {r['images_set']} | {r['bpp']:.4f} | {r['ssim']:.4f} | {r['ms_ssim']:.4f} | "
                     f"{r['psnr']:.2f} | {lp} | {r['iterations']:.0f} | {r['seconds_per_image']:.3f} |")
    lines += ["", f"Default (encoder start) vs `--init pool --iters 1000 --restarts 4` on unseen emoji: "
                  f"{speedup:.1f}x faster per image, SSIM {default['ssim'] - pool['ssim']:+.4f}.", "",
              "Validation sweep of the search after an encoder start, and the pool start for reference "
              "(validation groups of the training side):", "",
              "| --init | --iters | --restarts | --lr | --patience | --refine-iters | SSIM | bpp | iterations | "
              "s/image |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    # Sweeps recorded before these columns existed (--sweep-from) ran at lr 0.05, patience 100 and 50 refinement
    # steps, except the encoder-alone row (--refine-iters 0).
    lines += [f"| {s['init']} | {s['iters']} | {s['restarts']} | {s.get('lr', 0.05)} | {s.get('patience', 100)} | "
              f"{s.get('refine_iters', 0 if s['iters'] == 0 else 50)} | {s['ssim']:.4f} | {s['bpp']:.4f} | "
              f"{s['iterations']:.0f} | {s['seconds_per_image']:.3f} |" for s in sweep]
    lines += ["", f"{count} images per set; {device}; torch {torch.__version__}; `--bits 6`; "
                  "made by `python experiments/ablation_init.py`."]
    (args.out / "ablation_init.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
