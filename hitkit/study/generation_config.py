"""study.toml's generation sections: [[models]], [targets], [seeds], [generation].

Part of the one study.toml schema (hitkit.study.config assembles it); the
generation stage reads these specs, and the manifest records them per IRI.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from hitkit.study.fields import Name, Strict

# Per-dataset input normalisation (mean, std), applied inside the model wrapper.
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


# -------------------------------------------------------------------- [[models]]


class CustomNormalization(Strict):
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @field_validator("std")
    @classmethod
    def _positive_std(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(s <= 0 for s in value):
            raise ValueError("every std must be > 0")
        return value


class TrainSpec(Strict):
    """How `hitkit generate` trains a missing demo checkpoint on the shapes set."""

    dataset: Literal["shapes"] = "shapes"
    adversarial: bool = False
    epsilon: float = Field(default=0.5, gt=0)
    augmentation: Literal["none", "crop-flip"] = "none"
    epochs: int = Field(default=4, ge=1)
    images: int = Field(default=2000, ge=10)
    seed: int = Field(default=0, ge=0)


class ModelSpec(Strict):
    name: Name
    arch: str = Field(min_length=1)
    checkpoint: str | None = None
    checkpoint_format: Literal["auto", "state_dict", "lightning", "robustness"] = "auto"
    layer: str = "penultimate"
    normalization: Literal["cifar10", "cifar100", "imagenet", "none"] | CustomNormalization = (
        "imagenet"
    )
    input_size: int = Field(default=224, ge=8, le=4096)
    num_classes: int | None = Field(default=None, ge=1)
    train: TrainSpec | None = None
    factors: dict[str, str] = Field(default_factory=dict)
    # Unpickle the checkpoint in full (weights_only=False): it may run code, so only for a
    # file you trust. Off, a file holding objects beyond the known formats is an error.
    trust: bool = False

    @field_validator("normalization", mode="before")
    @classmethod
    def _known_normalization(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in NORMALIZATIONS:
            raise ValueError(
                f"{value!r} is not allowed (allowed: {', '.join(NORMALIZATIONS)}, "
                "or a table { mean = [r, g, b], std = [r, g, b] })"
            )
        return value

    @field_validator("factors")
    @classmethod
    def _factor_levels_not_empty(cls, value: dict[str, str]) -> dict[str, str]:
        for factor, level in value.items():
            if not str(level).strip():
                raise ValueError(f"factor {factor!r} has an empty level")
        return value

    @model_validator(mode="after")
    def _needs_weights(self) -> ModelSpec:
        if self.checkpoint is None and self.train is None:
            raise ValueError(
                "checkpoint: give a checkpoint path, or a [models.train] table to train a demo model"
            )
        return self


# ------------------------------------------------------------------- [targets]

TargetSource = Literal["folder", "cifar10", "cifar100", "imagenet", "shapes", "sample-photos"]
NEEDS_PATH: frozenset[str] = frozenset({"folder", "cifar10", "cifar100", "imagenet"})


class TargetsSection(Strict):
    source: TargetSource
    path: str | None = None
    split: Literal["train", "test", "val"] = "train"
    count: int = Field(ge=1)
    seed: int = Field(default=0, ge=0)
    size: int | None = Field(default=None, ge=8, le=4096)

    @model_validator(mode="after")
    def _path_when_needed(self) -> TargetsSection:
        if self.source in NEEDS_PATH and not self.path:
            raise ValueError(f"path: source {self.source!r} needs a path")
        if self.source not in NEEDS_PATH and self.path:
            raise ValueError(f"path: source {self.source!r} takes no path (it is made by the project)")
        return self


# --------------------------------------------------------------------- [seeds]


class GaussianSeed(Strict):
    kind: Literal["gaussian"]
    mean: float = 0.0
    scale: float = Field(default=1.0, gt=0)


class UniformSeed(Strict):
    kind: Literal["uniform"]
    low: float = Field(default=0.0, ge=0, le=1)
    high: float = Field(default=1.0, ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> UniformSeed:
        if self.low >= self.high:
            raise ValueError("high: low must be below high")
        return self


class ConstantSeed(Strict):
    kind: Literal["constant"]
    value: float = Field(default=0.5, ge=0, le=1)


class ImageSeed(Strict):
    kind: Literal["image"]
    # "other-target": another target of the set; otherwise a path to an image file.
    path: str = "other-target"


SeedKind = Annotated[
    GaussianSeed | UniformSeed | ConstantSeed | ImageSeed, Field(discriminator="kind")
]


class SeedsSection(Strict):
    count: int = Field(default=1, ge=1)
    kinds: list[SeedKind] = Field(default_factory=lambda: [GaussianSeed(kind="gaussian")])
    seed: int = Field(default=0, ge=0)

    @field_validator("kinds")
    @classmethod
    def _at_least_one(cls, value: list[Any]) -> list[Any]:
        if not value:
            raise ValueError("list at least one seed kind")
        return value


# ---------------------------------------------------------------- [generation]


class TransformSpec(Strict):
    pad: int = Field(default=0, ge=0)
    jitter: int = Field(default=8, ge=0)
    scale: tuple[float, float] = (0.9, 1.1)
    rotate_degrees: float = Field(default=10.0, ge=0)


class RegFreeLoss(Strict):
    name: Name
    kind: Literal["reg_free"]


class RegularizedLoss(Strict):
    name: Name
    kind: Literal["regularized"]
    rep_weight: float = Field(default=10.0, gt=0)
    tv: float = Field(default=0.0, ge=0)
    tv_beta: float = Field(default=2.0, gt=0)
    blur: float = Field(default=0.0, ge=0)
    lp: float = Field(default=0.0, ge=0)
    lp_p: float = Field(default=1.0, gt=0)
    transforms: TransformSpec | None = None
    fourier: bool = False


class AdversarialLoss(Strict):
    name: Name
    kind: Literal["adversarial"]
    # lpips-alex-uncalibrated: ImageNet AlexNet with the 1×1 "lin" layers left at a (seeded)
    # random init, the paper's `adv_alex_imagenet` (lpips' pretrained=False)
    metric: Literal["lpips-alex", "lpips-alex-uncalibrated", "lpips-vgg", "ssim", "ms-ssim"] = (
        "lpips-alex"
    )
    # Used when the metric's weights are missing; None means missing weights are an error.
    fallback_metric: Literal["ssim", "ms-ssim"] | None = None
    # "auto" balances the two terms at step 0; a number is used as is.
    lam: Literal["auto"] | float = Field(default="auto", alias="lambda")
    # "target": push away from the target; "seed": keep close to the seed.
    anchor: Literal["target", "seed"] = "target"

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("lam")
    @classmethod
    def _finite_lambda(cls, value: Any) -> Any:
        if isinstance(value, float) and (not math.isfinite(value) or value <= 0):
            raise ValueError("lambda must be 'auto' or a positive number")
        return value


LossSpec = Annotated[
    RegFreeLoss | RegularizedLoss | AdversarialLoss, Field(discriminator="kind")
]


class GenerationSection(Strict):
    steps: int = Field(default=5000, ge=1)
    step_size: float = Field(default=1.0, gt=0)
    optimizer: Literal["normalized-gd", "adam"] = "normalized-gd"
    schedule: Literal["constant", "halving", "cosine"] = "constant"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: Literal["auto", "on", "off"] = "auto"
    batch_size: int = Field(default=32, ge=1)
    # fp32 steps that end a bf16 run on CUDA; default: a tenth of the steps, at most 200
    finish_steps: int | None = Field(default=None, ge=0)
    # Perceptual distance for the manifest's dist_target/dist_seed and `hitkit proxy`;
    # the fallback is used (with a warning) when LPIPS backbone weights are not cached.
    distance_metric: Literal["lpips-alex", "lpips-vgg", "ssim", "ms-ssim"] = "lpips-alex"
    distance_fallback: Literal["ssim", "ms-ssim", "none"] = "ssim"
    losses: list[LossSpec] = Field(default_factory=list)
    # "paper": the authors' code where it differs from the default (fake_relu, their
    # transforms, a frequency-space Fourier seed, λ from the first batch, the L_p norm);
    # docs/generation.md lists each difference
    mode: Literal["default", "paper"] = "default"

    @field_validator("losses")
    @classmethod
    def _unique_losses(cls, value: list[Any]) -> list[Any]:
        if not value:
            raise ValueError("list at least one [[generation.losses]] entry")
        names = [loss.name for loss in value]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"duplicate loss names: {', '.join(duplicated)}")
        return value

    @model_validator(mode="after")
    def _finish_within_steps(self) -> GenerationSection:
        if self.finish_steps is not None and self.finish_steps > self.steps:
            raise ValueError(f"finish_steps: {self.finish_steps} exceeds steps ({self.steps})")
        return self

    @property
    def fp32_finish_steps(self) -> int:
        if self.finish_steps is not None:
            return self.finish_steps
        return min(200, self.steps // 10)
