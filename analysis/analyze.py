"""`hitkit analyze`, as a function: load, build, check priors, fit, gate, report.

One IRI loss is analysed per run (the study's default_iri_loss, or --iri-loss): the
losses differ on purpose, so their responses are never pooled. Writes into the
study's analysis/ folder for the default loss and analysis/loss-<name>/ for another
one; a run that keeps excluded rows writes to sensitivity-include-excluded/ inside
that folder, so the pre-registered results are never overwritten.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import xarray as xr

from analysis import checks, effects
from analysis.data import AnalysisData, load_responses, loss_folder, resolve_iri_loss
from analysis.fit import (
    GateResult,
    SampleSettings,
    check_gate,
    check_sampler,
    check_writer,
    sample,
    save_posterior,
)
from analysis.model import ModelChoices, build_model, describe
from analysis.proxy_calibration import (
    ProxyCalibration,
    ProxyError,
    calibrate,
    read_proxy,
)
from hitkit.study.config import Study
from hitkit.study.files import atomic_write
from hitkit.study.proxy import PROXY_FILE

OUTPUT_DIR = "analysis"
SENSITIVITY_DIR = "sensitivity-include-excluded"



def write_csv(frame: pd.DataFrame, path: Path, **options) -> None:
    """A table of results, written so a reader never sees half of it."""
    atomic_write(path, lambda tmp: frame.to_csv(tmp, **options))


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))

@dataclass
class AnalysisResult:
    folder: Path
    data: AnalysisData
    choices: ModelChoices
    gate: GateResult
    posterior: xr.DataTree
    effects: pd.DataFrame | None = None
    alignment: pd.DataFrame | None = None
    sds: pd.DataFrame | None = None
    ppc: pd.DataFrame | None = None
    crosscheck: checks.CrossCheck | None = None
    comparison: pd.DataFrame | None = None
    proxy: ProxyCalibration | None = None
    lines: list[str] = field(default_factory=list)


def output_folder(study: Study, include_excluded: bool, iri_loss: str | None = None) -> Path:
    folder = loss_folder(study.root / OUTPUT_DIR, study, iri_loss)
    return folder / SENSITIVITY_DIR if include_excluded else folder


def loss_lines(data: AnalysisData, default: str) -> list[str]:
    """Which IRI loss was analysed and which responses of other losses were left out."""
    if data.loss is None:
        return ["IRI loss: every loss pooled"]
    which = "the default" if data.loss == default else f"default: {default}"
    lines = [f"IRI loss: {data.loss} ({which}); losses are analysed one at a time"]
    if data.other_loss_rows:
        others = ", ".join(f"{name} ({n:,} rows)" for name, n in data.other_loss_rows.items())
        lines.append(f"left out: responses to IRIs of other losses: {others}; "
                     "analyse them with --iri-loss "
                     + (next(iter(data.other_loss_rows)) if len(data.other_loss_rows) == 1
                        else "NAME"))
    return lines


def compare_variants(study: Study) -> dict[str, dict]:
    """Model variants for --compare: the configured one, without interactions, other lapses."""
    analysis = study.config.analysis
    variants: dict[str, dict] = {"as configured": {}}
    if analysis.interactions:
        variants["no interactions"] = {"interactions": []}
    for lapse in ("none", "global", "participant"):
        if lapse != analysis.lapse:
            variants[f"lapse {lapse}"] = {"lapse": lapse}
    return variants


def run_analysis(study: Study, *, include_excluded: bool = False, compare: bool = False,
                 settings: SampleSettings | None = None, iri_loss: str | None = None,
                 echo: Callable[[str], None] = print) -> AnalysisResult:
    """Fit the responses to IRIs of one loss (`iri_loss`, default: the study's default)."""
    config = study.config
    analysis = config.analysis
    settings = settings or SampleSettings.from_config(analysis)
    check_sampler(settings.sampler)
    check_writer()
    loss = resolve_iri_loss(study, iri_loss)
    data = load_responses(study, include_excluded=include_excluded, loss=loss)
    folder = output_folder(study, include_excluded, loss)
    folder.mkdir(parents=True, exist_ok=True)

    lines = loss_lines(data, config.default_iri_loss) + [
        f"data: {data.n:,} responses from {len(data.participants)} participants, "
        f"{len(data.images)} target images, {len(data.models)} models"
        + (f"; {data.excluded_rows:,} excluded rows kept (sensitivity run)" if include_excluded
           else f"; {data.excluded_rows:,} rows excluded by [quality] rules"),
        "tasks: " + ", ".join(f"{t} ({int((data.task == t).sum()):,} rows, chance "
                              f"{data.chance[data.task == t].mean():.3g})"
                              for t in sorted(set(data.task))),
    ]
    for line in lines:
        echo(line)
    model, choices = build_model(data, analysis)
    for line in describe(choices):
        echo(line)
        lines.append(line)

    _, prior_lines = checks.prior_predictive(model, data, seed=settings.seed)
    for line in prior_lines:
        echo(line)
    lines += prior_lines

    echo(f"sampling: {settings.sampler}, {settings.chains} chains × {settings.draws} draws "
         f"({settings.tune} tune), target_accept {settings.target_accept:g}")
    start = time.perf_counter()
    dt = sample(model, settings)
    wall = time.perf_counter() - start
    lines.append(f"sampling took {wall:.0f} s ({settings.sampler}, {settings.chains} chains × "
                 f"{settings.draws} draws, {settings.tune} tune)")
    save_posterior(dt, folder / "posterior.nc")
    gate = check_gate(dt, choices, data.factors, settings)
    write_csv(gate.diagnostics, folder / "diagnostics.csv", index_label="parameter")
    echo(gate.report())
    result = AnalysisResult(folder, data, choices, gate, dt, lines=lines)
    summary = {
        "iri_loss": loss, "iri_loss_default": loss == config.default_iri_loss,
        "other_loss_rows": data.other_loss_rows,
        "target": analysis.target, "rows": data.n, "excluded_rows": data.excluded_rows,
        "include_excluded": include_excluded, "sampler": settings.sampler,
        "draws": settings.draws, "tune": settings.tune, "chains": settings.chains,
        "seed": settings.seed, "wall_s": round(wall, 1), "gate_passed": gate.passed,
        "gate_problems": gate.problems, "divergences": gate.divergences, "bfmi": gate.bfmi,
        "parameterisation": choices.parameterisation,
        "model_effect": choices.model_effect, "lapse": choices.lapse,
        "interactions": [list(t) for t in choices.interactions],
    }
    if not gate.passed:
        write_text(folder / "summary.json", json.dumps(summary, indent=2))
        write_text(folder / "effects.md",
                   "# Analysis: convergence gate FAILED\n\n" + _loss_statement(data) + "\n\n"
                   "No effects are reported from this fit.\n\n"
                   "```\n" + gate.report() + "\n```\n")
        return result

    post = dt["posterior"].to_dataset()
    draws = effects.effect_draws(post, data, choices, analysis.target, seed=settings.seed)
    result.effects = effects.effects_table(draws, data, choices, post, analysis.target)
    result.alignment = effects.alignment_table(draws, data)
    result.sds = effects.sd_table(post, choices, gate.diagnostics)
    result.ppc = checks.posterior_predictive(model, post, data, seed=settings.seed)
    result.crosscheck = checks.statsmodels_check(post, data, choices)
    write_csv(result.effects, folder / "effects.csv", index=False)
    write_csv(result.alignment, folder / "alignment.csv", index=False)
    write_csv(result.sds, folder / "sds.csv", index=False)
    write_csv(result.ppc, folder / "ppc.csv", index=False)
    write_csv(result.crosscheck.table, folder / "crosscheck.csv", index=False)
    for line in checks.ppc_lines(result.ppc) + result.crosscheck.lines():
        echo(line)
    proxy_path = study.root / PROXY_FILE
    if proxy_path.is_file():
        try:
            result.proxy = calibrate(draws.model_alignment, data,
                                     read_proxy(proxy_path, loss=loss))
        except ProxyError as exc:
            echo(f"proxy calibration skipped: {exc}")
            summary["proxy_calibration_skipped"] = str(exc)
        else:
            write_csv(result.proxy.per_model, folder / "proxy_calibration.csv", index=False)
            write_csv(result.proxy.summary, folder / "proxy_calibration_summary.csv", index=False)
            for line in result.proxy.lines():
                echo(line)

    if compare:
        result.comparison = _compare(study, data, settings, model, dt, echo)
        write_csv(result.comparison, folder / "compare.csv", index_label="variant")
        summary["compare"] = result.comparison.index.tolist()

    statement = effects.target_statement(analysis.target, data, choices)
    summary["target_statement"] = statement  # the report quotes it without importing PyMC
    echo(statement)
    write_text(folder / "effects.md", _markdown(result, statement, settings))
    write_text(folder / "summary.json", json.dumps(summary, indent=2))
    echo(f"wrote {folder}/: posterior.nc, effects.csv, effects.md, alignment.csv, sds.csv, "
         "ppc.csv, crosscheck.csv, diagnostics.csv, summary.json"
         + (", compare.csv" if compare else "")
         + (", proxy_calibration.csv" if result.proxy is not None else ""))
    return result


def _compare(study: Study, data: AnalysisData, settings: SampleSettings, model, dt,
             echo: Callable[[str], None]) -> pd.DataFrame:
    fits = {}
    for name, overrides in compare_variants(study).items():
        if name == "as configured":
            fits[name] = (dt, model)
            continue
        echo(f"--compare: fitting variant '{name}'")
        variant, _ = build_model(data, study.config.analysis, **overrides)
        fits[name] = (sample(variant, settings), variant)
    table = checks.loo_compare(fits)
    echo("LOO comparison (best first; elpd_diff with its standard error dse):")
    echo(table.to_string())
    return table


def _loss_statement(data: AnalysisData) -> str:
    """effects.md's IRI-loss line."""
    if data.loss is None:
        return "**IRI loss.** Every loss pooled."
    text = f"**IRI loss.** These results are for IRIs made with the loss `{data.loss}` only."
    if data.other_loss_rows:
        text += (f" {sum(data.other_loss_rows.values()):,} responses to IRIs of other losses ("
                 + ", ".join(f"`{name}`" for name in data.other_loss_rows)
                 + ") are not in this fit; `hitkit analyze --iri-loss NAME` analyses them.")
    return text


def _markdown(result: AnalysisResult, statement: str, settings: SampleSettings) -> str:
    e = result.effects
    cols = ["factor", "contrast", "logit_mean", "logit_hdi_low", "logit_hdi_high",
            "logit_p_gt_0", "alignment_mean", "alignment_hdi_low", "alignment_hdi_high",
            "alignment_p_gt_0"]
    parts = [
        "# Analysis: effects on human alignment",
        "",
        _loss_statement(result.data),
        "",
        f"**Target.** {statement}",
        "",
        "Alignment is the chance-corrected rate (p − chance)/(1 − chance) at chance "
        f"{result.data.main_chance:.3g}, averaged over participants, images and models; "
        "intervals are 94 % HDIs; P(> 0) is the posterior probability that the contrast is "
        "positive.",
        "",
        "## Data and model",
        "",
        *[f"- {line}" for line in result.lines],
        "",
        "## Convergence",
        "",
        "```",
        result.gate.report(),
        "```",
        "",
        "## Level against the mean of levels",
        "",
        effects.markdown_table(e[e["kind"] == "level vs mean of levels"], cols),
        "",
        "## Pairwise",
        "",
        effects.markdown_table(e[e["kind"] == "pairwise"], cols),
        "",
    ]
    if (e["kind"] == "interaction cell").any():
        parts += ["## Interactions (logit, zero-sum cells)", "",
                  effects.markdown_table(e[e["kind"] == "interaction cell"],
                                         cols[:6]), ""]
    parts += ["## Standard deviations and lapse", "",
              effects.markdown_table(result.sds, list(result.sds.columns)), ""]
    parts += ["## Checks", "", *[f"- {line}" for line in checks.ppc_lines(result.ppc)],
              *[f"- {line}" for line in result.crosscheck.lines()], ""]
    if result.proxy is not None:
        parts += ["## Machine proxy against humans", "",
                  *[f"- {line}" for line in result.proxy.lines()], "",
                  effects.markdown_table(result.proxy.per_model,
                                         list(result.proxy.per_model.columns)), ""]
    if result.comparison is not None:
        parts += ["## Model comparison (PSIS-LOO)", "", "```",
                  result.comparison.to_string(), "```", ""]
    return "\n".join(parts)
