"""Synthetic studies: the responses schema, the realised truth, careless participants."""

import numpy as np
import pytest

from analysis.synthetic import Design, Truth, centred_effects, simulate
from hitkit.study.responses import RESPONSES


def test_table_has_the_responses_columns(small_sim, design):
    table = small_sim.table
    RESPONSES.check(table, ["architecture", "training"])
    d = design()
    assert table.num_rows == d.participants * (d.trials_per_participant + d.catch_per_participant)
    assert set(table.column("kind").to_pylist()) == {"main", "catch"}
    catch = [m for m, k in zip(table.column("model").to_pylist(), table.column("kind").to_pylist(), strict=False)
             if k == "catch"]
    assert set(catch) == {""}


def test_same_seed_same_study(design, truth):
    a = simulate(design(), truth, seed=7).table
    b = simulate(design(), truth, seed=7).table
    assert a.equals(b)
    assert not a.equals(simulate(design(), truth, seed=8).table)


def test_realised_effects_are_stated_plus_model_deviations(design, truth):
    sim = simulate(design(models_per_cell=2), truth, seed=1)
    stated = centred_effects(sim.design, truth)
    for factor, levels in sim.realised_effects.items():
        assert sum(levels.values()) == pytest.approx(0.0, abs=1e-12)
        for level, value in levels.items():
            members = [u for m, u in zip(sim.models, sim.model_effects, strict=False) if m[factor] == level]
            level_dev = np.mean(members) - np.mean(sim.model_effects)
            assert value == pytest.approx(stated[factor][level] + level_dev)


def test_careless_participants_are_mostly_excluded(design, truth):
    sim = simulate(design(participants=200, careless_share=0.5), truth, seed=2)
    t = sim.table.to_pandas()
    per = t[t["kind"] == "main"].groupby("participant").agg(rate=("correct", "mean"),
                                                            excluded=("excluded", "first"))
    # careless participants answer at chance; excluded ones are much closer to chance
    assert per[per["excluded"]]["rate"].mean() < per[~per["excluded"]]["rate"].mean() - 0.1
    assert 0.3 < per["excluded"].mean() < 0.6


def test_design_checks():
    with pytest.raises(ValueError, match="two or more distinct levels"):
        Design(factors={"a": ["x"]})
    with pytest.raises(ValueError, match="unknown level"):
        centred_effects(Design(factors={"a": ["x", "y"]}), Truth(effects={"a": {"z": 1.0}}))
