"""GAN reversal against the learned-codec peer at matched bytes, image by image (issue 26).

    python experiments/peer_matched.py [-g pretrained/emoji64] [--count 64] [--sets google/unseen,twitter/unseen]
                                       [--effort 0]

On each vendor set (as experiments/ship_peer.py makes them: Google's unseen set is the table's
``pretrained/emoji64/heldout``; the others are one emoji per base emoji of the test groups, ``unseen``, or of
the groups trained on, ``seen``; OpenMoji is never trained on), every shipped CompressAI model
(``pretrained/baselines/compressai-*``) codes every image. Then ganrev gets, per image, the peer's file size as
its byte budget: ``compress --target-bpp``'s library path (one latent search for all budgets, every kind of
file weighed, each decoded as ``ganrev decompress`` decodes it), so both sides are real files of at most the
same bytes, image by image. Timings are wall-clock on one process: the peer's encode and decode per image, and
ganrev's rate control per image and budget (its shared search and modulation fits divided among the budgets).
``--effort N`` searches at ``compress --effort N`` (0: the encoder alone). Per set, the shipped peer's levels
give each side a curve of (mean bpp, mean SSIM) points, summarised by ganrev's BD-rate against the peer (percent
bits at equal SSIM; negative: fewer) and its BD-SSIM (at equal bits). Writes
experiments/results/peer_matched.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from ganrev.codecs.gan import GanCodec  # noqa: E402
from ganrev.codecs.hyperprior import HyperpriorCodec  # noqa: E402
from ganrev.codecs.learned import SHIPPED_COMPRESSAI, SHIPPED_DIR, shipped_compressai_levels  # noqa: E402
from ganrev.evaluate.bdrate import bd_quality, bd_rate  # noqa: E402
from ganrev.invert import DEFAULT_EFFORT, default_search  # noqa: E402
from ganrev.io import atomic_write_text  # noqa: E402
from ganrev.metrics import ssim  # noqa: E402
from ganrev.models import load_generator  # noqa: E402
from ganrev.bitstream.ratecontrol import RateTarget, compress_to_targets  # noqa: E402
from ganrev.training.common import cpu_model  # noqa: E402
from ship_peer import image_sets  # noqa: E402
from vendor_figures import shown  # noqa: E402

PEER = "compressai-mean"


def peer_files(codec: HyperpriorCodec, images: list[torch.Tensor]) -> dict[str, Any]:
    """The peer's file for every image: bytes, SSIM of its decode, and the mean encode and decode seconds."""
    codec.decode(codec.encode(images[0]))  # warm-up: the first call pays CompressAI's one-time set-up
    sizes, scores, encode_s, decode_s = [], [], 0.0, 0.0
    for image in images:
        started = time.perf_counter()
        data = codec.encode(image)
        encoded = time.perf_counter()
        decoded = codec.decode(data)
        encode_s += encoded - started
        decode_s += time.perf_counter() - encoded
        sizes.append(len(data))
        scores.append(float(ssim(decoded[None], image[None])[0]))
    return {"bytes": sizes, "ssim": scores, "encode_s": encode_s / len(images), "decode_s": decode_s / len(images)}


def ganrev_within(codec: GanCodec, images: list[torch.Tensor], budgets: list[list[int]]) -> list[dict[str, Any]]:
    """ganrev's best file within each image's budget, for every list of per-image budgets: one rate control for
    all of them (one search); each list's encode time is the shared total over the number of lists."""
    started = time.perf_counter()
    # the budget is floor(bpp * W * H / 8) bytes: half a byte more keeps float rounding from losing one
    targets = [[RateTarget(bpp=(size + 0.5) * 8 / (image.shape[1] * image.shape[2]))
                for image, size in zip(images, per_image)] for per_image in budgets]
    rated_lists = compress_to_targets(codec, images, targets)
    seconds = (time.perf_counter() - started) / len(budgets)
    return [{"bytes": [len(r.data) for r in rated], "ssim": [r.ssim for r in rated],
             "modes": {mode: sum(r.mode == mode for r in rated) for mode in sorted({r.mode for r in rated})},
             "encode_s": seconds / len(images)} for rated in rated_lists]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def set_summaries(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (vendor, set): ganrev's BD-rate (percent) and BD-SSIM against the peer, each side's curve being its
    (mean bpp, mean SSIM) point at every peer level."""
    summaries = []
    for key in dict.fromkeys((r["vendor"], r["set"]) for r in rows):
        chosen = [r for r in rows if (r["vendor"], r["set"]) == key]
        peer = [(r["peer_bytes"] * 8 / r["pixels"], r["peer_ssim"]) for r in chosen]
        ours = [(r["ganrev_bytes"] * 8 / r["pixels"], r["ganrev_ssim"]) for r in chosen]
        summaries.append({"vendor": key[0], "set": key[1], "points": len(chosen),
                          "bd_rate_percent": bd_rate(peer, ours), "bd_ssim": bd_quality(peer, ours)})
    return summaries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-g", "--generator", type=Path, default=ROOT / "pretrained" / "emoji64")
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--sets", default=None, help="comma-separated VENDOR/unseen or VENDOR/seen [all]")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (timings: 1, like the table's)")
    parser.add_argument("--effort", type=int, default=DEFAULT_EFFORT,
                        help=f"compress --effort's level [{DEFAULT_EFFORT}]")
    parser.add_argument("--out", type=Path, default=ROOT / "experiments" / "results" / "peer_matched")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    checkpoint = load_generator(args.generator)
    codec = GanCodec(checkpoint, search=default_search(checkpoint.encoder is not None, effort=args.effort))
    peers = [HyperpriorCodec.load(SHIPPED_DIR / SHIPPED_COMPRESSAI.format(name=PEER, level=level))
             for level in shipped_compressai_levels(PEER)]
    if not peers:
        parser.error(f"no shipped {PEER} models under {SHIPPED_DIR}")
    sets = image_sets(args.count)
    wanted = sets if args.sets is None else args.sets.split(",")
    if unknown := set(wanted) - {f"{vendor}/{which}" for vendor, which in sets}:
        parser.error(f"--sets: unknown {', '.join(sorted(unknown))}")
    rows = []
    for (vendor, which), (_, images) in sets.items():
        if f"{vendor}/{which}" not in wanted:
            continue
        images = [(image * 255).round() / 255 for image in images]  # 8-bit images, as a PNG a user has
        measured = [peer_files(peer, images) for peer in peers]
        ours = ganrev_within(codec, images, [m["bytes"] for m in measured])
        for peer, theirs, mine in zip(peers, measured, ours):
            rows.append({"vendor": vendor, "set": which, "images": len(images), "pixels": images[0][0].numel(),
                         "peer": peer.name,
                         "peer_bytes": mean(theirs["bytes"]), "peer_ssim": mean(theirs["ssim"]),
                         "peer_encode_s": theirs["encode_s"], "peer_decode_s": theirs["decode_s"],
                         "ganrev_bytes": mean(mine["bytes"]), "ganrev_ssim": mean(mine["ssim"]),
                         "ganrev_encode_s": mine["encode_s"], "ganrev_modes": mine["modes"],
                         "ganrev_wins": sum(a > b for a, b in zip(mine["ssim"], theirs["ssim"]))})
            print({k: rows[-1][k] for k in ("vendor", "set", "peer", "peer_bytes", "peer_ssim", "ganrev_bytes",
                                             "ganrev_ssim")}, flush=True)
    summaries = set_summaries(rows)
    device = f"CPU ({cpu_model()}, {torch.get_num_threads()} threads)"
    results = {"device": device, "machine": platform.machine(), "torch": torch.__version__,
               "generator": {"path": shown(args.generator), "fingerprint": checkpoint.fingerprint},
               "count": args.count, "effort": args.effort, "rows": rows, "sets": summaries,
               "wall_s": round(time.perf_counter() - started, 1)}
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(results, indent=2) + "\n")
    lines = ["| vendor | set | peer | peer bytes | peer SSIM | ganrev bytes | ganrev SSIM | ganrev − peer | ganrev "
             "better on | peer encode ms | peer decode ms | ganrev encode ms |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['vendor']} | {r['set']} | {r['peer']} | {r['peer_bytes']:.1f} | {r['peer_ssim']:.4f} | "
                     f"{r['ganrev_bytes']:.1f} | {r['ganrev_ssim']:.4f} | {r['ganrev_ssim'] - r['peer_ssim']:+.4f} | "
                     f"{r['ganrev_wins']}/{r['images']} | {r['peer_encode_s'] * 1e3:.1f} | "
                     f"{r['peer_decode_s'] * 1e3:.1f} | {r['ganrev_encode_s'] * 1e3:.0f} |")
    lines += ["", "Per set, the peer's levels as one curve of (mean bpp, mean SSIM) points and ganrev's matched files as "
              "another: ganrev's BD-rate against the peer (bits at equal SSIM; negative: fewer) and BD-SSIM (at equal "
              "bits); - where the curves do not overlap.", "",
              "| vendor | set | points | BD-rate vs peer | BD-SSIM vs peer |", "|---|---|---:|---:|---:|"]
    for summary in summaries:
        rate, quality = summary["bd_rate_percent"], summary["bd_ssim"]
        lines.append(f"| {summary['vendor']} | {summary['set']} | {summary['points']} | "
                     f"{'-' if rate is None else f'{rate:+.1f} %'} | {'-' if quality is None else f'{quality:+.4f}'} |")
    command = "python experiments/peer_matched.py" + (f" --count {args.count}" if args.count != 64 else "") + (
        f" --sets {args.sets}" if args.sets else "") + (f" --threads {args.threads}" if args.threads != 1 else "") + (
        f" --effort {args.effort}" if args.effort != DEFAULT_EFFORT else "")
    lines.append(f"\nPer image, ganrev's budget is the peer's file size; generator `{results['generator']['path']}` at "
                 f"effort {args.effort}; "
                 f"{device}; torch {torch.__version__}; {results['wall_s']:.0f} s; made by `{command}`.")
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
