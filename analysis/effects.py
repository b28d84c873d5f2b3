"""Factor contrasts, chance-corrected alignment and the SD table, from posterior draws.

Every quantity is computed per posterior draw and summarised by its mean, 94 % HDI
and P(> 0). Two scales:

* logit: the factor's zero-sum effect (a level against the mean of levels) or the
  difference of two levels' effects;
* alignment: the chance-corrected rate (p - chance) / (1 - chance) at the study's
  main chance rate, averaged over participants and images (Gauss-Hermite over the
  participant and image SDs) and over the models of each cell, then over a
  balanced grid of the other factors' levels.

Target ([analysis].target): "these-models" reads the effects of the trained models
in the study; "model-population" adds the model-level variance back (a draw of
the main-effect part of new model deviations, and the model SDs in the average),
so the effects describe the models one could train with each level.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from analysis.data import AnalysisData
from analysis.model import ModelChoices, interaction_name

HDI_PROB = 0.94
_GH_X, _GH_W = np.polynomial.hermite.hermgauss(24)

TARGET_STATEMENT = {
    "these-models": (
        "These factor effects describe the {models} trained models in this study: they "
        "compare these models, with each model's own deviation held as estimated. They "
        "leave out the variation between training runs, so they are not a claim about "
        "every model one could train with a level; for that, set [analysis].target = "
        "\"model-population\"."
    ),
    "model-population": (
        "These factor effects describe the population of models one could train with "
        "each factor level: the model-level variance ({sds}) is added back, so intervals "
        "include the between-model spread and do not shrink below it however many "
        "participants are added (add models per cell instead)."
    ),
}


def _draws(posterior: xr.Dataset, name: str) -> np.ndarray:
    """A variable as (samples, ...) with chains and draws stacked."""
    var = posterior[name]
    other = [d for d in var.dims if d not in ("chain", "draw")]
    return var.transpose("chain", "draw", *other).values.reshape(-1, *var.shape[2:])


def summarise(samples: np.ndarray) -> tuple[float, float, float, float]:
    """mean, 94 % HDI low/high, P(> 0) of one quantity's draws."""
    samples = np.asarray(samples, dtype=float).ravel()
    low, high = np.asarray(az.hdi(samples, prob=HDI_PROB))
    return float(samples.mean()), float(low), float(high), float((samples > 0).mean())


def expected_sigmoid(eta: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """E[logistic(eta + tau z)], z ~ N(0, 1), by Gauss-Hermite; tau broadcasts against eta."""
    z = np.sqrt(2.0) * _GH_X
    values = 1.0 / (1.0 + np.exp(-(eta[..., None] + np.asarray(tau)[..., None] * z)))
    return (values * _GH_W).sum(axis=-1) / np.sqrt(np.pi)


@dataclass
class EffectDraws:
    """Per-draw level effects and cell/model alignment, the base of every table."""

    effects: dict[str, np.ndarray]  # factor -> (S, levels), logit, on the chosen target
    cell_alignment: np.ndarray  # (S, cells) chance-corrected alignment
    model_alignment: np.ndarray  # (S, models)
    cells: list[tuple[int, ...]]  # level index per factor of each cell of the full grid
    chance: float


def effect_draws(posterior: xr.Dataset, data: AnalysisData, choices: ModelChoices,
                 target: str = "these-models", seed: int = 0) -> EffectDraws:
    rng = np.random.default_rng(seed)
    factors = data.factors
    b0 = _draws(posterior, "b0")
    n_s = len(b0)
    eff = {f: _draws(posterior, f"b_{f}") for f in factors}
    inter = {t: _draws(posterior, interaction_name(t)) for t in choices.interactions}
    sd = {name: _draws(posterior, name) for name in choices.model_components}
    u_model = (_draws(posterior, "u_model") if "u_model" in posterior
               else np.zeros((n_s, len(data.models))))
    lapse = _draws(posterior, "lapse") if "lapse" in posterior else np.zeros(n_s)
    if lapse.ndim == 2:  # per participant: the average participant
        lapse = lapse.mean(axis=1)
    tau2 = _draws(posterior, "s_participant") ** 2 + _draws(posterior, "s_image") ** 2
    chance = data.main_chance
    scale = (1.0 - chance - lapse) / (1.0 - chance)

    if target == "model-population":
        # Generalising to new training runs: add the main-effect part of fresh model
        # deviations drawn at the posterior SDs, and average over new models' spread.
        cells = data.model_cells()
        dev = np.zeros((n_s, len(data.models)))
        if "s_cell" in sd:
            dev += sd["s_cell"][:, None] * rng.standard_normal((n_s, int(cells.max()) + 1))[:, cells]
        if "s_model" in sd:
            dev += sd["s_model"][:, None] * rng.standard_normal((n_s, len(data.models)))
        for f in factors:
            k = len(data.factor_levels[f])
            means = np.stack([dev[:, data.model_levels[f] == lv].mean(axis=1)
                              for lv in range(k)], axis=1)
            eff[f] = eff[f] + means - means.mean(axis=1, keepdims=True)
        tau2 = tau2 + sum(s ** 2 for s in sd.values())

    grid = list(itertools.product(*(range(len(data.factor_levels[f])) for f in factors)))
    cell_eta = np.stack([
        b0 + sum(eff[f][:, c[i]] for i, f in enumerate(factors))
        + sum(inter[t][(slice(None), *(c[factors.index(f)] for f in t))] for t in inter)
        for c in grid], axis=1)
    tau = np.sqrt(tau2)
    model_cell = [grid.index(tuple(int(data.model_levels[f][m]) for f in factors))
                  for m in range(len(data.models))]
    model_align = scale[:, None] * expected_sigmoid(cell_eta[:, model_cell] + u_model,
                                                    tau[:, None])
    cell_align = scale[:, None] * expected_sigmoid(cell_eta, tau[:, None])
    if target == "these-models":
        for ci in range(len(grid)):  # observed cells: the mean of their models
            members = [m for m, mc in enumerate(model_cell) if mc == ci]
            if members:
                cell_align[:, ci] = model_align[:, members].mean(axis=1)
    return EffectDraws(eff, cell_align, model_align, grid, chance)


def level_alignment(draws: EffectDraws, data: AnalysisData) -> dict[str, np.ndarray]:
    """factor -> (S, levels): alignment averaged over a balanced grid of the other factors."""
    out = {}
    for i, f in enumerate(data.factors):
        k = len(data.factor_levels[f])
        out[f] = np.stack([draws.cell_alignment[:, [c[i] == lv for c in draws.cells]].mean(axis=1)
                           for lv in range(k)], axis=1)
    return out


def effects_table(draws: EffectDraws, data: AnalysisData, choices: ModelChoices,
                  posterior: xr.Dataset, target: str) -> pd.DataFrame:
    rows = []
    align = level_alignment(draws, data)

    def add(factor, kind, contrast, logit, alignment):
        lm, ll, lh, lp = summarise(logit)
        row = {"factor": factor, "kind": kind, "contrast": contrast,
               "logit_mean": lm, "logit_hdi_low": ll, "logit_hdi_high": lh, "logit_p_gt_0": lp}
        if alignment is not None:
            am, al, ah, ap = summarise(alignment)
            row |= {"alignment_mean": am, "alignment_hdi_low": al, "alignment_hdi_high": ah,
                    "alignment_p_gt_0": ap}
        rows.append(row | {"target": target})

    for f in data.factors:
        levels = data.factor_levels[f]
        e, a = draws.effects[f], align[f]
        a_centred = a - a.mean(axis=1, keepdims=True)
        for i, lv in enumerate(levels):
            add(f, "level vs mean of levels", f"{lv} − mean", e[:, i], a_centred[:, i])
        # each level against every level listed before it: the first level of a factor
        # (its order in [[models]]) is the reference, as in treatment coding
        for i, j in itertools.combinations(range(len(levels)), 2):
            add(f, "pairwise", f"{levels[j]} − {levels[i]}", e[:, j] - e[:, i], a[:, j] - a[:, i])
    for t in choices.interactions:
        values = _draws(posterior, interaction_name(t))
        for idx in itertools.product(*(range(len(data.factor_levels[f])) for f in t)):
            name = ":".join(data.factor_levels[f][i] for f, i in zip(t, idx, strict=True))
            add(":".join(t), "interaction cell", name, values[(slice(None), *idx)], None)
    return pd.DataFrame(rows)


def alignment_table(draws: EffectDraws, data: AnalysisData) -> pd.DataFrame:
    rows = []
    q = (data.y - data.chance) / (1.0 - data.chance)  # per-row unbiased chance correction
    n_per = np.bincount(data.model, minlength=len(data.models))
    obs = np.bincount(data.model, weights=q, minlength=len(data.models)) / np.maximum(n_per, 1)
    raw = np.bincount(data.model, weights=data.y, minlength=len(data.models)) / np.maximum(n_per, 1)
    for m, name in enumerate(data.models):
        mean, low, high, _ = summarise(draws.model_alignment[:, m])
        levels = {f: data.factor_levels[f][data.model_levels[f][m]] for f in data.factors}
        rows.append({"kind": "model", "name": name, **levels, "responses": int(n_per[m]),
                     "observed_rate": raw[m], "observed_alignment": obs[m],
                     "alignment_mean": mean, "alignment_hdi_low": low, "alignment_hdi_high": high})
    for f, values in level_alignment(draws, data).items():
        for i, lv in enumerate(data.factor_levels[f]):
            mask = data.model_levels[f][data.model] == i
            mean, low, high, _ = summarise(values[:, i])
            rows.append({"kind": "level", "name": f"{f}={lv}", f: lv,
                         "responses": int(mask.sum()),
                         "observed_rate": float(data.y[mask].mean()),
                         "observed_alignment": float(q[mask].mean()),
                         "alignment_mean": mean, "alignment_hdi_low": low,
                         "alignment_hdi_high": high})
    return pd.DataFrame(rows)


def sd_table(posterior: xr.Dataset, choices: ModelChoices, diagnostics: pd.DataFrame
             ) -> pd.DataFrame:
    names = [*choices.sd_names, "lapse"]
    rows = []
    for name in names:
        if name not in posterior:
            continue
        values = _draws(posterior, name)
        label = name if values.ndim == 1 else f"{name} (mean over participants)"
        if values.ndim == 2:
            values = values.mean(axis=1)
        mean, low, high, _ = summarise(values)
        diag = diagnostics.loc[name] if name in diagnostics.index else None
        rows.append({"parameter": label, "mean": mean, "hdi_low": low, "hdi_high": high,
                     "ess_bulk": float(diag["ess_bulk"]) if diag is not None else np.nan,
                     "r_hat": float(diag["r_hat"]) if diag is not None else np.nan})
    return pd.DataFrame(rows)


def target_statement(target: str, data: AnalysisData, choices: ModelChoices) -> str:
    sds = ", ".join(choices.model_components) or "none estimable"
    return TARGET_STATEMENT[target].format(models=len(data.models), sds=sds)


def markdown_table(df: pd.DataFrame, columns: list[str], digits: int = 3) -> str:
    def fmt(v):
        if isinstance(v, float):
            return "" if np.isnan(v) else f"{v:.{digits}f}"
        return str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in df.iterrows():
        lines.append("| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)
