"""What an IRI's id is made of: the checkpoint's bytes and exactly the settings that change pixels.

Two IRIs share an id only when they were made from the same checkpoint content,
target, seed, loss and pixel-changing settings, so a resumed run can never keep
an IRI of a retrained model or of another precision. Settings that only fill
manifest columns (`distance_metric`, `distance_fallback`) or only change speed
(`batch_size`, `compile`) are left out, so changing them remakes nothing; the
one exception is the paper's automatic λ, computed on the first batch, whose
members are then part of every id of that loss.
"""

from __future__ import annotations

import hashlib
import json

from hitkit.study.config import StudyConfig
from hitkit.study.generation_config import GenerationSection, ModelSpec

# [generation] fields that change an IRI's pixels as they are; `precision` enters resolved
# for the device, and `finish_steps` only when that precision is bf16
PIXEL_FIELDS = ("steps", "step_size", "optimizer", "schedule", "mode")
# [[models]] fields that change pixels; the checkpoint enters as its content hash
MODEL_FIELDS = ("name", "arch", "layer", "normalization", "num_classes")


def digest(obj: object, n: int = 16) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def pixel_settings(gen: GenerationSection, precision: str) -> dict:
    """The [generation] settings that change pixels, with `precision` already resolved."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be resolved to fp32 or bf16 for an id, not {precision!r}")
    settings = {name: getattr(gen, name) for name in PIXEL_FIELDS}
    settings["precision"] = precision
    if precision == "bf16":
        settings["finish_steps"] = gen.fp32_finish_steps
    return settings


def model_identity(model: ModelSpec, checkpoint_sha256: str) -> dict:
    fields = model.model_dump(mode="json", include=set(MODEL_FIELDS))
    return {**fields, "checkpoint_sha256": checkpoint_sha256}


def iri_id(model: dict, settings: dict, loss_json: str, target_id: str, seed: dict, size: int,
           study_seed: int, lambda_from: list[str] | None = None) -> str:
    """The id of one IRI: `model` from model_identity, `settings` from pixel_settings,
    `seed` the seed's own description (kind, parameters, draw)."""
    parts = {"model": model, "settings": settings, "loss": loss_json, "target": target_id,
             "seed": seed, "size": size, "study_seed": study_seed}
    if lambda_from is not None:
        parts["lambda_from"] = lambda_from
    return digest(parts)


def config_hash(config: StudyConfig, checkpoints: dict[str, str], precision: str) -> str:
    """SHA-256 over everything that changes some IRI's pixels (`checkpoints`: name -> sha256)."""
    relevant = {
        "models": [model_identity(m, checkpoints[m.name]) for m in config.models],
        "targets": config.targets.model_dump(mode="json"),
        "seeds": config.seeds.model_dump(mode="json"),
        "losses": [loss.model_dump(mode="json", by_alias=True) for loss in config.generation.losses],
        "settings": pixel_settings(config.generation, precision),
        "seed": config.study.seed,
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()
