"""Load a checkpoint's weights into a model: plain, DDP, Lightning and MadryLab `robustness` files.

Files are read with torch's safe unpickler (weights_only=True) and an allow-list of
the data holders those formats store; anything else is refused unless the model is
marked `trust = true` (nothing falls back to a full unpickle on its own).

The state dict is found inside the file, its key prefix (``module.``,
``model.``, ``module.model.``, ``_orig_mod.``) is stripped by matching against the
model's own keys, and the load is strict: a mismatch is an error that lists the
first missing and unexpected keys, which is what a checkpoint of another
architecture looks like.
"""

from __future__ import annotations

import hashlib
import pickle
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


def _numpy_globals() -> list:
    import numpy as np

    core = getattr(np, "_core", None) or np.core  # numpy 2 moved numpy.core to numpy._core
    multiarray = core.multiarray
    found: list = [np.dtype, np.ndarray]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        found += [(multiarray.scalar, f"{module}.scalar"),
                  (multiarray._reconstruct, f"{module}._reconstruct")]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:  # numpy >= 1.25 pickles a dtype through its class
        found += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return found


def allowed_globals() -> list:
    """What the known checkpoint writers pickle besides tensors and plain containers.

    robustness, timm and torchvision's reference scripts store their argparse
    `args`; Lightning stores hyper-parameters as an AttributeDict and may hold
    paths and numpy scalars (metrics, RNG states). Nothing here runs code when
    unpickled: these are data holders, rebuilt field by field.
    """
    import argparse
    import collections
    import pathlib

    return [argparse.Namespace, collections.defaultdict, collections.Counter,
            pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePosixPath,
            pathlib.PureWindowsPath,
            # Lightning's AttributeDict (hyper-parameters) comes back as a plain dict, so
            # reading a Lightning checkpoint neither imports Lightning nor runs its code
            *[(dict, f"{module}.AttributeDict") for module in LIGHTNING_MODULES],
            *_numpy_globals()]


LIGHTNING_MODULES = ("lightning.fabric.utilities.data", "lightning.pytorch.utilities.parsing",
                     "pytorch_lightning.utilities.parsing")
TRUST_HINT = ("if you trust this file, set `trust = true` on its [[models]] entry in "
              "study.toml or pass --trust-checkpoints to `hitkit generate`")


def read_checkpoint_file(path: Path, trust: bool = False) -> object:
    """torch.load with weights_only=True and the allow-list above; `trust` unpickles in full.

    There is no fallback: a file holding any other object fails here, before any of
    its code can run, and the error says how to opt in.
    """
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    if trust:
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # noqa: BLE001 - any failure means "not a checkpoint"
            raise CheckpointError(
                f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})"
            ) from None
    try:
        with torch.serialization.safe_globals(allowed_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        at = next((i for i, line in enumerate(lines) if "WeightsUnpickler error" in line), None)
        reason = lines[0] if at is None else (
            lines[at].partition("WeightsUnpickler error:")[2].strip()
            or (lines[at + 1] if at + 1 < len(lines) else lines[at]))
        reason = reason.split(". ")[0]  # "Unsupported global: GLOBAL os.system was not allowed ..."
        if "global" not in reason.lower():
            raise CheckpointError(
                f"{path}: not a readable PyTorch checkpoint (UnpicklingError: {reason[:200]})"
            ) from None
        raise CheckpointError(
            f"{path}: holds pickled objects that the safe loader does not allow ({reason[:200]}); "
            f"unpickling them could run code, so it was not loaded; {TRUST_HINT}"
        ) from None
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})"
        ) from None


_DIGESTS: dict[tuple[str, int, int], str] = {}


def checkpoint_sha256(path: Path) -> str:
    """SHA-256 of the file's bytes, read once per (path, size, mtime) in a process."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


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
                 arch: str = "", trust: bool = False) -> LoadedCheckpoint:
    """Load `path` into `model` strictly; return what was found (`trust`: full unpickle)."""
    path = Path(path)
    if fmt not in FORMATS:
        raise CheckpointError(f"{path}: unknown checkpoint_format {fmt!r} (allowed: {FORMATS})")
    obj = read_checkpoint_file(path, trust)
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
