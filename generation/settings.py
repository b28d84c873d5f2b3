"""The loop's settings, and how a study's [generation] section resolves to them on a device."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hitkit.study.generation_config import GenerationSection


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
    paper: bool = False  # [generation] mode = "paper"


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
        progress=progress, description=description, paper=gen.mode == "paper",
    )
