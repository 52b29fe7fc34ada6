"""Tests for ganrev.codecs.learned and ganrev.nets.checkpoint: the learned baselines as codecs.

Checkpoints are written here with freshly built nets: an untrained ARCNN is the identity and an untrained
ComCNN/RecCNN is "2x2 average, JPEG, bicubic up", which gives exact oracles; perturbed weights check that
decoding really runs the nets. The shipped models are loaded too (offline, from pretrained/baselines/).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from ganrev.codecs.classical import JPEGCodec
from ganrev.codecs.learned import (
    SHIPPED_DIR,
    ArcnnCodec,
    ComCnnCodec,
    default_curve_sweeps,
    default_table_specs,
    shipped_arcnn_qualities,
)
from ganrev.codecs.specs import codec_from_spec
from ganrev.errors import GanrevError
from ganrev.io import load_image
from ganrev.nets import arcnn, comcnn
from ganrev.nets.checkpoint import save_baseline

pytestmark = pytest.mark.usefixtures("one_thread")

HELDOUT = Path(__file__).resolve().parent.parent / "pretrained" / "emoji64" / "heldout"
META = {"codec": {"name": "jpeg", "qualities": [10], "subsampling": "4:2:0"}, "dataset": "emoji"}


def _emoji(index: int = 0) -> torch.Tensor:
    return load_image(sorted(HELDOUT.glob("*.png"))[index], "rgb")


def _perturb(net: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(0.01 * torch.randn(parameter.shape, generator=generator))
    return net


def _arcnn_dir(root: Path, qualities: list[int] = [10], trained: bool = False) -> Path:
    net = arcnn.ArcnnAspp()
    save_baseline(root, arcnn.ARCHITECTURE, {**arcnn.ArcnnConfig().__dict__, "dilations": [1, 2, 4, 8]},
                  {"arcnn": _perturb(net) if trained else net}, META | {"codec": META["codec"] | {"qualities": qualities}})
    return root


def _comcnn_dir(root: Path, trained: bool = False) -> Path:
    nets = {"comcnn": comcnn.ComCNN(), "reccnn": comcnn.RecCNN()}
    if trained:
        nets = {name: _perturb(net, i) for i, (name, net) in enumerate(nets.items())}
    save_baseline(root, comcnn.ARCHITECTURE, dict(comcnn.ComCnnConfig().__dict__), nets,
                  META | {"codec": META["codec"] | {"qualities": [5, 10, 20]}})
    return root


def test_untrained_arcnn_decodes_to_the_plain_jpeg_and_its_bytes_are_jpegs(tmp_path: Path) -> None:
    codec = ArcnnCodec(_arcnn_dir(tmp_path))
    image = _emoji()
    data = codec.encode(image)
    assert data == JPEGCodec(10).encode(image) and codec.name == "JPEG (10%) + ARCNN-ASPP"
    torch.testing.assert_close(codec.decode(data), JPEGCodec(10).decode(data), atol=1e-6, rtol=0)


def test_a_trained_arcnn_changes_the_decode_and_keeps_gray_gray(tmp_path: Path) -> None:
    codec = ArcnnCodec(_arcnn_dir(tmp_path, trained=True))
    image = _emoji()
    decoded = codec.decode(codec.encode(image))
    assert decoded.shape == image.shape and 0 <= decoded.min() and decoded.max() <= 1
    assert (decoded - JPEGCodec(10).decode(codec.encode(image))).abs().max() > 1e-3
    gray = image.mean(0, keepdim=True)
    assert codec.decode(codec.encode(gray)).shape == gray.shape


def test_untrained_comcnn_is_downscaled_jpeg_upscaled(tmp_path: Path) -> None:
    codec = ComCnnCodec(_comcnn_dir(tmp_path), 20)
    image = _emoji()
    data = codec.encode(image)
    compact = F.avg_pool2d(image.unsqueeze(0), 2)[0]
    assert data == JPEGCodec(20).encode(compact) + b"\x00"
    expected = comcnn.upscale(JPEGCodec(20).decode(data[:-1]).unsqueeze(0), 64, 64)[0]
    torch.testing.assert_close(codec.decode(data), expected, atol=1e-6, rtol=0)
    assert codec.name == "ComCNN/RecCNN (JPEG q20)"


@settings(max_examples=12, deadline=None)
@given(height=st.integers(3, 41), width=st.integers(3, 41), gray=st.booleans(), seed=st.integers(0, 99))
def test_comcnn_round_trip_keeps_any_size_and_channel_count(tmp_path_factory: pytest.TempPathFactory, height: int,
                                                            width: int, gray: bool, seed: int) -> None:
    codec = _trained_comcnn(tmp_path_factory)
    image = torch.rand(1 if gray else 3, height, width, generator=torch.Generator().manual_seed(seed))
    data = codec.encode(image)
    assert data[-1] == (height % 2) | (width % 2) << 1
    decoded = codec.decode(data)
    assert decoded.shape == image.shape and 0 <= decoded.min() and decoded.max() <= 1


_CACHE: dict[str, ComCnnCodec] = {}


def _trained_comcnn(factory: pytest.TempPathFactory) -> ComCnnCodec:
    if "codec" not in _CACHE:
        _CACHE["codec"] = ComCnnCodec(_comcnn_dir(factory.mktemp("comcnn"), trained=True), 10)
    return _CACHE["codec"]


@settings(max_examples=30, deadline=None)
@given(cut=st.integers(0, 400), flags=st.integers(4, 255))
def test_damaged_comcnn_files_are_project_errors(tmp_path_factory: pytest.TempPathFactory, cut: int,
                                                 flags: int) -> None:
    codec = _trained_comcnn(tmp_path_factory)
    data = codec.encode(_emoji(1))
    with pytest.raises(GanrevError):
        codec.decode(data[:-1] + bytes([flags]))
    with pytest.raises(GanrevError):
        codec.decode(data[:min(cut, len(data) - 2)] + b"\x00")


def test_weights_from_another_run_are_refused(tmp_path: Path) -> None:
    first, second = _arcnn_dir(tmp_path / "a"), _arcnn_dir(tmp_path / "b", trained=True)
    (first / "arcnn.safetensors").write_bytes((second / "arcnn.safetensors").read_bytes())
    with pytest.raises(GanrevError, match="fingerprint"):
        ArcnnCodec(first)


def test_wrong_architecture_missing_files_and_quality_mismatch_are_refused(tmp_path: Path) -> None:
    with pytest.raises(GanrevError, match="not 'arcnn-aspp'"):
        ArcnnCodec(_comcnn_dir(tmp_path / "c"))
    with pytest.raises(GanrevError, match="no config.json"):
        ArcnnCodec(tmp_path / "nothing")
    path = _arcnn_dir(tmp_path / "a")
    with pytest.raises(GanrevError, match="quality 10 only"):
        ArcnnCodec(path, quality=1)
    (path / "arcnn.safetensors").unlink()
    with pytest.raises(GanrevError, match="missing"):
        ArcnnCodec(path)
    blind = _arcnn_dir(tmp_path / "blind", qualities=[1, 10])
    with pytest.raises(GanrevError, match="give the quality"):
        ArcnnCodec(blind)
    assert ArcnnCodec(blind, quality=1).name == "JPEG (1%) + ARCNN-ASPP blind"
    config = json.loads((blind / "config.json").read_text())
    (blind / "config.json").write_text(json.dumps(config | {"net": config["net"] | {"features": 0}}))
    with pytest.raises(GanrevError, match="invalid network config"):
        ArcnnCodec(blind, quality=1)


def test_a_model_for_rgb_refuses_other_channel_counts(tmp_path: Path) -> None:
    with pytest.raises(GanrevError, match="3-channel"):
        ArcnnCodec(_arcnn_dir(tmp_path)).encode(torch.rand(2, 16, 16))


def test_shipped_models_load_offline_and_beat_plain_jpeg_on_a_heldout_emoji() -> None:
    assert shipped_arcnn_qualities() == [1, 10]
    image = _emoji(3)
    for quality in (1, 10):
        codec = codec_from_spec(f"arcnn:{quality}")
        assert isinstance(codec, ArcnnCodec) and codec.quality == quality
        data = codec.encode(image)
        restored, plain = codec.decode(data), JPEGCodec(quality).decode(data)
        assert (restored - image).abs().mean() < (plain - image).abs().mean()
    codec = codec_from_spec("comcnn:10")
    assert isinstance(codec, ComCnnCodec) and codec.decode(codec.encode(image)).shape == image.shape
    seeds = ["arcnn:10", "arcnn:1", "comcnn:10"]  # then the CompressAI peer's rows, where CompressAI is installed
    assert default_table_specs("emoji")[:3] == seeds
    # trained on Google: rows for a generator whose held-out images are Google's, whatever else it saw
    assert default_table_specs("emoji:google,twitter")[:3] == seeds
    assert not set(seeds) & set(default_table_specs("emoji:twitter"))
    assert default_table_specs("fashion-mnist") == []
    assert [series for series, _, _ in default_curve_sweeps("emoji")][:3] == ["JPEG + ARCNN-ASPP",
                                                                              "JPEG + ARCNN-ASPP blind", "ComCNN/RecCNN"]
    blind = codec_from_spec("arcnn-blind:5")
    assert isinstance(blind, ArcnnCodec) and blind.name == "JPEG (5%) + ARCNN-ASPP blind"


def test_specs_without_a_shipped_model_explain_what_to_do() -> None:
    with pytest.raises(GanrevError, match="fit-baseline arcnn --quality 37"):
        codec_from_spec("arcnn:37")
    with pytest.raises(GanrevError, match="not an integer"):
        codec_from_spec("comcnn:high")
    assert (SHIPPED_DIR / "comcnn" / "config.json").is_file()
