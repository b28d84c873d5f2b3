"""Checks around a fit: prior predictive summary, posterior predictive checks,
a statsmodels cross-check and LOO comparison of model variants."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from analysis.data import AnalysisData
from analysis.effects import _draws
from analysis.model import ModelChoices, design_matrix
from analysis.thresholds import PPC_ALPHA

# ---------------------------------------------------------------- prediction


def probability_correct(model: pm.Model, draws: xr.Dataset,
                        sample_dims: tuple[str, ...] = ("chain", "draw")) -> np.ndarray:
    """(samples, rows): P(correct) of every row at each of `draws`, from `model` itself.

    It is the model's likelihood of a correct answer on every row, so the checks always
    replicate the likelihood that was fitted. (A Deterministic p would put chains x draws
    x rows numbers into the trace of every fit.)
    """
    all_correct = model.copy()
    pm.set_data({"y_obs": np.ones_like(all_correct["y_obs"].get_value())}, model=all_correct)
    loglik = pm.compute_log_likelihood(
        xr.DataTree.from_dict({"posterior": draws}), model=all_correct,
        sample_dims=sample_dims, extend_inferencedata=False, progressbar=False)
    log_p = loglik["y"].transpose(*sample_dims, ...).values
    return np.exp(log_p.reshape(-1, log_p.shape[-1]))


def _pick(n_total: int, n: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n_total, size=min(n, n_total), replace=False))


# ---------------------------------------------------------- prior predictive


def prior_predictive(model: pm.Model, data: AnalysisData, draws: int = 200,
                     seed: int = 0) -> tuple[dict, list[str]]:
    """What the priors imply for the data, before seeing it; (numbers, report lines)."""
    names = [v.name for v in model.free_RVs] + [v.name for v in model.deterministics]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prior = pm.sample_prior_predictive(draws=draws, model=model, var_names=names,
                                           random_seed=seed)["prior"].to_dataset()
    overall = probability_correct(model, prior).mean(axis=1)
    chance = data.chance.mean()
    q = (overall - chance) / (1 - chance)
    level_spread = []
    for f in data.factors:
        eff = _draws(prior, f"b_{f}")
        level_spread.append(np.quantile(np.abs(eff), 0.9))
    near_edge = float(np.mean((overall < chance + 0.02) | (overall > 0.98)))
    numbers = {
        "overall_rate_median": float(np.median(overall)),
        "overall_rate_5": float(np.quantile(overall, 0.05)),
        "overall_rate_95": float(np.quantile(overall, 0.95)),
        "alignment_median": float(np.median(q)),
        "share_near_floor_or_ceiling": near_edge,
        "level_effect_abs_90": float(max(level_spread)),
    }
    lines = [
        f"prior predictive ({draws} draws): overall correct rate median "
        f"{numbers['overall_rate_median']:.2f} (90 % range {numbers['overall_rate_5']:.2f}–"
        f"{numbers['overall_rate_95']:.2f}); chance-corrected alignment median "
        f"{numbers['alignment_median']:.2f}; 90 % of |factor level effects| below "
        f"{numbers['level_effect_abs_90']:.2f} logits",
    ]
    if near_edge > 0.5:
        lines.append(
            f"  warning: {near_edge:.0%} of prior draws put the overall rate at chance or at "
            "ceiling; the priors in [analysis.priors] may be too wide for this task"
        )
    return numbers, lines


# ------------------------------------------------------ posterior predictive


def posterior_predictive(model: pm.Model, posterior: xr.Dataset, data: AnalysisData,
                         draws: int = 200, seed: int = 0) -> pd.DataFrame:
    """Per model, participant, image and task: observed rate against replicated data.

    `model` is the fitted model; `data` holds the observed responses of the same rows.
    """
    rng = np.random.default_rng(seed)
    stacked = posterior.stack(sample=("chain", "draw"), create_index=False)
    picked = stacked.isel(sample=_pick(stacked.sizes["sample"], draws, rng))
    p = probability_correct(model, picked, sample_dims=("sample",))
    y_rep = rng.random(p.shape) < p
    groups = {"model": (data.model, data.models),
              "participant": (data.participant, data.participants),
              "image": (data.image, data.images)}
    tasks = sorted(set(data.task))
    groups["task"] = (np.array([tasks.index(t) for t in data.task]), tasks)
    rows = []
    for g, (codes, names) in groups.items():
        n = np.bincount(codes, minlength=len(names))
        obs = np.bincount(codes, weights=data.y, minlength=len(names))
        rep = np.stack([np.bincount(codes, weights=y, minlength=len(names)) for y in y_rep])
        ppp = ((rep > obs).mean(axis=0) + 0.5 * (rep == obs).mean(axis=0))
        for j, name in enumerate(names):
            denom = max(n[j], 1)
            two_sided = 2 * min(ppp[j], 1 - ppp[j])
            rows.append({
                "group": g, "level": name, "responses": int(n[j]),
                "observed_rate": obs[j] / denom,
                "replicated_mean": rep[:, j].mean() / denom,
                "replicated_low": np.quantile(rep[:, j], 0.03) / denom,
                "replicated_high": np.quantile(rep[:, j], 0.97) / denom,
                "ppp": float(ppp[j]),
                "flagged": bool(two_sided < PPC_ALPHA),
            })
    return pd.DataFrame(rows)


def ppc_lines(table: pd.DataFrame) -> list[str]:
    lines = []
    for g, part in table.groupby("group", sort=False):
        flagged = part[part["flagged"]]
        expected = PPC_ALPHA * len(part)
        line = (f"posterior predictive, per {g}: {len(flagged)} of {len(part)} flagged "
                f"(about {expected:.1f} expected by chance at two-sided {PPC_ALPHA})")
        if len(flagged):
            line += ": " + ", ".join(
                f"{r.level} (observed {r.observed_rate:.2f}, replicated {r.replicated_low:.2f}–"
                f"{r.replicated_high:.2f})" for r in flagged.head(5).itertuples())
        lines.append(line)
    return lines


# ------------------------------------------------------ statsmodels cross-check


def _floor_family(chance: np.ndarray):
    """Binomial with link logit((p - c) / (1 - c)), c per row."""
    import statsmodels.api as sm
    from statsmodels.genmod.families import links

    class ChanceFloorLogit(links.Link):
        """logit((p - c) / (1 - c)): the model's chance floor, without lapse."""

        def __init__(self, c):
            self.c = np.asarray(c, dtype=float)

        def _q(self, p):
            return np.clip((p - self.c) / (1 - self.c), 1e-9, 1 - 1e-9)

        def __call__(self, p):
            q = self._q(p)
            return np.log(q / (1 - q))

        def inverse(self, z):
            return self.c + (1 - self.c) / (1 + np.exp(-z))

        def deriv(self, p):
            q = self._q(p)
            return 1 / ((1 - self.c) * q * (1 - q))

        def deriv2(self, p):
            q = self._q(p)
            return (2 * q - 1) / ((1 - self.c) ** 2 * q ** 2 * (1 - q) ** 2)

        def inverse_deriv(self, z):
            s = 1 / (1 + np.exp(-z))
            return (1 - self.c) * s * (1 - s)

        def inverse_deriv2(self, z):
            s = 1 / (1 + np.exp(-z))
            return (1 - self.c) * s * (1 - s) * (1 - 2 * s)

    class FloorBinomial(sm.families.Binomial):
        links = [*sm.families.Binomial.links, ChanceFloorLogit]

    return FloorBinomial(link=ChanceFloorLogit(chance))


@dataclass
class CrossCheck:
    table: pd.DataFrame
    warnings: list[str]
    method: str

    def lines(self) -> list[str]:
        agree = int(self.table["same_sign"].sum())
        ratios = self.table["ratio"].replace([np.inf, -np.inf], np.nan).dropna()
        expected = float(self.table["expected_ratio"].iloc[0]) if len(self.table) else np.nan
        out = [f"cross-check ({self.method}): sign agrees for {agree} of {len(self.table)} "
               f"level effects; median effect-size ratio statsmodels/PyMC "
               f"{ratios.median():.2f} (about {expected:.2f} expected from the random-effect "
               "SDs)" if len(ratios) else "cross-check: no effects to compare"]
        return out + [f"  warning: {w}" for w in self.warnings]


# A population-averaged logistic effect is the conditional one shrunk by about
# 1/sqrt(1 + K² σ²), σ² the summed random-effect variance (Zeger, Liang & Albert 1988).
ATTENUATION_K2 = (16 * np.sqrt(3) / (15 * np.pi)) ** 2
# Beyond this (logit) a GLM coefficient has run off to infinity: a level's observed rate is
# at or under the chance floor, where the floor link has no finite estimate.
RUNAWAY_LOGIT = 15.0


def expected_attenuation(posterior: xr.Dataset) -> float:
    variance = sum(float((posterior[name] ** 2).mean()) for name in posterior.data_vars
                   if name.startswith("s_") and posterior[name].ndim == 2)
    return float(1 / np.sqrt(1 + ATTENUATION_K2 * variance))


def statsmodels_check(posterior: xr.Dataset, data: AnalysisData,
                      choices: ModelChoices) -> CrossCheck:
    """GLM with the same chance floor and participant-clustered errors vs the posterior.

    The GLM has no random effects, so its effects are population-averaged and smaller
    by about `expected_attenuation` (stored as `expected_ratio`); its errors ignore
    crossed image and model clustering. Use it for direction and rough size only. A GLM
    that did not converge, or whose coefficients ran off to infinity, is reported as such
    (ratio NaN) rather than compared.
    """
    import statsmodels.api as sm

    levels = {f: data.model_levels[f][data.model] for f in data.factors}
    sizes = {f: len(data.factor_levels[f]) for f in data.factors}
    x = design_matrix(levels, sizes, choices.interactions)
    family = _floor_family(data.chance)
    method = "statsmodels GLM, chance-floor logit link, participant-clustered errors"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = sm.GLM(data.y.astype(float), x, family=family).fit(
            start_params=np.zeros(x.shape[1]), cov_type="cluster",
            cov_kwds={"groups": data.participant}, maxiter=100)
    params, se = np.asarray(fit.params), np.asarray(fit.bse)
    rows, notes = [], []
    expected = expected_attenuation(posterior)
    usable = bool(fit.converged) and bool(np.all(np.isfinite(params))) \
        and bool(np.all(np.abs(params) < RUNAWAY_LOGIT))
    if not usable:
        notes.append("the statsmodels GLM did not reach a finite estimate (converged="
                     f"{bool(fit.converged)}, largest |coefficient| {np.nanmax(np.abs(params)):.3g}); "
                     "usually a level whose observed rate is at or under chance. Its effects "
                     "are listed but not compared")
    col = 1
    for f in data.factors:
        k = sizes[f]
        coef = np.append(params[col:col + k - 1], -params[col:col + k - 1].sum())
        # SE of the last (implied) level from the covariance of the k-1 coefficients
        cov = np.asarray(fit.cov_params())[col:col + k - 1, col:col + k - 1]
        ses = np.append(se[col:col + k - 1], np.sqrt(max(cov.sum(), 0.0)))
        col += k - 1
        post = _draws(posterior, f"b_{f}")
        for i, lv in enumerate(data.factor_levels[f]):
            mean = float(post[:, i].mean())
            p_pos = float((post[:, i] > 0).mean())
            same = bool(np.sign(mean) == np.sign(coef[i]))
            ratio = coef[i] / mean if mean != 0 else np.inf
            if not usable:
                ratio = np.nan
            clear_post = p_pos > 0.97 or p_pos < 0.03
            clear_sm = abs(coef[i]) > 2 * ses[i]
            rows.append({"factor": f, "level": lv, "pymc_mean": mean, "statsmodels": coef[i],
                         "statsmodels_se": ses[i], "same_sign": same, "ratio": ratio,
                         "expected_ratio": expected})
            if not usable:
                continue
            if not same and (clear_post or clear_sm):
                notes.append(f"{f}={lv}: PyMC {mean:+.3f} vs statsmodels {coef[i]:+.3f} "
                             "disagree in sign")
            elif clear_post and clear_sm and not 0.5 <= ratio / expected <= 2.0:
                notes.append(f"{f}={lv}: effect sizes differ by a factor {ratio:.2f}, "
                             f"{expected:.2f} expected "
                             f"(PyMC {mean:+.3f}, statsmodels {coef[i]:+.3f})")
    return CrossCheck(pd.DataFrame(rows), notes, method)


# ----------------------------------------------------------------- LOO compare


def loo_compare(fits: dict[str, tuple[xr.DataTree, pm.Model]]) -> pd.DataFrame:
    """Compare fitted variants by PSIS-LOO (pointwise log-likelihood computed here)."""
    loos = {}
    for name, (dt, model) in fits.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dt = pm.compute_log_likelihood(dt.copy(), model=model, progressbar=False,
                                           extend_inferencedata=True)
        loos[name] = dt
    return az.compare(loos)
