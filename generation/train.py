"""Train the tiny demo models on the shapes set: standard or L2-PGD adversarial, with or
without crop+flip augmentation, in seconds on a CPU.

The result is an ordinary checkpoint (a plain state dict of the architecture)
saved where [[models]].checkpoint points, so the rest of the pipeline treats it
like any user's model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from generation.archs import create_model
from generation.network import normalization_values
from generation.shapes import shapes_batch
from hitkit.study.files import atomic_write
from hitkit.study.generation_config import ModelSpec

TRAIN_SET_SEED = 1_000  # shapes stream for training images (targets use [targets].seed)
TEST_SET_SEED = 2_000
TEST_IMAGES = 500
BATCH = 64
PGD_STEPS = 2
EPS_RAMP = 0.5  # share of training over which epsilon grows to its value


@dataclass(frozen=True)
class TrainReport:
    model: str
    accuracy: float  # clean accuracy on held-out shapes
    robust_accuracy: float | None  # under the training attack, for adversarial models
    seconds: float
    path: Path


class Normalized(nn.Module):
    def __init__(self, model: nn.Module, mean: tuple, std: tuple) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


def pgd_l2(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float,
           steps: int = PGD_STEPS) -> torch.Tensor:
    """Untargeted L2 PGD (Madry et al.): normalised ascent steps, projected to the eps-ball and [0, 1]."""
    step = 2.5 * epsilon / steps
    delta = torch.zeros_like(x, requires_grad=True)
    for _ in range(steps):
        loss = F.cross_entropy(model(x + delta), y)
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            delta += step * grad / norm
            dnorm = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            delta *= (epsilon / dnorm).clamp(max=1.0)
            delta.copy_((x + delta).clamp(0, 1) - x)
    return (x + delta).detach()


def crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop after reflect padding, and a random horizontal flip, per image."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=gen).tolist()
    flips = torch.rand(n, generator=gen).lt(0.5).tolist()
    out = torch.stack([padded[i, :, dy:dy + h, dx:dx + w] for i, (dy, dx) in enumerate(offsets)])
    flip_idx = [i for i, f in enumerate(flips) if f]
    if flip_idx:
        out[flip_idx] = out[flip_idx].flip(-1)
    return out


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def save_state_dict(state: dict, path: Path) -> None:
    """A killed run never leaves a half-written checkpoint."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def train_demo_model(spec: ModelSpec, path: Path,
                     log: Callable[[str], None] = lambda _: None) -> TrainReport:
    """Train `spec` as its [models.train] table says and save a plain state dict to `path`."""
    train = spec.train
    if train is None:
        raise ValueError(f"model {spec.name!r} has no [models.train] table")
    threads = torch.get_num_threads()
    # tiny convolutions gain little from intra-op threads, and on a shared machine OpenMP
    # threads oversubscribe the cores and slow training down several times over
    torch.set_num_threads(1)
    try:
        return _train(spec, train, path, log)
    finally:
        torch.set_num_threads(threads)


def _train(spec: ModelSpec, train, path: Path, log: Callable[[str], None]) -> TrainReport:
    classes = spec.num_classes or 6
    start = time.perf_counter()
    torch.manual_seed(train.seed)
    gen = torch.Generator().manual_seed(train.seed)
    x, y = shapes_batch(range(train.images), spec.input_size, TRAIN_SET_SEED + train.seed, classes)
    xt, yt = shapes_batch(range(TEST_IMAGES), spec.input_size, TEST_SET_SEED, classes)
    mean, std = normalization_values(spec.normalization)
    model = Normalized(create_model(spec.arch, classes), mean, std)
    batches_per_epoch = (len(x) + BATCH - 1) // BATCH
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    total_steps = train.epochs * batches_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=total_steps)
    for epoch in range(train.epochs):
        order = torch.randperm(len(x), generator=gen)
        for b in range(batches_per_epoch):
            idx = order[b * BATCH:(b + 1) * BATCH]
            xb, yb = x[idx], y[idx]
            if train.augmentation == "crop-flip":
                xb = crop_flip(xb, gen)
            if train.adversarial:
                model.eval()  # attack the current weights without touching BatchNorm statistics
                # epsilon ramps up over the first half of training: a net that cannot yet
                # classify gains nothing from full-strength attacks (and learns far slower)
                ramp = min(1.0, (epoch * batches_per_epoch + b + 1) / (EPS_RAMP * total_steps))
                xb = pgd_l2(model, xb, yb, train.epsilon * ramp)
            model.train()
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        log(f"{spec.name}: epoch {epoch + 1}/{train.epochs} loss {float(loss.detach()):.3f}")
    model.eval()
    accuracy = _accuracy(model, xt, yt)
    robust = None
    if train.adversarial:
        robust = _accuracy(model, pgd_l2(model, xt, yt, train.epsilon), yt)
    save_state_dict(model.model.state_dict(), path)
    return TrainReport(spec.name, accuracy, robust, time.perf_counter() - start, path)
