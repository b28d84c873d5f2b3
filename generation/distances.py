"""Perceptual distances between images in [0, 1]: SSIM, MS-SSIM (no weights) and LPIPS.

LPIPS needs torchvision's ImageNet backbone weights in the torch hub cache; this
module never downloads them. When they are missing, `perceptual_distance` raises
`MissingWeightsError` naming the file to place there, or returns the configured
fallback metric.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

Distance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# torchvision's canonical file names (what `torch.hub.load_state_dict_from_url` caches)
LPIPS_BACKBONE_FILES = {
    "lpips-alex": "alexnet-owt-7be5be79.pth",
    "lpips-alex-uncalibrated": "alexnet-owt-7be5be79.pth",
    "lpips-vgg": "vgg16-397923af.pth",
}
# the paper's `adv_alex_imagenet` built LPIPS with pretrained=False: the 1×1 "lin" layers keep
# their random init; here that init is drawn from this fixed seed, so runs are repeatable
UNCALIBRATED_SEED = 0
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


class MissingWeightsError(RuntimeError):
    """LPIPS backbone weights are not in the torch hub cache (and nothing may download them)."""


def _gaussian_window(size: int, sigma: float, channels: int, like: torch.Tensor) -> torch.Tensor:
    coords = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def _window_size(height: int, width: int) -> int:
    size = min(11, height, width)
    return size if size % 2 else size - 1


def _ssim_parts(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and mean contrast-structure term per image (valid windows only)."""
    c1, c2 = 0.01**2, 0.03**2
    groups = x.shape[1]
    mu_x = F.conv2d(x, window, groups=groups)
    mu_y = F.conv2d(y, window, groups=groups)
    sxx = F.conv2d(x * x, window, groups=groups) - mu_x**2
    syy = F.conv2d(y * y, window, groups=groups) - mu_y**2
    sxy = F.conv2d(x * y, window, groups=groups) - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs
    return ssim_map.mean((1, 2, 3)), cs.mean((1, 2, 3))


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM per image (Gaussian window 11, sigma 1.5; smaller for tiny images)."""
    x, y = x.float(), y.float()
    size = _window_size(x.shape[-2], x.shape[-1])
    return _ssim_parts(x, y, _gaussian_window(size, 1.5, x.shape[1], x))[0]


def ms_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Multi-scale SSIM per image with Wang et al.'s scale weights.

    Uses as many of the 5 scales as the image allows (the coarsest must hold one
    window) and renormalises the weights over them, so 32 px images work.
    """
    x, y = x.float(), y.float()
    size = _window_size(x.shape[-2], x.shape[-1])
    window = _gaussian_window(size, 1.5, x.shape[1], x)
    scales = 1
    while scales < 5 and min(x.shape[-2], x.shape[-1]) // 2**scales >= size:
        scales += 1
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], dtype=x.dtype, device=x.device)
    weights = weights / weights.sum()
    values = []
    for i in range(scales):
        s, cs = _ssim_parts(x, y, window)
        values.append(s if i == scales - 1 else cs)
        if i < scales - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    stacked = torch.stack(values, dim=1).clamp_min(1e-6)  # negative cs would make powers NaN
    return torch.prod(stacked ** weights, dim=1)


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def lpips_backbone_path(metric: str) -> Path:
    return hub_checkpoint_dir() / LPIPS_BACKBONE_FILES[metric]


@functools.lru_cache(maxsize=4)
def _lpips_model(metric: str, hub_dir: str) -> torch.nn.Module:
    import lpips

    net = "vgg" if metric == "lpips-vgg" else "alex"
    calibrated = metric != "lpips-alex-uncalibrated"
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        warnings.simplefilter("ignore")  # lpips uses torchvision's deprecated `pretrained=`
        torch.manual_seed(UNCALIBRATED_SEED)
        model = lpips.LPIPS(net=net, pretrained=calibrated, pnet_rand=False, verbose=False)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def lpips_distance(metric: str) -> Distance:
    path = lpips_backbone_path(metric)
    if not path.is_file():
        raise MissingWeightsError(
            f"{metric} needs torchvision's ImageNet backbone weights, which are not in the "
            f"torch hub cache and are never downloaded here: place the file {path.name} at {path} "
            f"(TORCH_HOME={os.environ.get('TORCH_HOME', '~/.cache/torch')}), or name a fallback "
            "(fallback_metric in an adversarial loss, [generation].distance_fallback for the "
            "manifest's distances): \"ssim\" or \"ms-ssim\""
        )
    model = _lpips_model(metric, str(path.parent))
    on = {"device": None}  # moved only when the device changes: this runs every adversarial step

    def distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if on["device"] != x.device:
            model.to(x.device)
            on["device"] = x.device
        return model(x.float(), y.float(), normalize=True).flatten()

    return distance


def perceptual_distance(metric: str, fallback: str | None = None) -> tuple[Distance, str]:
    """(distance function, name of the metric actually used); distances are 0 for equal images."""
    if metric == "ssim":
        return (lambda x, y: 1.0 - ssim(x, y)), "ssim"
    if metric == "ms-ssim":
        return (lambda x, y: 1.0 - ms_ssim(x, y)), "ms-ssim"
    if metric in LPIPS_BACKBONE_FILES:
        try:
            return lpips_distance(metric), metric
        except MissingWeightsError as exc:
            if fallback is None:
                raise
            warnings.warn(f"{exc}; using {fallback} instead", stacklevel=2)
            return perceptual_distance(fallback)[0], fallback
    raise ValueError(f"unknown perceptual metric {metric!r} (allowed: lpips-alex, "
                     "lpips-alex-uncalibrated, lpips-vgg, ssim, ms-ssim)")
