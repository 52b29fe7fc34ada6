"""Which point should the search keep: the best one, or the one whose *rounding* is best?

    python experiments/rounded_tracking.py [-g pretrained/emoji64] [--bits 2,3,4] [--count 64] [--patience N,N]
                                           [--out experiments/results/rounded_tracking.json]

A file stores the latent rounded to a grid of 2**bits points over [-3, 3]. The search (ganrev.invert) keeps, per
image, the iterate with the lowest loss *before* rounding, unless ``SearchOptions.rounded_bits`` names the file's
bits: then it also keeps the iterate whose rounding scores best (one more forward pass of G per iteration, no
gradient; early stopping then watches the rounded loss). After an encoder start GanCodec does not refine the rounded
point (REFINE_ITERS: at 4 bits and above it gained about +0.001). This study compresses the same images four ways
at each ``--bits``, with the default search from E(x) (``default_search``; the folded generator in bf16 on a CPU
with BF16_CPU_FLAGS): rounding the best point, as compress does; rounding the tracked point; and either point
followed by the quantizer-in-the-loop refinement GanCodec gives a pool or random start (REFINE_ITERS["pool"]: 50
steps of Adam through the rounding at half a grid step, the best rounded point kept). Validation groups only
(``--count`` per style of Google, Twemoji and Fluent): SSIM before and after rounding at the model's resolution
(``CompressedImage``), the latent payload, iterations and the codec's wall time, one thread. ``--patience``: the
search's, one or more (default: the encoder start's, 20), each a set of rows in the same run, to weigh a search that
stops sooner once it tracks the rounding.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from encoder_refit import vendor_split  # noqa: E402
from ganrev.bitstream.container import unpack_file  # noqa: E402
from ganrev.codecs.gan import REFINE_ITERS, GanCodec  # noqa: E402
from ganrev.invert import default_search, resolve_search_precision  # noqa: E402
from ganrev.io import atomic_write_text  # noqa: E402
from ganrev.models import load_generator  # noqa: E402
from ganrev.training.common import cpu_model  # noqa: E402
from vendor_figures import shown  # noqa: E402

STYLES = ("google", "twitter", "fluent")
WAYS = ("the best point", "the point of best rounding", "the best point, then refinement",
        "the point of best rounding, then refinement")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-g", "--generator", type=Path, default=ROOT / "pretrained" / "emoji64")
    parser.add_argument("--bits", default="2,3,4")
    parser.add_argument("--count", type=int, default=64, help="validation emoji per style")
    parser.add_argument("--patience", default=None, help="comma-separated patiences of the search [compress's default]")
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "results" / "rounded_tracking.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    checkpoint = load_generator(args.generator)
    assert checkpoint.encoder is not None, "the study starts from the encoder, as compress does"
    precision = resolve_search_precision("auto", torch.device("cpu"))
    images = [image.float() / 255 for style in STYLES for image in vendor_split(style)[1][: args.count]]
    default = default_search(True)
    patiences = [int(p) for p in args.patience.split(",")] if args.patience else [default.patience]
    rows = []
    for bits, patience, way in ((int(b), p, w) for b in args.bits.split(",") for p in patiences for w in WAYS):
        search = replace(default, patience=patience)
        tracked, refined = "best rounding" in way, "refinement" in way
        codec = GanCodec(checkpoint, bits=bits, search=replace(search, rounded_bits=(bits,)) if tracked else search,
                         refine_iters=REFINE_ITERS["pool"] if refined else None)
        began = time.perf_counter()
        files = codec.compress(images)
        seconds = time.perf_counter() - began
        rows.append({"bits": bits, "patience": patience, "keeps": way,
                     "ssim_before_rounding": round(sum(f.ssim_latent for f in files) / len(files), 4),
                     "ssim_rounded": round(sum(f.ssim_refined for f in files) / len(files), 4),
                     "iterations_per_image": round(sum(f.iterations for f in files) / len(files), 1),
                     "seconds": round(seconds, 1),
                     "payload_bytes": round(sum(len(unpack_file(f.data)[1]) for f in files) / len(files), 1)})
        print(json.dumps(rows[-1]), flush=True)
    lines = ["| bits | patience | the file rounds | SSIM before rounding | SSIM rounded (the file) "
             "| iterations per image | seconds | latent payload, bytes per image |", "|---:|---:|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['bits']} | {r['patience']} | {r['keeps']} | {r['ssim_before_rounding']:.4f} | "
              f"{r['ssim_rounded']:.4f} | "
              f"{r['iterations_per_image']} | {r['seconds']} | {r['payload_bytes']} |" for r in rows]
    command = "python experiments/rounded_tracking.py " + " ".join(argv or sys.argv[1:])
    record = {"command": command.strip(), "generator": shown(args.generator), "images": f"{args.count} validation "
              f"emoji per style of {', '.join(STYLES)}", "device": f"CPU ({cpu_model()}, 1 thread, {precision})",
              "rows": rows}
    atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(lines) + f"\n\n{record['images']}, default search from "
                      f"E(x) on `{record['generator']}`; {record['device']}; made by `{record['command']}`.\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
