"""Fixtures for the generation tests: tiny studies, checkpoints and a loopback S3 server."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomli_w
import torch

from generation.archs import create_model
from generation.train import save_state_dict


def tiny_checkpoint(path: Path, arch: str = "tiny_convnet", seed: int = 0, classes: int = 6) -> Path:
    """A randomly initialised tiny model saved as a plain state dict (no training needed)."""
    torch.manual_seed(seed)
    save_state_dict(create_model(arch, classes).state_dict(), path)
    return path


def study_data(models: list[dict], **generation) -> dict:
    gen = {"steps": 30, "step_size": 0.5, "optimizer": "normalized-gd", "schedule": "halving",
           "precision": "fp32", "batch_size": 3, "distance_metric": "ssim",
           "losses": [{"name": "reg_free", "kind": "reg_free"}]}
    gen.update(generation)
    return {
        "study": {"id": "gen-test", "title": "generation test", "store": "iris"},
        "models": models,
        "targets": {"source": "shapes", "count": 4, "size": 16, "seed": 0},
        "seeds": {"count": 1, "kinds": [{"kind": "gaussian", "mean": 0.5, "scale": 0.25}]},
        "generation": gen,
        "survey": {"task": "2afc", "foil": "seed", "trials_per_hit": 10, "catch_per_hit": 1,
                   "reward": 1.0, "time_estimate_minutes": 5},
        "analysis": {"factors": ["training"]},
    }


def two_models(root: Path) -> list[dict]:
    models = []
    for i, (arch, level) in enumerate([("tiny_convnet", "standard"), ("tiny_resnet", "adversarial")]):
        tiny_checkpoint(root / "models" / f"m{i}.pt", arch, seed=i)
        models.append({"name": f"m{i}", "arch": arch, "checkpoint": f"models/m{i}.pt",
                       "normalization": "none", "input_size": 16, "num_classes": 6,
                       "factors": {"training": level}})
    return models


def write_study(root: Path, data: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "study.toml").write_text(tomli_w.dumps(data))
    return root


@pytest.fixture
def small_study(tmp_path: Path) -> Path:
    """A 2-model × 4-target × 1-seed × 1-loss study with ready checkpoints, 16 px, 30 steps."""
    root = tmp_path / "study"
    return write_study(root, study_data(two_models(root)))


@pytest.fixture
def fake_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache, so tests never see (or fetch) real LPIPS weights."""
    home = tmp_path / "torch-home"
    (home / "hub" / "checkpoints").mkdir(parents=True)
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy 2-core machine
    OpenMP threads oversubscribe and slow these tests down many times over."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
