"""The IRI optimisation loop: one batched tensor of targets × seeds, no host sync per step.

Default step (the paper's `UnconstrainedStep`): x <- clamp(x - lr * g / ||g||_2, 0, 1),
with the gradient normalised per image, and the iterate with the lowest loss kept
per image (`use_best`). Adam is the alternative. On CUDA the bulk of the steps runs
under bf16 autocast with channels_last and `torch.compile`, then `finish_steps`
run in fp32; the reported error is always re-measured in fp32 on the 8-bit image
that is stored. What is descended on comes from generation.objective.

Best-iterate bookkeeping: every candidate is scored without the random warp (a
second, gradient-free forward when the loss has transforms), so the kept loss is
the loss of the returned iterate. Losses of two precisions are never compared: a
bf16 run keeps its best bf16 iterate, continues from it in fp32 and from then on
compares fp32 scores only (with finish_steps = 0 the last candidate is scored in
bf16 too).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from generation.distances import Distance
from generation.losses import rep_error
from generation.objective import Problem, build_objective
from generation.settings import LoopSettings
from hitkit.study.generation_config import LossSpec

HALVING_ROUNDS = 8  # Feather et al.'s metamer schedule: the step halves 8 times over the run


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
    best_loss: torch.Tensor  # (N,) the objective's value of `iterate` (unwarped), on CPU
    iterate: torch.Tensor  # (N, 3, H, W) the kept iterate's image before 8-bit rounding, on CPU
    best_step: torch.Tensor  # (N,) the step it comes from (`steps`: the last iterate), on CPU


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Round to the 8-bit grid a PNG stores."""
    return torch.round(images.clamp(0, 1) * 255) / 255


def keep_best(value: torch.Tensor, param: torch.Tensor, best_value: torch.Tensor,
              best_param: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the lower loss and its variable; torch.where, so the device never syncs."""
    better = value < best_value
    view = (-1,) + (1,) * (param.dim() - 1)
    return torch.where(better, value, best_value), torch.where(better.view(view), param, best_param)


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
           settings: LoopSettings, distance: Distance | None = None, *,
           start: torch.Tensor | None = None, lam: float | None = None,
           paper: bool | None = None) -> InversionResult:
    """Optimise `seeds` (N, 3, H, W) until `net` represents them like `targets` (N, 3, H, W).

    `start`: the variable to begin from when it is not `seeds` itself (paper mode's
    frequency-space Fourier seed); `lam`: a fixed λ for an adversarial loss; `paper`:
    the paper's variant of each term (default: settings.paper).
    """
    if targets.shape != seeds.shape:
        raise ValueError(f"targets {tuple(targets.shape)} and seeds {tuple(seeds.shape)} differ")
    device = targets.device
    cuda = device.type == "cuda"
    n, _, height, width = targets.shape
    if cuda:
        net = net.to(memory_format=torch.channels_last)
    seeds = seeds.clamp(0, 1)
    with torch.no_grad():
        target_features = net(targets.float()).float()
    paper = settings.paper if paper is None else paper
    objective = build_objective(loss, Problem(net, targets, seeds, target_features, distance,
                                              paper, lam))
    # Only the network is compiled, once per network and mode: the loss terms are cheap
    # elementwise ops, and closures rebuilt per batch would make dynamo recompile. The
    # paper's transforms change the image size every step, so they run eagerly.
    forward = compiled_network(net, "reduce-overhead" if cuda and n <= 16 else "default") \
        if settings.compile and not objective.resizes else net

    def evaluate(param: torch.Tensor, warp, bf16: bool, run: Callable = forward):
        x = objective.image(param, height, width)
        x_in = objective.warp(x, warp)
        if cuda:
            x_in = x_in.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            features = run(x_in)
        rep = rep_error(features.float(), target_features)
        return objective.value(rep, x), rep

    param = (objective.start(seeds) if start is None else start.clone()).to(device)
    param.requires_grad_(True)
    per_image = (-1,) + (1,) * (param.dim() - 1)
    best_param = param.detach().clone()
    best_loss = torch.full((n,), float("inf"), device=device)
    best_step = torch.zeros(n, dtype=torch.long, device=device)
    adam = None
    if settings.optimizer == "adam":
        adam = torch.optim.Adam([param], lr=settings.step_size, fused=cuda or None)
    elif settings.optimizer != "normalized-gd":
        raise ValueError(f"unknown optimizer {settings.optimizer!r} (normalized-gd, adam)")

    use_bf16 = settings.precision == "bf16"
    bulk = settings.steps - settings.finish_steps if use_bf16 else settings.steps
    warps = objective.warps(torch.Generator().manual_seed(settings.seed), settings.steps,
                            height, width, device)
    progress = _Progress(settings, device)

    def keep(score: torch.Tensor, step: int) -> None:
        nonlocal best_loss, best_param, best_step
        best_step = torch.where(score < best_loss, step, best_step)
        best_loss, best_param = keep_best(score, param.detach(), best_loss, best_param)

    try:
        for step in range(settings.steps):
            bf16 = use_bf16 and step < bulk
            if use_bf16 and step == bulk and step > 0:
                with torch.no_grad():  # go on in fp32 from the best bf16 iterate, scored afresh
                    param.copy_(best_param)
                    best_loss.fill_(float("inf"))
            warp = None if warps is None else warps[step]
            value, rep = evaluate(param, warp, bf16)
            (grad,) = torch.autograd.grad(value.sum(), param)
            lr = step_size_at(step, settings)
            with torch.no_grad():
                keep(value.detach() if warp is None else evaluate(param, None, bf16)[0], step)
                if adam is None:
                    norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(per_image)
                    param.sub_(lr * grad / norm)
                else:
                    adam.param_groups[0]["lr"] = lr
                    param.grad = grad
                    adam.step()
                    param.grad = None
                if objective.clamp:
                    param.clamp_(0, 1)
            progress.update(step, rep)
        # the last iterate is a candidate too (the paper scores it after the loop), scored in
        # the precision of the last steps; eagerly: one forward is not worth a compiled graph
        with torch.no_grad():
            keep(evaluate(param, None, use_bf16 and bulk == settings.steps, net)[0],
                 settings.steps)
    finally:
        progress.close()

    with torch.no_grad():
        iterate = objective.image(best_param, height, width).float()
        images = quantize(iterate)
        with torch.autocast(device.type, enabled=False):
            final = rep_error(net(images).float(), target_features)
    images_cpu = images.cpu()
    pixels = torch.round(images_cpu * 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    return InversionResult(images_cpu, pixels, final.double().cpu(), best_loss.cpu(),
                           iterate.cpu(), best_step.cpu())
