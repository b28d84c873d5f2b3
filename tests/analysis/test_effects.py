"""Contrasts and chance-corrected alignment from hand-made posterior draws."""

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from analysis.data import prepare
from analysis.effects import effect_draws, effects_table, expected_sigmoid, summarise
from analysis.model import build_model
from hitkit.study.config import AnalysisSection


def test_expected_sigmoid_matches_monte_carlo():
    z = np.random.default_rng(0).standard_normal(400_000)
    for eta, tau in ((0.0, 1.0), (1.2, 0.5), (-0.7, 2.0)):
        mc = np.mean(1 / (1 + np.exp(-(eta + tau * z))))
        assert expected_sigmoid(np.array(eta), np.array(tau)) == pytest.approx(mc, abs=2e-3)
    assert expected_sigmoid(np.array(0.8), np.array(0.0)) == pytest.approx(1 / (1 + np.exp(-0.8)))


def test_summarise():
    draws = np.linspace(-1, 3, 10_001)
    mean, low, high, p = summarise(draws)
    assert mean == pytest.approx(1.0)
    assert high - low == pytest.approx(0.94 * 4, rel=1e-3)
    assert p == pytest.approx(0.75, abs=1e-3)


def _posterior(data, choices, n=200, **values):
    """Constant draws: every quantity fixed, so contrasts are exact."""
    coords = {"chain": [0], "draw": np.arange(n)}
    ds = {}
    for name, value in values.items():
        value = np.asarray(value, dtype=float)
        dims = ["chain", "draw"] + [f"{name}_dim_{i}" for i in range(value.ndim)]
        ds[name] = xr.DataArray(np.broadcast_to(value, (1, n, *value.shape)), dims=dims)
    return xr.Dataset(ds, coords=coords)


def test_contrasts_and_alignment_exact(small_sim):
    data = prepare(small_sim.table, ["architecture", "training"])
    _, choices = build_model(data, AnalysisSection(factors=data.factors, lapse="none"))
    m = len(data.models)
    post = _posterior(data, choices, b0=0.2, b_architecture=[-0.5, 0.5],
                      b_training=[0.0, 0.0], s_participant=0.0, s_image=0.0, s_cell=0.0,
                      s_model=0.0, u_model=np.zeros(m))
    draws = effect_draws(post, data, choices, "these-models")
    table = effects_table(draws, data, choices, post, "these-models").set_index("contrast")
    assert table.loc["vit − cnn", "logit_mean"] == pytest.approx(1.0)
    assert table.loc["vit − cnn", "logit_p_gt_0"] == 1.0
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    # no lapse, no spread: alignment = logistic(eta) exactly
    assert table.loc["vit − cnn", "alignment_mean"] == pytest.approx(sig(0.7) - sig(-0.3))
    assert table.loc["standard − adversarial", "alignment_mean"] == pytest.approx(0.0, abs=1e-12)
    population = effect_draws(post, data, choices, "model-population")
    assert np.allclose(population.effects["architecture"], draws.effects["architecture"])


def test_lapse_scales_alignment(small_sim):
    data = prepare(small_sim.table, ["architecture", "training"])
    _, choices = build_model(data, AnalysisSection(factors=data.factors))
    m = len(data.models)
    post = _posterior(data, choices, b0=0.0, b_architecture=[0.0, 0.0], b_training=[0.0, 0.0],
                      s_participant=0.0, s_image=0.0, s_cell=0.0, s_model=0.0,
                      u_model=np.zeros(m), lapse=0.1)
    draws = effect_draws(post, data, choices)
    # p = 0.5 + (0.5 - 0.1) * 0.5 = 0.7 -> (0.7 - 0.5) / 0.5 = 0.4
    assert np.allclose(draws.model_alignment, 0.4)


def test_commands_are_registered():
    from hitkit.cli.main import cli

    result = CliRunner().invoke(cli, ["--help"])
    assert "analyze" in result.output and "plan" in result.output
    for command in ("analyze", "plan"):
        result = CliRunner().invoke(cli, [command, "--help"])
        assert result.exit_code == 0 and "Examples:" in result.output and "--study" in result.output
