"""Sampling and the convergence gate.

The gate is what stands between a fit and a reported number: R-hat <= 1.01,
bulk and tail ESS >= 400 for every reported quantity, zero divergences, and an
energy BFMI >= 0.3 in every chain. A failing fit names the parameters and says
what to try; `hitkit analyze` then exits non-zero.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from analysis.model import ModelChoices
from analysis.thresholds import BFMI_MIN, ESS_MIN, RHAT_MAX
from hitkit.study.config import AnalysisSection

SAMPLERS = ("nutpie", "pymc", "numpyro")


class SamplerError(RuntimeError):
    """A sampler that cannot run here; the message says how to get it."""


@dataclass(frozen=True)
class SampleSettings:
    sampler: str = "nutpie"
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    seed: int = 0
    target_accept: float = 0.9
    progress: bool = True

    @classmethod
    def from_config(cls, analysis: AnalysisSection, **overrides) -> SampleSettings:
        values = {"sampler": analysis.sampler, "draws": analysis.draws, "tune": analysis.tune,
                  "chains": analysis.chains, "seed": analysis.seed,
                  "target_accept": analysis.target_accept}
        values |= {k: v for k, v in overrides.items() if v is not None}
        return cls(**values)


def check_sampler(name: str) -> None:
    if name not in SAMPLERS:
        raise SamplerError(f"unknown sampler {name!r} (allowed: {', '.join(SAMPLERS)})")
    if name == "numpyro" and (importlib.util.find_spec("numpyro") is None
                              or importlib.util.find_spec("jax") is None):
        raise SamplerError(
            "sampler 'numpyro' needs the numpyro and jax packages, which are not installed: "
            "`pip install numpyro jax`, or use --sampler nutpie (the default) or --sampler pymc"
        )
    if name == "nutpie" and importlib.util.find_spec("nutpie") is None:
        raise SamplerError("sampler 'nutpie' is not installed: `pip install nutpie`, "
                           "or use --sampler pymc")


def sample(model: pm.Model, settings: SampleSettings) -> xr.DataTree:
    """Run NUTS; returns PyMC 6's DataTree (posterior, sample_stats, observed_data)."""
    check_sampler(settings.sampler)
    return pm.sample(
        model=model,
        draws=settings.draws,
        tune=settings.tune,
        chains=settings.chains,
        cores=min(settings.chains, os.cpu_count() or 1),
        random_seed=settings.seed,
        nuts_sampler=settings.sampler,
        target_accept=settings.target_accept,
        progressbar=settings.progress,
        compute_convergence_checks=False,  # the gate below does it, with our thresholds
    )


@dataclass
class GateResult:
    passed: bool
    problems: list[str]
    advice: list[str]
    diagnostics: pd.DataFrame  # one row per checked scalar: ess_bulk, ess_tail, r_hat
    divergences: int
    bfmi: list[float] = field(default_factory=list)

    def report(self) -> str:
        head = "convergence gate: PASSED" if self.passed else "convergence gate: FAILED"
        lines = [head,
                 f"  max R-hat {self.diagnostics['r_hat'].max():.3f} (<= {RHAT_MAX}), "
                 f"min bulk ESS {self.diagnostics['ess_bulk'].min():.0f}, "
                 f"min tail ESS {self.diagnostics['ess_tail'].min():.0f} (>= {ESS_MIN}), "
                 f"divergences {self.divergences} (= 0), "
                 f"BFMI {', '.join(f'{b:.2f}' for b in self.bfmi)} (>= {BFMI_MIN})"]
        lines += [f"  - {p}" for p in self.problems]
        if self.advice:
            lines.append("  what to try:")
            lines += [f"  * {a}" for a in self.advice]
        return "\n".join(lines)


def diagnostics_table(dt: xr.DataTree, var_names: list[str]) -> pd.DataFrame:
    table = az.summary(dt, var_names=var_names, kind="diagnostics", fmt="wide", round_to="none")
    return table[["ess_bulk", "ess_tail", "r_hat"]].astype(float)


def _variable(row_name: str) -> str:
    return row_name.split("[", 1)[0]


def check_gate(dt: xr.DataTree, choices: ModelChoices, factors: list[str],
               settings: SampleSettings) -> GateResult:
    names = [v for v in choices.gate_names(factors) if v in dt["posterior"].data_vars]
    diag = diagnostics_table(dt, names)
    stats = dt["sample_stats"]
    divergences = int(stats["diverging"].sum()) if "diverging" in stats else 0
    bfmi = [float(b) for b in np.atleast_1d(np.asarray(az.bfmi(dt)["energy"]))]

    problems: list[str] = []
    failing: dict[str, list[str]] = {}
    for name, row in diag.iterrows():
        why = []
        if not np.isfinite(row["r_hat"]) or row["r_hat"] > RHAT_MAX:
            why.append(f"R-hat {row['r_hat']:.3f}")
        if not np.isfinite(row["ess_bulk"]) or row["ess_bulk"] < ESS_MIN:
            why.append(f"bulk ESS {row['ess_bulk']:.0f}")
        if not np.isfinite(row["ess_tail"]) or row["ess_tail"] < ESS_MIN:
            why.append(f"tail ESS {row['ess_tail']:.0f}")
        if why:
            failing.setdefault(_variable(str(name)), []).append(f"{name}: {', '.join(why)}")
    for var, items in failing.items():
        shown = "; ".join(items[:3]) + (f"; and {len(items) - 3} more" if len(items) > 3 else "")
        problems.append(f"{var}: {shown}")
    if divergences:
        problems.append(f"{divergences} divergent transition(s)")
    low = [i for i, b in enumerate(bfmi) if not b >= BFMI_MIN]
    if low:
        problems.append(f"energy BFMI below {BFMI_MIN} in chain(s) {', '.join(map(str, low))}")

    advice: list[str] = []
    if failing:
        advice.append(
            f"run longer: raise [analysis].draws and tune (now {settings.draws} and "
            f"{settings.tune}; e.g. --draws {settings.draws * 2} --tune {settings.tune * 2}) "
            f"or chains (now {settings.chains})"
        )
        for group in ("participant", "image", "model"):
            sd_names = {f"s_{group}", f"u_{group}"} | (
                {"s_cell", "s_model", "u_model"} if group == "model" else set())
            if sd_names & set(failing):
                other = ("non-centred" if choices.parameterisation[group] == "centred"
                         else "centred")
                advice.append(
                    f"{group} effects are {choices.parameterisation[group]} (median "
                    f"{choices.trials_per_level[group]:.0f} trials per level): if their SD "
                    f"mixes slowly, try {other} by changing [analysis].centred_min_trials "
                    f"(now {choices.centred_min_trials})"
                )
        if "lapse" in failing:
            advice.append("lapse trades off against the intercept: try --compare to see "
                          "whether the data support a lapse rate, or [analysis].lapse = \"none\"")
        vague = [v for v in choices.effect_names(factors)
                 if v in failing and _contraction(dt["posterior"][v], choices.effect_sigma) < 0.9]
        if vague:
            advice.append(
                f"{', '.join(vague)} barely moved from the prior (posterior variance above a "
                "tenth of the prior's): the data do not identify them; check that every "
                "factor level has its own models and responses and that no two factors are "
                "confounded (the same levels on the same models)")
    if divergences:
        ta = settings.target_accept
        advice.append(f"raise [analysis].target_accept (now {ta:g}) to "
                      f"{0.95 if ta < 0.95 else 0.99}; divergences that persist point to a "
                      "funnel: switch the parameterisation of the group whose SD is small")
    if low:
        advice.append("low BFMI means the sampler explores the energy poorly (heavy tails or "
                      "a funnel): check the SD priors in [analysis.priors] and the "
                      "centred/non-centred choice")
    return GateResult(passed=not problems, problems=problems, advice=advice, diagnostics=diag,
                      divergences=divergences, bfmi=bfmi)


def check_writer() -> None:
    """The posterior is netCDF4 with groups: fail before sampling, not after, without a writer."""
    if importlib.util.find_spec("h5netcdf") is None and importlib.util.find_spec("netCDF4") is None:
        raise SamplerError("writing the posterior needs h5netcdf (or netCDF4): "
                           "`pip install h5netcdf h5py`")


def _contraction(var: xr.DataArray, sigma: float) -> float:
    """1 - posterior variance / prior variance of a ZeroSumNormal effect (its smallest)."""
    levels = [d for d in var.dims if d not in ("chain", "draw")]
    k = int(np.prod([var.sizes[d] for d in levels])) if levels else 1
    prior_var = sigma ** 2 * (k - 1) / k if k > 1 else sigma ** 2
    post_var = float(var.var(("chain", "draw")).max())
    return 1.0 - post_var / prior_var


def save_posterior(dt: xr.DataTree, path: Path) -> Path:
    """netCDF of the fit; object-typed sampler messages are dropped (netCDF cannot hold them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out = dt.copy()
    for group in out.children:
        ds = out[group].to_dataset()
        drop = [v for v in ds.data_vars if ds[v].dtype == object]
        if drop:
            out[group] = xr.DataTree(ds.drop_vars(drop))
    tmp = path.with_name(f".{path.name}.tmp")
    out.to_netcdf(tmp)
    os.replace(tmp, path)
    return path
