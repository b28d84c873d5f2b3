"""`hitkit plan`: how many participants, trials and models per cell a contrast needs.

For each candidate design, synthetic studies are drawn from the analysis model's
generative process (analysis.synthetic) with the study's assumed SDs (from its
posterior when one exists, defaults otherwise), and the 94 % interval width of
the contrast is estimated on each; the assurance is the share of simulations
whose width is at most the goal.

Each simulated study is screened with a fast two-stage estimate, not a full MCMC
fit (which would take minutes per simulation): per model, the chance-corrected
rate with participant- and image-clustered (two-way sandwich) variance, turned into
a logit; the
contrast is the difference of balanced level means, with the between-model
variance added when the target is the model population; widths are put on the
model's conditional logit scale by the logistic-normal attenuation factor.
docs/analysis.md records how the screen compares with full fits.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from analysis.data import AnalysisDataError, loss_folder, resolve_iri_loss
from analysis.model import design_matrix
from analysis.synthetic import Design, Truth, draw_responses
from hitkit.study.config import Study
from hitkit.study.fees import CostEstimate, to_major_units
from hitkit.study.size import estimate_cost, study_size

Z94 = 1.880793608151251  # two-sided 94 % normal quantile
DEFAULT_TRUTH = Truth(intercept=0.5, sd_participant=0.5, sd_image=0.7, sd_model=0.3, lapse=0.03)


class PlanError(ValueError):
    """A planning request that cannot be met as written."""


@dataclass(frozen=True)
class Contrast:
    factor: str
    a: str
    b: str

    def __str__(self) -> str:
        return f"{self.factor}={self.a}:{self.b}"


def parse_contrast(text: str, factor_levels: dict[str, list[str]]) -> Contrast:
    match = re.fullmatch(r"\s*([^=\s]+)\s*=\s*([^:]+?)\s*:\s*(.+?)\s*", text)
    if not match:
        raise PlanError(f"--contrast {text!r}: write FACTOR=LEVEL_A:LEVEL_B, "
                        "e.g. training=adversarial:standard")
    factor, a, b = match.groups()
    if factor not in factor_levels:
        raise PlanError(f"--contrast {text!r}: unknown factor {factor!r} "
                        f"(factors: {', '.join(factor_levels)})")
    for level in (a, b):
        if level not in factor_levels[factor]:
            raise PlanError(f"--contrast {text!r}: {factor!r} has no level {level!r} "
                            f"(levels: {', '.join(factor_levels[factor])})")
    if a == b:
        raise PlanError(f"--contrast {text!r}: compare two different levels")
    return Contrast(factor, a, b)


def assumptions_from_posterior(path: Path, factors: list[str]) -> tuple[Truth, str]:
    """Posterior means of the SDs, intercept and lapse from an earlier fit."""
    import xarray as xr

    tree = xr.open_datatree(path)
    post = tree["posterior"].to_dataset()
    mean = lambda name, default: float(post[name].mean()) if name in post else default  # noqa: E731
    sd_model = math.sqrt(mean("s_model", 0.0) ** 2 + mean("s_cell", 0.0) ** 2)
    truth = Truth(
        intercept=mean("b0", DEFAULT_TRUTH.intercept),
        effects={f: dict(zip(post[f"b_{f}"].coords[f].values.tolist(),
                             post[f"b_{f}"].mean(("chain", "draw")).values.tolist(), strict=True))
                 for f in factors if f"b_{f}" in post},
        sd_participant=mean("s_participant", DEFAULT_TRUTH.sd_participant),
        sd_image=mean("s_image", DEFAULT_TRUTH.sd_image),
        sd_model=sd_model if sd_model > 0 else DEFAULT_TRUTH.sd_model,
        lapse=mean("lapse", 0.0),
    )
    tree.close()
    return truth, f"posterior means from {path}"


@dataclass
class CandidateResult:
    design: Design
    widths: np.ndarray
    assurance: float
    cost: CostEstimate

    @property
    def median_width(self) -> float:
        return float(np.median(self.widths))


@dataclass
class PlanReport:
    contrast: Contrast
    goal: float
    assurance_goal: float
    target: str
    truth: Truth
    source: str
    results: list[CandidateResult]
    recommended: CandidateResult | None
    notes: list[str] = field(default_factory=list)


def contrast_width(draw, design: Design, truth: Truth, contrast: Contrast, target: str) -> float:
    """94 % width of the contrast (conditional logit scale) from one simulated study."""
    keep = ~draw.excluded_participant[draw.participant]
    y, m, part = draw.correct[keep], draw.model[keep], draw.participant[keep]
    chance = draw.chance[keep]
    n_models = len(draw.models)
    n = np.bincount(m, minlength=n_models).astype(float)
    if (n == 0).any():
        return math.inf
    floor = np.bincount(m, weights=chance, minlength=n_models) / n
    rate = np.bincount(m, weights=y, minlength=n_models) / n
    span = 1.0 - floor - truth.lapse
    q = np.clip((rate - floor) / span, 0.02, 0.98)
    eta = np.log(q / (1 - q))
    # two-way (participant and image) cluster-robust variance of each model's rate:
    # V_participant + V_image - V_row (Cameron, Gelbach & Miller 2011)
    resid = y - rate[m]

    def clustered(groups: np.ndarray) -> np.ndarray:
        size = int(groups.max()) + 1
        sums = np.bincount(m * size + groups, weights=resid, minlength=n_models * size)
        return np.bincount(np.arange(len(sums)) // size, weights=sums ** 2, minlength=n_models)

    v_sum = clustered(part) + clustered(draw.image[keep]) - np.bincount(
        m, weights=resid ** 2, minlength=n_models)
    v_rate = np.maximum(v_sum, 0.0) / n ** 2
    v_eta = v_rate / (span * q * (1 - q)) ** 2

    level_of = np.array([design.factors[contrast.factor].index(d[contrast.factor])
                         for d in draw.models])
    ia = design.factors[contrast.factor].index(contrast.a)
    ib = design.factors[contrast.factor].index(contrast.b)
    w = np.where(level_of == ia, 1.0, 0.0) / max((level_of == ia).sum(), 1)
    w -= np.where(level_of == ib, 1.0, 0.0) / max((level_of == ib).sum(), 1)
    var = float(np.sum(w ** 2 * v_eta))
    if target == "model-population":
        levels = {f: np.array([design.factors[f].index(d[f]) for d in draw.models])
                  for f in design.factors}
        x = design_matrix(levels, {f: len(v) for f, v in design.factors.items()}, [])
        df = n_models - np.linalg.matrix_rank(x)
        if df > 0:
            beta, *_ = np.linalg.lstsq(x, eta, rcond=None)
            rss = float(np.sum((eta - x @ beta) ** 2))
            s2 = max(rss / df - float(np.mean(v_eta)), 0.0)
        else:
            s2 = truth.sd_model ** 2
        var += s2 * float(np.sum(w ** 2))
    # marginal logits are attenuated by participant/image spread (logistic-normal approx.)
    attenuation = 1.0 / math.sqrt(1.0 + 0.346 * (truth.sd_participant ** 2 + truth.sd_image ** 2))
    return 2.0 * Z94 * math.sqrt(var) / attenuation


def between_model_floor(design: Design, truth: Truth, contrast: Contrast) -> float:
    """Width of the contrast with infinitely many trials, when generalising to new models.

    A level mean over k models carries model noise sd_model / sqrt(k); a difference of
    two such means has SD sd_model * sqrt(2 / k), whatever the number of participants.
    """
    per_level = design.model_count / len(design.factors[contrast.factor])
    return 2.0 * Z94 * truth.sd_model * math.sqrt(2.0 / per_level)


def evaluate(design: Design, truth: Truth, contrast: Contrast, target: str, goal: float,
             reps: int, seed: int, study: Study) -> CandidateResult:
    rng = np.random.default_rng(seed)
    widths = np.array([contrast_width(draw_responses(design, truth, rng), design, truth,
                                      contrast, target) for _ in range(reps)])
    survey = study.config.survey
    hits = math.ceil(design.participants / survey.responses_per_iri)
    cost = estimate_cost(study.config, hits, design.participants)
    return CandidateResult(design, widths, float(np.mean(widths <= goal)), cost)


def base_design(study: Study) -> Design:
    config = study.config
    plan = study_size(config)
    cells: dict[tuple[str, ...], int] = {}
    for model in config.models:
        key = tuple(model.factors[f] for f in config.analysis.factors)
        cells[key] = cells.get(key, 0) + 1
    survey = config.survey
    return Design(
        factors=config.factor_levels,
        models_per_cell=max(1, round(np.mean(list(cells.values())))),
        participants=max(plan.participants, 1),
        trials_per_participant=survey.main_trials_per_hit + survey.repeats_per_hit,
        images=config.targets.count,
        catch_per_participant=survey.catch_per_hit,
        matching_share=1.0 if survey.task == "matching" else 0.0,
        k=int(survey.k or 2) if survey.task == "matching" else 3,
        min_catch_accuracy=config.quality.min_catch_accuracy,
    )


def plan_precision(study: Study, contrast_text: str, goal: float, *, assurance: float = 0.8,
                   reps: int = 20, target: str | None = None,
                   participant_factors: tuple[int, ...] = (1, 2, 4, 8, 16),
                   model_factors: tuple[int, ...] = (1, 2, 4), seed: int = 0,
                   progress=None, iri_loss: str | None = None) -> PlanReport:
    if goal <= 0:
        raise PlanError("--width must be positive (logits)")
    if not 0 < assurance < 1:
        raise PlanError("--assurance must be between 0 and 1")
    config = study.config
    contrast = parse_contrast(contrast_text, config.factor_levels)
    target = target or config.analysis.target
    # the SDs of the IRI loss the study will be analysed on (analysis/loss-NAME/ for another)
    try:
        loss = resolve_iri_loss(study, iri_loss)
    except AnalysisDataError as exc:
        raise PlanError(str(exc)) from None
    posterior = loss_folder(study.root / "analysis", study, loss) / "posterior.nc"
    if posterior.is_file():
        truth, source = assumptions_from_posterior(posterior, config.analysis.factors)
    else:
        truth, source = DEFAULT_TRUTH, (
            f"default assumptions (no {posterior.relative_to(study.root)} yet): SDs "
            "participant 0.5, image "
            "0.7, model 0.3 logits, lapse 0.03")
    base = base_design(study)
    results: list[CandidateResult] = []
    grid = [(mf, pf) for mf in model_factors for pf in participant_factors]
    for i, (mf, pf) in enumerate(grid):
        design = replace(base, models_per_cell=base.models_per_cell * mf,
                         participants=base.participants * pf)
        results.append(evaluate(design, truth, contrast, target, goal, reps, seed + i, study))
        if progress is not None:
            progress(i + 1, len(grid))
    meeting = [r for r in results if r.assurance >= assurance]
    # cheapest in money first, then the fewest models to train
    recommended = min(meeting, key=lambda r: (r.design.models_per_cell, r.cost.total_minor,
                                              r.design.participants), default=None)
    notes: list[str] = []
    at_base = [r for r in results if r.design.models_per_cell == base.models_per_cell]
    if not any(r.assurance >= assurance for r in at_base):
        best = min(at_base, key=lambda r: r.median_width)
        floor = between_model_floor(base, truth, contrast)
        if target == "model-population" and floor >= goal:
            notes.append(
                f"Factor effects are between-model: with {base.models_per_cell} model(s) per "
                f"cell the width cannot fall below {floor:.2f} (model SD {truth.sd_model:.2f}) "
                f"however many participants are added (best simulated median "
                f"{best.median_width:.2f} at {best.design.participants:,} participants); "
                "train more models per cell (e.g. more training seeds) instead")
        elif target == "model-population":
            notes.append(
                f"with {base.models_per_cell} model(s) per cell the candidates tried reach a "
                f"median width of {best.median_width:.2f} at best (between-model floor "
                f"{floor:.2f}): more participants than tried, or more models per cell")
        else:
            notes.append(
                f"with {base.models_per_cell} model(s) per cell the candidates tried reach a "
                f"median width of {best.median_width:.2f} at best; more participants or "
                "more models per cell are needed")
    if recommended is not None and recommended.design.models_per_cell > base.models_per_cell:
        extra = (recommended.design.models_per_cell - base.models_per_cell) * len(base.cells)
        notes.append(f"the recommended design needs {extra} more trained model(s) "
                     f"({recommended.design.models_per_cell} per cell); training cost is not "
                     "included in the costs above")
    if target == "these-models":
        notes.append("target 'these-models': widths describe the trained models in the study; "
                     "for claims about models one could train, plan with "
                     "--target model-population (it adds the between-model variance)")
    return PlanReport(contrast, goal, assurance, target, truth, source, results, recommended,
                      notes)


def format_report(report: PlanReport, study: Study) -> str:
    lines = [
        f"Precision plan for {report.contrast} (logit scale, 94 % interval width <= "
        f"{report.goal:g} with >= {report.assurance_goal:.0%} assurance), target "
        f"'{report.target}'",
        f"  assumptions: {report.source}",
        f"  {len(report.results[0].widths)} simulated studies per design; widths from a fast "
        "two-stage screen (see docs/analysis.md)",
        "",
        f"  {'models/cell':>11} {'participants':>12} {'trials/part.':>12} {'responses':>10} "
        f"{'median width':>12} {'assurance':>9} {'cost':>14}",
    ]
    for r in report.results:
        d = r.design
        mark = "  <- recommended" if r is report.recommended else ""
        lines.append(
            f"  {d.models_per_cell:>11} {d.participants:>12,} {d.trials_per_participant:>12} "
            f"{d.responses:>10,} {r.median_width:>12.3f} {r.assurance:>9.0%} "
            f"{to_major_units(r.cost.total_minor):>10,.2f} {r.cost.currency}{mark}")
    lines.append("")
    if report.recommended is None:
        lines.append("  no candidate design reaches the goal; widen --width, lower --assurance, "
                     "or plan more models per cell")
    else:
        d = report.recommended.design
        lines.append(
            f"  recommended: {d.models_per_cell} model(s) per cell ({d.model_count} models), "
            f"{d.participants:,} participants × {d.trials_per_participant} trials; cost "
            f"{to_major_units(report.recommended.cost.total_minor):,.2f} "
            f"{report.recommended.cost.currency} on "
            f"{study.config.platform.kind} ({report.recommended.cost.rate_note})")
    lines += [f"  note: {n}" for n in report.notes]
    return "\n".join(lines)
