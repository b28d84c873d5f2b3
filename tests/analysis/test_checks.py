"""The predictive checks replicate the data the fitted model itself generates."""

import numpy as np
import pymc as pm
import pytest

from analysis import checks
from analysis.data import prepare
from analysis.model import build_model
from hitkit.study.config import AnalysisSection

DRAWS = 1000


def test_replicated_rates_are_the_models_own(small_sim):
    data = prepare(small_sim.table, list(small_sim.design.factors))
    # a lapse per participant: the likelihood with the most per-row terms
    model, _ = build_model(data, AnalysisSection(factors=data.factors, lapse="participant"))
    point = pm.sample_prior_predictive(draws=1, model=model, random_seed=2)["prior"].to_dataset()
    # lapses far above their prior and different for every participant, so that replicates
    # that missed the lapse, gave it to the wrong rows or missed the per-row chance floor
    # would be off by several times the tolerance
    point["lapse"].values[...] = np.linspace(0.05, 0.45, point.sizes["participant"])
    # every posterior draw is the same point, so both sides estimate its expected rates
    posterior = point.isel(draw=np.zeros(DRAWS, dtype=int)).assign_coords(draw=np.arange(DRAWS))

    table = checks.posterior_predictive(model, posterior, data, draws=DRAWS)
    simulated = pm.sample_posterior_predictive(
        posterior, model=model, random_seed=3, progressbar=False,
        return_inferencedata=False)["y"].reshape(DRAWS, -1)
    for group, codes in (("participant", data.participant), ("image", data.image),
                         ("model", data.model)):
        expected = np.bincount(codes, weights=simulated.mean(axis=0)) / np.bincount(codes)
        replicated = table[table.group == group].replicated_mean.to_numpy()
        # each side's binomial noise is at most 0.5 / sqrt(80 rows x 1,000 draws) = 0.0018
        assert replicated == pytest.approx(expected, abs=0.012), group
