"""Rate-distortion curves (ganrev.evaluate.curves): `ganrev table --curves-out`, the CompressAI results
layout and the best classical file per image, on a tiny untrained generator (conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from ganrev.errors import GanrevError
from ganrev.evaluate import (
    BEST_CLASSICAL_SERIES,
    CurvesResult,
    EvalOptions,
    compressai_results,
    plot_curves,
    run_curves,
    write_compressai_results,
    write_curves_json,
)
from ganrev.evaluate.curves import PARTIAL_DIR, write_curves_markdown


def test_curves_png_and_points(table_run):
    out = table_run.out
    with Image.open(out / "curves.png") as img:
        assert img.format == "PNG" and img.width > 400
    points = json.loads((out / "curves.json").read_text())["points"]
    jpeg = sorted((p for p in points if p["series"] == "JPEG"), key=lambda p: p["value"])
    assert [p["value"] for p in jpeg] == [1, 2, 3, 5, 8, 10, 15, 20, 30, 50, 75]
    assert all(a["bpp"] <= b["bpp"] for a, b in zip(jpeg, jpeg[1:]))
    assert jpeg[-1]["ssim"] > jpeg[0]["ssim"]
    gan = [p for p in points if p["series"] == "GAN reversal (bits)"]
    assert [p["value"] for p in gan] == [2, 3, 4, 5, 6, 8]
    assert gan[0]["bpp"] < gan[-1]["bpp"]
    assert any(p["series"] == "WebP" for p in points)


def test_curves_in_compressai_results_layout(table_run):
    """One file per series beside curves.png, as CompressAI's results/image/<dataset>/*.json: the same points as
    curves.json, in increasing bpp."""
    output, out = table_run.output, table_run.out
    points = json.loads((out / "curves.json").read_text())["points"]
    folder = out / "curves-compressai"
    complete, partial = sorted(folder.glob("*.json")), sorted((folder / PARTIAL_DIR).glob("*.json"))
    files = complete + partial
    assert {path.name for path in complete} >= {"jpeg.json", "webp.json", "gan-reversal-bits.json"}
    assert len(files) == len({p["series"] for p in points})
    # every series CompressAI's plot can draw for each -m it offers, together; SSIM-only series one folder down
    assert all("psnr-rgb" in json.loads(path.read_text())["results"] for path in complete)
    assert [path.name for path in partial] == ["best-classical-per-image.json"]
    assert "psnr" not in json.loads(partial[0].read_text())["results"]
    for path in files:
        assert f"wrote {path}" in output
        data = json.loads(path.read_text())
        assert set(data) == {"name", "description", "results"} and data["name"] in data["description"]
        mine = sorted((p for p in points if p["series"] == data["name"]), key=lambda p: p["bpp"])
        results = data["results"]
        fields = {"bpp": "bpp", "psnr": "psnr", "psnr-rgb": "psnr", "ssim": "ssim", "ms-ssim": "ms_ssim",
                  "ms-ssim-rgb": "ms_ssim", "lpips": "lpips", "encoding_time": "encode_s", "decoding_time": "decode_s"}
        assert {"bpp", "ssim"} <= set(results) <= set(fields)  # the best-classical series has just these
        for key, values in results.items():  # MS-SSIM is None on these 32x32 images: left out, not null
            assert values == [p[fields[key]] for p in mine]


@pytest.fixture
def hand_curves() -> CurvesResult:
    """Three points in two series, every metric known but one JPEG point's LPIPS."""
    point = {"parameter": "quality", "psnr": 30.0, "ms_ssim": 0.9, "ssim": 0.8, "encode_s": 0.1, "decode_s": 0.01}
    return CurvesResult([{**point, "series": "JPEG", "value": 50, "bpp": 2.0, "lpips": 0.1},
                         {**point, "series": "JPEG", "value": 10, "bpp": 0.5, "lpips": None},
                         {**point, "series": "GAN reversal (bits)", "value": 6, "bpp": 0.2, "lpips": 0.2}],
                        {"images": 2, "images_dir": "x", "device": "CPU"})


def test_compressai_results_leave_out_a_metric_some_point_lacks(hand_curves):
    files = compressai_results(hand_curves)
    assert set(files) == {"jpeg.json", "gan-reversal-bits.json"}
    assert files["jpeg.json"]["results"]["bpp"] == [0.5, 2.0] and "lpips" not in files["jpeg.json"]["results"]
    assert files["gan-reversal-bits.json"]["results"]["lpips"] == [0.2]


@pytest.mark.parametrize("metric", ["psnr", "ms-ssim", "ssim"])
def test_compressai_plot_utility_reads_the_results(hand_curves, tmp_path, metric):
    """CompressAI's own plot utility as a client: it looks -m psnr and -m ms-ssim up as psnr-rgb and ms-ssim-rgb
    (1.2.8), which the older keys alone fail; its default -m is psnr, so a bare call reads as -m psnr."""
    pytest.importorskip("compressai")
    files = [str(path) for path in write_compressai_results(hand_curves, tmp_path / "curves-compressai")]
    figure = tmp_path / f"{metric}.png"
    run = subprocess.run([sys.executable, "-m", "compressai.utils.plot", "-f", *files, "-m", metric,
                          "-o", str(figure)], capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "Agg"},
                         timeout=300)
    assert run.returncode == 0, run.stderr
    with Image.open(figure) as img:
        assert img.format == "PNG" and img.width > 400


def test_curves_carry_the_best_classical_file_per_image(generator_dir, image_dir, tmp_path):
    """One point per budget, read off one measurement per image; at 0.01 bpp (5 bytes) no classical file fits, so
    SSIM 0 and 0 bytes; float budgets survive the JSON, and the plot draws the series."""
    options = EvalOptions(search_overrides=(("iters", 2),), limit=2, device="cpu", refine_iters=0, learned=(),
                          jpeg_qualities=(10,), webp_qualities=(), avif_qualities=(), bits_list=(4,),
                          reference_bpp=(1.0, 0.01))
    curves = run_curves(generator_dir, image_dir, options)
    best = sorted((p for p in curves.points if p["series"] == BEST_CLASSICAL_SERIES), key=lambda p: p["value"])
    assert [(p["parameter"], p["value"], p["images"]) for p in best] == [("budget_bpp", 0.01, 2),
                                                                         ("budget_bpp", 1.0, 2)]
    none, one = best
    assert (none["ssim"], none["bpp"], none["bytes"], none["images_without_file"]) == (0.0, 0.0, 0.0, 2)
    assert 0 < one["bpp"] <= 1.0 and one["ssim"] > 0.5 and one["images_without_file"] == 0
    assert one["psnr"] is None  # chosen by SSIM: only bytes and SSIM are measured
    assert curves.metadata["settings"]["reference_families"][0] == "WebP"
    write_curves_json(curves, tmp_path / "curves.json")
    points = json.loads((tmp_path / "curves.json").read_text())["points"]
    assert [p["value"] for p in points if p["series"] == BEST_CLASSICAL_SERIES] == [1.0, 0.01]
    plot_curves(curves, tmp_path / "curves.png")
    with Image.open(tmp_path / "curves.png") as img:
        assert img.format == "PNG"
    with pytest.raises(GanrevError, match="reference budgets"):
        EvalOptions(reference_bpp=(0.0,))


def test_curves_json_carries_bd_rates(table_run):
    """Every series against the best classical file per image (SSIM only: the metric that series has); the
    reference against itself is 0 %."""
    data = json.loads((table_run.out / "curves.json").read_text())
    rates = data["bd_rate"]
    assert set(rates) == {p["series"] for p in data["points"]}
    assert all(BEST_CLASSICAL_SERIES in by_reference for by_reference in rates.values())
    assert rates[BEST_CLASSICAL_SERIES][BEST_CLASSICAL_SERIES] == {"ssim": pytest.approx(0.0, abs=1e-9)}
    jpeg = rates["JPEG"][BEST_CLASSICAL_SERIES]["ssim"]
    assert jpeg is None or jpeg > -100
    markdown = (table_run.out / "curves.md").read_text()  # table --curves writes the tables beside the JSON
    assert "BD-rate" in markdown and BEST_CLASSICAL_SERIES in markdown


def test_bd_rates_against_the_classical_bound_and_the_learned_peer(hand_curves, tmp_path):
    """The peer spends 0.8 of the best classical file's bits at the same SSIMs: -20 % (and the reverse +25 %);
    only SSIM against the best classical file per image, which has no PSNR or MS-SSIM; JPEG's points share one
    quality and GAN reversal has one point: no interval, None, "—" in the Markdown."""
    peer = {"series": "CompressAI mbt2018-mean", "parameter": "quality", "lpips": None, "encode_s": 0.1,
            "decode_s": 0.1}
    best = {"series": BEST_CLASSICAL_SERIES, "parameter": "budget_bpp", "psnr": None, "ms_ssim": None}
    curves = CurvesResult([*hand_curves.points,
                           {**peer, "value": 1, "bpp": 0.4, "ssim": 0.7, "ms_ssim": 0.85, "psnr": 28.0},
                           {**peer, "value": 6, "bpp": 1.6, "ssim": 0.9, "ms_ssim": 0.95, "psnr": 34.0},
                           {**best, "value": 2.0, "bpp": 2.0, "ssim": 0.9},
                           {**best, "value": 0.5, "bpp": 0.5, "ssim": 0.7}],
                          hand_curves.metadata)
    rates = curves.bd_rates()
    assert list(rates["JPEG"]) == [BEST_CLASSICAL_SERIES, "CompressAI mbt2018-mean"]  # the classical bound first
    peer_rates = rates["CompressAI mbt2018-mean"]
    assert peer_rates[BEST_CLASSICAL_SERIES] == {"ssim": pytest.approx(-20.0, abs=1e-9)}
    assert rates[BEST_CLASSICAL_SERIES]["CompressAI mbt2018-mean"] == {"ssim": pytest.approx(25.0, abs=1e-9)}
    assert peer_rates["CompressAI mbt2018-mean"] == {"ssim": 0.0, "ms_ssim": 0.0, "psnr": 0.0}
    assert rates["JPEG"]["CompressAI mbt2018-mean"] == {"ssim": None, "ms_ssim": None, "psnr": None}
    assert rates["GAN reversal (bits)"][BEST_CLASSICAL_SERIES] == {"ssim": None}

    write_curves_json(curves, tmp_path / "curves.json")
    written = json.loads((tmp_path / "curves.json").read_text())["bd_rate"]
    assert written["JPEG"][BEST_CLASSICAL_SERIES] == {"ssim": None}
    write_curves_markdown(curves, tmp_path / "curves.md")
    lines = (tmp_path / "curves.md").read_text().splitlines()
    assert lines[2] == ("| Series | vs Best classical per image: SSIM | vs CompressAI mbt2018-mean: SSIM "
                        "| vs CompressAI mbt2018-mean: MS-SSIM | vs CompressAI mbt2018-mean: PSNR |")
    assert "| CompressAI mbt2018-mean | -20.0 | +0.0 | +0.0 | +0.0 |" in lines
    assert f"| {BEST_CLASSICAL_SERIES} | +0.0 | +25.0 | — | — |" in lines
    assert "| JPEG | — | — | — | — |" in lines
    assert "no reference curve" in hand_curves.markdown()  # neither reference in the run
