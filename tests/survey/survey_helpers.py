"""Small survey studies built directly: study.toml, tiny PNGs and a manifest.

The generation stage is not needed: the manifest is written with
hitkit.study.manifest.MANIFEST and the images are made here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import tomli_w
from PIL import Image

from hitkit.study.config import Study, load_study
from hitkit.study.manifest import MANIFEST
from hitkit.study.tables import write_table

ROOT = Path(__file__).resolve().parents[2]
HITKIT = [sys.executable, "-m", "hitkit.cli"]


def _target_image(index: int, size: int) -> np.ndarray:
    """A distinct pattern per target: a coloured square or disc on a coloured ground."""
    rng = np.random.default_rng(1000 + index)
    ground, ink = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    yy, xx = np.mgrid[0:size, 0:size]
    cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
    r = size // 4 + index % 3
    mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r) if index % 2 else (
        (abs(yy - cy) < r) & (abs(xx - cx) < r))
    image = np.empty((size, size, 3), np.uint8)
    image[:] = ground
    image[mask] = ink
    return image


def write_png(path: Path, array: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path.as_posix()


def study_data(study_id: str = "surveytest", models: int = 4, losses: int = 2, targets: int = 6,
               task: str = "2afc", k: int | None = None, foil: str = "other-target",
               trials_per_hit: int = 8, catch_per_hit: int = 2, repeat_share: float = 0.2,
               responses_per_iri: int = 2, secret_file: str = "secret/study.secret",
               quality: dict | None = None, practice: bool = True) -> dict:
    archs = ["tiny-resnet", "tiny-convnet"]
    model_list = []
    for i in range(models):
        model_list.append({
            "name": f"m{i}", "arch": "tiny_resnet", "checkpoint": f"models/m{i}.pt",
            "normalization": "none", "input_size": 16, "num_classes": 6,
            "factors": {"architecture": archs[i % 2],
                        "training": ["standard", "adversarial"][(i // 2 if models >= 4 else i) % 2]},
            "train": {"adversarial": False},
        })
    survey = {"task": task, "foil": foil, "trials_per_hit": trials_per_hit,
              "catch_per_hit": catch_per_hit, "repeat_share": repeat_share,
              "responses_per_iri": responses_per_iri, "reward": 1.0,
              "time_estimate_minutes": 5, "practice": practice}
    if k is not None:
        survey["k"] = k
    return {
        "study": {"id": study_id, "title": "survey test", "secret_file": secret_file,
                  "store": "iris", "seed": 0},
        "models": model_list,
        "targets": {"source": "shapes", "count": targets, "size": 16},
        "seeds": {"count": 1, "kinds": [{"kind": "gaussian", "mean": 0.5, "scale": 0.25}]},
        "generation": {"steps": 10, "finish_steps": 0,
                       "losses": [{"name": f"l{j}", "kind": "reg_free"} for j in range(losses)]},
        "survey": survey,
        "platform": {"kind": "local"},
        "quality": quality or {"min_catch_accuracy": 0.5, "min_median_rt_ms": 300,
                               "fast_rt_ms": 250, "max_fast_share": 0.5, "max_side_bias": 0.9},
        "analysis": {"factors": ["architecture", "training"]},
    }


def make_study(root: Path, size: int = 16, **options) -> Study:
    """A study folder with study.toml, target/seed/IRI PNGs and manifest.parquet."""
    root.mkdir(parents=True, exist_ok=True)
    # the secret lives outside the study folder, as it should
    options.setdefault("secret_file", str(root.parent / "secrets" / "{id}.secret"))
    data = study_data(**options)
    (root / "study.toml").write_text(tomli_w.dumps(data))
    n_targets = data["targets"]["count"]
    targets = {}
    for t in range(n_targets):
        tid = f"target-{t:03d}"
        targets[tid] = _target_image(t, size)
        write_png(root / "iris" / "targets" / f"{tid}.png", targets[tid])
    rows = []
    stamp = datetime.now(UTC)
    for m, model in enumerate(data["models"]):
        for loss in data["generation"]["losses"]:
            for t, (tid, target) in enumerate(targets.items()):
                rng = np.random.default_rng(m * 10_000 + len(loss["name"]) * 1000 + int(loss["name"][1:]) * 100 + t)
                seed = rng.integers(0, 256, target.shape)
                sid = f"seed-{m}-{loss['name']}-{t:03d}"
                # an IRI: its target with some of the seed's noise left in (model-dependent)
                weight = 0.25 + 0.1 * m
                iri = (1 - weight) * target + weight * seed
                iid = f"iri-{model['name']}-{loss['name']}-{t:03d}"
                write_png(root / "iris" / "seeds" / f"{sid}.png", seed)
                write_png(root / "iris" / f"{iid}.png", iri)
                rows.append({
                    "iri_id": iid, "model": model["name"], "arch": model["arch"],
                    "layer": "penultimate", "loss": loss["name"], "loss_kind": loss["kind"],
                    "loss_spec": "{}", "target_id": tid,
                    "target_uri": f"iris/targets/{tid}.png", "seed_id": sid, "seed_kind": "gaussian",
                    "seed_uri": f"iris/seeds/{sid}.png", "uri": f"iris/{iid}.png",
                    "sha256": "0" * 64, "width": size, "height": size, "rep_error": 0.01,
                    "dist_target": 0.1, "dist_seed": 0.9, "distance_metric": "ssim", "steps": 10,
                    "precision": "fp32", "device": "cpu", "wall_time_s": 0.1,
                    "config_hash": "0" * 64, "versions": "{}", "created_at": stamp,
                })
    write_table(MANIFEST.to_table(rows), root / "manifest.parquet")
    return load_study(root)


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*HITKIT, *args], capture_output=True, text=True, cwd=ROOT)
    if check and result.returncode != 0:
        raise AssertionError(f"hitkit {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


class ServerProcess:
    """`hitkit serve` as a subprocess we own: started on 127.0.0.1, stopped by its PID."""

    def __init__(self, study_root: Path, port: int | None = None, *options: str):
        self.options = options  # more `hitkit serve` options, e.g. --no-rate-limit
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = study_root / f"server-{self.port}.log"
        self.study_root = study_root
        self.process: subprocess.Popen | None = None

    def start(self) -> ServerProcess:
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            [*HITKIT, "serve", "--study", str(self.study_root), "--host", "127.0.0.1",
             "--port", str(self.port), *self.options], stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("server did not start in 60 s")

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)


def make_config(**options):
    """A validated StudyConfig from study_data's options."""
    from hitkit.study.config import study_from_dict

    return study_from_dict(study_data(**options))


def make_manifest(config) -> pa.Table:
    """A manifest for every model × loss × target (one seed each), without image files."""
    stamp = datetime.now(UTC)
    rows = []
    for model in config.models:
        for loss in config.generation.losses:
            for t in range(config.targets.count):
                iid = f"iri-{model.name}-{loss.name}-{t:03d}"
                rows.append({
                    "iri_id": iid, "model": model.name, "arch": model.arch, "layer": "penultimate",
                    "loss": loss.name, "loss_kind": loss.kind, "loss_spec": "{}",
                    "target_id": f"target-{t:03d}", "target_uri": f"iris/targets/target-{t:03d}.png",
                    "seed_id": f"seed-{iid}", "seed_kind": "gaussian", "seed_uri": f"iris/seeds/{iid}.png",
                    "uri": f"iris/{iid}.png", "sha256": "0" * 64, "width": 16, "height": 16,
                    "rep_error": 0.01, "dist_target": 0.1, "dist_seed": 0.9,
                    "distance_metric": "ssim", "steps": 10, "precision": "fp32", "device": "cpu",
                    "wall_time_s": 0.1, "config_hash": "0" * 64, "versions": "{}", "created_at": stamp,
                })
    return MANIFEST.to_table(rows)


def published_platform_batches(ledger, prolific_study: str = "s1") -> dict[str, str]:
    """Ledger records of a Prolific study and MTurk HITs as `hitkit publish` leaves them
    (batch, external ID, settled publish actions), without a platform: what admits a
    Prolific arrival with STUDY_ID `prolific_study` and an MTurk arrival with a hitId.
    Returns {"prolific": batch, "mturk": batch, "<hitkit hit>": MTurk HITId, ...}."""
    from hitkit.platforms import records

    out = {}
    prolific = records.create_batch(ledger, "prolific", 64, {})["batch_id"]
    records.set_external_id(ledger, prolific, prolific_study)
    ledger.journal(f"prolific:publish:{prolific}", "prolific", "publish_study", prolific)
    ledger.settle(f"prolific:publish:{prolific}", "done", {"status": "ACTIVE"})
    mturk = records.create_batch(ledger, "mturk", 64, {})["batch_id"]
    records.set_external_id(ledger, mturk, "HITTYPE1")
    for n, row in enumerate(ledger.query("SELECT hit_id FROM hits WHERE state = 'open'"
                                         " ORDER BY ordinal")):
        key = f"mturk:create-hit:{mturk}:{row['hit_id']}"
        ledger.journal(key, "mturk", "create_hit", row["hit_id"])
        ledger.settle(key, "done", {"HITId": f"3HIT{n:04d}"})
        out[row["hit_id"]] = f"3HIT{n:04d}"
    return {"prolific": prolific, "mturk": mturk, **out}
