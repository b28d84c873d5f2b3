"""Shared small simulated designs for the analysis tests (CI: 2 shared CPU cores)."""

from pathlib import Path

import pytest

from analysis.synthetic import Design, SimulatedStudy, Truth, simulate, write_study
from hitkit.study.config import load_study

FACTORS = {"architecture": ["cnn", "vit"], "training": ["standard", "adversarial"]}
TRUTH = Truth(
    intercept=0.6,
    effects={"architecture": {"cnn": -0.3, "vit": 0.3},
             "training": {"standard": -0.5, "adversarial": 0.5}},
    sd_participant=0.5,
    sd_image=0.6,
    sd_model=0.15,
    lapse=0.03,
)


def _design(**changes) -> Design:
    values = dict(factors=FACTORS, models_per_cell=3, participants=44, trials_per_participant=100,
                  images=40, careless_share=0.1, matching_share=0.3)
    values.update(changes)
    return Design(**values)


@pytest.fixture(scope="session")
def truth() -> Truth:
    return TRUTH


@pytest.fixture(scope="session")
def design():
    """design(**changes): the small 2 x 2 design, 3 models per cell, mixed 2AFC/matching."""
    return _design


@pytest.fixture
def small_sim() -> SimulatedStudy:
    return simulate(_design(), TRUTH, seed=3)


@pytest.fixture
def make_study(tmp_path):
    """make_study(sim, **toml_options) -> Study written under tmp_path."""
    def make(sim: SimulatedStudy, name: str = "study", **toml_options):
        folder = Path(tmp_path) / name
        write_study(folder, sim, **toml_options)
        return load_study(folder)
    return make


# ------------------------------------------------ a small analysed study for figures/report

FIGURE_FACTORS = {"architecture": ["resnet18", "vgg16", "vit-s"],
                  "training": ["standard", "adversarial"],
                  "epochs": ["25", "100", "50"]}  # not in numeric order: the figure sorts
FIGURE_TRUTH = Truth(
    intercept=0.4,
    effects={"architecture": {"resnet18": 0.1, "vgg16": -0.3, "vit-s": 0.2},
             "training": {"standard": -0.5, "adversarial": 0.5},
             "epochs": {"25": -0.3, "50": 0.0, "100": 0.3}},
    sd_participant=0.5, sd_image=0.5, sd_model=0.15, lapse=0.0)
FIGURE_LOSSES = ("reg_free", "tv")


def _write_figure_manifest(folder: Path, sim: SimulatedStudy, targets: int = 3) -> None:
    """manifest.parquet and PNGs in the default store (iris/): shapes targets, a noise seed,
    and per model and loss an IRI that blends seed and target by the model's alignment."""
    import hashlib
    import io
    from datetime import UTC, datetime

    import numpy as np
    from PIL import Image

    from generation.shapes import shape_image
    from hitkit.study.manifest import MANIFEST
    from hitkit.study.tables import write_table

    rng = np.random.default_rng(0)
    store = folder / "iris"

    def put(relative: str, image: np.ndarray) -> tuple[str, str]:
        buffer = io.BytesIO()
        Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(
            buffer, format="PNG")
        path = store / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buffer.getvalue())
        return f"iris/{relative}", hashlib.sha256(buffer.getvalue()).hexdigest()

    size = 32
    seed_image = rng.random((size, size, 3))
    seed_uri, _ = put("seeds/seed0000.png", seed_image)
    effect = {m["name"]: sum(FIGURE_TRUTH.effects[f][m[f]] for f in FIGURE_FACTORS)
              for m in sim.models}
    rows = []
    for t in range(targets):
        target, _ = shape_image(t, size, seed=0)
        target_uri, _ = put(f"targets/img{t:04d}.png", target)
        for m in sim.models:
            for loss in FIGURE_LOSSES:
                alpha = float(np.clip(0.55 + 0.5 * effect[m["name"]], 0.05, 0.95))
                image = alpha * target + (1 - alpha) * seed_image
                if loss == "tv":  # a smoother IRI
                    image = (image + np.roll(image, 1, 0) + np.roll(image, 1, 1)) / 3
                iri_id = f"{m['name']}-{loss}-img{t:04d}"
                uri, digest = put(f"{m['name']}/{loss}/{iri_id}.png", image)
                d_target = float(np.abs(image - target).mean())
                d_seed = float(np.abs(image - seed_image).mean())
                rows.append({
                    "iri_id": iri_id, "model": m["name"], "arch": "tiny_convnet",
                    "layer": "penultimate", "loss": loss,
                    "loss_kind": "reg_free" if loss == "reg_free" else "regularized",
                    "loss_spec": "{}", "target_id": f"img{t:04d}", "target_uri": target_uri,
                    "seed_id": "seed0000", "seed_kind": "gaussian", "seed_uri": seed_uri,
                    "uri": uri, "sha256": digest, "width": size, "height": size,
                    "rep_error": 0.01, "dist_target": d_target, "dist_seed": d_seed,
                    "distance_metric": "ssim", "steps": 10, "precision": "fp32",
                    "device": "cpu", "wall_time_s": 0.1, "config_hash": "0" * 64,
                    "versions": "{}", "created_at": datetime(2026, 11, 1, tzinfo=UTC),
                    **{f: m[f] for f in FIGURE_FACTORS},
                })
    write_table(MANIFEST.to_table(rows, list(FIGURE_FACTORS)), folder / "manifest.parquet")


def _write_figure_proxy(folder: Path, sim: SimulatedStudy) -> None:
    """proxy.csv as `hitkit proxy` writes it, tracking each model's observed rate."""
    import numpy as np

    t = sim.table.to_pandas()
    rates = t[t["kind"] == "main"].groupby("model")["correct"].mean()
    rng = np.random.default_rng(1)
    lines = ["model,loss,metric,n_iris,n_targets,alignment,ci_low,ci_high,mean_margin,"
             "median_rep_error," + ",".join(FIGURE_FACTORS)]
    levels = {m["name"]: m for m in sim.models}
    for model, rate in rates.items():
        for loss, shift in zip(FIGURE_LOSSES, (-0.05, 0.05), strict=True):
            value = float(np.clip(rate + shift + rng.normal(0, 0.03), 0, 1))
            lines.append(f"{model},{loss},ssim,30,30,{value:.4f},{value - 0.1:.4f},"
                         f"{value + 0.1:.4f},0.01,0.01,"
                         + ",".join(levels[model][f] for f in FIGURE_FACTORS))
    (folder / "proxy.csv").write_text("\n".join(lines) + "\n")


def build_figure_study(folder: Path, draws: int = 1000) -> Path:
    """A 3 x 2 x 3 study (18 models), 40 participants x 80 trials, analysed (about 10-20 s
    on 2 cores), with a manifest, its images and proxy.csv."""
    from analysis.analyze import run_analysis
    from analysis.fit import SampleSettings

    design = Design(factors=FIGURE_FACTORS, models_per_cell=1, participants=40,
                    trials_per_participant=80, images=30, careless_share=0.08)
    sim = simulate(design, FIGURE_TRUTH, seed=5)
    write_study(folder, sim, draws=draws, tune=draws, chains=2, analysis={"lapse": "none"})
    _write_figure_manifest(folder, sim)
    _write_figure_proxy(folder, sim)
    study = load_study(folder)
    settings = SampleSettings.from_config(study.config.analysis, progress=False)
    result = run_analysis(study, settings=settings, echo=lambda _line: None)
    assert result.gate.passed, result.gate.report()
    return folder


@pytest.fixture(scope="session")
def figure_study(tmp_path_factory) -> Path:
    """An analysed study folder for the figure and report tests (read-only: copy to change)."""
    return build_figure_study(tmp_path_factory.mktemp("figure-study") / "study")
