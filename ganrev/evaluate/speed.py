"""The table's speed plot: every lossy row's SSIM against its encoding and its decoding time per image, from one run.

A generator's GAN-reversal rows (one per ``table --efforts`` level) are joined in effort order, and the learned
peer's rows (one per rate level) in table order, so that the effort dial's speed/quality trade-off and the peer's
lie on the same axes; every other row is a point of its own. Each point is labelled with its setting and its bpp:
the rows are not at equal bytes (the classical ones are matched to the first GAN row's rate, the peer's levels
are where its λ put them), and the label says how far apart they are.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from ganrev.codecs.hyperprior import NAME_PREFIX as PEER_PREFIX
from ganrev.evaluate.records import GAN_SCHEME
from ganrev.io import atomic_writer

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# "GAN reversal", "GAN reversal (emoji64)" or "GAN reversal (emoji64, effort 3)" (ganrev.evaluate.runs.generator_label)
_GAN_ROW = re.compile(rf"^{re.escape(GAN_SCHEME)}(?: \((?P<generator>.+?)(?:, effort (?P<effort>\d+))?\))?$")
_PEER_ROW = re.compile(rf"^(?P<family>{re.escape(PEER_PREFIX)}.+?) \((?P<setting>.+)\)$")


def speed_series(summary: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The table's rows as the plot draws them: series name -> points ``{"label", "bpp", "ssim", "encode_ms",
    "decode_ms"}`` in table order. Rows of role ``row`` with an SSIM below 1 (lossless PNG says nothing about speed
    against quality) and measured times; a generator's rows form one series, the peer's one per model family."""
    series: dict[str, list[dict[str, Any]]] = {}
    for row in summary:
        if row["role"] != "row" or row["ssim"] is None or row["ssim"] >= 1.0 or not row["encode_s"] \
                or not row["decode_s"]:
            continue
        gan, peer = _GAN_ROW.match(row["scheme"]), _PEER_ROW.match(row["scheme"])
        if gan is not None:
            name = f"{GAN_SCHEME} ({gan['generator']})" if gan["generator"] else GAN_SCHEME
            setting = f"effort {gan['effort']}" if gan["effort"] is not None else ""
        elif peer is not None:
            name, setting = peer["family"], peer["setting"]
        else:
            name, setting = row["scheme"], ""
        label = f"{setting}, {row['bpp']:.3f} bpp" if setting else f"{row['bpp']:.3f} bpp"
        series.setdefault(name, []).append({"label": label, "bpp": row["bpp"], "ssim": row["ssim"],
                                            "encode_ms": row["encode_s"] * 1e3, "decode_ms": row["decode_s"] * 1e3})
    return series


# Where a point's label may go, in points from the point, tried in order until it overlaps no label placed before
# it: right of the point, then alternately lower and higher. Rows often coincide (two generators' effort 0, the
# same setting at two rates), and their labels would print on top of each other.
LABEL_OFFSETS = [(3, 2)] + [(3, 2 + sign * 8 * step) for step in range(1, 6) for sign in (-1, 1)]


def speed_figure(summary: list[dict[str, Any]], title: str) -> Figure:
    """Two panels, SSIM against encode and against decode milliseconds per image (log-x), of
    :func:`speed_series`: series of several points as lines, single rows as grey points, each point labelled
    where its label overlaps none placed before it (:data:`LABEL_OFFSETS`). A matplotlib ``Figure``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # no pyplot: no global backend state
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullFormatter

    figure = Figure(figsize=(12, 5), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2, sharey=True)
    gan_colours = iter(["tab:red", "tab:orange", "tab:purple", "tab:pink", "tab:olive"])  # warm: ganrev
    other_colours = iter(["tab:blue", "tab:green", "tab:brown", "tab:cyan"])  # cool: the peer
    labels: list[tuple[int, str, float, float, str]] = []  # (panel, text, x, y, colour)
    for name, points in speed_series(summary).items():
        joined = len(points) > 1 or name.startswith(GAN_SCHEME)
        colour = next(gan_colours if name.startswith(GAN_SCHEME) else other_colours, None) if joined else "0.55"
        for panel, (ax, key) in enumerate(zip(axes, ("encode_ms", "decode_ms"))):
            ax.plot([p[key] for p in points], [p["ssim"] for p in points], marker="o" if joined else ".",
                    color=colour, markersize=5 if joined else 6, linewidth=1.4 if joined else 0,
                    label=name if joined else None)
            labels += [(panel, p["label"] if joined else f"{name}, {p['label']}", p[key], p["ssim"], colour)
                       for p in points]
    for ax, label in zip(axes, ("encode", "decode")):
        ax.set_xscale("log")
        # plain numbers, and none on the minor ticks: a log axis spanning less than a decade crowds them otherwise
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"{label} time per image (ms, log scale)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("SSIM")
    axes[0].legend(fontsize=8, loc="lower right")
    figure.suptitle(title, fontsize=9)
    figure.canvas.draw()  # lay the axes out first: label boxes are measured where they will be drawn
    renderer = figure.canvas.get_renderer()
    placed: list[list[Any]] = [[], []]
    for panel, text, x, y, colour in labels:
        annotation = axes[panel].annotate(text, (x, y), fontsize=6, textcoords="offset points", color=colour,
                                          xytext=LABEL_OFFSETS[0])
        for offset in LABEL_OFFSETS:
            annotation.xyann = offset
            box = annotation.get_window_extent(renderer)
            if not any(box.overlaps(other) for other in placed[panel]):
                break
        placed[panel].append(box)
    return figure


def write_speed_plot(summary: list[dict[str, Any]], path: str | os.PathLike[str], title: str) -> None:
    """:func:`speed_figure` as a PNG, written atomically."""
    figure = speed_figure(summary, title)
    with atomic_writer(path) as handle:
        figure.savefig(handle, format="png")
