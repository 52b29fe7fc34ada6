"""Choose, ship and measure the seeds' learned baselines (issue 11): ARCNN-ASPP per JPEG quality, ComCNN/RecCNN.

    python experiments/ship_baselines.py            # runs/baselines/* -> pretrained/baselines/*, results, cards

Expects the training runs of README's "Learned baselines" section under ``--runs``:
``arcnn-q{Q}-{ssim,l2}`` (``ganrev fit-baseline arcnn --quality Q [--loss l2]``), ``arcnn-blind`` (several
qualities) and ``comcnn``.

1. Choose: for each JPEG quality the ARCNN whose *validation* SSIM (best epoch, groups carved from the training
   side) is higher, SSIM-loss or MSE-loss; the test images play no part in the choice.
2. Ship: copy the chosen run's ``best/`` (nets + config.json, fingerprints re-checked by loading) to
   ``pretrained/baselines/arcnn-q{Q}``, ``arcnn-blind`` and ``comcnn``, each with a MODEL_CARD.md.
3. Measure, on the table's held-out emoji (pretrained/emoji64/heldout, never trained on) and on as many emoji
   the nets were trained on (seen): every ARCNN run (both losses) against plain JPEG at its quality, the blind
   ARCNN at each of its qualities, and
   ComCNN/RecCNN at each trained quality against JPEG's rate-SSIM curve interpolated (linear in log bpp) at
   ComCNN's own bpp, and against plain "2x2 average, JPEG, bicubic up" at the same quality. Writes
   ``experiments/results/learned_baselines.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ganrev.codecs.classical import JPEGCodec
from ganrev.codecs.learned import ArcnnCodec, ComCnnCodec
from ganrev.data import carve_validation, open_dataset
from ganrev.evaluate import CURVE_JPEG_QUALITIES, evaluate, load_image_folder, summarise
from ganrev.io import atomic_write_text, to_uint8
from ganrev.nets.checkpoint import CONFIG_FILE, save_baseline
from ganrev.nets.comcnn import ARCHITECTURE as COMCNN_ARCHITECTURE
from ganrev.nets.comcnn import ComCNN, ComCnnConfig, RecCNN

ROOT = Path(__file__).resolve().parent.parent
QUALITIES = (10, 1)
LOSS_LABEL = {"ssim+l1": "SSIM loss (0.84 (1-SSIM) + 0.16 L1)", "l2": "MSE loss (the seed's)"}


def save_untrained_comcnn(work: Path, qualities: list[int]) -> None:
    """Untrained ComCNN/RecCNN nets in ``work``: exactly plain "2x2 average, JPEG, bicubic up" with the same
    odd-size byte (their last layers start at zero; tests/test_learned_codecs.py checks it), the pipeline
    ComCNN/RecCNN is compared with."""
    config = ComCnnConfig()
    save_baseline(work, COMCNN_ARCHITECTURE, asdict(config), {"comcnn": ComCNN(config), "reccnn": RecCNN(config)},
                  {"codec": {"name": "jpeg", "qualities": qualities}})


def downscaled_jpeg(untrained: Path, quality: int) -> ComCnnCodec:
    codec = ComCnnCodec(untrained, quality)
    codec.name = f"JPEG q{quality} of the 2x-downscaled image, bicubic up"
    return codec


def _best_record(run: Path) -> dict[str, Any]:
    meta = json.loads((run / "best" / CONFIG_FILE).read_text())
    return meta["training"]["last_epoch"] | {"best_epoch": meta["training"]["best_epoch"],
                                            "epochs": json.loads((run / CONFIG_FILE).read_text())["training"]["epochs"]}


def _command(run: Path) -> str:
    options = json.loads((run / CONFIG_FILE).read_text())["training"]["options"]
    quality = ",".join(map(str, options["qualities"]))
    return (f"ganrev fit-baseline {options['model']} --quality {quality} --loss {options['loss']} "
            f"--epochs {options['epochs']} --out runs/baselines/{run.name}")


def _row(codec: Any, names: list[str], images: list[torch.Tensor]) -> dict[str, Any]:
    (row,) = summarise(evaluate(images, [codec], names=names))
    return {key: row[key] for key in ("scheme", "images", "bytes", "bpp", "ssim", "ms_ssim", "psnr", "lpips",
                                      "encode_s", "decode_s")}


def _seen_images(count: int) -> tuple[list[str], list[torch.Tensor]]:
    """The first ``count`` emoji of the fit split (the images training stepped on), as the table loads images:
    8-bit RGB."""
    fit, _ = carve_validation(open_dataset("emoji:google", "train"), "emoji")
    images = [torch.from_numpy(to_uint8(fit[i])).permute(2, 0, 1).float() / 255 for i in range(count)]
    return [f"fit{i:04d}" for i in range(count)], images


def _interpolate(curve: list[tuple[float, float]], bpp: float) -> float | None:
    """SSIM of a rate-SSIM curve at ``bpp``, linear in log bpp between its neighbours; None outside the curve."""
    points = sorted(curve)
    for (b0, s0), (b1, s1) in zip(points, points[1:]):
        if b0 <= bpp <= b1:
            t = (math.log(bpp) - math.log(b0)) / (math.log(b1) - math.log(b0)) if b1 > b0 else 0.0
            return s0 + t * (s1 - s0)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "baselines")
    parser.add_argument("--out", type=Path, default=ROOT / "pretrained" / "baselines")
    parser.add_argument("--images", type=Path, default=ROOT / "pretrained" / "emoji64" / "heldout")
    parser.add_argument("--results", type=Path, default=ROOT / "experiments" / "results" / "learned_baselines")
    parser.add_argument("--seen", type=int, default=64, help="emoji from the training side to measure as 'seen'")
    args = parser.parse_args()
    started = time.perf_counter()
    names, images = load_image_folder(args.images)
    sets = {"unseen": (names, images), "seen": _seen_images(args.seen)}
    results: dict[str, Any] = {"images": {"unseen": f"{len(images)} held-out emoji (pretrained/emoji64/heldout)",
                                          "seen": f"the first {args.seen} emoji of the training split's fit part"},
                               "arcnn": {}, "comcnn": {}}

    for quality in QUALITIES:
        runs = [args.runs / f"arcnn-q{quality}-{loss}" for loss in ("ssim", "l2")]
        runs = [run for run in runs if (run / "best" / CONFIG_FILE).is_file()]
        if not runs:
            sys.exit(f"no ARCNN run for JPEG {quality} under {args.runs}")
        entry: dict[str, Any] = {"plain": {s: _row(JPEGCodec(quality), *sets[s]) for s in sets}, "runs": {}}
        for run in runs:
            codec = ArcnnCodec(run / "best")
            loss = json.loads((run / CONFIG_FILE).read_text())["training"]["options"]["loss"]
            entry["runs"][run.name] = {"loss": loss, "command": _command(run), "validation": _best_record(run),
                                       **{s: _row(codec, *sets[s]) for s in sets}}
        chosen = max(entry["runs"], key=lambda name: entry["runs"][name]["validation"]["val_ssim"])
        entry["shipped"] = chosen
        _ship(args.runs / chosen / "best", args.out / f"arcnn-q{quality}")
        results["arcnn"][str(quality)] = entry
        print(f"JPEG {quality}: shipped {chosen}", flush=True)

    blind = args.runs / "arcnn-blind"
    _ship(blind / "best", args.out / "arcnn-blind")
    results["arcnn_blind"] = {"command": _command(blind), "validation": _best_record(blind), "points": []}
    for quality in json.loads((blind / CONFIG_FILE).read_text())["codec"]["qualities"]:
        codec = ArcnnCodec(args.out / "arcnn-blind", quality)
        results["arcnn_blind"]["points"].append({"quality": quality, **{
            s: {"plain": _row(JPEGCodec(quality), *sets[s]), "arcnn": _row(codec, *sets[s])} for s in sets}})
    print("shipped arcnn-blind", flush=True)

    run = args.runs / "comcnn"
    _ship(run / "best", args.out / "comcnn")
    qualities = json.loads((run / CONFIG_FILE).read_text())["codec"]["qualities"]
    curve_qualities = sorted(set(CURVE_JPEG_QUALITIES) | {90, 95, 100})
    untrained = Path(tempfile.mkdtemp(prefix="ganrev-untrained-comcnn-"))
    save_untrained_comcnn(untrained, qualities)
    for s in sets:
        jpeg_curve = [_row(JPEGCodec(q), *sets[s]) for q in curve_qualities]
        points = []
        for quality in qualities:
            row = _row(ComCnnCodec(args.out / "comcnn", quality), *sets[s])
            plain = _row(downscaled_jpeg(untrained, quality), *sets[s])
            at_rate = _interpolate([(r["bpp"], r["ssim"]) for r in jpeg_curve], row["bpp"])
            smallest = min(jpeg_curve, key=lambda r: r["bpp"])
            # Below JPEG's smallest file the curve has no point: there ComCNN is above it when it beats that file's
            # SSIM with fewer bytes.
            below_curve = at_rate is None and row["bpp"] < smallest["bpp"]
            points.append({"quality": quality, "comcnn": row, "downscaled_jpeg": plain, "jpeg_ssim_at_rate": at_rate,
                           "smaller_than_any_jpeg": below_curve,
                           "above_jpeg": row["ssim"] > (smallest["ssim"] if below_curve else (at_rate or math.inf))})
        results["comcnn"][s] = {"points": points, "jpeg_curve": jpeg_curve}
    shutil.rmtree(untrained)
    results["comcnn"]["command"] = _command(run)
    results["comcnn"]["validation"] = _best_record(run)
    threads = torch.get_num_threads()
    results["device"] = f"CPU ({platform.machine()}, {threads} thread{'s' if threads > 1 else ''})"
    results["torch"] = torch.__version__
    results["wall_s"] = round(time.perf_counter() - started, 1)

    args.results.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.results.with_suffix(".json"), json.dumps(results, indent=2) + "\n")
    report = _markdown(results)
    atomic_write_text(args.results.with_suffix(".md"), report)
    for quality in QUALITIES:
        _card(args.out / f"arcnn-q{quality}", results, report_section=_arcnn_section(results, str(quality)))
    _card(args.out / "arcnn-blind", results, report_section=_blind_section(results))
    _card(args.out / "comcnn", results, report_section=_comcnn_section(results))
    print(report)


def _ship(best: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for path in out.glob("*.safetensors"):
        path.unlink()
    for path in best.iterdir():
        if path.suffix in (".safetensors", ".json"):
            shutil.copyfile(path, out / path.name)


def _f(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _arcnn_section(results: dict[str, Any], quality: str) -> str:
    entry = results["arcnn"][quality]
    lines = [f"### JPEG ({quality}%) + ARCNN-ASPP", "",
             "| model | loss | validation SSIM (best epoch / epochs) | unseen bytes | unseen SSIM | unseen PSNR | "
             "seen SSIM |", "|---|---|---|---|---|---|---|"]
    plain = entry["plain"]
    lines.append(f"| plain JPEG ({quality}%) | - | {_f(next(iter(entry['runs'].values()))['validation']['val_ssim_plain'])} "
                 f"| {plain['unseen']['bytes']:.1f} | {_f(plain['unseen']['ssim'])} | {_f(plain['unseen']['psnr'], 2)} "
                 f"| {_f(plain['seen']['ssim'])} |")
    for name, run in entry["runs"].items():
        shipped = " (shipped)" if name == entry["shipped"] else ""
        v = run["validation"]
        lines.append(f"| `{name}`{shipped} | {LOSS_LABEL.get(run['loss'], run['loss'])} | {_f(v['val_ssim'])} "
                     f"({v['best_epoch']} / {v['epochs']}) | {run['unseen']['bytes']:.1f} | {_f(run['unseen']['ssim'])} "
                     f"| {_f(run['unseen']['psnr'], 2)} | {_f(run['seen']['ssim'])} |")
    return "\n".join(lines) + "\n"


def _blind_section(results: dict[str, Any]) -> str:
    lines = ["### JPEG + ARCNN-ASPP blind (one model for every quality below)", "",
             "| JPEG quality | bytes | plain JPEG SSIM | + blind ARCNN SSIM | gain | seen: plain / ARCNN |",
             "|---|---|---|---|---|---|"]
    for point in results["arcnn_blind"]["points"]:
        unseen, seen = point["unseen"], point["seen"]
        lines.append(f"| {point['quality']} | {unseen['plain']['bytes']:.1f} | {_f(unseen['plain']['ssim'])} | "
                     f"{_f(unseen['arcnn']['ssim'])} | {unseen['arcnn']['ssim'] - unseen['plain']['ssim']:+.4f} | "
                     f"{_f(seen['plain']['ssim'])} / {_f(seen['arcnn']['ssim'])} |")
    return "\n".join(lines) + "\n"


def _comcnn_section(results: dict[str, Any]) -> str:
    lines = ["### ComCNN/RecCNN", "",
             "| JPEG quality of the compact image | unseen bytes | bpp | unseen SSIM | JPEG's SSIM at that bpp "
             "(interpolated) | plain downscaled JPEG: bytes / SSIM | seen SSIM |", "|---|---|---|---|---|---|---|"]
    seen = {p["quality"]: p for p in results["comcnn"]["seen"]["points"]}
    smallest = min(results["comcnn"]["unseen"]["jpeg_curve"], key=lambda r: r["bpp"])
    for point in results["comcnn"]["unseen"]["points"]:
        row, plain = point["comcnn"], point["downscaled_jpeg"]
        verdict = "above" if point["above_jpeg"] else "**below**"
        jpeg = (f"none this small: the smallest JPEG is {smallest['bytes']:.1f} B at {_f(smallest['ssim'])}"
                if point["smaller_than_any_jpeg"] else _f(point["jpeg_ssim_at_rate"]))
        lines.append(f"| {point['quality']} | {row['bytes']:.1f} | {row['bpp']:.3f} | {_f(row['ssim'])} | "
                     f"{jpeg} ({verdict}) | {plain['bytes']:.1f} / {_f(plain['ssim'])} | "
                     f"{_f(seen[point['quality']]['comcnn']['ssim'])} |")
    return "\n".join(lines) + "\n"


def _markdown(results: dict[str, Any]) -> str:
    parts = ["# Learned baselines on emoji (issue 11)", "",
             f"Regenerate: `python experiments/ship_baselines.py` (after the trainings in README). Device: "
             f"{results['device']}, torch {results['torch']}. Unseen: {results['images']['unseen']}; seen: "
             f"{results['images']['seen']}. Bytes are whole files (JPEG headers count); SSIM as in `ganrev table`.",
             ""]
    for quality in results["arcnn"]:
        parts.append(_arcnn_section(results, quality))
    parts.append(_blind_section(results))
    parts.append(_comcnn_section(results))
    return "\n".join(parts)


def _card(out: Path, results: dict[str, Any], report_section: str) -> None:
    meta = json.loads((out / CONFIG_FILE).read_text())
    training = meta["training"]
    name = out.name
    if name in ("comcnn", "arcnn-blind"):
        run = results[name.replace("-", "_")]
    else:
        entry = results["arcnn"][name.removeprefix("arcnn-q")]
        run = entry["runs"][entry["shipped"]]
    what = {"comcnn": "ComCNN (compact half-size image, stored as JPEG) + RecCNN (restores the bicubic-upscaled "
                      "decode), seed 003 / Jiang et al. 2017",
            "arcnn-blind": "AR-CNN + ASPP restoring JPEG decodes at any of its qualities (one blind model), seed "
                           "004"}.get(name, f"AR-CNN + ASPP restoring JPEG ({meta['codec']['qualities'][0]}%) "
                                        "decodes, seed 004")
    spec = {"comcnn": "comcnn:Q", "arcnn-blind": "arcnn-blind:Q"}.get(name, "arcnn:" + name.removeprefix("arcnn-q"))
    text = f"""# Model card: {name}

- **What**: {what}. Architecture `{meta['architecture']}`, config `{json.dumps(meta['net'])}`.
- **Use**: `ganrev table --learned {spec}` (the table's default rows are `arcnn:10`, `arcnn:1` and `comcnn:10`);
  in Python `ganrev.codecs.learned.{'ComCnnCodec' if name == 'comcnn' else 'ArcnnCodec'}("pretrained/baselines/{name}"{', 10' if name in ('comcnn', 'arcnn-blind') else ''})`.
- **Data**: emoji (npm `emoji-datasource-google` 16.0.0, Apache-2.0), 64x64 RGB, alpha composited on white;
  training split by base emoji ({meta['split']['train_images']} images), of which {training['fit_images']} fitted
  and {training['validation_images']} (10 % of groups) held back for validation; the test split never seen.
- **Codec**: JPEG 4:2:0 (libjpeg via Pillow, optimized Huffman tables) at qualities {meta['codec']['qualities']}.
- **Training**: `{run['command']}`; {training['epochs']} epochs, best validation epoch {training['best_epoch']}
  (shipped), {training['wall_s'] / 60:.1f} min on {training['device']} (a shared 2-core machine running 2-3 jobs at once),
  torch {training['torch']}.
- **Weights**: safetensors; SHA-256 fingerprints in config.json, checked on every load.

## Measured (`python experiments/ship_baselines.py`)

{report_section}
"""
    atomic_write_text(out / "MODEL_CARD.md", text)


if __name__ == "__main__":
    main()
