"""The `ganrev compress --effort` levels measured: SSIM, bytes and encoding time of each on the same images.

    python experiments/effort.py [-g pretrained/emoji64] [--count 48] [--threads 2] [--precisions fp32,bf16]
                                 [--efforts 0,4] [--images heldout|validation] [--out DIR]

Images: ``--images heldout`` (the default, for published figures): the first ``--count`` of the generator's heldout/
(sorted by name; for emoji64, Google's renderings of test groups: never trained on); ``--images validation`` (what
chooses defaults, such as which CPUs search in bf16): ``--count`` validation emoji (groups carved from the training
side, one per base emoji) of each vendor the generator was trained on. Every level of :data:`ganrev.invert.EFFORTS`
(or of ``--efforts``) runs in this one process, on the same images with the same ``--threads`` torch threads on the
CPU, as ``ganrev compress --effort N`` runs it (the generator's own bits). Per level: the mean SSIM of the decoded
files against the originals, the mean bytes per file, the encoding seconds per image of one batched
``GanCodec.compress`` call on all the images (timed after a warm-up call on 2 of them, so that no level pays
first-call costs; wall time, and this process's CPU time, which a busy neighbour on another core does not inflate),
and the image-iterations its search ran (generator passes, the unit of experiments/bench_invert.py). With
``--precisions fp32,bf16`` every level runs in each precision of the search's generator (``compress --precision``),
side by side in the same process. Writes OUT/effort.{json,md} [experiments/results/effort] with the device and the
command that made them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from ganrev.codecs.gan import GanCodec  # noqa: E402
from ganrev.evaluate.runs import HELDOUT_DIR, load_image_folder  # noqa: E402
from ganrev.invert import (  # noqa: E402
    DEFAULT_EFFORT,
    EFFORTS,
    SEARCH_PRECISIONS,
    default_search,
    resolve_search_precision,
)
from ganrev.io import atomic_write_text  # noqa: E402
from ganrev.metrics import ssim  # noqa: E402
from ganrev.models import GeneratorCheckpoint, load_generator  # noqa: E402
from ganrev.training.common import cpu_model  # noqa: E402
from ship_generator import trained_vendors, vendor_images  # noqa: E402
from vendor_figures import shown  # noqa: E402

WARM_UP_IMAGES = 2
DEFAULT_OUT = ROOT / "experiments" / "results" / "effort"


def measure_level(codec: GanCodec, images: list[torch.Tensor]) -> dict[str, float]:
    """SSIM of the decoded files, bytes, encoding seconds per image and image-iterations of one batched compress."""
    codec.compress(images[:WARM_UP_IMAGES])
    started, cpu_started = time.perf_counter(), time.process_time()
    results = codec.compress(images)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    scores = [float(ssim(codec.decode(result.data)[None], image[None])[0]) for result, image in zip(results, images)]
    n = len(images)
    return {"ssim": sum(scores) / n, "bytes": sum(len(result.data) for result in results) / n,
            "bpp": sum(len(r.data) * 8 / (image.shape[1] * image.shape[2]) for r, image in zip(results, images)) / n,
            "encode_s_per_image": seconds / n, "encode_cpu_s_per_image": cpu_seconds / n,
            "image_iterations": sum(result.iterations for result in results)}


def image_set(checkpoint: GeneratorCheckpoint, args: argparse.Namespace) -> tuple[list[str], list[torch.Tensor]]:
    """Names and images of ``--images``: the generator's held-out folder, or validation emoji of its vendors."""
    if args.images == "heldout":
        return load_image_folder(args.generator / HELDOUT_DIR, args.count)
    names, images = [], []
    for vendor in trained_vendors(checkpoint.metadata):
        batch = vendor_images(vendor, "validation", args.count)
        names += [f"{vendor}-validation{i:03d}" for i in range(len(batch))]
        images += list(batch)
    return names, images


def markdown(rows: list[dict]) -> list[str]:
    lines = ["| effort | precision | iterations, patience, restarts | SSIM | bytes | bpp | encode s/image | "
             "CPU s/image | image-iterations |", "|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        search = row["search"]
        level = f"{row['effort']}" + (" (default)" if row["effort"] == DEFAULT_EFFORT else "")
        lines.append(f"| {level} | {row['precision']} | {search['iters']}, {search['patience']}, "
                     f"{search['restarts']} | {row['ssim']:.4f} | {row['bytes']:.1f} | {row['bpp']:.4f} | "
                     f"{row['encode_s_per_image']:.4f} | {row['encode_cpu_s_per_image']:.4f} | "
                     f"{row['image_iterations']} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-g", "--generator", type=Path, default=ROOT / "pretrained" / "emoji64")
    parser.add_argument("--count", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", default="auto", help=f"comma-separated, of {', '.join(SEARCH_PRECISIONS)} "
                        "[auto: what compress uses on this machine]")
    parser.add_argument("--efforts", default=",".join(map(str, sorted(EFFORTS))),
                        help="comma-separated levels [all]")
    parser.add_argument("--images", choices=("heldout", "validation"), default="heldout")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    precisions = [p for p in args.precisions.split(",") if p]
    if not precisions or set(precisions) - set(SEARCH_PRECISIONS):
        parser.error(f"--precisions: comma-separated names of {', '.join(SEARCH_PRECISIONS)}")
    try:
        efforts = sorted({int(level) for level in args.efforts.split(",") if level})
    except ValueError:
        efforts = []
    if not efforts or set(efforts) - set(EFFORTS):
        parser.error(f"--efforts: comma-separated levels of {', '.join(map(str, sorted(EFFORTS)))}")
    torch.set_num_threads(args.threads)
    checkpoint = load_generator(args.generator)
    names, images = image_set(checkpoint, args)
    rows = []
    for effort in efforts:
        for precision in precisions:
            search = default_search(checkpoint.encoder is not None, effort=effort, precision=precision)
            codec = GanCodec(checkpoint, bits=checkpoint.compress_bits, search=search, device="cpu")
            resolved = resolve_search_precision(precision, torch.device("cpu"))
            rows.append({"effort": effort, "precision": resolved, "search": asdict(search),
                         "refine_iters": codec.refine_iters, **measure_level(codec, images)})
            print(json.dumps({key: value for key, value in rows[-1].items() if key != "search"}), flush=True)
    device = f"CPU ({cpu_model()}, {torch.get_num_threads()} threads)"
    command = (f"python experiments/effort.py -g {shown(args.generator)} --count {args.count} --threads {args.threads}"
               + ("" if precisions == ["auto"] else f" --precisions {','.join(precisions)}")
               + ("" if efforts == sorted(EFFORTS) else f" --efforts {','.join(map(str, efforts))}")
               + ("" if args.images == "heldout" else f" --images {args.images}")
               + ("" if args.out.resolve() == DEFAULT_OUT else f" --out {shown(args.out)}"))
    atomic_write_text(args.out / "effort.json", json.dumps(
        {"generator": args.generator.resolve().name, "fingerprint": checkpoint.fingerprint, "bits":
         checkpoint.compress_bits, "images": names, "device": device, "command": command, "rows": rows},
        indent=2) + "\n")
    lines = markdown(rows)
    shown_images = (f"the first {len(images)} images of its {HELDOUT_DIR}/" if args.images == "heldout" else
                    f"{len(images)} validation emoji ({args.count} per vendor trained on)")
    lines.append(f"\n`{args.generator.resolve().name}` at {checkpoint.compress_bits} bits, {shown_images}, each level "
                 f"encoding all of them in one batched call; {device}; made by `{command}`.")
    atomic_write_text(args.out / "effort.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
