"""Records of codecs x images, summaries, rate matching (ganrev.evaluate.records), on a tiny untrained
generator (conftest.py) and bundled photos."""

from __future__ import annotations

import math

import pytest

from ganrev.codecs.classical import JPEGCodec, PNGCodec
from ganrev.codecs.gan import GanCodec
from ganrev.errors import GanrevError
from ganrev.evaluate import (
    RECORD_FIELDS,
    evaluate,
    load_image_folder,
    markdown_table,
    match_rate,
    search_latents,
    summarise,
)
from ganrev.invert import SearchOptions
from ganrev.models import load_generator


def test_compress_latents_reuses_one_search_exactly(generator_dir, image_dir):
    """compress == search + compress_latents, for the codec's own bits and for another bits setting."""
    checkpoint = load_generator(generator_dir)
    _, images = load_image_folder(image_dir, limit=2)
    options = SearchOptions(iters=15, restarts=2, pool=16)
    codec = GanCodec(checkpoint, bits=6, search=options, refine_iters=5)
    search = search_latents(codec, images)
    for bits in (6, 3):
        other = GanCodec(checkpoint, bits=bits, search=options, refine_iters=5)
        direct, reused = other.compress(images), other.compress_latents(images, search)
        assert [r.data for r in direct] == [r.data for r in reused]
        assert [r.ssim_refined for r in direct] == [r.ssim_refined for r in reused]
    with pytest.raises(GanrevError, match="latents for"):
        codec.compress_latents(images[:1], search)


def test_evaluate_records_and_gan_batch(generator_dir, image_dir):
    checkpoint = load_generator(generator_dir)
    names, images = load_image_folder(image_dir, limit=2)
    codec = GanCodec(checkpoint, bits=4, search=SearchOptions(iters=5, restarts=1, pool=8), refine_iters=2)
    records = evaluate(images, [PNGCodec(), ("my JPEG", JPEGCodec(50)), codec], names=names)
    assert [r["scheme"] for r in records] == ["PNG"] * 2 + ["my JPEG"] * 2 + ["GAN reversal"] * 2
    assert [r["image"] for r in records[:2]] == names
    assert all(set(r) == set(RECORD_FIELDS) for r in records)
    gan = records[-2:]
    assert gan[0]["encode_s"] == gan[1]["encode_s"] > 0  # one batch, total / N
    assert all(r["decode_s"] > 0 and r["ssim_quantized"] is not None for r in gan)


def test_match_rate_exhaustive_and_coarse_agree_on_closest(image_dir):
    _, images = load_image_folder(image_dir, limit=2)
    full = match_rate(JPEGCodec, images, 1.5, lo=1, hi=100, step=1)
    assert len(full.sweep) == 100 and full.in_range
    assert abs(full.bpp - 1.5) == min(abs(b - 1.5) for b in full.sweep.values())
    coarse = match_rate(JPEGCodec, images, 1.5, lo=1, hi=100, step=5)
    assert len(coarse.sweep) < 40 and set(coarse.sweep) <= set(full.sweep)
    assert abs(coarse.bpp - 1.5) == min(abs(b - 1.5) for b in coarse.sweep.values())
    assert abs(coarse.quality - full.quality) <= 5


def test_summarise_cr_and_markdown_cells():
    def rec(scheme, nbytes, psnr, lpips=None):
        return {"scheme": scheme, "role": "row", "bytes": nbytes, "bpp": nbytes * 8 / 4096, "mse": 0.0 if psnr ==
                math.inf else 10.0, "psnr": psnr, "ssim": 0.5, "ms_ssim": 0.6, "lpips": lpips, "encode_s": 0.1,
                "decode_s": 0.1}

    records = [rec("PNG", 1000, math.inf), rec("PNG", 3000, math.inf), rec("X", 100, 30.0, 0.2),
               rec("X", 300, 32.0, None)]
    summary = summarise(records)
    assert [row["scheme"] for row in summary] == ["PNG", "X"]
    assert summary[1]["cr"] == pytest.approx(2000 / 200) and summary[1]["psnr"] == pytest.approx(31.0)
    assert summary[1]["lpips"] is None and summary[0]["psnr"] == math.inf
    text = markdown_table(summary)
    assert "| PNG | 3.906 | 1.0 | ∞ | 0.00 | 0.5000 | 0.6000 | n/a |" in text
    assert "| X | 0.391 | 10.0 | 31.00 | 10.00 |" in text
