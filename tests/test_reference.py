"""The best classical file per image (ganrev.reference), on real images: a held-out emoji, a photo crop and a gray
crop of another size."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from skimage import data as skdata

import ganrev.reference
from ganrev.codecs.classical import (
    AVIFCodec,
    DownscaledWebPCodec,
    JPEGCodec,
    WebPCodec,
    WebPLosslessCodec,
    avif_available,
)
from ganrev.errors import GanrevError
from ganrev.io import from_uint8, load_image
from ganrev.metrics import ssim
from ganrev.reference import (
    AVIF_FAMILY,
    ClassicalFile,
    ClassicalFiles,
    best_file_within,
    best_within,
    measure_classical,
    reference_bytes,
    reference_curve,
    reference_families,
    reference_ssim,
    skipped_families,
)

EMOJI = Path(__file__).resolve().parent.parent / "pretrained" / "emoji64" / "heldout" / "1f0cf.png"

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def independent_codecs() -> list:
    """Single settings encoded here, apart from measure_classical: the reference must beat each of them."""
    codecs = [WebPCodec(0), WebPCodec(40), WebPCodec(90), DownscaledWebPCodec(20, 2), DownscaledWebPCodec(5, 4),
              WebPLosslessCodec(), JPEGCodec(30, "4:4:4"), JPEGCodec(85, "4:4:4")]
    if avif_available():
        codecs += [AVIFCodec(10, subsampling="4:4:4"), AVIFCodec(60, subsampling="4:4:4")]
    return codecs


@pytest.fixture(scope="module")
def measured() -> list[tuple[torch.Tensor, ClassicalFiles, list[tuple[int, float]]]]:
    """Per image: the image, its reference measurements, and (bytes, SSIM) of each independent codec's file."""
    images = [load_image(EMOJI), from_uint8(skdata.astronaut()[100:164, 180:244]),
              from_uint8(skdata.camera()[200:240, 260:308])]  # gray, 40x48
    out = []
    for image in images:
        files = [(len(data), float(ssim(codec.decode(data)[None], image[None])[0]))
                 for codec in independent_codecs() for data in [codec.encode(image)]]
        out.append((image, measure_classical(image), files))
    return out


def test_every_setting_is_measured_once_on_the_image(measured):
    families = reference_families()
    for image, files, _ in measured:
        assert (files.height, files.width) == tuple(image.shape[1:])
        assert [(f.family, f.quality) for f in files.files] == [(family, quality) for family, settings in
                                                                 families.items() for quality, _ in settings]
        assert all(f.bytes > 0 and -1 <= f.ssim <= 1 + 1e-9 for f in files.files)
    assert len(families["WebP"]) == len(families["WebP 4x down"]) == 101 and len(families["JPEG 4:4:4"]) == 100


def test_within_a_budget_never_worse_than_any_single_setting(measured):
    for _, files, independent in measured:
        for budget in sorted({size for size, _ in independent} | {60, 150, 400, 1000}):
            within = [value for size, value in independent if size <= budget]
            assert reference_ssim(files, budget) >= max(within, default=0.0)
            best = best_within(files, budget)
            assert best is None or (best.bytes <= budget and best.ssim == reference_ssim(files, budget))
            for family in {f.family for f in files.files}:  # and than every family's own best
                assert reference_ssim(files, budget) >= max((f.ssim for f in files.files
                                                             if f.family == family and f.bytes <= budget), default=0)


def test_the_swept_best_file_is_the_measured_best_file(measured):
    """best_file_within stops each family's sweep early; at the budgets of GAN files (and far above them) it
    finds the file best_within picks among every setting."""
    for image, files, _ in measured:
        smallest = min(f.bytes for f in files.files)
        for budget in (smallest - 1, smallest, int(smallest * 1.3), 2 * smallest, 400):
            expected = best_within(files, budget)
            found = best_file_within(image, budget)
            assert (found is None) == (expected is None)
            if found is not None:
                assert (found.ssim, found.bytes) == pytest.approx((expected.ssim, expected.bytes))


def test_at_an_ssim_target_never_larger_than_any_single_setting_reaching_it(measured):
    for _, files, independent in measured:
        for target in (0.5, 0.7, 0.8, 0.9, 0.95, 0.99):
            reaching = [size for size, value in independent if value >= target]
            smallest = reference_bytes(files, target)
            assert smallest is not None and smallest <= min(reaching)  # lossless WebP reaches every target
            assert any(f.bytes == smallest and f.ssim >= target for f in files.files)
        assert reference_bytes(files, 1.01) is None


def test_monotone_in_the_budget_and_nothing_below_the_smallest_file(measured):
    for _, files, _ in measured:
        smallest = min(f.bytes for f in files.files)
        assert best_within(files, smallest - 1) is None and reference_ssim(files, smallest - 1) == 0.0
        values = [reference_ssim(files, budget) for budget in range(smallest - 1, 1500, 7)]
        assert all(a <= b for a, b in zip(values, values[1:])) and values[-1] > values[0]
    curve = reference_curve([files for _, files, _ in measured], (0.01, 0.1, 0.2, 0.35, 0.5, 1.0, 2.0, 4.0))
    assert [p.budget_bpp for p in curve] == [0.01, 0.1, 0.2, 0.35, 0.5, 1.0, 2.0, 4.0]
    none = curve[0]  # 0.01 bpp of a 64x64 image: 5 bytes, below every classical file
    assert (none.ssim, none.bpp, none.bytes, none.images_without_file, none.images) == (0.0, 0.0, 0.0, 3, 3)
    assert all(a.ssim <= b.ssim for a, b in zip(curve, curve[1:])) and curve[-1].images_without_file == 0
    assert all(p.bpp <= p.budget_bpp for p in curve)  # each image's file is within its own budget


def test_the_curve_means_each_images_best_file_counting_none_as_zero():
    """Exact numbers on made-up files: an image with nothing in the budget adds 0 bytes and SSIM 0; ties in SSIM
    go to the smaller file; each image's budget is floor(bpp * W * H / 8) of its own size."""
    small = ClassicalFiles(8, 8, (ClassicalFile("A", 1, 6, 0.5), ClassicalFile("A", 2, 5, 0.5),
                                  ClassicalFile("B", 1, 8, 0.9)))  # 1 bpp: 8 bytes
    large = ClassicalFiles(16, 8, (ClassicalFile("A", 1, 12, 0.7), ClassicalFile("A", 2, 20, 0.8)))  # 16 bytes
    assert best_within(small, 7) == ClassicalFile("A", 2, 5, 0.5)
    half, one = reference_curve([small, large], (0.625, 1.0))  # 0.625 bpp: 5 and 10 bytes
    assert (half.bytes, half.ssim, half.images_without_file) == (2.5, 0.25, 1)
    assert half.bpp == pytest.approx((5 * 8 / 64 + 0.0) / 2)
    assert (one.bytes, one.ssim, one.images_without_file) == (10.0, pytest.approx(0.8), 0)
    assert one.bpp == pytest.approx((8 * 8 / 64 + 12 * 8 / 128) / 2)
    with pytest.raises(GanrevError):
        reference_curve([], (1.0,))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(GanrevError):
            reference_curve([small], (bad,))


def test_avif_is_optional_and_its_absence_recorded(monkeypatch):
    if avif_available():
        assert AVIF_FAMILY in reference_families() and skipped_families() == {}
    monkeypatch.setattr(ganrev.reference, "avif_available", lambda: False)
    assert AVIF_FAMILY not in reference_families()
    assert list(skipped_families()) == [AVIF_FAMILY] and "AVIF" in skipped_families()[AVIF_FAMILY]
