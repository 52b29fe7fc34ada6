"""ganrev.pretrained: shipped generators by name, and the one a file names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ganrev.pretrained as pretrained
from ganrev.errors import GanrevError
from ganrev.pretrained import (
    DEFAULT_GENERATOR,
    default_comparisons,
    resolve_generator_path,
    shipped_generator_hint,
)


def test_the_default_is_the_shipped_generator(monkeypatch) -> None:
    monkeypatch.delenv("GANREV_GENERATOR", raising=False)
    assert resolve_generator_path(None) == pretrained.PRETRAINED_DIR / DEFAULT_GENERATOR
    assert (resolve_generator_path(None) / "config.json").is_file()
    assert default_comparisons(None) == ["emoji64-google", "emoji64-gan"]  # the previous default, the seed's GAN


def test_a_path_beats_a_name_and_the_environment_beats_the_default(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "mine").mkdir()
    assert resolve_generator_path(str(tmp_path / "mine")) == tmp_path / "mine"
    monkeypatch.setenv("GANREV_GENERATOR", "emoji64-gan")
    assert resolve_generator_path(None).name == "emoji64-gan"
    assert default_comparisons(None) == []  # a generator the user chose gets no extra rows


def test_an_unknown_name_lists_the_shipped_ones(monkeypatch) -> None:
    with pytest.raises(GanrevError, match="shipped generators: .*emoji64"):
        resolve_generator_path("no-such-generator")


def test_the_hint_names_the_shipped_generator_with_that_fingerprint(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "config.json").write_text(json.dumps({"fingerprint": "abcdef" + "0" * 58}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path)
    assert shipped_generator_hint(bytes.fromhex("abcd")) == " (it was made with the shipped generator tiny: add -g tiny)"
    assert shipped_generator_hint(bytes.fromhex("1234")) == ""
