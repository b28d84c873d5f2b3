"""`hitkit report`: one self-contained HTML page of a study's results.

report.html holds the study summary, data quality, the effects in words and numbers,
the inferential target, the convergence gate, the statsmodels cross-check, the
posterior predictive misfits, the proxy calibration and every figure. Figures are
embedded as base64 PNG and the CSS is inline, so the file can be mailed or archived
alone: it loads nothing from the network. The results are those of one IRI loss (the
study's default, from analysis/; another loss's from analysis/loss-<name>/ into
report-<name>.html), and the page says which.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.figures import FIGURES, FigureOptions, StudyInputs, build_figures, check_inputs
from analysis.figures.inputs import FigureInputError
from analysis.figures.quality import exclusions_by_rule, participant_summary
from analysis.figures.style import png_bytes
from analysis.thresholds import BFMI_MIN, ESS_MIN, PPC_ALPHA, RHAT_MAX
from hitkit.study.files import atomic_write
from hitkit.study.proxy import PROXY_FILE
from hitkit.study.trials import TRIALS_FILE

REPORT_FILE = "report.html"
TEMPLATE = "report.html.j2"

# ------------------------------------------------------------------ sentences


def fmt_number(value: float, digits: int = 2) -> str:
    """A number for prose: 2 decimals, a true minus sign (kept on a negative that rounds
    to zero: it says on which side of zero the value lies)."""
    return f"{value:.{digits}f}".replace("-", "−")


def prose_digits(*values: float) -> int:
    """2 decimals; more (up to 4) while a non-zero bound would read as zero."""
    digits = 2
    while digits < 4 and any(0 < abs(v) < 0.5 * 10 ** -digits for v in values):
        digits += 1
    return digits


def fmt_probability(p: float, direction: str = ">") -> str:
    """'P(>0) = 0.97'; beyond 0.99 it says '> 0.99' rather than a rounded 1.00."""
    if p > 0.99:
        return f"P({direction}0) > 0.99"
    return f"P({direction}0) = {p:.2f}"


def _level(level: str, factor: str) -> str:
    return f"{level} {factor.replace('_', ' ')}"


def effect_sentence(row: pd.Series | dict) -> str:
    """One contrast of effects.csv in words, on the chance-corrected scale.

    The direction comes from the sign; an HDI that spans 0 is 'no clear effect'.
    "adversarial training raises alignment over standard training by 0.21 [0.15, 0.26]
    on the chance-corrected scale (P(>0) > 0.99)"; a pairwise contrast whose first level
    is worse is turned round, so the sentence names the better level first.
    """
    factor = str(row["factor"])
    contrast = str(row["contrast"])
    mean, low, high = (float(row[f"alignment_{k}"]) for k in ("mean", "hdi_low", "hdi_high"))
    p = float(row["alignment_p_gt_0"])
    # two decimals; more when a bound would otherwise read as a misleading 0.00
    digits = prose_digits(low, high)

    def num(value: float) -> str:
        return fmt_number(value, digits)

    a, _, b = contrast.partition(" − ")
    scale = "on the chance-corrected scale"
    if high < 0 and b != "mean":
        # a pairwise drop reads better as the other level's gain: name the better level first
        a, b, mean, low, high, p = b, a, -mean, -high, -low, 1 - p
    subject = _level(a, factor)
    if b == "mean":
        other = f"the mean of the {factor.replace('_', ' ')} levels"
    else:
        other = _level(b, factor)
    if low > 0:
        return (f"{subject} raises alignment over {other} by {num(mean)} "
                f"[{num(low)}, {num(high)}] {scale} ({fmt_probability(p)}).")
    if high < 0:
        return (f"{subject} lowers alignment relative to {other} by {num(-mean)} "
                f"[{num(-high)}, {num(-low)}] {scale} ({fmt_probability(1 - p, '<')}).")
    versus = f"{a} against the mean of levels" if b == "mean" else f"{a} against {b}"
    return (f"{factor.replace('_', ' ').capitalize()}, {versus}: no clear effect "
            f"({num(mean)} [{num(low)}, {num(high)}] {scale}, {fmt_probability(p)}).")


def effect_sentences(effects: pd.DataFrame) -> dict[str, list[str]]:
    """factor -> sentences: every pairwise contrast, and level-vs-mean contrasts of factors
    with more than two levels (with two they repeat the pairwise one)."""
    out: dict[str, list[str]] = {}
    usable = effects[effects["alignment_mean"].notna()]
    for factor, part in usable.groupby("factor", sort=False):
        pairwise = part[part["kind"] == "pairwise"]
        level = part[part["kind"] == "level vs mean of levels"]
        rows = list(pairwise.iterrows())
        if len(level) > 2:
            rows += list(level.iterrows())
        out[str(factor)] = [effect_sentence(r) for _, r in rows]
    return out


# ------------------------------------------------------------------ sections


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    numeric: list[bool]


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return ""
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return fmt_number(float(value), 3)
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    if value is pd.NA:
        return ""
    return str(value)


def table(frame: pd.DataFrame, columns: list[str] | None = None,
          names: dict[str, str] | None = None) -> Table:
    columns = [c for c in (columns or list(frame.columns)) if c in frame.columns]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
               for c in columns]
    rows = [[_cell(v) for v in row] for row in frame[columns].itertuples(index=False)]
    return Table([(names or {}).get(c, c) for c in columns], rows, numeric)


def _study_summary(inputs: StudyInputs) -> dict:
    config = inputs.study.config
    responses = inputs.responses
    main = responses[responses["kind"] != "catch"]
    task = config.survey.task + (f" (k = {config.survey.k})" if config.survey.task == "matching"
                                 else "")
    tasks_seen = sorted(set(responses["task"]))
    hits_designed = None
    trials = inputs.root / TRIALS_FILE
    if trials.is_file():
        import pyarrow.parquet as pq

        try:
            hits_designed = len(set(pq.read_table(trials, columns=["hit_id"])["hit_id"]
                                    .to_pylist()))
        except Exception:  # noqa: BLE001 - optional detail; the report must not fail on it
            hits_designed = None
    models = pd.DataFrame([{"model": m.name, "arch": m.arch, **{f: m.factors.get(f, "")
                                                                for f in inputs.factors}}
                           for m in config.models])
    return {
        "id": config.study.id,
        "title": config.study.title,
        "description": config.study.description,
        "models": len(config.models),
        "models_table": table(models),
        "factors": [(f, inputs.factor_levels[f]) for f in inputs.factors],
        "targets": f"{config.targets.count} from {config.targets.source}",
        "targets_judged": int(main["target_id"].nunique()),
        "losses": [f"{loss.name} ({loss.kind})" for loss in config.generation.losses],
        "task": task + (f"; responses include {', '.join(tasks_seen)}"
                        if tasks_seen != [config.survey.task] else ""),
        "hits": int(responses["hit_id"].nunique()),
        "hits_designed": hits_designed,
        "participants": int(responses["participant"].nunique()),
        "responses": len(responses),
        "platform": ", ".join(sorted(set(responses["platform"]))) or config.platform.kind,
    }


def _quality(inputs: StudyInputs) -> dict:
    rules = inputs.study.config.quality
    summary = participant_summary(inputs.responses)
    catch = summary["catch_accuracy"].dropna()
    by_rule = exclusions_by_rule(summary)
    n = len(summary)
    excluded = int(summary["excluded"].sum())
    rows_excluded = int(inputs.responses["excluded"].sum())
    return {
        "participants": n,
        "excluded": excluded,
        "included": n - excluded,
        "rows_excluded": rows_excluded,
        "by_rule": sorted(by_rule.items(), key=lambda kv: -kv[1]),
        "catch_mean": float(catch.mean()) if len(catch) else None,
        "catch_median": float(catch.median()) if len(catch) else None,
        "catch_below": int((catch < rules.min_catch_accuracy).sum()),
        "min_catch_accuracy": rules.min_catch_accuracy,
        "rules": [("catch accuracy at least", f"{rules.min_catch_accuracy:g}"),
                  ("repeat consistency at least",
                   "not used" if rules.min_repeat_consistency is None
                   else f"{rules.min_repeat_consistency:g}"),
                  ("median reaction time at least", f"{rules.min_median_rt_ms:g} ms"),
                  (f"share of responses under {rules.fast_rt_ms:g} ms at most",
                   f"{rules.max_fast_share:g}"),
                  ("side bias at most", f"{rules.max_side_bias:g}")],
    }


def _diagnostics(inputs: StudyInputs) -> dict:
    summary = inputs.summary
    diag = inputs.analysis_csv("diagnostics.csv", required=False)
    out = {
        "passed": bool(summary.get("gate_passed")),
        "problems": list(summary.get("gate_problems") or []),
        "settings": (f"sampler {summary.get('sampler', '?')}, {summary.get('chains', '?')} "
                     f"chains × {summary.get('draws', '?')} draws ({summary.get('tune', '?')} "
                     f"tune); sampling took {summary.get('wall_s', '?')} s"),
        "parameterisation": ", ".join(f"{g} {p}" for g, p in
                                      (summary.get("parameterisation") or {}).items()),
        "lapse": summary.get("lapse"),
        "model_effect": summary.get("model_effect"),
        "divergences": summary.get("divergences"),  # as the gate measured them
        "bfmi": summary.get("bfmi"),
        "thresholds": {"rhat": RHAT_MAX, "ess": ESS_MIN, "bfmi": BFMI_MIN},
    }
    if diag is not None and len(diag):
        out |= {"max_rhat": float(diag["r_hat"].max()),
                "min_ess_bulk": float(diag["ess_bulk"].min()),
                "min_ess_tail": float(diag["ess_tail"].min()),
                "worst": str(diag.loc[diag["ess_bulk"].idxmin(), "parameter"])
                if "parameter" in diag.columns else ""}
    sds = inputs.analysis_csv("sds.csv", required=False)
    if sds is not None:
        sds = sds.assign(ess_bulk=sds["ess_bulk"].round().astype("Int64"))
    out["sds"] = table(sds, names={"hdi_low": "HDI low", "hdi_high": "HDI high",
                                   "ess_bulk": "bulk ESS", "r_hat": "R-hat"}
                       ) if sds is not None else None
    return out


def _target(inputs: StudyInputs) -> str:
    """What the factor effects describe, as `hitkit analyze` stated it."""
    return inputs.summary.get(
        "target_statement",
        f"Target of inference: {inputs.summary.get('target', 'these-models')} "
        "(rerun `hitkit analyze` for the full statement).")


def _crosscheck(inputs: StudyInputs) -> dict | None:
    frame = inputs.analysis_csv("crosscheck.csv", required=False)
    if frame is None:
        return None
    same = frame["same_sign"].astype(str).str.lower().isin(["true", "1"])
    ratios = pd.to_numeric(frame["ratio"], errors="coerce").replace([np.inf, -np.inf], np.nan)
    disagree = [f"{r.factor}={r.level}: PyMC {r.pymc_mean:+.3f}, statsmodels {r.statsmodels:+.3f}"
                for r, s in zip(frame.itertuples(index=False), same, strict=True) if not s]
    expected = (float(frame["expected_ratio"].iloc[0])
                if "expected_ratio" in frame and len(frame) else None)
    return {
        "agree": int(same.sum()), "total": len(frame),
        "median_ratio": float(ratios.median()) if ratios.notna().any() else None,
        "expected_ratio": expected,
        "diverged": bool(len(frame)) and not ratios.notna().any(),
        "disagree": disagree,
        "table": table(frame.drop(columns=["expected_ratio"], errors="ignore"),
                       names={"pymc_mean": "PyMC mean", "statsmodels_se": "statsmodels SE",
                              "same_sign": "same sign"}),
    }


def _ppc(inputs: StudyInputs) -> list[dict]:
    ppc = inputs.ppc
    flagged = ppc["flagged"].astype(str).str.lower().isin(["true", "1"])
    out = []
    for group, part in ppc.groupby("group", sort=False):
        bad = part[flagged[part.index]]
        out.append({
            "group": group, "total": len(part), "flagged": len(bad),
            "expected": PPC_ALPHA * len(part),
            "misfits": [f"{r.level}: observed {r.observed_rate:.2f}, replicated "
                        f"{r.replicated_low:.2f}–{r.replicated_high:.2f} "
                        f"({'below' if r.ppp > 0.5 else 'above'} the replicated data; "
                        f"two-sided p = {2 * min(r.ppp, 1 - r.ppp):.3f})"
                        for r in bad.itertuples(index=False)],
        })
    return out


def _proxy(inputs: StudyInputs) -> dict | None:
    summary = inputs.proxy_summary
    if summary is None:
        has_proxy = (inputs.root / PROXY_FILE).is_file()
        skipped = inputs.summary.get("proxy_calibration_skipped")
        if has_proxy and skipped:
            return {"missing": f"not calibrated: {skipped}"}
        return {"missing": ("proxy.csv exists but `hitkit analyze` did not calibrate it; rerun "
                            "the analysis" if has_proxy else
                            "no proxy.csv: run `hitkit proxy` to score the IRIs with the "
                            "machine proxy, then `hitkit analyze` again")}
    per_model = inputs.analysis_csv("proxy_calibration.csv", required=False)
    names = {"pearson_r": "Pearson r", "spearman_rho": "Spearman ρ", "slope": "slope",
             "intercept": "intercept"}
    measure = str(summary["measure"].iloc[0]) if "measure" in summary else "alignment"
    if measure == "alignment":
        described = "the share of IRIs perceptually nearer their target than their seed"
    else:
        described = ("the mean margin, distance to seed minus distance to target: the share of "
                     "IRIs nearer their target than their seed is the same for every model, "
                     "so the graded margin stands in for it")
    frame = summary.drop(columns=["measure"], errors="ignore")
    frame = frame.assign(statistic=frame["statistic"].map(lambda s: names.get(s, s)))
    return {"measure": described,
            "summary": table(frame, names={"hdi_low": "HDI low", "hdi_high": "HDI high"}),
            "per_model": table(per_model) if per_model is not None else None,
            "models": len(per_model) if per_model is not None else None}


def _effects_table(effects: pd.DataFrame) -> Table:
    cols = ["factor", "kind", "contrast", "alignment_mean", "alignment_hdi_low",
            "alignment_hdi_high", "alignment_p_gt_0", "logit_mean", "logit_hdi_low",
            "logit_hdi_high", "logit_p_gt_0"]
    names = {"alignment_mean": "alignment Δ", "alignment_hdi_low": "HDI low",
             "alignment_hdi_high": "HDI high", "alignment_p_gt_0": "P(>0)",
             "logit_mean": "logit Δ", "logit_hdi_low": "logit HDI low",
             "logit_hdi_high": "logit HDI high", "logit_p_gt_0": "logit P(>0)"}
    return table(effects, cols, names)


# ------------------------------------------------------------------ figures


PX_PER_INCH = 150  # on screen: a 3.3 in column figure is about 500 px wide


@dataclass
class EmbeddedFigure:
    name: str
    title: str
    caption: str
    data_uri: str | None
    skipped: str | None = None
    width_px: int = 0


def _figures(inputs: StudyInputs, options: FigureOptions, names: list[str],
             echo: Callable[[str], None]) -> list[EmbeddedFigure]:
    out = []
    for built in build_figures(inputs, options, names):
        spec = built.spec
        if built.figure is None:
            echo(f"  {spec.name}: skipped: {built.skipped}")
            out.append(EmbeddedFigure(spec.name, spec.title, spec.caption, None, built.skipped))
            continue
        data = base64.b64encode(png_bytes(built.figure)).decode("ascii")
        width = round(float(built.figure.get_size_inches()[0]) * PX_PER_INCH)
        echo(f"  {spec.name}: embedded")
        out.append(EmbeddedFigure(spec.name, spec.title, spec.caption,
                                  f"data:image/png;base64,{data}", width_px=width))
        while inputs.notes:
            echo(f"  note: {inputs.notes.pop(0)}")
    return out


# ------------------------------------------------------------------ render


def report_path(study_dir: Path, inputs: StudyInputs) -> Path:
    """report.html for the default IRI loss, report-<name>.html for another one."""
    if inputs.is_default_loss:
        return Path(study_dir) / REPORT_FILE
    return Path(study_dir) / f"report-{inputs.iri_loss}.html"


def _loss(inputs: StudyInputs) -> dict:
    """The IRI loss the results are for, and the responses of other losses left out."""
    summary = inputs.summary
    return {"name": summary.get("iri_loss"),
            "default": inputs.study.config.default_iri_loss,
            "others": [(name, n) for name, n in (summary.get("other_loss_rows") or {}).items()]}


def _render(inputs: StudyInputs, options: FigureOptions,
            echo: Callable[[str], None]) -> str:
    import jinja2

    from hitkit import __version__

    summary = inputs.summary  # FigureInputError when analyze never ran
    passed = bool(summary.get("gate_passed"))
    names = list(FIGURES) if passed else ["quality"]
    check_inputs(inputs, names)  # every required file, before any work
    context: dict = {
        "generated": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "version": __version__,
        "study": _study_summary(inputs),
        "quality": _quality(inputs),
        "diagnostics": _diagnostics(inputs),
        "passed": passed,
        "analysis_rows": summary.get("rows"),
        "iri_loss": _loss(inputs),
        "include_excluded": summary.get("include_excluded", False),
    }
    echo("rendering figures:")
    if passed:
        effects = inputs.effects
        context |= {
            "target": _target(inputs),
            "target_kind": summary.get("target", "these-models"),
            "sentences": effect_sentences(effects),
            "effects_table": _effects_table(effects),
            "interactions": bool((effects["kind"] == "interaction cell").any()),
            "crosscheck": _crosscheck(inputs),
            "ppc": _ppc(inputs),
            "proxy": _proxy(inputs),
        }
    figures = {f.name: f for f in _figures(inputs, options, names, echo)}
    context["figures"] = figures
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("analysis.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["num"] = lambda v, d=2: "" if v is None else fmt_number(float(v), d)
    return env.get_template(TEMPLATE).render(**context)


def write_report(study_dir: Path, options: FigureOptions | None = None,
                 echo: Callable[[str], None] | None = None,
                 iri_loss: str | None = None) -> Path:
    """Write DIR/report.html (report-<name>.html for an IRI loss other than the default)
    atomically and return its path."""
    study_dir = Path(study_dir)
    inputs = StudyInputs(study_dir, iri_loss=iri_loss)
    html = _render(inputs, options or FigureOptions(), echo or (lambda _line: None))
    path = report_path(study_dir, inputs)
    atomic_write(path, lambda tmp: tmp.write_text(html, encoding="utf-8"))
    if echo:
        echo(f"wrote {path}")
    return path


__all__ = ["FigureInputError", "REPORT_FILE", "effect_sentence", "effect_sentences",
           "report_path", "write_report"]
