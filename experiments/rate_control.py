"""Rate control against the best classical file a user could pick by hand (issue 12's benchmark).

    python experiments/rate_control.py            # writes experiments/results/rate_control.{json,md,png}
                                                  # and rate_control-compressai/ (the curves, CompressAI's layout)
    python experiments/rate_control.py --limit 6 --out /tmp/rate_control   # a quick check: 6 emoji, 6 photos

Image sets: the 64 held-out emoji shipped with the generator (``-g``, default pretrained/emoji64: its heldout/) and 64x64
photo crops from scikit-image's bundled photos (no download). Every engine file is made by the CLI
(``ganrev compress --target-ssim 0.8``, ``0.9``, ``--target-bpp 0.25``), decoded by ``ganrev decompress``, and
the decoded PNG is measured against the original.

The reference (``ganrev.reference``), per image, is the best classical file over WebP lossy (at full size and
shrunk 2x and 4x, enlarged bicubic), WebP lossless, JPEG 4:4:4 and AVIF 4:4:4 (where Pillow writes it), at every
quality (0-100; JPEG 1-100): for an SSIM target the smallest file reaching it, for a size the highest SSIM within
it. These are complete, standard files: their container bytes count, as the .grv file's do.

The curve: the engine (library, one latent search re-used for every point) at a series of --target-bpp on
the held-out emoji, beside JPEG 4:4:4, WebP and AVIF 4:4:4 at fixed qualities and the per-image reference.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data as skdata

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "experiments"))

from ganrev.codecs.gan import GanCodec  # noqa: E402
from ganrev.evaluate import CurvesResult, load_image_folder, write_compressai_results  # noqa: E402
from ganrev.invert import default_search  # noqa: E402
from ganrev.io import load_image  # noqa: E402
from ganrev.metrics import ssim  # noqa: E402
from ganrev.models import load_generator  # noqa: E402
from ganrev.bitstream.ratecontrol import RateTarget, compress_to_targets  # noqa: E402
from ganrev.reference import (  # noqa: E402
    AVIF_FAMILY,
    ClassicalFiles,
    measure_classical,
    reference_bytes,
    reference_curve,
    reference_ssim,
    skipped_families,
)
from vendor_figures import shown  # noqa: E402

DEFAULT_GENERATOR = REPO / "pretrained" / "emoji64"
RESULTS = REPO / "experiments" / "results"
TARGETS = (("--target-ssim", 0.8), ("--target-ssim", 0.9), ("--target-bpp", 0.25))
GOALS = {0.8: 0.5, 0.9: 0.7}  # Done-when: engine bytes <= this x the reference's on held-out emoji
PHOTO_GOAL = 1.05  # ... and on photo crops
BPP_GOAL_MARGIN = 0.25  # mean SSIM at 0.25 bpp >= the reference's within the same bytes + this
CURVE_BPP = (0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.2)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera")
CROPS_PER_PHOTO = 6
MODES = ("latent", "latent+modulation", "latent+residual", "fallback")
CURVE_QUALITIES = (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95)


def photo_crops(folder: Path) -> None:
    """64x64 crops of scikit-image's bundled photos, shrunk 2x first so a crop holds an object, not a texture;
    positions from a fixed seed."""
    rng = np.random.default_rng(12)
    folder.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        photo = Image.fromarray(getattr(skdata, name)())
        photo = photo.resize((photo.width // 2, photo.height // 2), Image.Resampling.LANCZOS)
        for k in range(CROPS_PER_PHOTO):
            left, top = rng.integers(0, photo.width - 64), rng.integers(0, photo.height - 64)
            photo.crop((left, top, left + 64, top + 64)).save(folder / f"{name}-{k}.png")


def spread(folder: Path, limit: int, into: Path) -> Path:
    """A folder of ``limit`` of ``folder``'s images, spread evenly over its sorted names (so that a subset of
    the photo crops takes several photos)."""
    paths = sorted(folder.glob("*.png"))
    count = min(limit, len(paths))
    shutil.rmtree(into, ignore_errors=True)  # a --work folder re-used with another --limit
    into.mkdir(parents=True)
    for index in range(count):
        shutil.copy(paths[index * len(paths) // count], into)
    return into


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def ganrev(*args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run([sys.executable, "-m", "ganrev", *args], capture_output=True, text=True, env=env)
    if done.returncode not in (0, 1):  # 1: a target not met, reported per image in the JSON
        raise SystemExit(f"ganrev {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def run_engine(generator: Path, images_dir: Path, work: Path, flag: str, value: float) -> list[dict]:
    """compress with the CLI, decompress with the CLI, measure each decoded PNG; one row per image."""
    grv, decoded = work / "grv", work / "decoded"
    started = time.perf_counter()
    rows = json.loads(ganrev("compress", str(images_dir), "-o", str(grv), "-g", str(generator), "--json", "--force",
                             flag, str(value)))
    compress_s = time.perf_counter() - started
    ganrev("decompress", *sorted(str(p) for p in grv.glob("*.grv")), "-o", str(decoded), "-g", str(generator),
           "--force")
    for row in rows:
        original = load_image(row["input"])
        output = load_image(decoded / (Path(row["output"]).stem + ".png"))
        row["ssim_decompressed"] = float(ssim(output[None], original[None])[0])
        row["name"] = Path(row["input"]).stem
        row["compress_s_per_image"] = compress_s / len(rows)
        # Published results hold no machine paths: the image is its set and name, the .grv a work file.
        row["input"] = Path(row["input"]).name
        del row["output"]
    return rows


def summarise(rows: list[dict], points: dict[str, ClassicalFiles], flag: str, value: float) -> dict:
    n = len(rows)
    modes = {mode: sum(r["mode"] == mode for r in rows) for mode in MODES}
    out = {"images": n, "modes": modes, "bytes_mean": sum(r["bytes"] for r in rows) / n,
           "bpp_mean": sum(r["bpp"] for r in rows) / n,
           "ssim_mean": sum(r["ssim_decompressed"] for r in rows) / n,
           "compress_s_per_image": rows[0]["compress_s_per_image"]}
    if flag == "--target-ssim":
        reference = [reference_bytes(points[r["name"]], value) for r in rows]
        out |= {"all_reach_target": all(r["ssim_decompressed"] >= value for r in rows),
                "reference_bytes_mean": sum(reference) / n,
                "bytes_ratio": sum(r["bytes"] for r in rows) / sum(reference),
                "images_larger_than_reference": sum(r["bytes"] > ref for r, ref in zip(rows, reference))}
    else:
        budget = int(value * 64 * 64 / 8)
        same = [reference_ssim(points[r["name"]], r["bytes"]) for r in rows]
        within = [reference_ssim(points[r["name"]], budget) for r in rows]
        out |= {"all_within_budget": all(r["bpp"] <= value for r in rows),
                "reference_ssim_same_bytes_mean": sum(same) / n,
                "reference_ssim_within_budget_mean": sum(within) / n,
                "ssim_gain_vs_same_bytes": out["ssim_mean"] - sum(same) / n,
                "ssim_gain_vs_budget": out["ssim_mean"] - sum(within) / n,
                "images_worse_than_reference_within_budget": sum(r["ssim_decompressed"] < w
                                                                 for r, w in zip(rows, within))}
    return out


def engine_curve(generator: Path, images_dir: Path, limit: int | None) -> list[dict]:
    """The engine at each of CURVE_BPP (library: one rate control for all points, one search)."""
    checkpoint = load_generator(generator)
    codec = GanCodec(checkpoint, search=default_search(checkpoint.encoder is not None))
    _, images = load_image_folder(images_dir, limit)
    curve = []
    for bpp, rated in zip(CURVE_BPP, compress_to_targets(codec, images, [RateTarget(bpp=bpp) for bpp in CURVE_BPP])):
        curve.append({"target_bpp": bpp, "bpp": sum(len(r.data) for r in rated) * 8 / (64 * 64 * len(rated)),
                      "ssim": sum(r.ssim for r in rated) / len(rated),
                      "modes": {m: sum(r.mode == m for r in rated) for m in MODES}})
        print(f"curve {bpp} bpp: {curve[-1]}", flush=True)
    return curve


def classical_curves(points: dict[str, ClassicalFiles], names: list[str]) -> dict[str, list[dict]]:
    """Mean bpp and SSIM at fixed qualities per codec (those measured), and the per-image reference at each
    CURVE_BPP."""
    curves: dict[str, list[dict]] = {}
    for family in [f for f in ("JPEG 4:4:4", "WebP", AVIF_FAMILY) if f not in skipped_families()]:
        series = []
        for quality in CURVE_QUALITIES:
            setting = max(quality, 1) if family.startswith("JPEG") else quality  # JPEG qualities start at 1
            chosen = [next(f for f in points[n].files if f.family == family and f.quality == setting)
                      for n in names]
            series.append({"quality": quality, "bpp": sum(f.bytes for f in chosen) * 8 / (4096 * len(names)),
                           "ssim": sum(f.ssim for f in chosen) / len(names)})
        curves[family] = series
    curves["reference (best classical per image)"] = [
        {"target_bpp": p.budget_bpp, "bpp": p.bpp, "ssim": p.ssim}
        for p in reference_curve([points[n] for n in names], CURVE_BPP)]
    return curves


def compressai_curves(engine: list[dict], classical: dict[str, list[dict]], meta: dict) -> CurvesResult:
    """The curves as :func:`ganrev.evaluate.write_compressai_results` takes them, to write one CompressAI
    results file per series (bpp and SSIM, means over the held-out emoji)."""
    series = {"GAN reversal, rate control": ("target_bpp", engine),
              **{name: ("target_bpp" if name.startswith("reference") else "quality", points)
                 for name, points in classical.items()}}
    points = [{"series": name, "parameter": parameter, "value": point[parameter], "bpp": point["bpp"],
               "ssim": point["ssim"]} for name, (parameter, curve) in series.items() for point in curve]
    return CurvesResult(points, {"images": meta["curve_images"], "images_dir": f"{meta['generator']}/heldout",
                                 "device": meta["device"], "generator": {"path": meta["generator"]}})


def plot(engine: list[dict], classical: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, series in classical.items():
        style = "k--" if name.startswith("reference") else "-o"
        ax.plot([p["bpp"] for p in series], [p["ssim"] for p in series], style, label=name, markersize=3)
    ax.plot([p["bpp"] for p in engine], [p["ssim"] for p in engine], "r-s", label="ganrev --target-bpp", linewidth=2)
    ax.set_xscale("log")
    ax.set_xlabel("bits per pixel (every byte of the file)")
    ax.set_ylabel("mean SSIM")
    ax.set_title("Held-out emoji 64x64: rate control vs classical codecs")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def markdown(summary: dict, meta: dict) -> str:
    lines = [f"| images | target | modes ({' / '.join(MODES)}) | mean bytes | mean SSIM | reference | "
             "ratio or gain | goal | met |", "|---|---|---|---:|---:|---:|---:|---|---|"]
    for key, s in summary.items():
        images, flag, value = key.split("|")
        modes = " / ".join(str(s["modes"].get(m, 0)) for m in MODES)
        if flag == "--target-ssim":
            goal = GOALS[float(value)] if images == "emoji" else PHOTO_GOAL
            met = s["all_reach_target"] and s["bytes_ratio"] <= goal
            lines.append(f"| {images} | SSIM >= {value} | {modes} | {s['bytes_mean']:.1f} | {s['ssim_mean']:.4f} | "
                         f"{s['reference_bytes_mean']:.1f} B | {s['bytes_ratio']:.3f}x bytes | <= {goal}x, all reach "
                         f"| {'yes' if met else 'no'} |")
        else:
            gain = s["ssim_gain_vs_same_bytes"]
            met = s["all_within_budget"] and (images != "emoji" or gain >= BPP_GOAL_MARGIN)
            goal = f">= +{BPP_GOAL_MARGIN}, all within" if images == "emoji" else "all within"
            lines.append(f"| {images} | <= {value} bpp | {modes} | {s['bytes_mean']:.1f} | {s['ssim_mean']:.4f} | "
                         f"{s['reference_ssim_same_bytes_mean']:.4f} SSIM (same bytes); "
                         f"{s['reference_ssim_within_budget_mean']:.4f} (within {value} bpp) | {gain:+.4f} SSIM "
                         f"({s['ssim_gain_vs_budget']:+.4f} vs within budget) | {goal} | {'yes' if met else 'no'} |")
    return "\n".join(lines) + f"\n\n{meta['command']}; {meta['device']}; {meta['wall_s']:.0f} s\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-g", "--generator", type=Path, default=DEFAULT_GENERATOR, help="generator checkpoint "
                        "directory; its heldout/ is the emoji set [pretrained/emoji64]")
    parser.add_argument("--out", type=Path, default=RESULTS / "rate_control")
    parser.add_argument("--limit", type=positive, default=None, help="images per set, spread over it, for a quick "
                        "check [all: 64 emoji, 30 photo crops]")
    parser.add_argument("--curve-images", type=positive, default=None, help="held-out emoji on the curve [all]")
    parser.add_argument("--sets", default="emoji,photos", help="comma-separated: emoji (the generator's held-out "
                        "images and the curve), photos (out-of-domain crops) [both]")
    parser.add_argument("--work", type=Path, default=None, help="folder for crops, .grv files and decodes "
                        "[a temporary one]")
    args = parser.parse_args()
    chosen = [name for name in args.sets.split(",") if name]
    if "emoji" not in chosen or set(chosen) - {"emoji", "photos"}:
        parser.error("--sets: emoji, optionally with photos")
    torch.set_num_threads(1)
    started = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="ganrev-rate-control-"))
    sets = {"emoji": args.generator / "heldout", "photos": work / "photo_crops"}
    sets = {name: folder for name, folder in sets.items() if name in chosen}
    if "photos" in sets:
        photo_crops(sets["photos"])
    if args.limit is not None:
        sets = {name: spread(folder, args.limit, work / "subset" / name) for name, folder in sets.items()}
    points: dict[str, ClassicalFiles] = {}
    for name, folder in sets.items():
        for path in sorted(folder.glob("*.png")):
            points[path.stem] = measure_classical(load_image(path))
        print(f"reference measured on {name}", flush=True)
    rows, summary = {}, {}
    for name, folder in sets.items():
        for flag, value in TARGETS:
            key = f"{name}|{flag}|{value}"
            rows[key] = run_engine(args.generator, folder, work / name / f"{flag.strip('-')}-{value}", flag, value)
            summary[key] = summarise(rows[key], points, flag, value)
            print(key, json.dumps(summary[key]), flush=True)
    curve = engine_curve(args.generator, sets["emoji"], args.curve_images)
    emoji_names = [p.stem for p in sorted(sets["emoji"].glob("*.png"))][:args.curve_images]
    classical = classical_curves(points, emoji_names)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot(curve, classical, args.out.with_suffix(".png"))
    generator = shown(args.generator)
    command = "python experiments/rate_control.py" + (
        "" if args.generator.resolve() == DEFAULT_GENERATOR else f" -g {generator}") + (
        f" --limit {args.limit}" if args.limit else "") + (
        "" if "photos" in sets else " --sets emoji") + (
        "" if args.out == RESULTS / "rate_control" else f" --out {shown(args.out)}")
    meta = {"command": command, "generator": generator, "device": f"CPU ({platform.machine()}, "
            f"{torch.get_num_threads()} thread, torch {torch.__version__})", "wall_s": time.perf_counter() - started,
            "photos": list(PHOTOS), "crops_per_photo": CROPS_PER_PHOTO, "limit": args.limit,
            "curve_images": len(emoji_names), "reference_skipped": skipped_families()}
    payload = {"meta": meta, "summary": summary, "curve": {"engine": curve, **classical}, "rows": rows}
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=1))
    args.out.with_suffix(".md").write_text(markdown(summary, meta))
    compressai_dir = args.out.with_name(f"{args.out.name}-compressai")
    write_compressai_results(compressai_curves(curve, classical, meta), compressai_dir)
    print(markdown(summary, meta))


if __name__ == "__main__":
    main()
