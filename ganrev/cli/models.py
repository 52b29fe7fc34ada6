"""The models command: the generators ``-g NAME`` can name (:func:`ganrev.pretrained.named_generators`)."""

from __future__ import annotations

import os

import typer

from ganrev.cli.common import app
from ganrev.pretrained import MODELS_ENV, model_places, named_generators


@app.command()
def models() -> None:
    """List the generators -g NAME can name: where each was found, its domain (the data it was trained on), its
    resolution, latent size x bits per latent coordinate (what compress uses with it), and its model card's
    headline figure (config.json's "report"; "-" where it has none).

    -g takes an existing path first, else the first model of that name in $GANREV_MODELS (a folder of your own
    models, each sub-folder with a config.json), the checkout's pretrained/ (an editable install), then the
    installed package (a wheel carries the default generator).
    """
    rows = [("name", "where", "domain", "resolution", "latent x bits", "headline")]
    for entry in named_generators():
        size = f"{entry.resolution}x{entry.resolution}" if entry.resolution is not None else "-"
        coding = (f"{entry.latent_dim} x {entry.compress_bits}"
                  if entry.latent_dim is not None and entry.compress_bits is not None else "-")
        rows.append((entry.name, entry.where, entry.domain or "-", size, coding, entry.headline or "-"))
    if len(rows) == 1:
        typer.echo("no generators found")
    else:
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
        for row in rows:  # the headline, last, is not padded
            typer.echo("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths)), row[-1]]))
    # an installation has a checkout or a package, rarely both: only the folders there are named, and
    # $GANREV_MODELS always, since setting it is how a user adds models
    places = [f"{where} {folder}{'' if folder.is_dir() else ' (absent)'}" for where, folder in model_places()
              if folder.is_dir() or where == f"${MODELS_ENV}"]
    if not os.environ.get(MODELS_ENV):
        places.insert(0, f"${MODELS_ENV} (not set)")
    typer.echo(f"\n-g NAME looks for an existing path, then in: {'; '.join(places)}")
