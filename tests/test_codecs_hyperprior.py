"""ganrev.codecs.hyperprior: CompressAI files that hold everything a decoder needs, and refuse damage."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("compressai")

from ganrev.codecs.base import ImageCodec  # noqa: E402
from ganrev.codecs.hyperprior import HyperpriorCodec  # noqa: E402
from ganrev.bitstream.container import crc24  # noqa: E402
from ganrev.errors import GanrevError  # noqa: E402
from ganrev.io import load_image  # noqa: E402
from ganrev.nets.checkpoint import save_baseline  # noqa: E402
from ganrev.nets.hyperprior import ARCHITECTURE, HyperpriorConfig, build_model  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

HELDOUT = Path(__file__).resolve().parent.parent / "pretrained" / "emoji64" / "heldout"


def _checkpoint(path: Path, model: str, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    config = HyperpriorConfig(model=model, n=16, m=16 if model == "cheng2020-anchor" else 24)
    net = build_model(config)
    net.update(force=True)
    save_baseline(path, ARCHITECTURE, vars(config).copy(), {"model": net},
                  {"codec": {"name": config.name, "lmbda": 0.01, "loss": "mse"}, "dataset": "test"})
    return path


@pytest.fixture(scope="module", params=["factorized", "mean", "joint", "cheng2020-anchor"])
def codec(request, tmp_path_factory) -> HyperpriorCodec:
    return HyperpriorCodec.load(_checkpoint(tmp_path_factory.mktemp(request.param), request.param))


@pytest.fixture(scope="module")
def emoji() -> torch.Tensor:
    return load_image(sorted(HELDOUT.glob("*.png"))[0])


def test_a_file_decodes_to_the_image_shape_from_its_bytes_alone(codec, emoji) -> None:
    assert isinstance(codec, ImageCodec) and codec.name.startswith("CompressAI ") and "λ=0.01" in codec.name
    data = codec.encode(emoji)
    decoded = codec.decode(data)
    assert decoded.shape == emoji.shape and 0 <= decoded.min() and decoded.max() <= 1
    assert torch.equal(codec.decode(data), decoded)  # decoding is deterministic
    assert codec.encode(emoji) == data


@pytest.mark.parametrize("shape", [(3, 37, 90), (1, 64, 64), (3, 1, 1)])
def test_any_size_and_gray_images_round_trip(codec, shape) -> None:
    image = torch.rand(*shape)
    assert codec.decode(codec.encode(image)).shape == image.shape


def test_another_model_refuses_the_file(codec, emoji, tmp_path) -> None:
    other = HyperpriorCodec.load(_checkpoint(tmp_path / "other", codec.config.model, seed=1))
    with pytest.raises(GanrevError, match="made by another model"):
        other.decode(codec.encode(emoji))


def test_a_changed_weight_file_is_refused_on_load(tmp_path) -> None:
    path = _checkpoint(tmp_path / "m", "mean")
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(GanrevError, match="fingerprint"):
        HyperpriorCodec.load(path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=200), flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)),
                                                                   max_size=4), fix_check=st.booleans())
def test_damaged_or_truncated_files_are_one_line_errors(codec, emoji, cut, flips, fix_check) -> None:
    data = bytearray(codec.encode(emoji))
    for position, mask in flips:
        data[position % len(data)] ^= mask
    data = data[:max(0, len(data) - cut)] if cut % 2 else data
    if fix_check and len(data) > 3:  # a damaged body with a valid check reaches the rANS decoder itself
        data[-3:] = crc24(bytes(data[:-3])).to_bytes(3, "big")
    try:
        decoded = codec.decode(bytes(data))
    except GanrevError as exc:
        assert "\n" not in str(exc)
    else:
        assert decoded.dim() == 3 and decoded.shape[0] in (1, 3)


def test_shipped_models_are_specs_table_rows_and_a_curve_series(tmp_path, monkeypatch, emoji) -> None:
    import ganrev.codecs.learned as learned
    from ganrev.codecs.specs import codec_from_spec

    for level in (1, 2):
        _checkpoint(tmp_path / f"compressai-mean-q{level}", "mean", seed=level)
    monkeypatch.setattr(learned, "SHIPPED_DIR", tmp_path)
    assert learned.shipped_compressai_levels("compressai-mean") == [1, 2]
    assert learned.default_table_specs("test") == ["compressai-mean:1", "compressai-mean:2"]
    assert learned.default_table_specs("emoji") == []  # a model trained on other data is out of domain
    for level in (1, 2):  # trained on both vendors: a row for a generator trained on either or both
        config = tmp_path / f"compressai-mean-q{level}" / "config.json"
        config.write_text(config.read_text().replace('"dataset": "test"', '"dataset": "emoji:google,twitter"'))
    assert learned.default_table_specs("emoji") == ["compressai-mean:1", "compressai-mean:2"]  # "emoji": Google
    assert learned.default_table_specs("emoji:google,twitter") == ["compressai-mean:1", "compressai-mean:2"]
    assert learned.default_table_specs("emoji:twitter") == ["compressai-mean:1", "compressai-mean:2"]
    assert learned.default_table_specs("emoji:openmoji") == []  # held-out images in a style it never saw
    for level in (1, 2):
        config = tmp_path / f"compressai-mean-q{level}" / "config.json"
        config.write_text(config.read_text().replace('"dataset": "emoji:google,twitter"', '"dataset": "test"'))
    (series, make, levels), = learned.default_curve_sweeps("test")
    assert series == "CompressAI mbt2018-mean" and levels == [1, 2]
    assert make(2).decode(make(2).encode(emoji)).shape == emoji.shape
    assert codec_from_spec("compressai-mean:1").name == "CompressAI mbt2018-mean (λ=0.01)"
    with pytest.raises(GanrevError, match="no shipped compressai-mean model at rate level 3"):
        codec_from_spec("compressai-mean:3")


def test_the_table_names_the_peer_nearest_the_gan_rate() -> None:
    from ganrev.evaluate.table import _nearest_learned

    rows = [{"scheme": "CompressAI a", "bpp": 0.1, "ssim": 0.7}, {"scheme": "CompressAI b", "bpp": 0.3, "ssim": 0.9},
            {"scheme": "CompressAI b", "bpp": 0.5, "ssim": 0.8}, {"scheme": "JPEG (10%) + ARCNN-ASPP", "bpp": 0.2,
                                                                  "ssim": 0.5}]
    nearest = _nearest_learned(rows, 0.35, "CompressAI ")
    assert (nearest["scheme"], nearest["bpp"], nearest["ssim"]) == ("CompressAI b", pytest.approx(0.4),
                                                                    pytest.approx(0.85))
    assert _nearest_learned(rows, 0.12, "CompressAI ")["scheme"] == "CompressAI a"
    assert _nearest_learned(rows[3:], 0.2, "CompressAI ") is None
