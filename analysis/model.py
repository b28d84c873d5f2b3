"""The hierarchical Bernoulli model of human alignment, parameterised to mix at scale.

    p   = chance + (1 - chance - lapse) * logistic(eta)          (chance per row)
    eta = b0 + sum_f b_f[level] + declared interactions
          + u_model[model] + u_participant[participant] + u_image[image]

Choices that make it sample well on 100,000 rows (../shared/research/analysis.md §3.5):

* Factor effects and interactions are ZeroSumNormal (levels sum to zero), so they
  do not trade off against b0.
* Participant and image effects are zero-sum too; each group is *centred* when its
  levels have many trials (the data pin each level down, and a non-centred SD mixes
  slowly) and *non-centred* when they have few (the classic funnel).
* Every model is one cell of the factor design, so a free model effect could absorb
  the factor effects. The model effect is confined to what the factors cannot
  explain: with one model per cell, to the null space of the model-level design
  matrix (intercept, main effects, declared interactions) through an orthonormal
  basis Q, u_model = Q z, z ~ N(0, s_model); with several models per cell, a
  cell-level term in that null space (s_cell) plus a nested model-within-cell term
  (s_model). The factor effects then describe *these* trained models; effects.py
  adds the model-level variance back for the population of models one could train.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from analysis.data import AnalysisData
from hitkit.study.config import AnalysisSection

GROUPS = ("participant", "image")
DIMS = {"participant": "participant", "image": "target_id", "model": "model"}


@dataclass
class ModelChoices:
    """How the model was built from the data, for the report and the gate's advice."""

    parameterisation: dict[str, str]  # group -> "centred" / "non-centred"
    model_effect: str  # "interaction-subspace", "nested", "none"
    model_components: dict[str, int]  # SD name -> dimension of its subspace
    interactions: list[tuple[str, ...]]
    lapse: str
    trials_per_level: dict[str, float]  # group -> median trials per level
    centred_min_trials: int = 100
    effect_sigma: float = 1.0
    notes: list[str] = field(default_factory=list)

    @property
    def sd_names(self) -> list[str]:
        return [f"s_{g}" for g in GROUPS] + list(self.model_components)

    def effect_names(self, factors: list[str]) -> list[str]:
        return [f"b_{f}" for f in factors] + [interaction_name(t) for t in self.interactions]

    def gate_names(self, factors: list[str]) -> list[str]:
        """The reported quantities whose convergence the gate checks."""
        names = ["b0", *self.effect_names(factors), *self.sd_names]
        if self.model_components:
            names.append("u_model")
        if self.lapse == "global":
            names.append("lapse")
        return names


def interaction_name(term: tuple[str, ...] | list[str]) -> str:
    return "b_" + "_x_".join(term)


def null_space(matrix: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """Orthonormal basis (columns) of the vectors orthogonal to matrix's columns."""
    if matrix.shape[1] == 0:
        return np.eye(matrix.shape[0])
    u, s, _ = np.linalg.svd(matrix, full_matrices=True)
    rank = int((s > tol * max(1.0, s.max())).sum())
    return u[:, rank:]


def design_matrix(levels: dict[str, np.ndarray], sizes: dict[str, int],
                  interactions: list[tuple[str, ...]]) -> np.ndarray:
    """Intercept, sum-coded main effects and their declared products, one row per unit."""
    n = len(next(iter(levels.values())))
    cols = [np.ones((n, 1))]
    coded: dict[str, np.ndarray] = {}
    for f, idx in levels.items():
        k = sizes[f]
        base = np.vstack([np.eye(k - 1), -np.ones((1, k - 1))])  # sum-to-zero coding
        coded[f] = base[idx]
        cols.append(coded[f])
    for term in interactions:
        block = coded[term[0]]
        for f in term[1:]:
            block = np.einsum("ni,nj->nij", block, coded[f]).reshape(n, -1)
        cols.append(block)
    return np.hstack(cols)


def choose_parameterisation(trials: np.ndarray, min_trials: int) -> str:
    return "centred" if float(np.median(trials)) >= min_trials else "non-centred"


def build_model(data: AnalysisData, analysis: AnalysisSection, *,
                interactions: list[list[str]] | None = None, lapse: str | None = None,
                force: dict[str, str] | None = None) -> tuple[pm.Model, ModelChoices]:
    """The PyMC model for `data` with [analysis] settings (variants override some)."""
    priors = analysis.priors
    factors = data.factors
    terms = [tuple(t) for t in (analysis.interactions if interactions is None else interactions)]
    lapse = analysis.lapse if lapse is None else lapse
    force = force or {}
    min_trials = analysis.centred_min_trials

    coords: dict[str, list[str]] = {f: data.factor_levels[f] for f in factors}
    coords |= {"participant": data.participants, "target_id": data.images, "model": data.models}
    trials = {g: data.trials_per(g) for g in ("participant", "image", "model")}
    # Model SDs are small next to participant and image SDs, so a model's effect is
    # pinned down by its data only with many more trials: ten times the threshold.
    threshold = {"participant": min_trials, "image": min_trials, "model": 10 * min_trials}
    param = {g: force.get(g) or choose_parameterisation(trials[g], threshold[g])
             for g in ("participant", "image", "model")}
    notes: list[str] = []

    n_models = len(data.models)
    cells = data.model_cells()
    n_cells = int(cells.max()) + 1
    sizes = {f: len(data.factor_levels[f]) for f in factors}
    cell_levels = {f: np.array([data.model_levels[f][np.flatnonzero(cells == c)[0]]
                                for c in range(n_cells)]) for f in factors}
    q_cell = null_space(design_matrix(cell_levels, sizes, terms))
    components: dict[str, int] = {}
    several = n_cells < n_models
    if several:
        indicator = np.eye(n_cells)[cells]  # model x cell
        q_within = null_space(indicator)
        if q_cell.shape[1]:
            components["s_cell"] = q_cell.shape[1]
        components["s_model"] = q_within.shape[1]
        model_effect = "nested"
    elif q_cell.shape[1]:
        components["s_model"] = q_cell.shape[1]
        model_effect = "interaction-subspace"
    else:
        model_effect = "none"
        notes.append(
            "every model is its own cell and the declared interactions use up every "
            "cell-level degree of freedom: no model-level variance can be estimated"
        )
    empty_cells = int(np.prod(list(sizes.values()))) - n_cells
    if empty_cells:
        notes.append(f"{empty_cells} cell(s) of the factor design have no model")

    with pm.Model(coords=coords) as model:
        y = pm.Data("y_obs", data.y.astype(np.int64), dims="obs")
        b0 = pm.Normal("b0", priors.intercept_mu, priors.intercept_sigma)
        eta_model = b0 + pt.zeros(n_models)
        for f in factors:
            b = pm.ZeroSumNormal(f"b_{f}", sigma=priors.effect_sigma, dims=f)
            eta_model = eta_model + b[data.model_levels[f]]
        for term in terms:
            b = pm.ZeroSumNormal(interaction_name(term), sigma=priors.interaction_sigma,
                                 dims=term, n_zerosum_axes=len(term))
            eta_model = eta_model + b[tuple(data.model_levels[f] for f in term)]

        u_model = pt.zeros(n_models)
        for name, dim in components.items():
            s = pm.HalfNormal(name, priors.model_sd)
            if name == "s_cell":
                basis, expand = q_cell, cells
            elif several:
                basis, expand = q_within, None
            else:
                basis, expand = q_cell, cells
            zname = "z_" + name[2:]
            if param["model"] == "centred":
                z = pm.Normal(zname, 0.0, s, shape=dim)
                part = pt.dot(basis, z)
            else:
                z = pm.Normal(zname, 0.0, 1.0, shape=dim)
                part = s * pt.dot(basis, z)
            u_model = u_model + (part[expand] if expand is not None else part)
        if components:
            u_model = pm.Deterministic("u_model", u_model, dims="model")
        eta_model = eta_model + u_model

        eta = eta_model[data.model]
        for g in GROUPS:
            s = pm.HalfNormal(f"s_{g}", getattr(priors, f"{g}_sd"))
            dim = DIMS[g]
            if param[g] == "centred":
                u = pm.ZeroSumNormal(f"u_{g}", sigma=s, dims=dim)
            else:
                z = pm.ZeroSumNormal(f"z_{g}", sigma=1.0, dims=dim)
                u = pm.Deterministic(f"u_{g}", s * z, dims=dim)
            eta = eta + u[getattr(data, g)]

        chance = data.chance
        if lapse == "global":
            lam = pm.Beta("lapse", priors.lapse_alpha, priors.lapse_beta)
        elif lapse == "participant":
            lam = pm.Beta("lapse", priors.lapse_alpha, priors.lapse_beta,
                          dims="participant")[data.participant]
        else:
            lam = 0.0
        # The only statement of the likelihood: the predictive checks take P(correct) from
        # this model's likelihood of "y" (checks.probability_correct), not a copy of p.
        p = chance + (1.0 - chance - lam) * pm.math.sigmoid(eta)
        pm.Bernoulli("y", p=p, observed=y, dims="obs")

    choices = ModelChoices(
        parameterisation=param,
        model_effect=model_effect,
        model_components=components,
        interactions=terms,
        lapse=lapse,
        trials_per_level={g: float(np.median(t)) for g, t in trials.items()},
        centred_min_trials=min_trials,
        effect_sigma=priors.effect_sigma,
        notes=notes,
    )
    return model, choices


def describe(choices: ModelChoices) -> list[str]:
    """Lines for the report: which parameterisation was chosen and why."""
    lines = []
    for g in ("participant", "image", "model"):
        lines.append(f"{g} effects: {choices.parameterisation[g]} "
                     f"(median {choices.trials_per_level[g]:.0f} trials per level)")
    what = {
        "interaction-subspace": "confined to the interaction subspace of the cell design "
                                "(what the declared factors cannot explain)",
        "nested": "a cell-level term in the interaction subspace plus a nested "
                  "model-within-cell term",
        "none": "not estimable (no degrees of freedom left)",
    }[choices.model_effect]
    lines.append(f"model effect: {what}; components "
                 + (", ".join(f"{k} ({v} dims)" for k, v in choices.model_components.items())
                    or "none"))
    lines.append(f"lapse: {choices.lapse}")
    return lines + choices.notes
