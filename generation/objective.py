"""What the loop descends on: one registry of loss kinds, each turning its spec into an `Objective`.

A loss kind is its config class in hitkit.study.generation_config (added to the
`LossSpec` union there) plus one entry in `LOSS_KINDS` here: how its spec weighs
the representation error, which regularisers it adds (pure functions of tensors
in generation.losses), whether it optimises a Fourier spectrum or warps the image
each step, and which perceptual distance it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from generation import fourier as fourier_param
from generation import losses as L
from generation import transforms as T
from generation.distances import Distance, perceptual_distance
from hitkit.study.generation_config import (
    AdversarialLoss,
    LossSpec,
    RegFreeLoss,
    RegularizedLoss,
    TransformSpec,
)


@dataclass(frozen=True)
class Problem:
    """One batch to invert, as the objective sees it before the first step."""

    net: Callable[[torch.Tensor], torch.Tensor]
    targets: torch.Tensor  # (N, 3, H, W) in [0, 1]
    seeds: torch.Tensor  # (N, 3, H, W), already clamped to [0, 1]
    target_features: torch.Tensor  # net(targets), fp32
    distance: Distance | None = None
    paper: bool = False  # [generation] mode = "paper": the authors' variants of each term
    lam: float | None = None  # a λ fixed by the caller (paper mode: from the first batch)


@dataclass(frozen=True)
class Objective:
    """A loss made concrete for one batch."""

    value: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (rep error, image) -> (N,)
    fourier: bool = False  # the variable is an rFFT spectrum (generation.fourier), not pixels
    transforms: TransformSpec | None = None  # a random warp before the network, one per step
    paper: bool = False  # the paper's transforms, and its clamp of Fourier coefficients

    @property
    def clamp(self) -> bool:
        """Whether the variable is clamped to [0, 1] after each step: pixels always; a
        spectrum only in paper mode (the authors' step clamps whatever it optimises)."""
        return not self.fourier or self.paper

    @property
    def resizes(self) -> bool:
        """The paper's scale step changes the image size from step to step."""
        return self.paper and self.transforms is not None

    def start(self, seeds: torch.Tensor) -> torch.Tensor:
        """The variable whose image is `seeds`."""
        return fourier_param.from_image(seeds) if self.fourier else seeds.clone()

    def image(self, variable: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return fourier_param.to_image(variable, height, width) if self.fourier else variable

    def warps(self, generator: torch.Generator, steps: int, height: int, width: int,
              device: torch.device) -> Any:
        """Every step's warp, drawn up front (indexed by step), or None without transforms."""
        spec = self.transforms
        if spec is None:
            return None
        if self.paper:
            return T.PaperWarps(spec, generator, steps, device)
        return T.matrices(spec, generator, steps, width, height, device)

    def warp(self, x: torch.Tensor, step_warp: Any) -> torch.Tensor:
        if step_warp is None:
            return x
        if self.paper:
            return T.apply_paper(x, self.transforms, step_warp)
        return T.apply_matrix(x, self.transforms.pad, step_warp)


@dataclass(frozen=True)
class LossKind:
    spec: type  # its config class in hitkit.study.generation_config
    build: Callable[[Any, Problem], Objective]
    # (metric, fallback) of the perceptual distance its objective measures, if any
    metric: Callable[[Any], tuple[str, str | None]] | None = None


def _reg_free(loss: RegFreeLoss, problem: Problem) -> Objective:
    return Objective(lambda rep, x: rep)


def _regularized(loss: RegularizedLoss, problem: Problem) -> Objective:
    def value(rep: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return L.regularized(rep, x, loss.rep_weight, loss.tv, loss.tv_beta, loss.blur,
                             loss.lp, loss.lp_p, paper_norm=problem.paper)

    return Objective(value, loss.fourier, loss.transforms, problem.paper)


def _adversarial(loss: AdversarialLoss, problem: Problem) -> Objective:
    distance = problem.distance
    if distance is None:
        raise ValueError(f"loss {loss.name!r} is adversarial and needs a perceptual distance")
    anchor = problem.targets if loss.anchor == "target" else problem.seeds
    lam: torch.Tensor | float
    if problem.lam is not None:
        lam = problem.lam
    elif loss.lam == "auto":
        with torch.no_grad():
            rep0 = L.rep_error(problem.net(problem.seeds), problem.target_features)
            # with the seed as anchor D(seed, seed) = 0: balance against D(target, seed)
            lam = L.auto_lambda(rep0, distance(problem.seeds, problem.targets))
    else:
        lam = float(loss.lam)
    return Objective(lambda rep, x: L.adversarial(rep, distance(x, anchor), lam, loss.anchor))


LOSS_KINDS: dict[str, LossKind] = {
    "reg_free": LossKind(RegFreeLoss, _reg_free),
    "regularized": LossKind(RegularizedLoss, _regularized),
    "adversarial": LossKind(AdversarialLoss, _adversarial,
                            metric=lambda loss: (loss.metric, loss.fallback_metric)),
}


def loss_kind(loss: LossSpec) -> LossKind:
    try:
        return LOSS_KINDS[loss.kind]
    except KeyError:
        raise ValueError(f"unknown loss kind {loss.kind!r} (known: {', '.join(LOSS_KINDS)})") from None


def build_objective(loss: LossSpec, problem: Problem) -> Objective:
    return loss_kind(loss).build(loss, problem)


def loss_distance(loss: LossSpec) -> Distance | None:
    """The perceptual distance `loss` needs, or None. Look it up once per run: a missing
    LPIPS backbone that falls back warns each time it is looked up."""
    metric = loss_kind(loss).metric
    return None if metric is None else perceptual_distance(*metric(loss))[0]
