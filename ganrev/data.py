"""Image data sources behind one interface, each with a fixed, deterministic held-out split.

Sources (``open_dataset(source, ...)``):
- a folder of images (recursive); each file is centre-cropped and resized to the model's resolution;
- ``emoji``: openly licensed emoji sets from npm, fetched once with ``ganrev fetch emoji`` (``npm pack``: uses
  only the npm registry): Google/Noto (``emoji-datasource-google`` 16.0.0, Apache-2.0) and Twemoji
  (``emoji-datasource-twitter`` 16.0.0, CC-BY-4.0), 3,786 colour 64x64 PNGs each, and OpenMoji (``openmoji``
  17.0.0, CC-BY-SA-4.0), Microsoft's Fluent Emoji Flat (``@iconify-json/fluent-emoji-flat`` 1.2.6, MIT),
  EmojiOne 2 (``@iconify-json/emojione`` 1.2.3, CC-BY-4.0) and Noto's earlier style (``@iconify-json/noto-v1``
  1.2.5, Apache-2.0), whose SVGs are rendered to 64x64 PNGs in the same layout when fetched.
  ``emoji`` is every fetched vendor, ``emoji:google,twitter`` names them;
- ``fashion-mnist``: Debian package ``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``);
  the official 60k/10k train/test split is kept;
- ``cifar10``, ``mnist``, ``celeba``: torchvision, downloaded on demand (online users only).

The held-out split never depends on file order or on which other files exist: a unit goes to ``test``
when the first byte pair of SHA-256("ganrev-split:" + group key) mod 100 < ``TEST_PERCENT``. For emoji
the group key is the *base* emoji with skin tones, gender signs and person/man/woman distinctions
removed, so every variant of one emoji falls on the same side and the held-out set cannot leak.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import struct
import subprocess
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ganrev.errors import GanrevError
from ganrev.io import center_crop_resize, convert_channels, list_images, load_image

Split = Literal["train", "test", "all"]
TEST_PERCENT = 10
VALIDATION_PERCENT = 10  # of the training side's groups, held back to choose epochs and hyper-parameters
BUILTIN_SOURCES = ("emoji", "fashion-mnist", "cifar10", "mnist", "celeba")


def data_home() -> Path:
    """Where fetched data sets live: ``$GANREV_DATA`` or ``~/.cache/ganrev``."""
    return Path(os.environ.get("GANREV_DATA", Path.home() / ".cache" / "ganrev")).expanduser()


def _percentile(salt: str, key: str) -> int:
    """0..99 from the first two bytes of SHA-256(``salt:key``): the same for a key on every machine."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:2], "big") % 100


def is_test_group(key: str) -> bool:
    """The deterministic held-out rule (see module docstring)."""
    return _percentile("ganrev-split", key) < TEST_PERCENT


def select_split(keys: list[str], split: Split) -> list[int]:
    """Indices of ``keys`` (group keys, one per item) that belong to ``split``."""
    if split == "all":
        return list(range(len(keys)))
    if split not in ("train", "test"):
        raise GanrevError(f"split must be train, test or all, got {split!r}")
    want_test = split == "test"
    return [i for i, key in enumerate(keys) if is_test_group(key) == want_test]


def is_validation_group(key: str) -> bool:
    """Whether a training-side group is carved off for validation (its own salt: independent of the test rule)."""
    return _percentile("ganrev-val", key) < VALIDATION_PERCENT


class EmptySplitError(GanrevError):
    """A source has images, but none of them fall in the requested split (small folders can have no test image)."""


class ImageSet(Dataset):
    """A data set of ``[C, R, R]`` float images in [0, 1] with a name and split description."""

    def __init__(self, name: str, split: Split, size: int, loader: Callable[[int], torch.Tensor],
                 labels: list[str] | None = None) -> None:
        self.name, self.split, self._size, self._loader = name, split, size, loader
        self.labels = labels  # a human-readable id per item (file name, index), for reports

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < self._size:
            raise IndexError(index)
        return self._loader(index)


def group_of(source: str, label: str) -> str:
    """The split group of an item from its label: the base emoji for emoji, else the label itself."""
    return emoji_group_key(Path(label).stem) if is_emoji_source(source) else label


def carve_validation(dataset: ImageSet, source: str) -> tuple[ImageSet, ImageSet | None]:
    """Split a training set into (fit, validation) by group, so no variant of a validation image is fitted.

    The validation part is ``None`` when no group falls in it (tiny folders).
    """
    labels = dataset.labels or [str(i) for i in range(len(dataset))]
    flags = [is_validation_group(group_of(source, label)) for label in labels]
    fit = [i for i, held in enumerate(flags) if not held]
    val = [i for i, held in enumerate(flags) if held]
    if not val or not fit:
        return dataset, None
    return _subset(dataset, fit, "fit"), _subset(dataset, val, "validation")


def _subset(dataset: ImageSet, indices: list[int], split: str) -> ImageSet:
    labels = [dataset.labels[i] for i in indices] if dataset.labels else None
    return ImageSet(dataset.name, split, len(indices), lambda i: dataset[indices[i]], labels)  # type: ignore[arg-type]


def _tensor_set(name: str, split: Split, images: torch.Tensor, labels: list[str]) -> ImageSet:
    """An ImageSet over a preloaded uint8 tensor ``[N, C, R, R]`` (kept as uint8: 4x less memory)."""
    return ImageSet(name, split, len(images), lambda i: images[i].float() / 255.0, labels)


def _prepare(image: torch.Tensor, resolution: int, channels: int) -> torch.Tensor:
    image = convert_channels(image, "gray" if channels == 1 else "rgb")
    return center_crop_resize(image, resolution)


# ----------------------------------------------------------------------------------------------- folders

def folder_dataset(folder: str | os.PathLike[str], split: Split, resolution: int, channels: int) -> ImageSet:
    """Images under ``folder`` (recursive), split by relative path; loaded lazily, one file at a time."""
    root = Path(folder)
    files = list_images(root)
    if not files:
        raise GanrevError(f"no images found under {root}")
    keys = [p.relative_to(root).as_posix() for p in files]
    chosen = [files[i] for i in select_split(keys, split)]
    if not chosen:
        raise EmptySplitError(f"the {split} split of {root} is empty ({len(files)} images in all)")
    return ImageSet(str(root), split, len(chosen),
                    lambda i: _prepare(load_image(chosen[i]), resolution, channels),
                    [p.relative_to(root).as_posix() for p in chosen])


# ------------------------------------------------------------------------------------------------- emoji

_SKIN_TONES = {"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"}
_IGNORED = {"FE0F", "200D", "2640", "2642"} | _SKIN_TONES
# man/woman/person (and boy/girl/child, old man/old woman/older person) are variants of one picture.
_PERSON_ALIASES = {"1F468": "P", "1F469": "P", "1F9D1": "P", "1F466": "C", "1F467": "C", "1F9D2": "C",
                   "1F474": "O", "1F475": "O", "1F9D3": "O"}


def emoji_group_key(unified: str) -> str:
    """Base-emoji key of a unified code such as ``1F3C3-1F3FD-200D-2640-FE0F`` (-> ``1F3C3``)."""
    parts = [_PERSON_ALIASES.get(cp, cp) for cp in unified.upper().split("-") if cp not in _IGNORED]
    return "-".join(parts) or unified.upper()


EMOJI_VENDORS: dict[str, str] = {
    # vendor -> npm package of the emoji-datasource family (same emoji.json and img/<vendor>/64/ layout)
    "google": "emoji-datasource-google@16.0.0",  # Noto Emoji, Apache-2.0
    "twitter": "emoji-datasource-twitter@16.0.0",  # Twemoji, CC-BY-4.0
    "openmoji": "openmoji@17.0.0",  # OpenMoji, CC-BY-SA-4.0: SVGs only, rendered to 64x64 PNGs when fetched
    # Microsoft Fluent Emoji (flat), MIT: an Iconify icon set (one icons.json of SVG bodies and chars.json, the
    # code-point map the base-emoji split needs), rendered to 64x64 PNGs when fetched
    "fluent": "@iconify-json/fluent-emoji-flat@1.2.6",
    # EmojiOne 2, CC-BY-4.0, and Google's earlier Noto ("blob") style, Apache-2.0: Iconify sets whose chars.json is
    # empty, so their icons get code points by name from ICONIFY_NAME_MAP's
    "emojione": "@iconify-json/emojione@1.2.3",
    "noto-v1": "@iconify-json/noto-v1@1.2.5",
}
EMOJI_LICENCES = {"google": "Apache-2.0", "twitter": "CC-BY-4.0", "openmoji": "CC-BY-SA-4.0", "fluent": "MIT",
                  "emojione": "CC-BY-4.0", "noto-v1": "Apache-2.0"}
ICONIFY_VENDORS = {"fluent", "emojione", "noto-v1"}  # vendors packaged as Iconify JSON (icons.json + chars.json)
# Iconify names its emoji icons after the Unicode (CLDR) names in every set, so one set's chars.json (code point ->
# name) places another set's icons by name: Twemoji's, the most complete, is fetched for that and nothing else.
ICONIFY_NAME_MAP = "@iconify-json/twemoji@1.2.5"
OPENMOJI_SKIPPED_GROUPS = {"extras-openmoji", "extras-unicode"}  # OpenMoji's own additions: not Unicode emoji
# Apple's and Facebook's sets in the same family are not licensed for training: never listed here.


def is_emoji_source(source: str) -> bool:
    """``emoji`` (every fetched vendor) or ``emoji:v1,v2`` (the named vendors)."""
    return source == "emoji" or source.startswith("emoji:")


def emoji_vendors(source: str, *, fetched_only: bool = True) -> list[str]:
    """The vendors an emoji source names, in :data:`EMOJI_VENDORS` order.

    ``emoji`` means every vendor fetched into :func:`data_home` (at least one must be); ``emoji:a,b`` names
    them, each of which must be fetched when ``fetched_only``.
    """
    if source == "emoji":
        vendors = [v for v in EMOJI_VENDORS if (emoji_dir(v) / "emoji.json").is_file()]
        if not vendors:
            raise GanrevError(f"emoji data not found in {data_home()}: run `ganrev fetch emoji` once (needs npm)")
        return vendors
    named = [v.strip() for v in source.split(":", 1)[1].split(",") if v.strip()]
    unknown = [v for v in named if v not in EMOJI_VENDORS]
    if unknown or not named:
        raise GanrevError(f"unknown emoji vendor {', '.join(unknown) or '(none)'} in {source!r}: "
                          f"choose from {', '.join(EMOJI_VENDORS)}, e.g. emoji:google,twitter")
    missing = [v for v in named if fetched_only and not (emoji_dir(v) / "emoji.json").is_file()]
    if missing:
        raise GanrevError(f"emoji data for {', '.join(missing)} not found in {data_home()}: "
                          f"run `ganrev fetch emoji:{','.join(missing)}` once (needs npm)")
    return [v for v in EMOJI_VENDORS if v in named]


def canonical_source(source: str) -> str:
    """``source`` as a checkpoint records it: ``emoji`` becomes the fetched vendors it stands for today
    (``emoji:google,twitter``), so a run's config says exactly what it was trained on."""
    return "emoji:" + ",".join(emoji_vendors(source)) if is_emoji_source(source) else source


def saved_source(source: str) -> str:
    """The source a saved run or checkpoint names: ``emoji`` there predates other vendors and meant Google's."""
    return "emoji:google" if source == "emoji" else source


def heldout_vendor(source: str) -> str:
    """The vendor of the held-out images shipped with a generator trained on the emoji ``source`` (its
    ``heldout/``, what ``ganrev table`` measures): the first vendor it names, Google's for Google + Twemoji."""
    return emoji_vendors(saved_source(source), fetched_only=False)[0]


def emoji_dir(vendor: str = "google") -> Path:
    """The folder of one vendor's package under :func:`data_home`, named after the package without its version
    (scoped ``@scope/name`` becomes ``scope-name``): always a folder of its own, never data_home itself."""
    package = EMOJI_VENDORS[vendor].rsplit("@", 1)[0]
    return data_home() / package.lstrip("@").replace("/", "-")


def fetch_emoji(dest: Path | None = None, vendor: str = "google") -> Path:
    """Download one vendor's emoji package once with ``npm pack`` (npm registry only) and unpack it."""
    package = EMOJI_VENDORS[vendor]
    dest = dest or emoji_dir(vendor)
    if (dest / "emoji.json").is_file():
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        root = npm_unpack(package, Path(tmp) / "vendor")
        if vendor == "openmoji":
            render_openmoji(root)
        elif vendor in ICONIFY_VENDORS:
            chars = json.loads((root / "chars.json").read_text())
            if not chars:  # a set without its own code-point map: place its icons by name
                name_map = json.loads((npm_unpack(ICONIFY_NAME_MAP, Path(tmp) / "names") / "chars.json").read_text())
                chars = code_points_by_name(json.loads((root / "icons.json").read_text()), name_map)
            render_iconify(root, vendor, chars=chars)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            shutil.rmtree(dest)
        shutil.move(str(root), dest)
    return dest


def npm_unpack(package: str, staging: Path) -> Path:
    """``npm pack`` one package (npm registry only) and unpack it under ``staging``; returns its ``package/``."""
    npm = shutil.which("npm")
    if npm is None:
        raise GanrevError(f"fetching emoji needs npm (Node.js); install it, or unpack `npm pack {package}` yourself")
    staging.mkdir(parents=True)
    try:
        out = subprocess.run([npm, "pack", package, "--silent"], cwd=staging, check=True,
                             capture_output=True, text=True, timeout=900)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = getattr(exc, "stderr", "") or ""
        raise GanrevError(f"npm pack {package} failed (offline?): {detail.strip()[:400]}") from exc
    with tarfile.open(staging / out.stdout.strip().splitlines()[-1]) as tar:
        tar.extractall(staging / "unpacked", filter="data")
    return staging / "unpacked" / "package"


def render_openmoji(root: Path, size: int = 64) -> int:
    """Give an unpacked ``openmoji`` package the emoji-datasource layout: every Unicode emoji's colour SVG
    rendered (resvg, transparent background) to ``img/openmoji/<size>/<hexcode>.png`` and an ``emoji.json``
    listing them. Returns the number of images. Needs the ``resvg-py`` package (``pip install resvg-py``)."""
    try:
        import resvg_py
    except ImportError:
        raise GanrevError("rendering OpenMoji's SVGs needs resvg-py: pip install resvg-py") from None
    entries = json.loads((root / "data" / "openmoji.json").read_text())
    out_dir = root / "img" / "openmoji" / str(size)
    out_dir.mkdir(parents=True, exist_ok=True)
    listed = []
    for entry in entries:
        svg = root / "color" / "svg" / f"{entry['hexcode']}.svg"
        if entry.get("group") in OPENMOJI_SKIPPED_GROUPS or not svg.is_file():
            continue
        name = f"{entry['hexcode'].lower()}.png"
        (out_dir / name).write_bytes(bytes(resvg_py.svg_to_bytes(svg_path=str(svg), width=size, height=size)))
        listed.append({"unified": entry["hexcode"], "image": name, "has_img_openmoji": True})
    (root / "emoji.json").write_text(json.dumps(listed))
    return len(listed)


def icon_svg(icon_set: dict[str, Any], name: str, size: int) -> str:
    """One icon of an Iconify icon set (``icons.json``) as a ``size`` x ``size`` SVG document. The icon's box (its
    own left/top/width/height, or the set's; Iconify's defaults 0, 0, 16, 16) is centred in a square one, so a
    wide icon keeps its shape with transparent margins above and below."""
    icon = icon_set["icons"][name]
    box = {key: icon.get(key, icon_set.get(key, default))
           for key, default in (("left", 0), ("top", 0), ("width", 16), ("height", 16))}
    side = max(box["width"], box["height"])
    left, top = box["left"] - (side - box["width"]) / 2, box["top"] - (side - box["height"]) / 2
    return (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '  # some use xlink
            f'width="{size}" height="{size}" '
            f'viewBox="{left:g} {top:g} {side:g} {side:g}">{icon["body"]}</svg>')


def render_svg(svg: str, size: int) -> bytes:
    """An SVG document rendered by resvg to a ``size`` x ``size`` RGBA PNG (transparent background)."""
    try:
        import resvg_py
    except ImportError:
        raise GanrevError("rendering SVG images needs resvg-py: pip install resvg-py") from None
    return bytes(resvg_py.svg_to_bytes(svg_string=svg, width=size, height=size))


def code_points_by_name(icon_set: dict[str, Any], name_map: dict[str, str]) -> dict[str, str]:
    """A ``chars.json`` (code point -> icon name) for an Iconify set that has none, from another set's
    ``name_map``: an icon gets the code point of its own name, else of a plain alias of it (one with no
    transformation). Each icon and each code point is used once, so no image appears under two code points
    (which could put one drawing on both sides of the split)."""
    code_of = {name: code for code, name in name_map.items()}
    chars: dict[str, str] = {}
    named = [(name, name) for name in sorted(icon_set["icons"])]
    named += [(alias, entry["parent"]) for alias, entry in sorted(icon_set.get("aliases", {}).items())
              if set(entry) == {"parent"} and entry["parent"] in icon_set["icons"]]
    placed: set[str] = set()
    for name, icon in named:
        code = code_of.get(name)
        if code is not None and icon not in placed and code not in chars:
            chars[code] = icon
            placed.add(icon)
    return chars


def render_iconify(root: Path, vendor: str, size: int = 64, chars: dict[str, str] | None = None) -> int:
    """Give an unpacked Iconify icon-set package (``@iconify-json/*``) the emoji-datasource layout: every icon
    that ``chars`` (code point -> icon name; the package's own ``chars.json`` by default) maps to a code point is
    rendered (:func:`icon_svg`, :func:`render_svg`) to ``img/<vendor>/<size>/<code>.png`` and listed in an
    ``emoji.json``. Icons with no code point are skipped (the split needs one). Returns the number of images.
    Needs ``resvg-py``."""
    icon_set = json.loads((root / "icons.json").read_text())
    if chars is None:
        chars = json.loads((root / "chars.json").read_text())
    out_dir = root / "img" / vendor / str(size)
    out_dir.mkdir(parents=True, exist_ok=True)
    listed = []
    for code, name in sorted(chars.items()):
        if name not in icon_set["icons"]:  # chars.json may name an alias; aliases are other names of a listed icon
            continue
        image = f"{code.lower()}.png"
        (out_dir / image).write_bytes(render_svg(icon_svg(icon_set, name, size), size))
        listed.append({"unified": code.upper(), "image": image, f"has_img_{vendor}": True})
    (root / "emoji.json").write_text(json.dumps(listed))
    return len(listed)


def emoji_index(root: Path, vendor: str = "google") -> list[tuple[Path, str]]:
    """(image path, group key) for every 64x64 image of ``vendor`` listed in emoji.json, sorted by path.

    The group key depends on the emoji alone, never on the vendor: a base emoji is held out for every vendor
    or for none, so figures on one vendor's held-out groups stay comparable whatever else was trained on.
    """
    meta = json.loads((root / "emoji.json").read_text())
    img_dir = root / "img" / vendor / "64"
    items: dict[str, str] = {}
    for entry in meta:
        key = emoji_group_key(entry["unified"])
        variants = [entry] + list((entry.get("skin_variations") or {}).values())
        for variant in variants:
            if variant.get(f"has_img_{vendor}", True) and (img_dir / variant["image"]).is_file():
                items[variant["image"]] = key
    return [(img_dir / name, items[name]) for name in sorted(items)]


def emoji_dataset(source: str, split: Split, resolution: int, channels: int) -> ImageSet:
    """The chosen vendors' emoji (labels ``vendor/file.png``), vendor by vendor, each sorted by file name."""
    chosen: list[tuple[Path, str]] = []
    for vendor in emoji_vendors(source):
        index = emoji_index(emoji_dir(vendor), vendor)
        chosen += [(index[i][0], f"{vendor}/{index[i][0].name}")
                   for i in select_split([key for _, key in index], split)]
    images = torch.stack([_prepare(load_image(p), resolution, channels) for p, _ in chosen])
    images = (images * 255).round().to(torch.uint8)
    return _tensor_set(source, split, images, [label for _, label in chosen])


# ------------------------------------------------------------------------------------------ fashion-mnist

_FASHION_FILES = {"train": "train-images-idx3-ubyte.gz", "test": "t10k-images-idx3-ubyte.gz"}


def locate_fashion_mnist() -> Path:
    """Find the Debian package's IDX files: ``$GANREV_FASHION_MNIST``, then the package's own file list."""
    candidates: list[Path] = []
    if os.environ.get("GANREV_FASHION_MNIST"):
        candidates.append(Path(os.environ["GANREV_FASHION_MNIST"]))
    dpkg = shutil.which("dpkg")
    if dpkg:
        listing = subprocess.run([dpkg, "-L", "dataset-fashion-mnist"], capture_output=True, text=True)
        candidates += [Path(line).parent for line in listing.stdout.splitlines()
                       if line.endswith(_FASHION_FILES["train"])]
    for folder in candidates:
        if all((folder / name).is_file() for name in _FASHION_FILES.values()):
            return folder
    raise GanrevError("Fashion-MNIST not found: `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), "
                      "or set GANREV_FASHION_MNIST to a folder holding the four IDX .gz files")


def read_idx_images(path: Path) -> np.ndarray:
    """Read an IDX3 uint8 image file (optionally gzipped) as ``[N, H, W]``."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError; truncation is EOFError
        raise GanrevError(f"cannot read {path}: {exc}") from exc
    if len(data) < 16:
        raise GanrevError(f"{path} is too short for an IDX image file")
    magic, count, rows, cols = struct.unpack(">IIII", data[:16])
    if magic != 0x00000803 or len(data) != 16 + count * rows * cols:
        raise GanrevError(f"{path} is not a valid IDX3 uint8 image file")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols)


def fashion_mnist_dataset(split: Split, resolution: int, channels: int) -> ImageSet:
    folder = locate_fashion_mnist()
    parts = ["train", "test"] if split == "all" else [split]
    arrays = [read_idx_images(folder / _FASHION_FILES[part]) for part in parts]
    raw = torch.from_numpy(np.concatenate(arrays)).unsqueeze(1)
    if resolution != raw.shape[-1] or channels != 1:
        # Resize in chunks so 70k images never need a float copy of the whole set at once.
        chunks = [(_prepare(c.float() / 255, resolution, channels) * 255).round().to(torch.uint8)
                  for c in raw.split(4096)]
        raw = torch.cat(chunks)
    labels = [f"{part}-{i}" for part, arr in zip(parts, arrays) for i in range(len(arr))]
    return _tensor_set("fashion-mnist", split, raw, labels)


# ---------------------------------------------------------------------------------------- torchvision

def torchvision_dataset(name: str, split: Split, resolution: int, channels: int) -> ImageSet:
    """CIFAR-10 / MNIST / CelebA through torchvision, downloaded on first use into ``data_home()``."""
    import torchvision

    root = data_home() / "torchvision"
    parts = ["train", "test"] if split == "all" else [split]
    sets = []
    try:
        for part in parts:
            if name == "cifar10":
                sets.append(torchvision.datasets.CIFAR10(root, train=part == "train", download=True))
            elif name == "mnist":
                sets.append(torchvision.datasets.MNIST(root, train=part == "train", download=True))
            else:
                sets.append(torchvision.datasets.CelebA(root, split=part, download=True))
    except Exception as exc:  # network errors come as URLError, RuntimeError, OSError... depending on source
        raise GanrevError(f"could not download {name} with torchvision into {root} (offline?): {exc}. "
                          "Offline, use `--data emoji`, `--data fashion-mnist` or a folder of images") from exc
    pairs = [(s, i) for s in sets for i in range(len(s))]

    def load(i: int) -> torch.Tensor:
        ds, j = pairs[i]
        pil = ds[j][0]
        tensor = torch.from_numpy(np.asarray(pil.convert("RGB" if pil.mode != "L" else "L"), dtype=np.float32) / 255)
        tensor = tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)
        return _prepare(tensor, resolution, channels)

    return ImageSet(name, split, len(pairs), load, [f"{name}-{i}" for i in range(len(pairs))])


def open_dataset(source: str, split: Split = "train", *, resolution: int = 64, channels: int = 3) -> ImageSet:
    """Open a built-in data set by name or a folder of images by path (see module docstring)."""
    if is_emoji_source(source):
        return emoji_dataset(source, split, resolution, channels)
    if source == "fashion-mnist":
        return fashion_mnist_dataset(split, resolution, channels)
    if source in ("cifar10", "mnist", "celeba"):
        return torchvision_dataset(source, split, resolution, channels)
    if Path(source).is_dir():
        return folder_dataset(source, split, resolution, channels)
    raise GanrevError(f"unknown data source {source!r}: use one of {', '.join(BUILTIN_SOURCES)} or a folder")


def export_heldout(source: str, out_dir: str | os.PathLike[str], count: int = 64, *, resolution: int = 64,
                   channels: int = 3) -> list[Path]:
    """Write ``count`` held-out (test-split) images as 8-bit PNGs, one per emoji group, chosen deterministically.

    Used to ship a small test set beside each generator, so tables and tests run offline.
    """
    test = open_dataset(source, "test", resolution=resolution, channels=channels)
    return export_one_per_group(test, source, out_dir, count)


def export_one_per_group(dataset: ImageSet, source: str, out_dir: str | os.PathLike[str],
                         count: int = 64) -> list[Path]:
    """Write ``count`` images of ``dataset`` as 8-bit PNGs: the first item of each group (labels are sorted),
    groups in the order of SHA-256 of their key, so the choice never depends on the machine."""
    from ganrev.io import save_image

    labels = dataset.labels or [str(i) for i in range(len(dataset))]
    written = []
    for index in one_per_group(dataset, source, count):
        written.append(Path(out_dir) / f"{Path(labels[index]).stem}.png")
        save_image(dataset[index], written[-1])
    return written


def one_per_group(dataset: ImageSet, source: str, count: int) -> list[int]:
    """Indices of ``count`` items of ``dataset``, the first (by label order) of each group, groups in the order
    of SHA-256 of their key: the same choice on every machine, and across vendors of one emoji source when
    ``dataset`` holds one vendor."""
    labels = dataset.labels or [str(i) for i in range(len(dataset))]
    chosen: dict[str, int] = {}
    for index, label in enumerate(labels):
        chosen.setdefault(group_of(source, label), index)
    order = sorted(chosen, key=lambda key: hashlib.sha256(key.encode()).hexdigest())[:count]
    return [chosen[key] for key in order]


def split_rule(source: str) -> str:
    """One-line description of how ``source`` is split, recorded in checkpoints."""
    if source in ("fashion-mnist", "cifar10", "mnist", "celeba"):
        return "official train/test split"
    unit = "base emoji (variants grouped, the same for every vendor)" if is_emoji_source(source) else "relative file path"
    return f"sha256('ganrev-split:' + {unit}) first 2 bytes mod 100 < {TEST_PERCENT} -> test"
