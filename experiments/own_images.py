"""Your own images, measured as a user would: a folder of images of another kind than emoji, trained on with
`ganrev fit-generator`'s defaults in a time budget, then default `compress` on its held-out (test-split) images,
each file beside the best classical file within its bytes.

    python experiments/own_images.py prepare                    # render the icon set into a folder once
    ganrev fit-generator --data ~/.cache/ganrev/iconify-logos --out runs/logos --max-minutes 20
    python experiments/own_images.py measure runs/logos [--out experiments/results/own-images-logos]

The folder: Iconify's `@iconify-json/logos` (npm; Gil Barbara's SVG logos, CC0-1.0): about 2,000 colour logos of
software and companies, rendered with resvg to 64x64 PNGs (a wide logo centred with transparent margins; ganrev
composites transparency on white). The test split is ganrev's rule for folders (SHA-256 of the file's relative
path), so `fit-generator` never sees these images.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ganrev.data import data_home, icon_svg, open_dataset, render_svg  # noqa: E402
from ganrev.evaluate.card import compare_with_classical  # noqa: E402
from ganrev.io import atomic_write_text  # noqa: E402
from ganrev.models import load_generator  # noqa: E402
from ganrev.training.common import cpu_model  # noqa: E402

PACKAGE = "@iconify-json/logos@1.2.20"
LICENCE = "CC0-1.0"


def folder() -> Path:
    return data_home() / "iconify-logos"


def prepare(size: int = 64) -> Path:
    """npm pack the icon set and render every icon to ``folder()/<name>.png`` (once)."""
    out = folder()
    if out.is_dir() and any(out.glob("*.png")):
        print(f"{out}: already prepared ({len(list(out.glob('*.png')))} images)")
        return out
    with tempfile.TemporaryDirectory() as tmp:
        name = subprocess.run(["npm", "pack", PACKAGE, "--silent"], cwd=tmp, check=True, capture_output=True,
                              text=True).stdout.strip().splitlines()[-1]
        with tarfile.open(Path(tmp) / name) as tar:
            tar.extractall(tmp, filter="data")
        package = Path(tmp) / "package"
        icon_set = json.loads((package / "icons.json").read_text())
        staging = Path(tmp) / "png"
        staging.mkdir()
        for icon in sorted(icon_set["icons"]):
            (staging / f"{icon}.png").write_bytes(render_svg(icon_svg(icon_set, icon, size), size))
        shutil.copyfile(package / "info.json", staging / "info.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), out)
    print(f"{out}: {len(list(out.glob('*.png')))} images from {PACKAGE} ({LICENCE})")
    return out


def measure(run: Path, out: Path | None, count: int) -> dict:
    """Default compress of up to ``count`` test-split images of the run's folder, beside the best classical file."""
    checkpoint = load_generator(run)
    source = checkpoint.metadata["dataset"]
    test = open_dataset(source, "test", resolution=checkpoint.config.resolution, channels=checkpoint.config.channels)
    images = torch.stack([test[i] for i in range(min(count, len(test)))])
    figures = compare_with_classical(checkpoint, images, "test")
    training = checkpoint.metadata["training"]
    record = {"run": run.name, "data": Path(source).name, "package": PACKAGE, "licence": LICENCE,
              "test_images": len(images), "bits": checkpoint.compress_bits, "ssim": figures.ssim,
              "bytes": figures.bytes, "bpp": figures.bpp, "classical_ssim": figures.classical_ssim,
              "gan_minus_classical": figures.ssim - (figures.classical_ssim or 0.0),
              "encoder_ssim": figures.encoder_ssim, "epochs": training["epochs"], "wall_s": training["wall_s"],
              "training_device": training["device"], "precision": training["precision"],
              "options": training["options"], "measured_on": f"CPU ({cpu_model()}, {torch.get_num_threads()} threads)"}
    record["options"]["data"] = Path(record["options"]["data"]).name  # no machine paths in results
    print(json.dumps({k: v for k, v in record.items() if k != "options"}, indent=2))
    if out is not None:
        atomic_write_text(out / f"{run.name}.json", json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    sub.add_parser("prepare", help="render the icon set into a folder of PNGs")
    m = sub.add_parser("measure", help="default compress of a run's test images vs the best classical file")
    m.add_argument("run", type=Path)
    m.add_argument("--out", type=Path, default=None, help="write OUT/RUN.json")
    m.add_argument("--count", type=int, default=200)
    args = parser.parse_args(argv)
    if args.step == "prepare":
        prepare()
    else:
        measure(args.run, args.out, args.count)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
