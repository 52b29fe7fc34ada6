"""Tests for ganrev.data: the deterministic held-out split, emoji grouping, and every offline data source.

Nothing here touches the network or the real data sets: emoji trees and Fashion-MNIST IDX files are
built in tmp_path, and GANREV_DATA / GANREV_FASHION_MNIST point at them.
"""

from __future__ import annotations

import gzip
import json
import random
import shutil
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganrev import data as gdata
from ganrev.data import (
    TEST_PERCENT,
    canonical_source,
    carve_validation,
    emoji_group_key,
    emoji_index,
    emoji_vendors,
    folder_dataset,
    group_of,
    is_test_group,
    is_validation_group,
    locate_fashion_mnist,
    open_dataset,
    read_idx_images,
    saved_source,
    select_split,
    split_rule,
)
from ganrev.errors import GanrevError

# ------------------------------------------------------------------------------------------ group keys


@pytest.mark.parametrize("codes", [
    # running: person / woman / man, with and without skin tones, fully and minimally qualified
    ["1F3C3", "1F3C3-1F3FD-200D-2640-FE0F", "1F3C3-200D-2642-FE0F", "1F3C3-1F3FB", "1F3C3-200D-2640",
     "1f3c3-1f3ff-200d-2642-fe0f"],
    # farmer: person / man / woman, with skin tones
    ["1F468-200D-1F33E", "1F469-1F3FB-200D-1F33E", "1F9D1-200D-1F33E", "1F9D1-1F3FF-200D-1F33E"],
    # boy / girl / child and old man / old woman / older person
    ["1F466", "1F467", "1F9D2-1F3FC"],
    ["1F474", "1F475-1F3FE", "1F9D3"],
    # variation selector only
    ["2764-FE0F", "2764"],
])
def test_group_key_merges_variants(codes: list[str]) -> None:
    assert len({emoji_group_key(code) for code in codes}) == 1


def test_group_key_values() -> None:
    assert emoji_group_key("1F3C3-1F3FD-200D-2640-FE0F") == "1F3C3"
    assert emoji_group_key("1F469-1F3FB-200D-1F33E") == emoji_group_key("1F468-200D-1F33E")
    assert emoji_group_key("1F1FA-1F1F8") == "1F1FA-1F1F8"  # flags keep both regional indicators


@pytest.mark.parametrize("a,b", [
    ("1F3C3", "1F6B6"),                  # runner vs walker
    ("1F1FA-1F1F8", "1F1EC-1F1E7"),      # two flags
    ("1F1FA-1F1F8", "1F1FA"),            # a flag vs one regional indicator
    ("1F468-200D-1F33E", "1F468-200D-1F373"),  # farmer vs cook
    ("1F468-200D-1F33E", "1F468"),       # farmer vs man
    ("1F466", "1F468"),                  # boy vs man
    ("2640-FE0F", "2642-FE0F"),          # the gender signs themselves stay distinct
    ("1F3FB", "1F3FC"),                  # and so do the skin-tone swatches
    ("1F600", "1F601"),
])
def test_group_key_keeps_different_emoji_apart(a: str, b: str) -> None:
    assert emoji_group_key(a) != emoji_group_key(b)


def test_group_key_of_lone_modifier_is_not_empty() -> None:
    assert emoji_group_key("2640-FE0F") == "2640-FE0F"
    assert emoji_group_key("1f3fb") == "1F3FB"


# ----------------------------------------------------------------------------------------------- split

def test_split_is_deterministic_disjoint_and_complete() -> None:
    keys = [f"item-{i}" for i in range(3000)]
    train, test = select_split(keys, "train"), select_split(keys, "test")
    assert select_split(keys, "train") == train and select_split(keys, "test") == test
    assert not set(train) & set(test)
    assert sorted(train + test) == list(range(len(keys)))
    assert select_split(keys, "all") == list(range(len(keys)))
    assert train == sorted(train) and test == sorted(test)


def test_split_fraction_is_ten_percent() -> None:
    n = 20000
    fraction = sum(is_test_group(f"file-{i}.png") for i in range(n)) / n
    p = TEST_PERCENT / 100
    sigma = (p * (1 - p) / n) ** 0.5
    assert abs(fraction - p) < 5 * sigma  # ~0.011: a wrong rule (e.g. 1/16 or 1/8) would be far outside


def test_split_known_values_are_pinned() -> None:
    # The rule is part of the checkpoint contract (split_rule is recorded): pin a few outcomes.
    assert [is_test_group(f"{c:X}") for c in (0x1F606, 0x1F609, 0x1F64B)] == [True, True, True]
    assert [is_test_group(k) for k in ("1F3C3", "P-1F33E", "1F600")] == [False, False, False]


def test_split_independent_of_order_and_of_other_items() -> None:
    keys = [f"k{i}" for i in range(500)]
    test_keys = {keys[i] for i in select_split(keys, "test")}
    shuffled = keys[:]
    random.Random(1).shuffle(shuffled)
    assert {shuffled[i] for i in select_split(shuffled, "test")} == test_keys
    subset = shuffled[::3] + ["new-a", "new-b"]
    got = {subset[i] for i in select_split(subset, "test")}
    assert got - {"new-a", "new-b"} == test_keys & set(subset)
    # duplicates (items sharing a group) always land together
    doubled = keys + keys
    idx = select_split(doubled, "test")
    assert len(idx) == 2 * len(test_keys)


def test_select_split_rejects_unknown_split() -> None:
    with pytest.raises(GanrevError, match="split"):
        select_split(["a"], "validation")  # type: ignore[arg-type]


def test_split_rule_descriptions() -> None:
    assert split_rule("fashion-mnist") == "official train/test split"
    assert "base emoji" in split_rule("emoji")
    assert "relative file path" in split_rule("/some/folder")
    assert f"< {TEST_PERCENT}" in split_rule("emoji")


# ----------------------------------------------------------------------------------------------- emoji

def _emoji_png(path: Path, colour: tuple[int, int, int]) -> None:
    """64x64 RGBA: transparent everywhere except an opaque centre square, a half-transparent stripe."""
    arr = np.zeros((64, 64, 4), dtype=np.uint8)
    arr[16:48, 16:48, :3] = colour
    arr[16:48, 16:48, 3] = 255
    arr[0:4, :, :3] = (0, 0, 0)
    arr[0:4, :, 3] = 128  # half-transparent black on white -> ~0.5 gray
    Image.fromarray(arr, "RGBA").save(path)


def _entry(unified: str, skins: list[str] = (), has_img: bool = True) -> dict:
    entry = {"unified": unified, "image": unified.lower() + ".png", "has_img_google": has_img}
    if skins:
        entry["skin_variations"] = {}
        for tone in skins:
            parts = unified.split("-")
            code = "-".join([parts[0], tone, *parts[1:]])
            entry["skin_variations"][tone] = {"unified": code, "image": code.lower() + ".png",
                                              "has_img_google": True}
    return entry


EMOJI_ENTRIES = [
    _entry("1F3C3", ["1F3FB", "1F3FD"]),                         # person running (train side)
    _entry("1F3C3-200D-2640-FE0F", ["1F3FD"]),                   # woman running
    _entry("1F3C3-200D-2642-FE0F"),                              # man running
    _entry("1F9D1-200D-1F33E", ["1F3FF"]),                       # farmer (train side)
    _entry("1F468-200D-1F33E"),
    _entry("1F469-200D-1F33E", ["1F3FB"]),
    _entry("1F64B", ["1F3FC"]),                                  # person raising hand (test side)
    _entry("1F64B-200D-2640-FE0F", ["1F3FB", "1F3FE"]),
    _entry("1F64B-200D-2642-FE0F"),
    _entry("1F606"), _entry("1F609"), _entry("1F61B"),           # test side
    _entry("1F600"), _entry("1F601"), _entry("1F602"),           # train side
    _entry("1F1FA-1F1F8"),                                       # a flag
    _entry("1F603", has_img=False),                              # no Google image: skipped
    _entry("1F604"),                                             # listed but its file is missing: skipped
]


@pytest.fixture()
def emoji_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data" / "emoji-datasource-google"
    img = root / "img" / "google" / "64"
    img.mkdir(parents=True)
    (root / "emoji.json").write_text(json.dumps(EMOJI_ENTRIES))
    rng = np.random.default_rng(0)
    for entry in EMOJI_ENTRIES:
        for variant in [entry, *(entry.get("skin_variations") or {}).values()]:
            if variant["unified"] == "1F604":
                continue
            _emoji_png(img / variant["image"], tuple(int(v) for v in rng.integers(0, 200, 3)))
    monkeypatch.setenv("GANREV_DATA", str(tmp_path / "data"))
    return root


def _expected_emoji() -> dict[str, str]:
    """image name -> group key of its base entry, for every image that should be indexed."""
    out = {}
    for entry in EMOJI_ENTRIES:
        if not entry["has_img_google"] or entry["unified"] == "1F604":
            continue
        for variant in [entry, *(entry.get("skin_variations") or {}).values()]:
            out[variant["image"]] = emoji_group_key(entry["unified"])
    return out


def test_emoji_index_lists_images_with_group_keys(emoji_home: Path) -> None:
    index = emoji_index(emoji_home)
    names = [p.name for p, _ in index]
    assert names == sorted(names)
    assert {p.name: key for p, key in index} == _expected_emoji()
    assert all(p.is_file() for p, _ in index)
    keys = {p.name: key for p, key in index}
    assert keys["1f3c3-1f3fd-200d-2640-fe0f.png"] == keys["1f3c3.png"] == keys["1f3c3-200d-2642-fe0f.png"]
    assert keys["1f469-1f3fb-200d-1f33e.png"] == keys["1f9d1-200d-1f33e.png"] == keys["1f468-200d-1f33e.png"]
    assert "1f603.png" not in keys and "1f604.png" not in keys


def test_emoji_split_keeps_every_variant_together(emoji_home: Path) -> None:
    train = open_dataset("emoji", "train", resolution=32)
    test = open_dataset("emoji", "test", resolution=32)
    everything = open_dataset("emoji", "all", resolution=32)
    expected = {f"google/{name}": key for name, key in _expected_emoji().items()}
    assert len(train) > 0 and len(test) > 0
    assert not set(train.labels) & set(test.labels)
    assert set(train.labels) | set(test.labels) == set(everything.labels) == set(expected)
    assert len(everything) == len(train) + len(test) == len(expected)
    for name in test.labels:
        assert is_test_group(expected[name])
    for name in train.labels:
        assert not is_test_group(expected[name])
    # every group is entirely on one side
    for key in set(expected.values()):
        members = {n for n, k in expected.items() if k == key}
        assert members <= set(train.labels) or members <= set(test.labels), key
    assert {n for n in test.labels if n.startswith("google/1f64b")} == {n for n in expected if n.startswith("google/1f64b")}
    assert not any(n.startswith("google/1f3c3") for n in test.labels)


def _add_vendor(emoji_home: Path, vendor: str, skip: set[str] = frozenset()) -> Path:
    """A second vendor's tree beside ``emoji_home`` (same emoji.json), minus the images named in ``skip``."""
    root = emoji_home.parent / f"emoji-datasource-{vendor}"
    img = root / "img" / vendor / "64"
    img.mkdir(parents=True)
    entries = [entry | {f"has_img_{vendor}": True} for entry in EMOJI_ENTRIES]
    (root / "emoji.json").write_text(json.dumps(entries))
    for source in (emoji_home / "img" / "google" / "64").iterdir():
        if source.name not in skip:
            arr = 255 - np.asarray(Image.open(source))[..., :3]  # another style: the colours inverted
            Image.fromarray(np.dstack([arr, np.asarray(Image.open(source))[..., 3]]), "RGBA").save(img / source.name)
    return root


def test_every_vendor_holds_out_the_same_groups(emoji_home: Path) -> None:
    _add_vendor(emoji_home, "twitter", skip={"1f600.png"})
    both = {split: open_dataset("emoji", split, resolution=16) for split in ("train", "test")}
    for split, dataset in both.items():
        vendors = {label.split("/")[0] for label in dataset.labels}
        assert vendors == {"google", "twitter"}
        for label in dataset.labels:
            assert is_test_group(group_of("emoji", label)) == (split == "test")
    # the same base emoji are on the test side for each vendor
    per_vendor = {v: {Path(l).name for l in both["test"].labels if l.startswith(v)} for v in ("google", "twitter")}
    assert per_vendor["google"] == per_vendor["twitter"]
    twitter_train = {Path(l).name for l in both["train"].labels if l.startswith("twitter/")}
    assert "1f600.png" not in twitter_train and "1f601.png" in twitter_train
    # the images really are each vendor's own files
    g, t = both["train"].labels.index("google/1f601.png"), both["train"].labels.index("twitter/1f601.png")
    assert not torch.equal(both["train"][g], both["train"][t])


def test_emoji_vendor_selection(emoji_home: Path) -> None:
    assert emoji_vendors("emoji") == ["google"]  # only what is fetched
    _add_vendor(emoji_home, "twitter")
    assert emoji_vendors("emoji") == ["google", "twitter"]
    assert emoji_vendors("emoji:twitter") == ["twitter"]
    assert emoji_vendors("emoji:twitter,google") == ["google", "twitter"]  # a fixed order whatever is typed
    only = open_dataset("emoji:twitter", "all", resolution=16)
    assert only.name == "emoji:twitter" and all(label.startswith("twitter/") for label in only.labels)
    google = open_dataset("emoji:google", "all", resolution=16)
    # each vendor's own has_img_<vendor> flags: 1F603 has no Google image but has a Twemoji one
    assert {Path(l).name for l in only.labels} - {Path(l).name for l in google.labels} == {"1f603.png"}
    assert len(open_dataset("emoji", "all", resolution=16)) == len(google) + len(only)
    with pytest.raises(GanrevError, match="unknown emoji vendor apple"):
        emoji_vendors("emoji:google,apple")
    with pytest.raises(GanrevError, match="unknown emoji vendor"):
        emoji_vendors("emoji:")
    shutil.rmtree(emoji_home.parent / "emoji-datasource-twitter")
    with pytest.raises(GanrevError, match="ganrev fetch emoji:twitter"):
        open_dataset("emoji:twitter", "train")
    assert "every vendor" in split_rule("emoji:google,twitter")


def test_sources_as_checkpoints_record_them(emoji_home: Path) -> None:
    assert canonical_source("emoji") == "emoji:google"
    _add_vendor(emoji_home, "twitter")
    assert canonical_source("emoji") == "emoji:google,twitter"
    assert canonical_source("emoji:twitter") == "emoji:twitter" and canonical_source("fashion-mnist") == "fashion-mnist"
    # `emoji` in a checkpoint written before other vendors existed meant Google's set alone
    assert saved_source("emoji") == "emoji:google" and saved_source("emoji:twitter") == "emoji:twitter"


def test_emoji_images_composited_on_white(emoji_home: Path) -> None:
    ds = open_dataset("emoji", "all", resolution=64)
    assert ds.name == "emoji"
    for i in range(len(ds)):
        image = ds[i]
        assert image.shape == (3, 64, 64) and image.dtype == torch.float32
        assert 0.0 <= image.min() and image.max() <= 1.0
        torch.testing.assert_close(image[:, 60:, :], torch.ones(3, 4, 64))   # transparent -> white
        torch.testing.assert_close(image[:, :4, :], torch.full((3, 4, 64), 127 / 255), atol=1 / 255, rtol=0)
    # the opaque centre keeps its colour: compare with the file itself
    name = Path(ds.labels[0]).name
    raw = np.asarray(Image.open(emoji_home / "img" / "google" / "64" / name))[32, 32, :3] / 255
    torch.testing.assert_close(ds[0][:, 32, 32], torch.tensor(raw, dtype=torch.float32), atol=1 / 255, rtol=0)


@pytest.mark.parametrize("channels", [1, 3])
def test_emoji_resolution_and_channels(emoji_home: Path, channels: int) -> None:
    ds = open_dataset("emoji", "train", resolution=32, channels=channels)
    image = ds[0]
    assert image.shape == (channels, 32, 32)
    assert 0.0 <= image.min() and image.max() <= 1.0
    with pytest.raises(IndexError):
        ds[len(ds)]
    assert len(list(ds)) == len(ds)  # iteration stops at the end


def test_emoji_missing_data_says_how_to_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANREV_DATA", str(tmp_path / "empty"))
    with pytest.raises(GanrevError, match="ganrev fetch emoji"):
        open_dataset("emoji", "train")


# --------------------------------------------------------------------------------------------- folders

def _write_image(path: Path, size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w, h = size
    shape = (h, w) if mode == "L" else (h, w, 3)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)


def _names_on_sides(n_train: int, n_test: int, pattern: str = "sub{}/img{:03d}.png") -> list[str]:
    """Relative paths of which exactly n_train land in train and n_test in test."""
    train, test, i = [], [], 0
    while len(train) < n_train or len(test) < n_test:
        name = pattern.format(i % 3, i)
        (test if is_test_group(name) else train).append(name)
        i += 1
    return train[:n_train] + test[:n_test]


@pytest.fixture()
def image_folder(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    for k, name in enumerate(_names_on_sides(8, 3)):
        _write_image(root / name, (40 + 7 * k, 30 + 3 * k), "L" if k % 2 else "RGB", seed=k)
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.mark.parametrize("channels", [1, 3])
def test_folder_dataset_shapes_and_channels(image_folder: Path, channels: int) -> None:
    ds = open_dataset(str(image_folder), "all", resolution=32, channels=channels)
    assert len(ds) == 11
    for i in range(len(ds)):
        image = ds[i]
        assert image.shape == (channels, 32, 32) and image.dtype == torch.float32
        assert 0.0 <= image.min() and image.max() <= 1.0


def test_folder_dataset_recursive_split_by_relative_path(image_folder: Path, tmp_path: Path) -> None:
    train = folder_dataset(image_folder, "train", 32, 3)
    test = folder_dataset(image_folder, "test", 32, 3)
    assert (len(train), len(test)) == (8, 3)
    assert all("/" in label for label in train.labels + test.labels)  # found in sub-folders
    assert all(label.endswith(".png") for label in train.labels + test.labels)
    assert all(is_test_group(label) for label in test.labels)
    assert not any(is_test_group(label) for label in train.labels)
    # moving the folder elsewhere keeps the split: keys are relative paths
    moved = tmp_path / "elsewhere" / "deeper"
    shutil.copytree(image_folder, moved)
    assert folder_dataset(moved, "test", 32, 3).labels == test.labels
    # adding files does not move existing ones across the split
    _write_image(moved / "zzz-new.png", (20, 20))
    assert set(test.labels) <= set(folder_dataset(moved, "test", 32, 3).labels)


def test_folder_dataset_centre_crops_then_resizes(tmp_path: Path) -> None:
    # a tall 30x90 image: white top and bottom thirds, black middle third -> the centre square is black
    arr = np.full((90, 30), 255, dtype=np.uint8)
    arr[30:60] = 0
    root = tmp_path / "tall"
    root.mkdir()
    Image.fromarray(arr, "L").save(root / "a.png")
    image = folder_dataset(root, "all", 32, 1)[0]
    assert image.shape == (1, 32, 32)
    assert image.max() < 0.02
    # a wide image with a white centre square on a black background -> all white
    wide = np.zeros((20, 60, 3), dtype=np.uint8)
    wide[:, 20:40] = 255
    Image.fromarray(wide).save(root / "a.png")
    out = folder_dataset(root, "all", 32, 3)[0]
    assert out.shape == (3, 32, 32) and out.min() > 0.98


def test_folder_gray_and_colour_conversion(tmp_path: Path) -> None:
    root = tmp_path / "c"
    root.mkdir()
    Image.new("RGB", (32, 32), (255, 0, 0)).save(root / "red.png")
    gray = folder_dataset(root, "all", 32, 1)[0]
    torch.testing.assert_close(gray, torch.full((1, 32, 32), 0.299), atol=1e-4, rtol=0)
    Image.new("L", (32, 32), 51).save(root / "red.png")
    rgb = folder_dataset(root, "all", 32, 3)[0]
    torch.testing.assert_close(rgb, torch.full((3, 32, 32), 0.2), atol=1e-4, rtol=0)


def test_folder_rgba_composited_on_white(tmp_path: Path) -> None:
    root = tmp_path / "rgba"
    root.mkdir()
    Image.new("RGBA", (32, 32), (0, 0, 0, 0)).save(root / "clear.png")
    torch.testing.assert_close(folder_dataset(root, "all", 32, 3)[0], torch.ones(3, 32, 32))


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GanrevError, match="no images"):
        open_dataset(str(empty), "train", resolution=32)
    (empty / "readme.txt").write_text("hello")
    (empty / "sub").mkdir()
    with pytest.raises(GanrevError, match="no images"):
        folder_dataset(empty, "train", 32, 3)


def test_folder_with_empty_split_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "few"
    for name in _names_on_sides(3, 0):
        _write_image(root / name, (16, 16))
    assert len(folder_dataset(root, "train", 32, 3)) == 3
    with pytest.raises(GanrevError, match="empty") as info:
        folder_dataset(root, "test", 32, 3)
    assert isinstance(info.value, gdata.EmptySplitError)  # fit_generator records such a split as 0 images


# --------------------------------------------------------------------------------------- fashion-mnist

def _idx_bytes(images: np.ndarray, magic: int = 0x00000803) -> bytes:
    n, rows, cols = images.shape
    return struct.pack(">IIII", magic, n, rows, cols) + images.astype(np.uint8).tobytes()


@pytest.fixture()
def fashion_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, np.ndarray, np.ndarray]:
    folder = tmp_path / "fashion"
    folder.mkdir()
    rng = np.random.default_rng(3)
    train = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    train[0] = 255
    test[0] = 0
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(train)))
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(test)))
    monkeypatch.setenv("GANREV_FASHION_MNIST", str(folder))
    return folder, train, test


def test_fashion_mnist_from_env_folder(fashion_dir) -> None:
    folder, train, test = fashion_dir
    assert locate_fashion_mnist() == folder
    ds_train = open_dataset("fashion-mnist", "train", resolution=28, channels=1)
    ds_test = open_dataset("fashion-mnist", "test", resolution=28, channels=1)
    assert (len(ds_train), len(ds_test)) == (12, 5)
    assert ds_train.name == "fashion-mnist"
    for i in (0, 7):
        torch.testing.assert_close(ds_train[i], torch.from_numpy(train[i]).float()[None] / 255)
    torch.testing.assert_close(ds_test[3], torch.from_numpy(test[3]).float()[None] / 255)
    everything = open_dataset("fashion-mnist", "all", resolution=28, channels=1)
    assert len(everything) == 17
    assert everything.labels[:2] == ["train-0", "train-1"] and everything.labels[-1] == "test-4"
    torch.testing.assert_close(everything[12], ds_test[0])


@pytest.mark.parametrize("channels", [1, 3])
def test_fashion_mnist_resized_to_32(fashion_dir, channels: int) -> None:
    _, train, test = fashion_dir
    ds = open_dataset("fashion-mnist", "train", resolution=32, channels=channels)
    assert len(ds) == 12
    image = ds[0]
    assert image.shape == (channels, 32, 32) and image.dtype == torch.float32
    torch.testing.assert_close(image, torch.ones(channels, 32, 32))  # all-white stays white
    assert 0.0 <= ds[5].min() and ds[5].max() <= 1.0
    test_set = open_dataset("fashion-mnist", "test", resolution=32, channels=channels)
    assert len(test_set) == 5
    torch.testing.assert_close(test_set[0], torch.zeros(channels, 32, 32))
    assert len(open_dataset("fashion-mnist", "all", resolution=32, channels=channels)) == 17


def test_read_idx_plain_and_gzipped(tmp_path: Path) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    plain = tmp_path / "x-idx3-ubyte"
    plain.write_bytes(_idx_bytes(images))
    packed = tmp_path / "x-idx3-ubyte.gz"
    packed.write_bytes(gzip.compress(_idx_bytes(images)))
    np.testing.assert_array_equal(read_idx_images(plain), images)
    np.testing.assert_array_equal(read_idx_images(packed), images)


@pytest.mark.parametrize("damage", ["magic", "short-data", "long-data", "tiny", "not-gzip", "truncated-gzip"])
def test_corrupt_idx_is_an_error(tmp_path: Path, damage: str) -> None:
    images = np.zeros((3, 28, 28), dtype=np.uint8)
    raw = _idx_bytes(images)
    if damage == "magic":
        raw = _idx_bytes(images, magic=0x00000801)  # a label file, not images
    elif damage == "short-data":
        raw = raw[:-10]
    elif damage == "long-data":
        raw = raw + b"\0"
    elif damage == "tiny":
        raw = raw[:10]
    path = tmp_path / "train-images-idx3-ubyte.gz"
    if damage == "not-gzip":
        path.write_bytes(b"this is not gzip at all" * 10)
    elif damage == "truncated-gzip":
        path.write_bytes(gzip.compress(raw)[:40])
    else:
        path.write_bytes(gzip.compress(raw))
    with pytest.raises(GanrevError):
        read_idx_images(path)


def test_corrupt_fashion_mnist_file_is_an_error(fashion_dir) -> None:
    folder, _, _ = fashion_dir
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 8))
    with pytest.raises(GanrevError):
        open_dataset("fashion-mnist", "test", resolution=28, channels=1)


def test_fashion_mnist_missing_gives_apt_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    incomplete = tmp_path / "incomplete"
    incomplete.mkdir()
    (incomplete / "train-images-idx3-ubyte.gz").write_bytes(b"")  # the test file is missing
    monkeypatch.setenv("GANREV_FASHION_MNIST", str(incomplete))
    # hide any system-wide Debian package so the outcome does not depend on the machine
    real_which = shutil.which
    monkeypatch.setattr(gdata.shutil, "which", lambda name, *a, **k: None if name == "dpkg" else real_which(name))
    with pytest.raises(GanrevError, match="apt-get install dataset-fashion-mnist"):
        locate_fashion_mnist()
    monkeypatch.delenv("GANREV_FASHION_MNIST")
    with pytest.raises(GanrevError, match="GANREV_FASHION_MNIST"):
        open_dataset("fashion-mnist", "train", resolution=32, channels=1)


# ---------------------------------------------------------------------------------- torchvision / other

def test_cifar10_offline_fails_fast_with_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torchvision = pytest.importorskip("torchvision")
    calls = []

    class OfflineCIFAR10:
        def __init__(self, root, train=True, download=False, **kwargs):
            calls.append((Path(root), train, download))
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", OfflineCIFAR10)
    monkeypatch.setenv("GANREV_DATA", str(tmp_path / "data"))
    with pytest.raises(GanrevError, match="offline") as info:
        open_dataset("cifar10", "train", resolution=32)
    assert "cifar10" in str(info.value) and "fashion-mnist" in str(info.value)
    assert calls == [(tmp_path / "data" / "torchvision", True, True)]


def test_unknown_source_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(GanrevError, match="unknown data source"):
        open_dataset("imagenet-9000", "train")
    with pytest.raises(GanrevError, match="unknown data source"):
        open_dataset(str(tmp_path / "no-such-folder"), "train")


# ------------------------------------------------------------------------------------------- validation

def test_validation_is_carved_from_training_groups_only(tmp_path: Path) -> None:
    root = tmp_path / "many"
    names = _names_on_sides(120, 0, pattern="d{}/f{:03d}.png")
    for k, name in enumerate(names):
        _write_image(root / name, (8, 8), seed=k)
    train = folder_dataset(root, "train", 8, 3)
    fit, val = carve_validation(train, str(root))
    assert val is not None and len(fit) + len(val) == len(train) == 120
    assert set(fit.labels).isdisjoint(val.labels)
    assert all(is_validation_group(label) for label in val.labels)
    assert not any(is_validation_group(label) for label in fit.labels)
    assert 3 <= len(val) <= 25  # about VALIDATION_PERCENT of 120
    again_fit, again_val = carve_validation(folder_dataset(root, "train", 8, 3), str(root))
    assert again_val.labels == val.labels and again_fit.labels == fit.labels  # deterministic
    assert torch.equal(val[0], train[train.labels.index(val.labels[0])])  # the same pixels, by index


def test_emoji_variants_share_their_validation_side(emoji_home: Path) -> None:
    train = open_dataset("emoji", "train", resolution=16, channels=3)
    fit, val = carve_validation(train, "emoji")
    sides = {}
    for part, dataset in (("fit", fit), ("val", val)):
        for label in (dataset.labels if dataset is not None else []):
            sides.setdefault(group_of("emoji", label), set()).add(part)
    assert all(len(parts) == 1 for parts in sides.values())


def test_tiny_sets_have_no_validation_part(tmp_path: Path) -> None:
    root = tmp_path / "tiny"
    names = [n for n in _names_on_sides(40, 0, pattern="x{}/y{:03d}.png") if not is_validation_group(n)]
    for k, name in enumerate(names[:5]):
        _write_image(root / name, (8, 8), seed=k)
    train = folder_dataset(root, "train", 8, 3)
    fit, val = carve_validation(train, str(root))
    assert val is None and fit is train


def test_openmoji_svgs_are_rendered_into_the_emoji_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("resvg_py")
    package = tmp_path / "package"
    (package / "color" / "svg").mkdir(parents=True)
    (package / "data").mkdir()
    circle = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 72 72"><circle cx="36" cy="36" r="20" '
              'fill="#{}"/></svg>')
    entries = [("1F600", "smileys-emotion", "fcea2b"), ("1F44B-1F3FD", "people-body", "a57939"),
               ("1F44B", "people-body", "fadcbc"), ("E000", "extras-openmoji", "000000")]
    for hexcode, group, colour in entries:
        (package / "color" / "svg" / f"{hexcode}.svg").write_text(circle.format(colour))
    (package / "data" / "openmoji.json").write_text(json.dumps([{"hexcode": h, "group": g} for h, g, _ in entries]))
    assert gdata.render_openmoji(package) == 3  # OpenMoji's own extras are not Unicode emoji: skipped
    index = emoji_index(package, "openmoji")
    assert [(p.name, key) for p, key in index] == [("1f44b-1f3fd.png", "1F44B"), ("1f44b.png", "1F44B"),
                                                   ("1f600.png", "1F600")]
    image = Image.open(index[2][0])
    assert image.size == (64, 64) and image.mode == "RGBA"
    pixels = np.asarray(image)
    assert pixels[0, 0, 3] == 0 and tuple(pixels[32, 32]) == (0xfc, 0xea, 0x2b, 255)  # transparent around the disc
    monkeypatch.setenv("GANREV_DATA", str(tmp_path / "home"))
    shutil.copytree(package, tmp_path / "home" / "openmoji")
    assert emoji_vendors("emoji") == ["openmoji"]
    assert len(open_dataset("emoji:openmoji", "all", resolution=16)) == 3


def test_iconify_icon_sets_are_rendered_into_the_emoji_layout(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("resvg_py")
    package = tmp_path / "package"
    package.mkdir()
    disc = '<circle cx="16" cy="16" r="8" fill="#{}"/>'
    icons = {"grinning-face": {"body": disc.format("fcea2b")},
             "waving-hand-medium": {"body": disc.format("a57939")},
             "waving-hand": {"body": disc.format("fadcbc"), "width": 64, "height": 64},  # its own box
             "no-code-point": {"body": disc.format("000000")}}
    (package / "icons.json").write_text(json.dumps({"prefix": "t", "icons": icons, "width": 32, "height": 32}))
    chars = {"1f600": "grinning-face", "1f44b-1f3fd": "waving-hand-medium", "1f44b": "waving-hand",
             "1f44c": "an-alias-not-listed"}
    (package / "chars.json").write_text(json.dumps(chars))
    assert gdata.render_iconify(package, "fluent") == 3  # icons without a code point, and unknown names: skipped
    index = emoji_index(package, "fluent")
    assert [(p.name, key) for p, key in index] == [("1f44b-1f3fd.png", "1F44B"), ("1f44b.png", "1F44B"),
                                                   ("1f600.png", "1F600")]
    pixels = np.asarray(Image.open(index[2][0]))
    assert pixels.shape == (64, 64, 4) and pixels[0, 0, 3] == 0
    assert tuple(pixels[32, 32]) == (0xfc, 0xea, 0x2b, 255)  # the 32-unit box scaled to 64 pixels: disc at centre
    own_box = np.asarray(Image.open(index[1][0]))
    assert own_box[12, 12, 3] == 255 and own_box[40, 40, 3] == 0  # a 64-unit box: the disc sits top-left, smaller
    monkeypatch.setenv("GANREV_DATA", str(tmp_path / "home"))
    shutil.copytree(package, gdata.emoji_dir("fluent"))
    assert emoji_vendors("emoji") == ["fluent"]
    assert len(open_dataset("emoji:fluent", "all", resolution=16)) == 3


def test_iconify_sets_without_code_points_are_placed_by_name() -> None:
    disc = {"body": "<circle/>"}
    icon_set = {"icons": {"grinning-face": disc, "bear-face": disc, "waving-hand": disc, "smiling-face": disc,
                          "own-drawing": disc},
                "aliases": {"bear": {"parent": "bear-face"},  # the map knows the alias, not the icon's own name
                            "waving-hand-left": {"parent": "waving-hand", "hFlip": True},  # another drawing
                            "grinning": {"parent": "grinning-face"},  # a second name of an icon already placed
                            "smiley": {"parent": "smiling-face"},  # two aliases the map knows: the first
                            "happy": {"parent": "smiling-face"},  # in name order places the icon
                            "ghost": {"parent": "not-in-the-set"}}}
    name_map = {"1f600": "grinning-face", "1f43b": "bear", "1f91a": "waving-hand-left", "1f642": "grinning",
                "1f60a": "smiley", "263a": "happy", "1f47b": "ghost", "1f44b": "waving-hand"}
    assert gdata.code_points_by_name(icon_set, name_map) == {
        "1f600": "grinning-face", "1f43b": "bear-face", "1f44b": "waving-hand", "263a": "smiling-face"}


def test_fetching_an_iconify_set_without_code_points_uses_the_name_map(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("resvg_py")
    disc = {"body": '<circle cx="8" cy="8" r="4" fill="#fcea2b"/>'}
    packages = {gdata.EMOJI_VENDORS["emojione"]: ({"icons": {"grinning-face": disc, "unknown-name": disc}}, {}),
                gdata.ICONIFY_NAME_MAP: ({"icons": {}}, {"1f600": "grinning-face", "1f44b": "waving-hand"})}
    unpacked = []

    def fake_npm_unpack(package: str, staging: Path) -> Path:
        unpacked.append(package)
        root = staging / "unpacked" / "package"
        root.mkdir(parents=True)
        icons, chars = packages[package]
        (root / "icons.json").write_text(json.dumps(icons))
        (root / "chars.json").write_text(json.dumps(chars))
        return root

    monkeypatch.setattr(gdata, "npm_unpack", fake_npm_unpack)
    monkeypatch.setenv("GANREV_DATA", str(tmp_path))
    root = gdata.fetch_emoji(vendor="emojione")
    assert unpacked == [gdata.EMOJI_VENDORS["emojione"], gdata.ICONIFY_NAME_MAP]
    assert root == gdata.emoji_dir("emojione") and root.parent == tmp_path
    assert [(p.name, key) for p, key in emoji_index(root, "emojione")] == [("1f600.png", "1F600")]
    gdata.fetch_emoji(vendor="emojione")  # already there: nothing is fetched again
    assert len(unpacked) == 2


def test_every_emoji_vendor_has_a_folder_of_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # fetch replaces a vendor's folder wholesale: it must never be the data home, nor another vendor's
    monkeypatch.setenv("GANREV_DATA", str(tmp_path))
    folders = [gdata.emoji_dir(vendor) for vendor in gdata.EMOJI_VENDORS]
    assert len(set(folders)) == len(folders)
    assert all(folder.parent == tmp_path for folder in folders)
