"""Tests for ganrev.io: reading real image files into tensors, writing them back, atomic writes."""

from __future__ import annotations

import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganrev.errors import GanrevError
from ganrev.io import (
    atomic_write_bytes,
    atomic_write_text,
    atomic_writer,
    center_crop_resize,
    convert_channels,
    from_uint8,
    list_images,
    load_image,
    resize,
    save_image,
    to_pil,
    to_uint8,
)

RNG = np.random.default_rng(0)


def _write(tmp_path: Path, name: str, img: Image.Image, **options) -> Path:
    path = tmp_path / name
    img.save(path, **options)
    return path


def _rgb_array(height: int = 6, width: int = 5) -> np.ndarray:
    return RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)


# --- reading modes --------------------------------------------------------------------------------

def test_gray_png_loads_as_one_channel(tmp_path):
    arr = RNG.integers(0, 256, (7, 9), dtype=np.uint8)
    image = load_image(_write(tmp_path, "gray.png", Image.fromarray(arr)))
    assert image.shape == (1, 7, 9) and image.dtype == torch.float32
    np.testing.assert_allclose(image[0].numpy(), arr / 255.0, atol=1e-7)


def test_rgb_png_loads_exactly(tmp_path):
    arr = _rgb_array()
    image = load_image(_write(tmp_path, "rgb.png", Image.fromarray(arr)))
    assert image.shape == (3, 6, 5)
    np.testing.assert_array_equal(to_uint8(image), arr)


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.array([[[0, 0, 0, 0], [255, 0, 0, 255], [0, 0, 0, 128], [255, 0, 0, 128]]], dtype=np.uint8)
    image = load_image(_write(tmp_path, "rgba.png", Image.fromarray(rgba, "RGBA")))
    assert image.shape == (3, 1, 4)
    a = 128 / 255
    expected = np.array([[1, 1, 1], [1, 0, 0], [1 - a, 1 - a, 1 - a], [1, 1 - a, 1 - a]], dtype=np.float32)
    np.testing.assert_allclose(image[:, 0, :].T.numpy(), expected, atol=1e-6)


def test_gray_with_alpha_is_composited_and_stays_gray(tmp_path):
    la = np.array([[[0, 0], [0, 255], [100, 128]]], dtype=np.uint8)
    image = load_image(_write(tmp_path, "la.png", Image.fromarray(la, "LA")))
    assert image.shape == (1, 1, 3)
    a = 128 / 255
    np.testing.assert_allclose(image[0, 0].numpy(), [1.0, 0.0, 100 / 255 * a + 1 - a], atol=1e-6)


def _palette_image() -> Image.Image:
    img = Image.frombytes("P", (3, 1), bytes([0, 1, 2]))
    img.putpalette([255, 0, 0, 0, 0, 255, 10, 20, 30])
    return img


def test_palette_png_without_transparency(tmp_path):
    path = _write(tmp_path, "p.png", _palette_image())
    with Image.open(path) as img:
        assert img.mode == "P" and "transparency" not in img.info
    image = load_image(path)
    assert image.shape == (3, 1, 3)
    np.testing.assert_array_equal(to_uint8(image)[0], [[255, 0, 0], [0, 0, 255], [10, 20, 30]])


def test_palette_png_with_transparent_index(tmp_path):
    path = _write(tmp_path, "pt.png", _palette_image(), transparency=1)
    with Image.open(path) as img:
        assert img.mode == "P" and img.info["transparency"] == 1
    np.testing.assert_array_equal(to_uint8(load_image(path))[0], [[255, 0, 0], [255, 255, 255], [10, 20, 30]])


def test_palette_png_with_partial_alpha(tmp_path):
    path = _write(tmp_path, "pa.png", _palette_image(), transparency=bytes([255, 0, 128]))
    a = 128 / 255
    image = load_image(path)
    np.testing.assert_allclose(image[:, 0, 2].numpy(), np.array([10, 20, 30]) / 255 * a + 1 - a, atol=1e-6)
    np.testing.assert_allclose(image[:, 0, 1].numpy(), [1.0, 1.0, 1.0])


def test_gray_png_with_transparent_value(tmp_path):
    arr = np.array([[10, 200]], dtype=np.uint8)
    image = load_image(_write(tmp_path, "lt.png", Image.fromarray(arr), transparency=10))
    assert image.shape == (1, 1, 2)
    np.testing.assert_allclose(image[0, 0].numpy(), [1.0, 200 / 255], atol=1e-7)


def test_16_bit_gray_png_uses_full_range(tmp_path):
    arr = np.array([[0, 1, 32768, 65535]], dtype=np.uint16)
    path = _write(tmp_path, "g16.png", Image.fromarray(arr))
    with Image.open(path) as img:
        assert img.mode.startswith("I")
    image = load_image(path)
    assert image.shape == (1, 1, 4)
    np.testing.assert_allclose(image[0, 0].numpy(), [0.0, 1 / 65535, 32768 / 65535, 1.0], rtol=1e-6, atol=1e-9)


def test_jpeg_loads_rgb_and_gray(tmp_path):
    yy, xx = np.mgrid[0:32, 0:48]
    smooth = np.stack([yy * 7, xx * 5, 255 - yy * 7], axis=-1).astype(np.uint8)
    rgb = load_image(_write(tmp_path, "c.jpg", Image.fromarray(smooth), quality=95))
    assert rgb.shape == (3, 32, 48)
    assert float((rgb - from_uint8(smooth)).abs().mean()) < 0.02
    gray = load_image(_write(tmp_path, "g.jpeg", Image.fromarray(smooth[..., 1]), quality=95))
    assert gray.shape == (1, 32, 48)


def test_one_bit_image(tmp_path):
    img = Image.frombytes("1", (8, 1), bytes([0b10100000]))
    image = load_image(_write(tmp_path, "bw.png", img))
    assert image.shape == (1, 1, 8)
    assert image[0, 0].tolist() == [1, 0, 1, 0, 0, 0, 0, 0]


# --- colour conversion ----------------------------------------------------------------------------

def test_colour_rgb_replicates_gray(tmp_path):
    arr = RNG.integers(0, 256, (4, 5), dtype=np.uint8)
    path = _write(tmp_path, "gray.png", Image.fromarray(arr))
    image = load_image(path, colour="rgb")
    assert image.shape == (3, 4, 5)
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
    assert torch.equal(image[:1], load_image(path))
    before = float(image[1, 0, 0])
    image[0, 0, 0] = -1.0  # the channels are separate memory, not a broadcast view
    assert float(image[1, 0, 0]) == before


def test_colour_gray_uses_luma(tmp_path):
    arr = _rgb_array()
    path = _write(tmp_path, "rgb.png", Image.fromarray(arr))
    image = load_image(path, colour="gray")
    assert image.shape == (1, 6, 5)
    luma = (arr.astype(np.float64) / 255) @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(image[0].numpy(), luma, atol=1e-6)


def test_colour_modes_that_need_no_conversion(tmp_path):
    gray_path = _write(tmp_path, "gray.png", Image.fromarray(RNG.integers(0, 256, (3, 3), dtype=np.uint8)))
    rgb_path = _write(tmp_path, "rgb.png", Image.fromarray(_rgb_array(3, 3)))
    assert torch.equal(load_image(gray_path, colour="gray"), load_image(gray_path))
    assert torch.equal(load_image(rgb_path, colour="rgb"), load_image(rgb_path))
    assert load_image(gray_path).shape[0] == 1 and load_image(rgb_path).shape[0] == 3


def test_convert_channels_on_batches():
    batch = torch.rand(2, 3, 4, 5)
    gray = convert_channels(batch, "gray")
    assert gray.shape == (2, 1, 4, 5)
    assert convert_channels(gray, "rgb").shape == (2, 3, 4, 5)


# --- errors ---------------------------------------------------------------------------------------

def _assert_error_names(path: Path) -> None:
    with pytest.raises(GanrevError) as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    _assert_error_names(tmp_path / "nope.png")


def test_directory(tmp_path):
    folder = tmp_path / "folder.png"
    folder.mkdir()
    _assert_error_names(folder)


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture\n")
    _assert_error_names(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    _assert_error_names(path)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_truncated_png(tmp_path, fraction):
    full = _write(tmp_path, "full.png", Image.fromarray(_rgb_array(40, 40)))
    data = full.read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: int(len(data) * fraction)])
    _assert_error_names(path)


def test_decompression_bomb_is_a_ganrev_error(tmp_path):
    """A tiny PNG whose header claims 30000 x 30000 pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    path = tmp_path / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b""))
                     + chunk(b"IEND", b""))
    _assert_error_names(path)


# --- writing --------------------------------------------------------------------------------------

@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif"])
def test_save_then_load_is_exact_at_8_bits(tmp_path, channels, suffix):
    image = from_uint8(RNG.integers(0, 256, (9, 11, channels), dtype=np.uint8))
    path = tmp_path / "sub" / f"out{suffix}"
    save_image(image, path)
    assert torch.equal(load_image(path), image)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_save_rounds_and_clamps(tmp_path):
    image = torch.tensor([[[-0.5, 0.0, 0.5, 1.0, 1.5]]])
    save_image(image, tmp_path / "x.png")
    np.testing.assert_array_equal(to_uint8(load_image(tmp_path / "x.png")), [[0, 0, 128, 255, 255]])


def test_save_uses_suffix_format_and_png_for_unknown(tmp_path):
    image = torch.rand(3, 8, 8)
    save_image(image, tmp_path / "a.JPG")
    save_image(image, tmp_path / "b.unknown")
    with Image.open(tmp_path / "a.JPG") as img:
        assert img.format == "JPEG"
    with Image.open(tmp_path / "b.unknown") as img:
        assert img.format == "PNG"


def test_uint8_helpers_round_trip():
    arr = _rgb_array()
    assert torch.equal(from_uint8(to_uint8(from_uint8(arr))), from_uint8(arr))
    np.testing.assert_array_equal(to_uint8(from_uint8(arr)), arr)
    assert to_pil(from_uint8(arr[..., 0])).mode == "L"
    assert to_pil(from_uint8(arr)).mode == "RGB"


# --- atomic writes --------------------------------------------------------------------------------

def test_atomic_writer_keeps_old_file_when_body_raises(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_writer(target, "w") as handle:
            handle.write("half-written new content")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["result.json"]


def test_atomic_writer_leaves_nothing_when_body_raises_and_no_old_file(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_writer(tmp_path / "new.bin") as handle:
            handle.write(b"x")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_atomic_writes_replace_and_create_parents(tmp_path):
    target = tmp_path / "a" / "b" / "out.txt"
    atomic_write_text(target, "first ✓")
    atomic_write_text(target, "second ✓")
    assert target.read_text(encoding="utf-8") == "second ✓"
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert os.listdir(target.parent) == ["out.txt"]


def test_atomic_writes_get_normal_permissions(tmp_path):
    old_umask = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.png"
        save_image(torch.rand(3, 4, 4), fresh)
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644  # not mkstemp's 0600
        kept = tmp_path / "kept.txt"
        kept.write_text("old")
        kept.chmod(0o640)
        atomic_write_text(kept, "new")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o640
    finally:
        os.umask(old_umask)


# --- listing and resizing -------------------------------------------------------------------------

def test_list_images_is_recursive_and_sorted(tmp_path):
    names = ["b.png", "a.JPG", "sub/c.webp", "sub/deeper/d.bmp", "sub/a.jpeg"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub" / "folder.png").mkdir()
    found = list_images(tmp_path)
    assert found == sorted(tmp_path / n for n in names)
    assert found == sorted(found)


def test_list_images_rejects_a_file_or_missing_folder(tmp_path):
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(GanrevError):
        list_images(tmp_path / "x.png")
    with pytest.raises(GanrevError):
        list_images(tmp_path / "missing")


@pytest.mark.parametrize(("height", "width"), [(30, 50), (50, 30), (20, 20), (7, 100)])
@pytest.mark.parametrize("channels", [1, 3])
def test_center_crop_resize_shape_and_range(height, width, channels):
    image = torch.rand(channels, height, width)
    out = center_crop_resize(image, 16)
    assert out.shape == (channels, 16, 16)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_center_crop_takes_the_middle():
    image = torch.zeros(3, 10, 30)
    image[:, :, 10:20] = 1.0  # the centred 10 x 10 square is white, the sides black
    out = center_crop_resize(image, 5)
    torch.testing.assert_close(out, torch.ones(3, 5, 5), atol=1e-5, rtol=0)
    tall = torch.zeros(1, 30, 10)
    tall[:, 10:20, :] = 1.0
    torch.testing.assert_close(center_crop_resize(tall, 20), torch.ones(1, 20, 20), atol=1e-5, rtol=0)


def test_resize_keeps_batches_and_skips_identity():
    image = torch.rand(3, 8, 8)
    assert resize(image, 8, 8) is image
    assert resize(torch.rand(2, 3, 8, 8), 4, 6).shape == (2, 3, 4, 6)
