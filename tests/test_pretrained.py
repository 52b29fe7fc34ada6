"""ganrev.pretrained: where models live (a path, $GANREV_MODELS, the checkout, the package), generators by name,
and the one a file names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ganrev.pretrained as pretrained
from ganrev.errors import GanrevError
from ganrev.pretrained import (
    DEFAULT_GENERATOR,
    MODELS_ENV,
    default_comparisons,
    named_generators,
    resolve_generator_path,
    shipped_generator_hint,
    shipped_path,
)

ROOT = Path(__file__).resolve().parent.parent


def test_the_default_is_the_shipped_generator(monkeypatch) -> None:
    monkeypatch.delenv("GANREV_GENERATOR", raising=False)
    assert resolve_generator_path(None) == pretrained.PRETRAINED_DIR / DEFAULT_GENERATOR
    assert (resolve_generator_path(None) / "config.json").is_file()
    assert default_comparisons(None) == ["emoji64-google-twitter", "emoji64-gan"]  # the previous default, the seed's GAN


def test_a_path_beats_a_name_and_the_environment_beats_the_default(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "mine").mkdir()
    assert resolve_generator_path(str(tmp_path / "mine")) == tmp_path / "mine"
    monkeypatch.setenv("GANREV_GENERATOR", "emoji64-gan")
    assert resolve_generator_path(None).name == "emoji64-gan"
    assert default_comparisons(None) == []  # a generator the user chose gets no extra rows


def test_an_unknown_name_lists_the_names_ganrev_models_lists(monkeypatch) -> None:
    monkeypatch.delenv(MODELS_ENV, raising=False)
    with pytest.raises(GanrevError) as info:
        resolve_generator_path("no-such-generator")
    message = str(info.value)
    assert "'no-such-generator' not found" in message and str(pretrained.PRETRAINED_DIR) in message
    assert message.endswith("`ganrev models` lists: " + ", ".join(entry.name for entry in named_generators()))
    assert "emoji64, emoji64-gan" in message and "\n" not in message


def model(folder: Path, name: str, **config: object) -> Path:
    """A folder that counts as a model: ``folder/name/config.json`` holding ``config``."""
    (folder / name).mkdir(parents=True)
    (folder / name / "config.json").write_text(json.dumps(config))
    return folder / name


@pytest.fixture
def places(tmp_path: Path, monkeypatch) -> dict[str, Path]:
    """A checkout's pretrained/, a package's _shipped/ and a $GANREV_MODELS folder, all in tmp_path, the working
    directory (where no model name is a path)."""
    monkeypatch.chdir(tmp_path)
    folders = {where: tmp_path / where for where in ("own", "checkout", "package")}
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", folders["checkout"])
    monkeypatch.setattr(pretrained, "PACKAGED_DIR", folders["package"])
    monkeypatch.setenv(MODELS_ENV, str(folders["own"]))
    monkeypatch.delenv("GANREV_GENERATOR", raising=False)
    return folders


def test_lookup_order_is_path_then_ganrev_models_then_checkout_then_package(places, monkeypatch) -> None:
    for where in ("own", "checkout", "package"):
        model(places[where], "everywhere", dataset=where)
    model(places["checkout"], "shipped-twice", dataset="checkout")
    model(places["package"], "shipped-twice", dataset="package")
    model(places["package"], "packaged-only", dataset="package")
    assert resolve_generator_path("everywhere") == places["own"] / "everywhere"
    assert resolve_generator_path("shipped-twice") == places["checkout"] / "shipped-twice"
    assert resolve_generator_path("packaged-only") == places["package"] / "packaged-only"
    monkeypatch.chdir(places["package"])  # an existing path beats every name
    assert resolve_generator_path("everywhere") == Path("everywhere")
    monkeypatch.chdir(places["own"].parent)
    # the listing shows, per name, the one -g NAME loads
    listed = {entry.name: (entry.where, entry.config["dataset"]) for entry in named_generators()}
    assert listed == {"everywhere": ("$GANREV_MODELS", "own"), "shipped-twice": ("checkout", "checkout"),
                      "packaged-only": ("package", "package")}
    monkeypatch.delenv(MODELS_ENV)
    assert resolve_generator_path("everywhere") == places["checkout"] / "everywhere"


def test_a_folder_without_config_json_is_not_a_model(places) -> None:
    (places["own"] / "lpips").mkdir(parents=True)  # like pretrained/lpips and pretrained/baselines
    model(places["package"], "lpips")
    assert resolve_generator_path("lpips") == places["package"] / "lpips"
    assert [entry.name for entry in named_generators()] == ["lpips"]


def test_a_wheel_without_the_comparison_generators_gets_no_extra_rows(places, monkeypatch) -> None:
    """An installed wheel carries the default generator only: the table's default rows degrade, nothing fails."""
    monkeypatch.delenv(MODELS_ENV)
    model(places["package"], DEFAULT_GENERATOR)
    assert resolve_generator_path(None) == places["package"] / DEFAULT_GENERATOR
    assert default_comparisons(None) == []
    model(places["checkout"], "emoji64-gan")
    assert default_comparisons(None) == ["emoji64-gan"]


def test_shipped_files_come_from_the_checkout_else_the_package(places) -> None:
    assert shipped_path("lpips") == places["package"] / "lpips"  # in neither, with no checkout: the package's
    (places["package"] / "lpips").mkdir(parents=True)
    assert shipped_path("lpips") == places["package"] / "lpips"
    (places["checkout"] / "lpips").mkdir(parents=True)
    assert shipped_path("lpips") == places["checkout"] / "lpips"
    assert shipped_path("baselines") == places["checkout"] / "baselines"  # in neither: the checkout's


def test_the_shipped_default_generator_is_described_from_its_config() -> None:
    entry = {entry.name: entry for entry in named_generators()}[DEFAULT_GENERATOR]
    config = json.loads((ROOT / "pretrained" / DEFAULT_GENERATOR / "config.json").read_text())
    assert (entry.where, entry.path) == ("checkout", ROOT / "pretrained" / DEFAULT_GENERATOR)
    assert (entry.domain, entry.resolution) == (config["dataset"], 64)
    assert (entry.latent_dim, entry.compress_bits) == (160, 4)


def test_default_bits_and_the_card_headline(places) -> None:
    from ganrev.models import DEFAULT_COMPRESS_BITS

    model(places["own"], "carded", latent_dim=100, compress_bits=5,
          report={"set": "validation", "images": 64, "ssim": 0.87, "bpp": 0.171, "classical_ssim": 0.55})
    model(places["own"], "plain", latent_dim=64)
    model(places["own"], "partial", report={"ssim": 0.8, "bpp": 0.2})
    model(places["own"], "malformed", compress_bits="4", report={"ssim": "high", "bpp": 0.2})
    entries = {entry.name: entry for entry in named_generators()}
    assert entries["carded"].compress_bits == 5
    assert entries["carded"].headline == ("SSIM 0.870 @ 0.171 bpp (validation; best classical file at those "
                                          "bytes 0.550)")
    assert entries["plain"].compress_bits == DEFAULT_COMPRESS_BITS and entries["plain"].headline is None
    assert entries["partial"].headline == "SSIM 0.800 @ 0.200 bpp"
    assert entries["malformed"].headline is None and entries["malformed"].compress_bits is None


def test_the_hint_names_the_shipped_generator_with_that_fingerprint(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "config.json").write_text(json.dumps({"fingerprint": "abcdef" + "0" * 58}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path)
    monkeypatch.setattr(pretrained, "PACKAGED_DIR", tmp_path / "no-package")
    monkeypatch.delenv(MODELS_ENV, raising=False)
    assert shipped_generator_hint(bytes.fromhex("abcd")) == " (it was made with the shipped generator tiny: add -g tiny)"
    assert shipped_generator_hint(bytes.fromhex("1234")) == ""
