"""IRI loss terms as pure functions of tensors; each returns one value per image, shape (N,).

Images are (N, 3, H, W) in [0, 1]; representations are (N, D). The regularisers
follow Nanda et al.'s `freq*` losses (deep-learning-base `attack/losses.py`),
acting on pixels in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-12


def rep_error(features: torch.Tensor, target_features: torch.Tensor) -> torch.Tensor:
    """Relative L2 distance per image: ||f(x) - f(t)||_2 / ||f(t)||_2."""
    f = features.flatten(1).float()
    t = target_features.flatten(1).float()
    return (f - t).norm(dim=1) / t.norm(dim=1).clamp_min(EPS)


def total_variation(x: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """sum |x[i+1,j] - x[i,j]|^beta + sum |x[i,j+1] - x[i,j]|^beta over C, H, W.

    At beta = 2 this is the paper's TV term exactly (sums of squared vertical and
    horizontal differences); other betas keep the two directions separate.
    """
    dy = (x[:, :, 1:, :] - x[:, :, :-1, :]).abs()
    dx = (x[:, :, :, 1:] - x[:, :, :, :-1]).abs()
    if beta == 2.0:
        return dy.square().sum((1, 2, 3)) + dx.square().sum((1, 2, 3))
    return dy.pow(beta).sum((1, 2, 3)) + dx.pow(beta).sum((1, 2, 3))


def blur3x3(x: torch.Tensor) -> torch.Tensor:
    """Per-channel 3×3 blur, 0.5 at the border taps and 1 at the centre, normalised at edges."""
    kernel = torch.full((3, 3), 0.5, dtype=x.dtype, device=x.device)
    kernel[1, 1] = 1.0
    weight = kernel.expand(x.shape[1], 1, 3, 3)
    blurred = F.conv2d(x, weight, padding=1, groups=x.shape[1])
    norm = F.conv2d(torch.ones_like(x[:1]), weight, padding=1, groups=x.shape[1])
    return blurred / norm


def blur_penalty(x: torch.Tensor) -> torch.Tensor:
    """0.5 * ||x - blur(x)||^2 with blur(x) held constant (no gradient), as in the paper."""
    with torch.no_grad():
        blurred = blur3x3(x)
    return 0.5 * (x - blurred).square().sum((1, 2, 3))


def lp_penalty(x: torch.Tensor, p: float = 1.0) -> torch.Tensor:
    """sum |x - 0.5|^p: pulls pixels to mid-grey (p = 1 is the paper's L1 term)."""
    return (x - 0.5).abs().pow(p).sum((1, 2, 3))


def paper_lp(x: torch.Tensor, p: float) -> torch.Tensor:
    """The paper code's L_p term: sum |x - 0.5| for p = 1 (its L1Loss), else ||x||_p of the
    flattened, uncentred image (its LpLoss, e.g. the L6 of `freq_tv_l6`)."""
    if p == 1.0:
        return lp_penalty(x, 1.0)
    return torch.linalg.vector_norm(x.flatten(1), ord=p, dim=1)


def regularized(rep: torch.Tensor, x: torch.Tensor, rep_weight: float = 10.0, tv: float = 0.0,
                tv_beta: float = 2.0, blur: float = 0.0, lp: float = 0.0,
                lp_p: float = 1.0, paper_norm: bool = False) -> torch.Tensor:
    """rep_weight * rep + tv * TV + blur * Blur + lp * Lp, per image (zero weights skipped).

    `paper_norm` uses the paper code's L_p term (`paper_lp`) instead of sum |x - 0.5|^p.
    """
    total = rep_weight * rep
    if tv:
        total = total + tv * total_variation(x, tv_beta)
    if blur:
        total = total + blur * blur_penalty(x)
    if lp:
        total = total + lp * (paper_lp(x, lp_p) if paper_norm else lp_penalty(x, lp_p))
    return total


def adversarial(rep: torch.Tensor, distance: torch.Tensor, lam: torch.Tensor | float,
                anchor: str) -> torch.Tensor:
    """The adversarial regulariser.

    anchor "target": rep - lam * D(x, target), an input that matches the target's
    representation while looking unlike it (the paper's `adv_alex_*`).
    anchor "seed": rep + lam * D(x, seed), which keeps the IRI perceptually close to its
    seed (the paper's `*_seed` variants, written there as lambda = -10).
    """
    if anchor == "target":
        return rep - lam * distance
    if anchor == "seed":
        return rep + lam * distance
    raise ValueError(f"anchor must be 'target' or 'seed', not {anchor!r}")


def auto_lambda(rep0: torch.Tensor, dist0: torch.Tensor) -> torch.Tensor:
    """lambda balanced at step 0, per image: rep / D (held fixed afterwards).

    Per image rather than the paper's batch mean, so that an IRI does not depend on
    which other images share its batch. Stays on the device (no host sync).
    """
    return (rep0 / dist0.clamp_min(1e-6)).detach()
