"""ganrev.evaluate.speed: the table's speed plot, SSIM against time per image."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from ganrev.errors import GanrevError
from ganrev.evaluate.outputs import TableOutputs
from ganrev.evaluate.speed import speed_figure, speed_series


def _row(scheme: str, ssim: float, bpp: float, encode_s: float | None, role: str = "row") -> dict:
    return {"scheme": scheme, "role": role, "ssim": ssim, "bpp": bpp, "encode_s": encode_s, "decode_s": 0.002}


def test_a_generators_efforts_and_the_peers_levels_form_series_and_lossless_or_untimed_rows_drop_out() -> None:
    summary = [_row("PNG", 1.0, 6.2, 0.002), _row("JPEG (1%)", 0.59, 0.72, 0.0005),
               _row("JPEG (q) at GAN rate", 0.6, 0.2, 0.0005, role="matched"),
               _row("CompressAI mbt2018-mean (λ=1.5)", 0.64, 0.137, 0.009),
               _row("GAN reversal (emoji64, effort 0)", 0.717, 0.153, 0.0099),
               _row("GAN reversal (emoji64, effort 3)", 0.858, 0.170, 0.36),
               _row("CompressAI mbt2018-mean (λ=6)", 0.81, 0.378, 0.0088),
               _row("GAN reversal (emoji64-gan)", 0.60, 0.156, 6.4), _row("K-means (K=4)", 0.9, 0.85, None)]

    series = speed_series(summary)

    assert list(series) == ["JPEG (1%)", "CompressAI mbt2018-mean", "GAN reversal (emoji64)",
                            "GAN reversal (emoji64-gan)"]
    assert [p["label"] for p in series["GAN reversal (emoji64)"]] == ["effort 0, 0.153 bpp", "effort 3, 0.170 bpp"]
    assert [p["label"] for p in series["CompressAI mbt2018-mean"]] == ["λ=1.5, 0.137 bpp", "λ=6, 0.378 bpp"]
    assert series["GAN reversal (emoji64-gan)"][0]["label"] == "0.156 bpp"
    assert series["GAN reversal (emoji64)"][1]["encode_ms"] == pytest.approx(360.0)
    assert series["JPEG (1%)"][0]["decode_ms"] == pytest.approx(2.0)


def test_the_table_writes_its_speed_plot_from_its_own_rows(table_run) -> None:
    path = table_run.out / "speed.png"
    assert f"wrote {path}" in table_run.output
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > image.height
    summary = json.loads((table_run.out / "t.json").read_text())["summary"]
    series = speed_series(summary)
    gan = [name for name in series if name.startswith("GAN reversal")]
    assert len(gan) == 1 and len(series[gan[0]]) == 1  # one generator, one effort
    assert "PNG" not in series and any(name.startswith("WebP") for name in series)


def test_the_speed_plot_must_be_a_png(tmp_path) -> None:
    with pytest.raises(GanrevError, match="--speed .*must end in .png"):
        TableOutputs(speed=tmp_path / "speed.svg").check(force=False)
    assert TableOutputs(speed=tmp_path / "speed.png").files() == [tmp_path / "speed.png"]


def test_labels_of_coinciding_points_do_not_overlap() -> None:
    # two generators' efforts land on the same points, and two classical rows nearly so
    summary = [_row(f"GAN reversal ({name}, effort {effort})", ssim, 0.153, encode_s)
               for name in ("emoji64", "emoji64-google-twitter")
               for effort, ssim, encode_s in ((0, 0.717, 0.0033), (1, 0.835, 0.025), (3, 0.857, 0.116))]
    summary += [_row("JPEG (10%)", 0.746, 1.039, 0.0005), _row("JPEG (10%) + ARCNN-ASPP", 0.747, 1.039, 0.00052)]
    figure = speed_figure(summary, "title")
    renderer = figure.canvas.get_renderer()
    for ax in figure.axes:
        boxes = [text.get_window_extent(renderer) for text in ax.texts]
        assert len(boxes) == 8
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
