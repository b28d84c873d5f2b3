"""The IRI optimisation loop: one batched tensor of targets × seeds, no host sync per step.

Default step (the paper's `UnconstrainedStep`): x <- clamp(x - lr * g / ||g||_2, 0, 1),
with the gradient normalised per image, and the iterate with the lowest loss kept
per image (`use_best`). Adam is the alternative. On CUDA the bulk of the steps runs
under bf16 autocast with channels_last and `torch.compile`, then `finish_steps`
run in fp32; the reported error is always re-measured in fp32 on the 8-bit image
that is stored.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from generation import fourier as fourier_param
from generation import losses as L
from generation import transforms as T
from generation.distances import Distance
from hitkit.study.generation_config import (
    AdversarialLoss,
    GenerationSection,
    RegFreeLoss,
    RegularizedLoss,
)

LossSpec = RegFreeLoss | RegularizedLoss | AdversarialLoss
HALVING_ROUNDS = 8  # Feather et al.'s metamer schedule: the step halves 8 times over the run


@dataclass(frozen=True)
class LoopSettings:
    steps: int = 5000
    step_size: float = 1.0
    optimizer: str = "normalized-gd"  # or "adam"
    schedule: str = "constant"  # "halving", "cosine"
    precision: str = "fp32"  # "bf16": bf16 autocast, then `finish_steps` in fp32
    compile: bool = False
    finish_steps: int = 200
    seed: int = 0  # transformation-robustness draws
    progress: bool = False
    progress_every: int = 25
    description: str = "IRIs"


def resolve_settings(gen: GenerationSection, device: torch.device, seed: int = 0,
                     progress: bool = False, description: str = "IRIs") -> LoopSettings:
    """Study settings -> concrete loop settings for a device ('auto' resolved)."""
    cuda = device.type == "cuda"
    precision = gen.precision
    if precision == "auto":
        precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    compiled = gen.compile == "on" or (gen.compile == "auto" and cuda)
    return LoopSettings(
        steps=gen.steps, step_size=gen.step_size, optimizer=gen.optimizer,
        schedule=gen.schedule, precision=precision, compile=compiled,
        finish_steps=gen.fp32_finish_steps if precision == "bf16" else 0, seed=seed,
        progress=progress, description=description,
    )


def step_size_at(step: int, settings: LoopSettings) -> float:
    base, steps = settings.step_size, settings.steps
    if settings.schedule == "constant":
        return base
    if settings.schedule == "halving":
        return base / 2 ** min(HALVING_ROUNDS - 1, step * HALVING_ROUNDS // steps)
    if settings.schedule == "cosine":
        return base * 0.5 * (1 + math.cos(math.pi * step / steps))
    raise ValueError(f"unknown schedule {settings.schedule!r} (constant, halving, cosine)")


@dataclass
class InversionResult:
    images: torch.Tensor  # (N, 3, H, W) float in [0, 1], exactly the 8-bit values / 255, on CPU
    pixels: torch.Tensor  # (N, H, W, 3) uint8 on CPU: what is written to the PNG
    rep_error: torch.Tensor  # (N,) fp32 relative error of `images`, float64 on CPU
    best_loss: torch.Tensor  # (N,) the objective's best value during the run, on CPU


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Round to the 8-bit grid a PNG stores."""
    return torch.round(images.clamp(0, 1) * 255) / 255


class _Progress:
    """tqdm bar with the running median error, read without blocking the device."""

    def __init__(self, settings: LoopSettings, device: torch.device) -> None:
        self.bar = tqdm(total=settings.steps, desc=settings.description, leave=False,
                        disable=not settings.progress)
        self.every = settings.progress_every
        self.cuda = device.type == "cuda"
        self.buffer = torch.zeros((), pin_memory=self.cuda)
        self.event = torch.cuda.Event() if self.cuda else None
        self.pending = False

    def update(self, step: int, rep: torch.Tensor) -> None:
        if self.bar.disable:
            return
        self.bar.update(1)
        if self.pending and (self.event is None or self.event.query()):
            self.bar.set_postfix_str(f"median error {float(self.buffer):.4f}")
            self.pending = False
        if step % self.every == 0 and not self.pending:
            self.buffer.copy_(rep.detach().float().median(), non_blocking=self.cuda)
            if self.event is not None:
                self.event.record()
            self.pending = True

    def close(self) -> None:
        self.bar.close()


def compiled_network(net: torch.nn.Module, mode: str) -> Callable:
    """torch.compile(net), cached on the module so every batch reuses the compiled graphs."""
    cache = net.__dict__.setdefault("_hitkit_compiled", {})
    if mode not in cache:
        cache[mode] = torch.compile(net, mode=mode, dynamic=False)
    return cache[mode]


def invert(net: torch.nn.Module, targets: torch.Tensor, seeds: torch.Tensor, loss: LossSpec,
           settings: LoopSettings, distance: Distance | None = None) -> InversionResult:
    """Optimise `seeds` (N, 3, H, W) until `net` represents them like `targets` (N, 3, H, W)."""
    if targets.shape != seeds.shape:
        raise ValueError(f"targets {tuple(targets.shape)} and seeds {tuple(seeds.shape)} differ")
    device = targets.device
    cuda = device.type == "cuda"
    n, _, height, width = targets.shape
    use_bf16 = settings.precision == "bf16"
    if cuda:
        net = net.to(memory_format=torch.channels_last)
    seeds = seeds.clamp(0, 1)

    with torch.no_grad():
        target_features = net(targets.float()).float()

    fourier = isinstance(loss, RegularizedLoss) and loss.fourier
    tspec = loss.transforms if isinstance(loss, RegularizedLoss) else None
    to_image: Callable[[torch.Tensor], torch.Tensor] = (
        (lambda p: fourier_param.to_image(p, height, width)) if fourier else (lambda p: p)
    )

    lam: torch.Tensor | float = 0.0
    anchor: torch.Tensor | None = None
    if isinstance(loss, AdversarialLoss):
        if distance is None:
            raise ValueError(f"loss {loss.name!r} is adversarial and needs a perceptual distance")
        anchor = targets if loss.anchor == "target" else seeds
        if loss.lam == "auto":
            with torch.no_grad():
                rep0 = L.rep_error(net(seeds), target_features)
                # with the seed as anchor D(seed, seed) = 0: balance against D(target, seed)
                d0 = distance(seeds, targets)
            lam = L.auto_lambda(rep0, d0)
        else:
            lam = float(loss.lam)

    def make_objective(bf16: bool) -> Callable:
        def objective(param: torch.Tensor, theta: torch.Tensor | None):
            x = to_image(param)
            x_in = T.apply_matrix(x, tspec.pad, theta) if tspec is not None else x
            if cuda:
                x_in = x_in.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                features = forward(x_in)
            rep = L.rep_error(features.float(), target_features)
            if isinstance(loss, RegFreeLoss):
                value = rep
            elif isinstance(loss, RegularizedLoss):
                value = L.regularized(rep, x, loss.rep_weight, loss.tv, loss.tv_beta, loss.blur,
                                      loss.lp, loss.lp_p)
            else:
                value = L.adversarial(rep, distance(x, anchor), lam, loss.anchor)
            return value, rep

        return objective

    # Only the network is compiled, once per network and mode: the loss terms are cheap
    # elementwise ops, and closures rebuilt per batch would make dynamo recompile.
    forward = compiled_network(net, "reduce-overhead" if cuda and n <= 16 else "default") \
        if settings.compile else net
    objectives = {False: make_objective(False)}
    if use_bf16:
        objectives[True] = make_objective(True)

    param = (fourier_param.from_image(seeds) if fourier else seeds.clone()).to(device)
    param.requires_grad_(True)
    view = (-1,) + (1,) * (param.dim() - 1)
    best_param = param.detach().clone()
    best_loss = torch.full((n,), float("inf"), device=device)
    adam = None
    if settings.optimizer == "adam":
        adam = torch.optim.Adam([param], lr=settings.step_size, fused=cuda or None)
    elif settings.optimizer != "normalized-gd":
        raise ValueError(f"unknown optimizer {settings.optimizer!r} (normalized-gd, adam)")

    generator = torch.Generator().manual_seed(settings.seed)
    bulk = settings.steps - settings.finish_steps if use_bf16 else settings.steps
    progress = _Progress(settings, device)
    theta = None
    try:
        for step in range(settings.steps):
            bf16 = use_bf16 and step < bulk
            if use_bf16 and step == bulk:
                # bf16 losses sit lower than fp32 ones: pick the best iterate among fp32 steps
                best_loss.fill_(float("inf"))
            theta = (T.matrix(T.draw(tspec, generator), width + 2 * tspec.pad,
                              height + 2 * tspec.pad).to(device, non_blocking=True)
                     if tspec is not None else None)
            value, rep = objectives[bf16](param, theta)
            (grad,) = torch.autograd.grad(value.sum(), param)
            lr = step_size_at(step, settings)
            with torch.no_grad():
                value = value.detach()
                better = value < best_loss
                best_loss = torch.where(better, value, best_loss)
                best_param = torch.where(better.view(view), param, best_param)
                if adam is None:
                    norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(view)
                    param.sub_(lr * grad / norm)
                else:
                    adam.param_groups[0]["lr"] = lr
                    param.grad = grad
                    adam.step()
                    param.grad = None
                if not fourier:
                    param.clamp_(0, 1)
            progress.update(step, rep)
        # the last iterate is a candidate too (the paper scores it after the loop)
        with torch.no_grad():
            value, _ = objectives[False](param.detach(), theta)
            better = value < best_loss
            best_loss = torch.where(better, value, best_loss)
            best_param = torch.where(better.view(view), param.detach(), best_param)
    finally:
        progress.close()

    with torch.no_grad():
        images = quantize(to_image(best_param).float())
        with torch.autocast(device.type, enabled=False):
            final = L.rep_error(net(images).float(), target_features)
    images_cpu = images.cpu()
    pixels = torch.round(images_cpu * 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    return InversionResult(images_cpu, pixels, final.double().cpu(), best_loss.cpu())
