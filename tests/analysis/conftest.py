"""Shared small simulated designs for the analysis tests (CI: 2 shared CPU cores)."""

from pathlib import Path

import pytest

from analysis.simulate import Design, SimulatedStudy, Truth, simulate, write_study
from hitkit.config import load_study

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
