"""Fourier (decorrelated) image parameterisation, after Lucid's `fft_image` as the paper used it.

image = sigmoid(decorrelate_colour(irfft2(spectrum * 1/max(f, 1/max(H, W)), ortho) / 4))

`from_image` inverts it exactly (up to the clamp before the logit), so an IRI
made in Fourier space starts from the same seed image as a pixel-space one.
The paper clamped the Fourier coefficients to [0, 1] after each step (a side
effect of its pixel-space step); here the spectrum is left unclamped, since the
sigmoid already keeps the image in [0, 1].
"""

from __future__ import annotations

import functools

import torch

# Lucid's colour_correlation_svd_sqrt, normalised by its largest column norm
_COLOR_SVD_SQRT = torch.tensor(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], dtype=torch.float64
)
COLOR = (_COLOR_SVD_SQRT / _COLOR_SVD_SQRT.norm(dim=0).max()).float()
MAGIC = 4.0


def frequency_scale(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    fy = torch.fft.fftfreq(height, device=device)[:, None]
    fx = torch.fft.rfftfreq(width, device=device)[None, :]
    freqs = torch.sqrt(fx * fx + fy * fy)
    return 1.0 / freqs.clamp_min(1.0 / max(height, width))


@functools.lru_cache(maxsize=32)
def _basis(height: int, width: int, device: torch.device,
           dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The frequency scale and colour matrix on `device`, made once: to_image runs every
    optimisation step, and copying COLOR from the host there would sync with the GPU."""
    return frequency_scale(height, width, device).to(dtype), COLOR.to(device, dtype)


def to_image(spectrum: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, 3, H, W//2+1, 2) real spectrum -> (N, 3, H, W) image in (0, 1)."""
    scale, color = _basis(height, width, spectrum.device, spectrum.dtype)
    spatial = torch.fft.irfft2(torch.view_as_complex(spectrum.contiguous()) * scale,
                               s=(height, width), norm="ortho") / MAGIC
    mixed = torch.einsum("nchw,dc->ndhw", spatial, color)
    return torch.sigmoid(mixed)


def from_image(image: torch.Tensor) -> torch.Tensor:
    """The spectrum whose `to_image` is `image` (pixels clamped into (0, 1) first)."""
    height, width = image.shape[-2:]
    z = torch.logit(image.float().clamp(1e-4, 1 - 1e-4))
    color = COLOR.to(z.device)
    spatial = torch.einsum("ndhw,cd->nchw", z, torch.linalg.inv(color)) * MAGIC
    spectrum = torch.fft.rfft2(spatial, norm="ortho") / frequency_scale(height, width, z.device)
    return torch.view_as_real(spectrum).contiguous()
