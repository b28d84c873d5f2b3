"""The study's figures, from the stored outputs of `hitkit analyze` (and the manifest,
responses and proxy), as PDF and PNG in the study's figures/ folder.

Every figure is a plain function that takes data frames and returns a matplotlib
Figure (`alignment_by_factor`, `alignment_along`, `contrast_forest`, `iri_gallery`,
`proxy_vs_human`, `participant_quality`, `ppc_plot`). `FIGURES` maps each figure's
name to a builder that reads a study folder's files and calls that function;
`write_figures(study_dir)` builds them all and writes figures/<name>.pdf and .png
(`iri_loss=NAME`: from analysis/loss-NAME/ into figures/loss-NAME/, for a loss other
than the study's default). The alignment and contrast figures name the IRI loss the
analysis is for in their title.
A figure the study cannot have (no ordered factor, no proxy.csv, no manifest) is
skipped with a message; a missing analysis output is a `FigureInputError` naming
the file and the command that writes it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from matplotlib.figure import Figure

from analysis.figures.alignment import alignment_along, alignment_by_factor, ordered_levels
from analysis.figures.contrasts import contrast_forest
from analysis.figures.gallery import iri_gallery
from analysis.figures.inputs import (
    FigureInputError,
    FigureOptions,
    FigureSkipped,
    StudyInputs,
    detect_ordered,
    factor_roles,
)
from analysis.figures.ppc import ppc_plot
from analysis.figures.proxy import proxy_vs_human
from analysis.figures.quality import participant_quality
from analysis.figures.style import save_figure

__all__ = [
    "FIGURES", "FigureInputError", "FigureOptions", "FigureSkipped", "FigureSpec",
    "StudyInputs", "alignment_along", "alignment_by_factor", "build_figures",
    "contrast_forest", "iri_gallery", "participant_quality", "ppc_plot", "proxy_vs_human",
    "write_figures",
]


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[-_\s.:/]+", text.lower()) if t]


def _spells(name: str, level: str) -> bool:
    """Whether the model name holds the level as whole words ('tiny_convnet-crop-flip'
    holds 'tiny-convnet' and 'crop-flip', 'm250' does not hold '25')."""
    words, level_words = _tokens(name), _tokens(level)
    k = len(level_words)
    return k > 0 and any(words[i:i + k] == level_words for i in range(len(words) - k + 1))


def _model_labels(inputs: StudyInputs, sep: str = " ") -> dict[str, str]:
    """model -> row label: 'name (level · level · …)', or just the name when it already
    spells every level (as generated names like 'resnet-adversarial-crop-flip' do)."""
    models = inputs.alignment[inputs.alignment["kind"] == "model"]
    labels = {}
    for _, r in models.iterrows():
        name, levels = str(r["name"]), [str(r[f]) for f in inputs.factors]
        labels[name] = (name if all(_spells(name, lv) for lv in levels)
                        else f"{name}{sep}({' · '.join(levels)})")
    return labels


def _alignment(inputs: StudyInputs, options: FigureOptions) -> Figure:
    x, group = factor_roles(inputs.factors, options)
    ordered = options.ordered_factor or detect_ordered(inputs.factors)
    rest = [f for f in inputs.factors if f not in (x, group)]
    marker = next((f for f in rest if f != ordered), rest[0] if rest else None)
    levels = inputs.factor_levels
    marker_order = None
    if marker is not None:
        marker_order = ordered_levels(levels[marker]) if marker == ordered else levels[marker]
    return alignment_by_factor(inputs.alignment, x, group, marker, x_order=levels.get(x),
                               group_order=levels.get(group) if group else None,
                               marker_order=marker_order, title=inputs.loss_title())


def _ordered(inputs: StudyInputs, options: FigureOptions) -> Figure:
    factor = options.ordered_factor or detect_ordered(inputs.factors)
    if factor is None:
        raise FigureSkipped(
            f"the study has no ordered factor (factors: {', '.join(inputs.factors)}); name one "
            "with --ordered-factor NAME (e.g. epochs or checkpoint) to draw alignment along it")
    if factor not in inputs.factors:
        raise FigureSkipped(f"--ordered-factor {factor!r} is not in [analysis].factors "
                            f"({', '.join(inputs.factors)})")
    x, group = factor_roles(inputs.factors, options)
    colour = group if group != factor else (x if x != factor else None)
    return alignment_along(inputs.alignment, factor, order=options.order,
                           reference=options.reference, reference_label=options.reference_label,
                           colour_factor=colour)


def _contrasts(inputs: StudyInputs, options: FigureOptions) -> Figure:
    return contrast_forest(inputs.effects, options.contrasts, inputs.factors,
                           title=inputs.loss_title())


def _gallery(inputs: StudyInputs, options: FigureOptions) -> Figure:
    manifest = inputs.manifest
    models = options.gallery_models
    if models is None:
        ordered = list(dict.fromkeys(inputs.alignment.loc[
            inputs.alignment["kind"] == "model", "name"].astype(str)))
        models = [m for m in ordered if m in set(manifest["model"])] or list(
            dict.fromkeys(manifest["model"]))
        if len(models) > options.max_gallery_models:
            inputs.notes.append(
                f"gallery: showing the first {options.max_gallery_models} of {len(models)} "
                "models; choose them with --gallery-models")
            models = models[:options.max_gallery_models]
    return iri_gallery(manifest, inputs.root, models=models, target_id=options.gallery_target,
                       row_labels=_model_labels(inputs, "\n"))


def _proxy(inputs: StudyInputs, options: FigureOptions) -> Figure:
    proxy = inputs.proxy
    _, group = factor_roles(inputs.factors, options)
    return proxy_vs_human(inputs.alignment, proxy, inputs.proxy_summary, colour_factor=group,
                          level_order=inputs.factor_levels.get(group) if group else None)


def _quality(inputs: StudyInputs, options: FigureOptions) -> Figure:
    return participant_quality(inputs.responses, inputs.study.config.quality)


def _ppc(inputs: StudyInputs, options: FigureOptions) -> Figure:
    return ppc_plot(inputs.ppc, "model", labels=_model_labels(inputs))


@dataclass(frozen=True)
class FigureSpec:
    name: str  # file stem under figures/
    title: str
    caption: str
    build: Callable[[StudyInputs, FigureOptions], Figure]
    requires: tuple[str, ...] = ("analysis/alignment.csv",)  # relative to the study folder


FIGURES: dict[str, FigureSpec] = {spec.name: spec for spec in (
    FigureSpec("alignment", "Alignment per model",
               "Chance-corrected human alignment of each model (posterior mean and 94 % HDI), "
               "by architecture and training.", _alignment),
    FigureSpec("alignment-ordered", "Alignment along an ordered factor",
               "Alignment at each level of an ordered factor (mean over its models, 94 % HDI), "
               "the models behind it, and the reference line.", _ordered),
    FigureSpec("contrasts", "Factor contrasts",
               "Differences in chance-corrected alignment between factor levels (posterior "
               "mean, 94 % HDI); the dashed line is no difference.", _contrasts,
               ("analysis/effects.csv",)),
    FigureSpec("gallery", "IRI gallery",
               "One row per model: the target, the seed the optimisation started from, and the "
               "IRI each loss made.", _gallery),
    FigureSpec("proxy", "Machine proxy against humans",
               "Per model: the machine proxy (the share of IRIs nearer their target than "
               "their seed, or their mean margin where that share is the same for every model) "
               "against human alignment (94 % HDI), with the correlations.", _proxy),
    FigureSpec("quality", "Participant quality",
               "Catch-trial accuracy, reaction times and side bias, participants kept and "
               "excluded by the pre-registered rules.", _quality, ("responses.parquet",)),
    FigureSpec("ppc", "Posterior predictive check",
               "Per model: the observed correct rate against the 94 % interval of data "
               "replicated from the posterior; misfits (p < 0.01) flagged.", _ppc,
               ("analysis/ppc.csv", "analysis/alignment.csv")),
)}


@dataclass
class Built:
    spec: FigureSpec
    figure: Figure | None
    skipped: str | None = None


def _check_names(only: list[str] | None) -> list[str]:
    names = list(FIGURES) if not only else list(dict.fromkeys(only))
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise ValueError(f"unknown figure(s) {', '.join(unknown)} (known: {', '.join(FIGURES)})")
    return names


def check_inputs(inputs: StudyInputs, names: list[str]) -> None:
    """Fail before drawing anything when a required input of a chosen figure is missing."""
    for name in names:
        for relative in FIGURES[name].requires:
            path = inputs.required(relative)
            if path.is_file():
                continue
            if relative.startswith("analysis/"):
                raise inputs.missing(path)
            raise FigureInputError(f"{path} not found: run `hitkit export --study {inputs.root}` "
                                   "first")


def build_figures(inputs: StudyInputs, options: FigureOptions | None = None,
                  only: list[str] | None = None) -> Iterator[Built]:
    """Build each figure in turn; a figure the study cannot have comes back skipped."""
    options = options or FigureOptions()
    for name in _check_names(only):
        spec = FIGURES[name]
        try:
            yield Built(spec, spec.build(inputs, options))
        except FigureSkipped as exc:
            yield Built(spec, None, str(exc))


def write_figures(study_dir: Path, options: FigureOptions | None = None,
                  only: list[str] | None = None,
                  echo: Callable[[str], None] | None = print,
                  iri_loss: str | None = None) -> list[Path]:
    """Write figures/<name>.pdf and .png for every figure the study can have (of the
    analysis of `iri_loss`: figures/loss-<name>/ for a loss other than the default);
    returns the paths written. Progress and skip messages go to `echo` (None: silent)."""
    echo = echo or (lambda _line: None)
    inputs = StudyInputs(Path(study_dir), iri_loss=iri_loss)
    names = _check_names(only)
    check_inputs(inputs, names)
    out = inputs.figures_dir
    written: list[Path] = []
    for i, built in enumerate(build_figures(inputs, options, names), start=1):
        prefix = f"[{i}/{len(names)}] {built.spec.name}"
        if built.figure is None:
            echo(f"{prefix}: skipped: {built.skipped}")
            continue
        paths = save_figure(built.figure, out / built.spec.name)
        written += paths
        echo(f"{prefix}: wrote {', '.join(str(p) for p in paths)}")
        while inputs.notes:
            echo(f"  note: {inputs.notes.pop(0)}")
    return written
