"""How the model is built from the data: parameterisation, model-effect subspace, variants."""

import numpy as np
import pymc as pm
import pytest

from analysis.data import prepare
from analysis.model import build_model, design_matrix, null_space
from analysis.synthetic import simulate
from hitkit.study.config import AnalysisSection


def _build(sim, **kwargs):
    data = prepare(sim.table, list(sim.design.factors))
    analysis = AnalysisSection(factors=list(sim.design.factors), **kwargs)
    return data, *build_model(data, analysis)


def test_null_space_is_orthogonal_to_the_design():
    levels = {"a": np.array([0, 0, 1, 1, 2, 2]), "b": np.array([0, 1, 0, 1, 0, 1])}
    x = design_matrix(levels, {"a": 3, "b": 2}, [])
    q = null_space(x)
    assert x.shape == (6, 4)  # intercept + 2 + 1
    assert q.shape == (6, 2)  # the a x b interaction subspace
    assert np.allclose(x.T @ q, 0)
    assert np.allclose(q.T @ q, np.eye(2))
    with_interaction = design_matrix(levels, {"a": 3, "b": 2}, [("a", "b")])
    assert null_space(with_interaction).shape == (6, 0)


def test_one_model_per_cell_uses_the_interaction_subspace(design, truth):
    sim = simulate(design(models_per_cell=1, factors={"a": ["x", "y", "z"], "b": ["u", "v"]}),
                   truth.__class__(), seed=0)
    data, model, choices = _build(sim)
    assert choices.model_effect == "interaction-subspace"
    assert choices.model_components == {"s_model": 2}
    assert "u_model" in model.named_vars


def test_several_models_per_cell_nest_models_in_cells(small_sim):
    data, model, choices = _build(small_sim)
    assert choices.model_effect == "nested"
    # 2 x 2 cells leave 1 interaction dimension; 12 models in 4 cells leave 8 within-cell
    assert choices.model_components == {"s_cell": 1, "s_model": 8}


def test_declared_interaction_uses_up_the_cell_subspace(small_sim):
    data, model, choices = _build(small_sim, interactions=[["architecture", "training"]])
    assert choices.model_components == {"s_model": 8}
    assert "b_architecture_x_training" in model.named_vars
    assert model.named_vars_to_dims["b_architecture_x_training"] == ("architecture", "training")


def _free(model):
    return {v.name for v in model.free_RVs}


def test_centred_or_non_centred_by_trials_per_level(small_sim):
    # 100 trials per participant, ~90 per image, ~300 per model
    data, model, choices = _build(small_sim, centred_min_trials=50)
    assert choices.parameterisation == {"participant": "centred", "image": "centred",
                                        "model": "non-centred"}
    assert {"u_participant", "u_image"} <= _free(model)
    assert "z_participant" not in _free(model)
    data, model, choices = _build(small_sim, centred_min_trials=200)
    assert choices.parameterisation["participant"] == "non-centred"
    assert "z_participant" in _free(model) and "u_participant" in model.named_vars
    data, model, choices = _build(small_sim, centred_min_trials=20)
    assert choices.parameterisation["model"] == "centred"  # 10 x 20 = 200 <= ~300 trials


@pytest.mark.parametrize("lapse", ["global", "participant", "none"])
def test_lapse_options(small_sim, lapse):
    data, model, choices = _build(small_sim, lapse=lapse)
    if lapse == "none":
        assert "lapse" not in model.named_vars
    else:
        size = len(data.participants) if lapse == "participant" else 1
        assert np.size(pm.draw(model["lapse"], random_seed=0)) == size
    assert ("lapse" in choices.gate_names(data.factors)) == (lapse == "global")


def test_priors_come_from_the_config(small_sim):
    data, model, choices = _build(small_sim, priors={"effect_sigma": 0.25, "intercept_mu": 1.0})
    b0, effect = pm.draw([model["b0"], model["b_training"]], draws=4000, random_seed=1)
    assert b0.mean() == pytest.approx(1.0, abs=0.1)
    # a two-level ZeroSumNormal(sigma) has per-level SD sigma * sqrt(1/2)
    assert effect[:, 0].std() == pytest.approx(0.25 * np.sqrt(0.5), rel=0.1)
    assert np.allclose(effect.sum(axis=1), 0)
