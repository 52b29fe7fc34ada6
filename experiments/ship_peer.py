"""Ship and measure the learned-codec peer (issue 26): CompressAI models trained by ``fit-baseline compressai``.

    python experiments/ship_peer.py runs/peer/mean-l0.5 runs/peer/mean-l2 runs/peer/mean-l8

Each run's ``best/`` (the epoch of lowest validation λ·D + bpp; the test groups play no part) is copied to
``pretrained/baselines/compressai-MODEL-qL``, L = 1, 2, ... in order of λ (the lowest rate first), loaded back
(fingerprints re-checked) and measured with the table's own code (:func:`ganrev.evaluate.evaluate`: real files,
every byte counted, decoded by the codec) on, per vendor, 64 emoji of the test groups (unseen; Google's are
``pretrained/emoji64/heldout``, the table's images) and 64 of the groups trained on (seen), one per base emoji;
OpenMoji, never trained on, is the unseen style. Writes ``experiments/results/compressai_peer.{json,md}`` and a
MODEL_CARD.md beside each model.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from ganrev.codecs.hyperprior import HyperpriorCodec  # noqa: E402
from ganrev.data import emoji_vendors, saved_source  # noqa: E402
from ganrev.evaluate import evaluate, load_image_folder, summarise  # noqa: E402
from ganrev.io import atomic_write_text  # noqa: E402
from ganrev.nets.checkpoint import CONFIG_FILE  # noqa: E402
from ganrev.training.common import cpu_model  # noqa: E402
from ship_generator import vendor_images  # noqa: E402

HELDOUT = ROOT / "pretrained" / "emoji64" / "heldout"
FIELDS = ("bytes", "bpp", "ssim", "ms_ssim", "psnr", "encode_s", "decode_s")


def image_sets(count: int) -> dict[tuple[str, str], tuple[list[str], list[torch.Tensor]]]:
    """(vendor, seen/unseen) -> names and images; Google's unseen set is the table's held-out folder."""
    sets = {}
    for vendor in emoji_vendors("emoji"):
        for which, split in (("unseen", "test"), ("seen", "seen")):
            if vendor == "google" and which == "unseen":
                sets[(vendor, which)] = load_image_folder(HELDOUT, count)
                continue
            batch = vendor_images(vendor, split, count)
            sets[(vendor, which)] = ([f"{vendor}{i:03d}" for i in range(len(batch))], list(batch))
    return sets


def measure(codec: HyperpriorCodec, names: list[str], images: list[torch.Tensor]) -> dict[str, Any]:
    threads = torch.get_num_threads()
    (row,) = summarise(evaluate(images, [codec], names=names))
    return {"images": len(images), "threads": threads, **{key: row[key] for key in FIELDS}}


def ship(run: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for path in out.glob("*.safetensors"):
        path.unlink()
    for path in (run / "best").iterdir():
        if path.suffix in (".safetensors", ".json"):
            shutil.copyfile(path, out / path.name)


def command(meta: dict[str, Any], run: Path, max_minutes: float | None) -> str:
    options = meta["training"]["options"]
    budget = f" --max-minutes {max_minutes:g}" if max_minutes is not None else ""
    return (f"ganrev fit-baseline compressai --model {options['model']} --lmbda {options['lmbda']:g} --loss "
            f"{options['loss']} --lr {options['lr']:g} --data {options['data']} --hidden-channels "
            f"{options['hidden_channels']} --latent-channels {options['latent_channels']} --epochs {options['epochs']}"
            f"{budget} --threads 1 --out runs/peer/{run.name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="the time budget the runs were trained with, for the cards' commands")
    parser.add_argument("--out", type=Path, default=ROOT / "pretrained" / "baselines")
    parser.add_argument("--results", type=Path, default=ROOT / "experiments" / "results" / "compressai_peer")
    args = parser.parse_args(argv)
    runs = sorted(args.runs, key=lambda run: json.loads((run / CONFIG_FILE).read_text())["codec"]["lmbda"])
    models = {json.loads((run / CONFIG_FILE).read_text())["net"]["model"] for run in runs}
    if len(models) != 1:
        parser.error(f"give runs of one model (levels are numbered per model), got {sorted(models)}")
    started = time.perf_counter()
    sets = image_sets(args.count)
    results: dict[str, Any] = {"device": f"CPU ({cpu_model()}, {torch.get_num_threads()} threads)",
                               "torch": torch.__version__, "images_per_set": args.count,
                               "max_minutes": args.max_minutes, "models": []}
    for level, run in enumerate(runs, start=1):
        meta = json.loads((run / "best" / CONFIG_FILE).read_text())
        out = args.out / f"compressai-{meta['net']['model']}-q{level}"
        ship(run, out)
        codec = HyperpriorCodec.load(out)
        trained_on = emoji_vendors(saved_source(meta["dataset"]), fetched_only=False)
        entry = {"name": out.name, "spec": f"compressai-{meta['net']['model']}:{level}", "codec": codec.name,
                 "lmbda": meta["codec"]["lmbda"], "loss": meta["codec"]["loss"], "net": meta["net"],
                 "dataset": meta["dataset"], "trained_on": trained_on, "command": command(meta, run, args.max_minutes),
                 "best_epoch": meta["training"]["best_epoch"],
                 "epochs": json.loads((run / CONFIG_FILE).read_text())["training"]["epochs"],
                 "wall_s": json.loads((run / CONFIG_FILE).read_text())["training"]["wall_s"],
                 "train_device": meta["training"]["device"], "validation": meta["training"]["last_epoch"],
                 "split": meta["split"], "fit_images": meta["training"]["fit_images"],
                 "validation_images": meta["training"]["validation_images"],
                 "sets": {f"{vendor}/{which}": measure(codec, *images) for (vendor, which), images in sets.items()}}
        results["models"].append(entry)
        print(f"shipped {out.name}: λ={entry['lmbda']:g}, google unseen {entry['sets']['google/unseen']['bpp']:.3f} "
              f"bpp, SSIM {entry['sets']['google/unseen']['ssim']:.4f}", flush=True)
    results["wall_s"] = round(time.perf_counter() - started, 1)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.results.with_suffix(".json"), json.dumps(results, indent=2) + "\n")
    report = markdown(results)
    atomic_write_text(args.results.with_suffix(".md"), report)
    for entry in results["models"]:
        card(args.out / entry["name"], entry, report)
    print(report)
    return 0


def markdown(results: dict[str, Any]) -> str:
    lines = ["| model | λ | vendor | set | bytes | bpp | SSIM | PSNR | encode ms | decode ms |",
             "|---|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for entry in results["models"]:
        for key, row in entry["sets"].items():
            vendor, which = key.split("/")
            style = "" if vendor in entry["trained_on"] else " (style never trained on)"
            lines.append(f"| `{entry['name']}` | {entry['lmbda']:g} | {vendor}{style} | {which} | {row['bytes']:.1f} | "
                         f"{row['bpp']:.3f} | {row['ssim']:.4f} | {row['psnr']:.2f} | {row['encode_s'] * 1e3:.1f} | "
                         f"{row['decode_s'] * 1e3:.1f} |")
    return ("\n".join(lines) + f"\n\n{results['images_per_set']} images per vendor and set, one per base emoji; "
            f"unseen: test groups, seen: groups trained on; {results['device']}; torch {results['torch']}; made by "
            "`python experiments/ship_peer.py " + " ".join(f"runs/peer/{e['command'].split('runs/peer/')[1]}"
                                                            for e in results["models"])
            + (f" --max-minutes {results['max_minutes']:g}" if results.get("max_minutes") else "") + "`.\n")


def card(out: Path, entry: dict[str, Any], report: str) -> None:
    text = f"""# Model card: {entry['name']}

- **What**: {entry['codec']}, CompressAI's own network class (Minnen et al. 2018 without the context model for
  `mean`; Ballé et al. 2018 for `hyperprior` and `factorized`), N = {entry['net']['n']}, M = {entry['net']['m']}.
- **Use**: `ganrev table --learned {entry['spec']}` (a default table row for generators whose held-out images
  are of one of its vendors); in Python `ganrev.codecs.hyperprior.HyperpriorCodec.load("pretrained/baselines/{entry['name']}")`.
  Needs `pip install -e ".[compressai]"`.
- **Data**: `{entry['dataset']}` ({', '.join(entry['trained_on'])}; Noto emoji from npm `emoji-datasource-google`
  16.0.0, Apache-2.0; Twemoji from `emoji-datasource-twitter` 16.0.0, CC-BY-4.0), 64x64 RGB, alpha composited on
  white; training split by base emoji ({entry['split']['train_images']} images), of which {entry['fit_images']}
  fitted and {entry['validation_images']} (10 % of groups) held back for validation; the test split never seen.
- **Rate**: λ = {entry['lmbda']:g}, loss λ·D + bpp with D = `{entry['loss']}`; the three λ were picked to span
  about 0.1-0.9 bpp from short runs' validation bpp (real files), never from the test groups.
- **Training**: `{entry['command']}` (three runs at once on 2 cores); {entry['epochs']} epochs (the time budget
  ended it), best validation epoch {entry['best_epoch']}
  (shipped), {entry['wall_s'] / 60:.1f} min on {entry['train_device']}, fp32. Validation at that epoch:
  {entry['validation']['val_file_bpp']:.3f} bpp, SSIM {entry['validation']['val_file_ssim']:.4f} (real files).
- **Weights**: safetensors; SHA-256 fingerprints in config.json, checked on every load; every file carries the
  first two bytes, so another model's files are refused.

## Measured (`python experiments/ship_peer.py`)

{report}"""
    atomic_write_text(out / "MODEL_CARD.md", text)


if __name__ == "__main__":
    raise SystemExit(main())
