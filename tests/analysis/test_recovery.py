"""Parameter recovery on a small simulated design, and the checks run on that fit.

2 x 2 factors, 3 models per cell, 44 participants x 100 trials (about 4,000 analysed
rows, 30 % of them matching trials with chance 1/3), the model's own lapse and
careless participants excluded by the catch rule; 2 chains x 500 draws.
"""

import itertools

import numpy as np
import pytest

from analysis import checks, effects
from analysis.data import prepare
from analysis.fit import SampleSettings, sample
from analysis.model import build_model
from analysis.synthetic import simulate
from hitkit.study.config import AnalysisSection


@pytest.fixture(scope="module")
def fitted(design, truth):
    sim = simulate(design(), truth, seed=11)
    data = prepare(sim.table, list(sim.design.factors))
    analysis = AnalysisSection(factors=list(sim.design.factors))
    model, choices = build_model(data, analysis)
    dt = sample(model, SampleSettings(draws=500, tune=500, chains=2, seed=5, progress=False))
    return sim, data, choices, dt, model


def test_true_contrasts_inside_their_hdi_and_signs_right(fitted):
    sim, data, choices, dt, _ = fitted
    post = dt["posterior"].to_dataset()
    draws = effects.effect_draws(post, data, choices, "these-models")
    table = effects.effects_table(draws, data, choices, post, "these-models")
    truth = sim.realised_effects  # the effects of these simulated models
    checked = 0
    for factor, levels in data.factor_levels.items():
        for level in levels:
            row = table[(table.factor == factor) & (table.contrast == f"{level} − mean")].iloc[0]
            true = truth[factor][level]
            assert row.logit_hdi_low <= true <= row.logit_hdi_high, (factor, level, row, true)
            assert np.sign(row.logit_mean) == np.sign(true)
            assert (row.logit_p_gt_0 > 0.5) == (true > 0)
            assert np.sign(row.alignment_mean) == np.sign(true)
            checked += 1
        for a, b in itertools.combinations(levels, 2):
            row = table[(table.factor == factor) & (table.contrast == f"{b} − {a}")].iloc[0]
            true = truth[factor][b] - truth[factor][a]
            assert row.logit_hdi_low <= true <= row.logit_hdi_high
            assert np.sign(row.logit_mean) == np.sign(true)
            assert np.sign(row.alignment_mean) == np.sign(true)
            checked += 1
    assert checked == 6


def test_sds_and_lapse_are_plausible(fitted):
    sim, data, choices, dt, _ = fitted
    post = dt["posterior"]
    # wide tolerance: 44 participants and 40 images pin SDs down only roughly
    assert 0.2 < float(post["s_participant"].mean()) < 0.9
    assert 0.3 < float(post["s_image"].mean()) < 1.0
    assert float(post["lapse"].mean()) < 0.15
    assert float(dt["sample_stats"]["diverging"].sum()) == 0


def test_population_target_widens_the_intervals(fitted):
    sim, data, choices, dt, _ = fitted
    post = dt["posterior"].to_dataset()
    these = effects.effect_draws(post, data, choices, "these-models")
    population = effects.effect_draws(post, data, choices, "model-population")
    for f in data.factors:
        assert population.effects[f].std(axis=0).min() > these.effects[f].std(axis=0).max()


def test_alignment_table(fitted):
    sim, data, choices, dt, _ = fitted
    post = dt["posterior"].to_dataset()
    table = effects.alignment_table(effects.effect_draws(post, data, choices), data)
    models = table[table.kind == "model"]
    assert len(models) == 12 and len(table[table.kind == "level"]) == 4
    assert (models.alignment_hdi_low <= models.alignment_mean).all()
    # the posterior tracks each model's observed chance-corrected rate
    assert np.corrcoef(models.alignment_mean, models.observed_alignment)[0, 1] > 0.8


def test_posterior_predictive_table(fitted):
    sim, data, choices, dt, model = fitted
    table = checks.posterior_predictive(model, dt["posterior"].to_dataset(), data, draws=100)
    assert set(table.group) == {"model", "participant", "image", "task"}
    assert len(table[table.group == "participant"]) == len(data.participants)
    assert (table.replicated_low <= table.replicated_high).all()
    # a well-specified model flags few groups
    assert table.flagged.mean() < 0.1
    tasks = table[table.group == "task"].set_index("level")
    assert tasks.loc["matching", "observed_rate"] < tasks.loc["2afc", "observed_rate"]


def test_posterior_predictive_flags_a_misfit(fitted):
    sim, data, choices, dt, model = fitted
    bad = data.__class__(**{**data.__dict__, "y": data.y.copy()})
    bad.y[bad.participant == 0] = 0  # participant 0 now gets everything wrong
    table = checks.posterior_predictive(model, dt["posterior"].to_dataset(), bad, draws=100)
    row = table[(table.group == "participant") & (table.level == data.participants[0])].iloc[0]
    assert row.flagged and row.observed_rate == 0


def test_statsmodels_cross_check_agrees_in_sign(fitted):
    sim, data, choices, dt, _ = fitted
    cross = checks.statsmodels_check(dt["posterior"].to_dataset(), data, choices)
    assert cross.table.same_sign.all()
    assert ((cross.table.ratio > 0.5) & (cross.table.ratio < 2)).all()
    assert cross.warnings == []
    assert "sign agrees for 4 of 4" in cross.lines()[0]
    # population-averaged effects shrink by the random-effect variance: the stated
    # expectation lies below 1 and near the ratios seen
    expected = float(cross.table.expected_ratio.iloc[0])
    assert 0.5 < expected < 1.0
    assert abs(float(cross.table.ratio.median()) - expected) < 0.3


def test_statsmodels_cross_check_reports_a_runaway_glm(fitted):
    sim, data, choices, dt, _ = fitted
    level = data.factor_levels[data.factors[0]][0]
    at_chance = data.__class__(**{**data.__dict__, "y": data.y.copy()})
    rows = data.model_levels[data.factors[0]][data.model] == 0
    at_chance.y[rows] = np.arange(rows.sum()) % 3 == 0  # a third right: under the 2AFC floor
    cross = checks.statsmodels_check(dt["posterior"].to_dataset(), at_chance, choices)
    assert cross.table.ratio.isna().all(), (level, cross.table)
    assert any("did not reach a finite estimate" in w for w in cross.warnings)


def test_prior_predictive_summary(fitted):
    sim, data, choices, dt, model = fitted
    numbers, lines = checks.prior_predictive(model, data, draws=100)
    assert 0.5 < numbers["overall_rate_median"] < 1.0
    assert numbers["overall_rate_5"] < numbers["overall_rate_95"]
    assert "prior predictive" in lines[0]
    wide, _ = build_model(data, AnalysisSection(factors=data.factors,
                                                priors={"intercept_sigma": 20.0}))
    numbers, lines = checks.prior_predictive(wide, data, draws=100)
    assert numbers["share_near_floor_or_ceiling"] > 0.5
    assert "too wide" in lines[-1]
