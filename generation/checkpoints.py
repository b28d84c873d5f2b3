"""Load a checkpoint's weights into a model: plain, DDP, Lightning and MadryLab `robustness` files.

The state dict is found inside the file, its key prefix (``module.``,
``model.``, ``module.model.``, ``_orig_mod.``) is stripped by matching against the
model's own keys, and the load is strict: a mismatch is an error that lists the
first missing and unexpected keys, which is what a checkpoint of another
architecture looks like.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

FORMATS = ("auto", "state_dict", "lightning", "robustness")
SHOWN_KEYS = 5


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; names the file."""


@dataclass(frozen=True)
class LoadedCheckpoint:
    format: str  # the format that was used (auto resolved)
    prefix: str  # the key prefix that was stripped
    # (mean, std) stored by MadryLab robustness files, None for other formats
    normalizer: tuple[tuple[float, ...], tuple[float, ...]] | None


def read_checkpoint_file(path: Path) -> object:
    """torch.load, safely first; pickled extras (robustness' argparse args) need a full unpickle."""
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError) as safe_error:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - any failure means "not a checkpoint"
            raise CheckpointError(
                f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})"
            ) from None
        warnings.warn(
            f"{path}: loaded with weights_only=False (it holds pickled objects: "
            f"{str(safe_error).splitlines()[0][:120]}); only load checkpoints you trust",
            stacklevel=2,
        )
        return obj
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})"
        ) from None


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _detect_format(obj: object, path: Path) -> str:
    if isinstance(obj, Mapping):
        model = obj.get("model")
        if _is_state_dict(model) and any(
            k.startswith(("module.model.", "module.attacker.model.")) for k in model
        ):
            return "robustness"
        if _is_state_dict(obj.get("state_dict")):
            return "lightning"
        if _is_state_dict(obj) or _is_state_dict(obj.get("model_state_dict")) or _is_state_dict(model):
            return "state_dict"
    raise CheckpointError(
        f"{path}: no state dict found (expected a state dict, a Lightning checkpoint with "
        "'state_dict', or a robustness checkpoint with 'model')"
    )


def _raw_state_dict(obj: object, fmt: str, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict in the checkpoint, found {type(obj).__name__}")
    if fmt == "robustness":
        candidate = obj.get("model")
    elif fmt == "lightning":
        candidate = obj.get("state_dict")
    else:
        candidate = next(
            (c for c in (obj, obj.get("model_state_dict"), obj.get("model")) if _is_state_dict(c)),
            None,
        )
    if not _is_state_dict(candidate):
        raise CheckpointError(f"{path}: no state dict where a {fmt!r} checkpoint keeps it")
    return dict(candidate)


def _robustness_parts(raw: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], tuple | None]:
    """The classifier's weights (`module.model.*`) and the stored input normaliser."""
    normalizer = None
    mean = raw.get("module.normalizer.new_mean")
    std = raw.get("module.normalizer.new_std")
    if mean is not None and std is not None:
        normalizer = (tuple(mean.flatten().tolist()), tuple(std.flatten().tolist()))
    prefix = "module.model." if any(k.startswith("module.model.") for k in raw) else (
        "module.attacker.model."
    )
    weights = {k[len(prefix):]: v for k, v in raw.items() if k.startswith(prefix)}
    return weights, normalizer


_PREFIXES = ("", "module.", "model.", "module.model.", "model.module.", "_orig_mod.",
             "module._orig_mod.", "model._orig_mod.", "net.", "backbone.", "encoder.")


def _strip_prefix(state: dict[str, torch.Tensor], wanted: set[str], fmt: str) -> tuple[dict, str]:
    best_prefix, best_hits = "", -1
    for prefix in _PREFIXES:
        hits = sum(1 for k in state if k.startswith(prefix) and k[len(prefix):] in wanted)
        if hits > best_hits:
            best_prefix, best_hits = prefix, hits
    if not best_prefix:
        return state, ""
    kept = {k[len(best_prefix):]: v for k, v in state.items() if k.startswith(best_prefix)}
    if fmt != "lightning":
        # keys outside the prefix are real leftovers, not a LightningModule's extra heads
        kept.update({k: v for k, v in state.items() if not k.startswith(best_prefix)})
    return kept, best_prefix


def _mismatch_message(path: Path, missing: list[str], unexpected: list[str],
                      shapes: list[str], arch: str) -> str:
    parts = [f"{path}: checkpoint does not fit arch {arch!r}"]
    if missing:
        parts.append(f"{len(missing)} missing key(s), first: {', '.join(missing[:SHOWN_KEYS])}")
    if unexpected:
        parts.append(
            f"{len(unexpected)} unexpected key(s), first: {', '.join(unexpected[:SHOWN_KEYS])}"
        )
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es), first: {'; '.join(shapes[:SHOWN_KEYS])}")
    parts.append("(a checkpoint of another architecture, or wrong num_classes?)")
    return "; ".join(parts)


def load_weights(model: nn.Module, path: str | Path, fmt: str = "auto",
                 arch: str = "") -> LoadedCheckpoint:
    """Load `path` into `model` strictly; return what was found."""
    path = Path(path)
    if fmt not in FORMATS:
        raise CheckpointError(f"{path}: unknown checkpoint_format {fmt!r} (allowed: {FORMATS})")
    obj = read_checkpoint_file(path)
    used = _detect_format(obj, path) if fmt == "auto" else fmt
    raw = _raw_state_dict(obj, used, path)
    normalizer = None
    if used == "robustness":
        raw, normalizer = _robustness_parts(raw)
    own = model.state_dict()
    state, prefix = _strip_prefix(raw, set(own), used)
    # BatchNorm's counter is bookkeeping that some writers drop; it never changes outputs
    for key in own:
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = own[key]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        raise CheckpointError(_mismatch_message(path, missing, unexpected, shapes, arch))
    model.load_state_dict(state, strict=True)
    return LoadedCheckpoint(format=used, prefix=prefix, normalizer=normalizer)
