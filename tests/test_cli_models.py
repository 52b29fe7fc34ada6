"""``ganrev models``: the generators -g can name, with where each was found and what it is; and -g with a name no
place has is a one-line error listing them."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

import ganrev.pretrained as pretrained
from ganrev.cli import main

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.parent.name for p in (ROOT / "pretrained").glob("*/config.json"))


def run(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    """``ganrev ARGS`` through the real entry point; (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["ganrev", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def rows(out: str) -> dict[str, list[str]]:
    """The listing's rows by name: cells are separated by two or more spaces."""
    lines = out.split("\n\n")[0].splitlines()
    return {cells[0]: cells for cells in ([c for c in line.split("  ") if c] for line in lines[1:])}


def test_models_lists_the_shipped_generators_with_latent_and_bits(capsys, monkeypatch) -> None:
    monkeypatch.delenv(pretrained.MODELS_ENV, raising=False)
    code, out, err = run(capsys, monkeypatch, "models")
    assert code == 0 and err == ""
    listed = rows(out)
    assert out.splitlines()[0].split() == ["name", "where", "domain", "resolution", "latent", "x", "bits", "headline"]
    emoji64 = [cell.strip() for cell in listed["emoji64"]]
    assert emoji64[:5] == ["emoji64", "checkout", "emoji:google,twitter,fluent", "64x64", "160 x 4"]
    assert [cell.strip() for cell in listed["emoji64-google"]][4] == "100 x 6"  # no compress_bits: the default 6
    assert [cell.strip() for cell in listed["emoji64-google-twitter"]][2] == "emoji:google,twitter"  # the previous default
    assert sorted(listed) == SHIPPED
    assert f"$GANREV_MODELS (not set); checkout {ROOT / 'pretrained'}" in out.splitlines()[-1]


def test_models_in_ganrev_models_come_first_and_show_their_card(capsys, monkeypatch, tmp_path: Path) -> None:
    own = tmp_path / "emoji64"  # shadows the shipped emoji64
    own.mkdir()
    (own / "config.json").write_text(json.dumps({
        "dataset": "emoji:google", "resolution": 32, "latent_dim": 48, "compress_bits": 3,
        "report": {"set": "validation", "images": 64, "ssim": 0.87, "bpp": 0.171, "classical_ssim": 0.55}}))
    monkeypatch.setenv(pretrained.MODELS_ENV, str(tmp_path))
    code, out, _ = run(capsys, monkeypatch, "models")
    assert code == 0
    cells = [cell.strip() for cell in rows(out)["emoji64"]]
    assert cells == ["emoji64", "$GANREV_MODELS", "emoji:google", "32x32", "48 x 3",
                     "SSIM 0.870 @ 0.171 bpp (validation; best classical file at those bytes 0.550)"]
    assert [cell.strip() for cell in rows(out)["emoji64-gan"]][-1] == "-"  # no report: no figure made up
    assert f"$GANREV_MODELS {tmp_path}; checkout" in out.splitlines()[-1]


def test_an_unknown_generator_is_one_line_listing_the_names(capsys, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv(pretrained.MODELS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    shutil.copyfile(ROOT / "pretrained" / "emoji64" / "heldout" / "1f0cf.png", "img.png")
    code, _, err = run(capsys, monkeypatch, "compress", "img.png", "-g", "emoji65")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("ganrev: error: generator 'emoji65' not found")
    assert lines[0].endswith(f"`ganrev models` lists: {', '.join(SHIPPED)}") and "emoji64" in SHIPPED
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.png"]  # nothing written
