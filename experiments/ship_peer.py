"""Ship and measure the learned-codec peer (issues 26, 34): CompressAI models trained by ``fit-baseline compressai``.

    python experiments/ship_peer.py runs/peer3/mean-l1.5 runs/peer3/mean-l6 runs/peer3/mean-l30 --generator-core-minutes 290

Each run's ``best/`` (the epoch of lowest validation λ·D + bpp; the test groups play no part) is copied to
``pretrained/baselines/compressai-MODEL-qL``, L = 1, 2, ... in order of λ (the lowest rate first), loaded back
(fingerprints re-checked) and measured with the table's own code (:func:`ganrev.evaluate.evaluate`: real files,
every byte counted, decoded by the codec) on, per vendor, 64 emoji of the test groups (unseen; Google's are
``pretrained/emoji64/heldout``, the table's images) and 64 of the groups trained on (seen), one per base emoji;
OpenMoji, never trained on, is the unseen style. Writes ``experiments/results/compressai_peer.{json,md}`` and a
MODEL_CARD.md beside each model. A run may have been trained in stretches (``--max-minutes``, then ``--resume``):
its config.json counts every epoch and second of them. ``--generator-core-minutes``, the training compute of the
generator the peer is compared with, goes on the cards beside each run's own. A run's config.json names the device of
its last stretch only: ``--trained-on`` says where all the stretches ran (for example "an AMD EPYC and an Intel Xeon in
turn"), for the cards, whose core-minutes then add minutes of different CPUs.
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
from ship_generator import WEIGHT_TERMS, data_licence, vendor_images  # noqa: E402
from vendor_figures import shown  # noqa: E402

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


def command(meta: dict[str, Any], run: Path) -> str:
    """The command that trains the run (each stretch of it: a stretch ends at ``--max-minutes``, the next resumes)."""
    options = meta["training"]["options"]
    return (f"ganrev fit-baseline compressai --model {options['model']} --lmbda {options['lmbda']:g} --loss "
            f"{options['loss']} --lr {options['lr']:g} --data {options['data']} --hidden-channels "
            f"{options['hidden_channels']} --latent-channels {options['latent_channels']} --epochs {options['epochs']}"
            f" --threads {threads(meta)} --out {shown(run)}")


def threads(meta: dict[str, Any]) -> int:
    """The torch threads a run trained on, from its device line (``CPU (model, N threads)``); 1 where not said."""
    device = meta["training"]["device"]
    return int(device.rsplit(", ", 1)[1].split()[0]) if device.startswith("CPU") and ", " in device else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--generator-core-minutes", type=float, default=None,
                        help="the training compute (core-minutes) of the generator the peer is compared with, for "
                        "the cards")
    parser.add_argument("--trained-on", default=None,
                        help="where the runs' stretches ran, when not all on the device their config.json names")
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
                               "generator_core_minutes": args.generator_core_minutes,
                               "trained_on": args.trained_on, "models": []}
    for level, run in enumerate(runs, start=1):
        meta = json.loads((run / "best" / CONFIG_FILE).read_text())
        out = args.out / f"compressai-{meta['net']['model']}-q{level}"
        ship(run, out)
        codec = HyperpriorCodec.load(out)
        trained_on = emoji_vendors(saved_source(meta["dataset"]), fetched_only=False)
        last = json.loads((run / CONFIG_FILE).read_text())["training"]  # the run's end, not its best epoch
        entry = {"name": out.name, "spec": f"compressai-{meta['net']['model']}:{level}", "codec": codec.name,
                 "lmbda": meta["codec"]["lmbda"], "loss": meta["codec"]["loss"], "net": meta["net"],
                 "dataset": meta["dataset"], "trained_on": trained_on, "command": command(meta, run), "run": shown(run),
                 "best_epoch": meta["training"]["best_epoch"],
                 "epochs": last["epochs"], "planned_epochs": last["options"]["epochs"], "wall_s": last["wall_s"],
                 "core_minutes": round(last["wall_s"] / 60 * threads(meta), 1),
                 "train_device": args.trained_on or meta["training"]["device"],
                 "validation": meta["training"]["last_epoch"],
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
        card(args.out / entry["name"], entry, report, args.generator_core_minutes)
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
            "`python experiments/ship_peer.py " + " ".join(entry["run"] for entry in results["models"])
            + (f" --generator-core-minutes {results['generator_core_minutes']:g}"
               if results.get("generator_core_minutes") else "")
            + (f" --trained-on '{results['trained_on']}'" if results.get("trained_on") else "") + "`.\n")


def card(out: Path, entry: dict[str, Any], report: str, generator_core_minutes: float | None) -> None:
    ended = f"{entry['epochs']} of {entry['planned_epochs']} planned epochs"  # stopped by a budget, or by hand
    compared = (f"; the generator it is compared with had {generator_core_minutes:g} core-minutes"
                if generator_core_minutes else "")
    terms = "".join(f"\n\n{WEIGHT_TERMS[vendor]}" for vendor in entry["trained_on"] if vendor in WEIGHT_TERMS)
    text = f"""# Model card: {entry['name']}

- **What**: {entry['codec']}, CompressAI's own network class (Minnen et al. 2018 without the context model for
  `mean`; Ballé et al. 2018 for `hyperprior` and `factorized`), N = {entry['net']['n']}, M = {entry['net']['m']}.
- **Use**: `ganrev table --learned {entry['spec']}` (a default table row for generators whose held-out images
  are of one of its vendors); in Python `ganrev.codecs.hyperprior.HyperpriorCodec.load("pretrained/baselines/{entry['name']}")`.
  Needs `pip install -e ".[compressai]"`.
- **Data**: `{entry['dataset']}`: {data_licence(entry['dataset'])}; 64x64 RGB, alpha composited on white; training
  split by base emoji ({entry['split']['train_images']} images), of which {entry['fit_images']} fitted and
  {entry['validation_images']} (10 % of groups) held back for validation; the test split never seen.
- **Rate**: λ = {entry['lmbda']:g}, loss λ·D + bpp with D = `{entry['loss']}`; each level's λ was picked from short
  runs' validation bpp (real files), never from the test groups.
- **Training**: `{entry['command']}`, in stretches where `--max-minutes` ended one and `--resume` went on;
  {ended}. {entry['wall_s'] / 60:.1f} min on {entry['train_device']}, fp32: {entry['core_minutes']:g}
  core-minutes{compared}. Best validation epoch {entry['best_epoch']} (shipped); validation at that epoch:
  {entry['validation']['val_file_bpp']:.3f} bpp, SSIM {entry['validation']['val_file_ssim']:.4f} (real files).
- **Weights**: safetensors; SHA-256 fingerprints in config.json, checked on every load; every file carries the
  first two bytes, so another model's files are refused.{terms}

## Measured (`python experiments/ship_peer.py`)

{report}"""
    atomic_write_text(out / "MODEL_CARD.md", text)


if __name__ == "__main__":
    raise SystemExit(main())
