"""The analysis stage's CLI commands: `hitkit analyze`, `plan`, `figures` and `report`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hitkit.cli.options import open_study, study_option

EXIT_INPUT = 2  # bad study.toml or responses
EXIT_GATE = 3  # the fit did not pass the convergence gate

IRI_LOSS_OPTION = click.option(
    "--iri-loss", default=None, metavar="NAME",
    help="The [[generation.losses]] entry whose IRIs are analysed (default: [analysis].iri_loss, "
         "else the first reg_free loss, else the first). Another loss than the default is "
         "written to analysis/loss-NAME/.")


READ_LOSS_OPTION = click.option(
    "--iri-loss", default=None, metavar="NAME",
    help="Use the analysis of this IRI loss: read analysis/loss-NAME/ (written by `hitkit "
         "analyze --iri-loss NAME`) instead of analysis/ (default: the study's default loss).")


@click.command(epilog="""\b
Examples:
  hitkit analyze --study my-study
  hitkit analyze --study my-study --include-excluded     sensitivity run
  hitkit analyze --study my-study --iri-loss tv          another IRI loss
  hitkit analyze --study my-study --compare              LOO over model variants
  hitkit analyze --study my-study --sampler pymc --draws 2000
\b
Exit status: 0 = the fit passed the gate and results were written;
2 = bad study.toml or responses.parquet; 3 = the convergence gate failed.
""")
@study_option
@click.option("--include-excluded", is_flag=True,
              help="Keep rows excluded by [quality] rules (a sensitivity run; written to "
                   "sensitivity-include-excluded/ in the loss's results folder).")
@IRI_LOSS_OPTION
@click.option("--sampler", type=click.Choice(["nutpie", "pymc", "numpyro"]), default=None,
              help="NUTS implementation (default: [analysis].sampler, nutpie).")
@click.option("--draws", type=click.IntRange(min=10), default=None,
              help="Posterior draws per chain (default: [analysis].draws).")
@click.option("--tune", type=click.IntRange(min=10), default=None,
              help="Tuning steps per chain (default: [analysis].tune).")
@click.option("--chains", type=click.IntRange(min=1), default=None,
              help="Chains (default: [analysis].chains).")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Sampler seed (default: [analysis].seed).")
@click.option("--compare", is_flag=True,
              help="Also fit variants (without interactions, other lapse options) and "
                   "compare them by PSIS-LOO.")
@click.option("--quiet", is_flag=True, help="No sampler progress bar.")
def analyze(study_dir: Path, include_excluded: bool, iri_loss: str | None, sampler: str | None,
            draws: int | None, tune: int | None, chains: int | None, seed: int | None,
            compare: bool, quiet: bool) -> None:
    """Fit the hierarchical model of human alignment to responses.parquet.

    One Bernoulli row per response, p = chance + (1 - chance - lapse) * logistic(eta),
    with zero-sum factor effects and participant, image and model effects. The fit
    must pass the convergence gate (R-hat <= 1.01, bulk and tail ESS >= 400, no
    divergences, BFMI >= 0.3) before any effect is written. Only responses to IRIs of
    one loss are fitted (--iri-loss; losses are never pooled). Outputs go to the study's
    analysis/ folder (analysis/loss-NAME/ for a loss other than the default):
    posterior.nc, effects.csv/.md, alignment.csv, sds.csv, ppc.csv, crosscheck.csv,
    diagnostics.csv, summary.json (and compare.csv).
    """
    from analysis.analyze import run_analysis
    from analysis.data import AnalysisDataError
    from analysis.fit import SamplerError, SampleSettings

    study = open_study(study_dir)
    stale = review_outdated(study)
    if stale:
        click.echo(f"error: {stale}", err=True)
        sys.exit(EXIT_INPUT)
    settings = SampleSettings.from_config(
        study.config.analysis, sampler=sampler, draws=draws, tune=tune, chains=chains,
        seed=seed, progress=not quiet)
    try:
        result = run_analysis(study, include_excluded=include_excluded, compare=compare,
                              settings=settings, iri_loss=iri_loss, echo=click.echo)
    except (AnalysisDataError, SamplerError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INPUT)
    if not result.gate.passed:
        click.echo(
            f"\nThe fit did not pass the convergence gate; no effects were written. "
            f"Diagnostics: {result.folder / 'diagnostics.csv'}", err=True)
        sys.exit(EXIT_GATE)


def review_outdated(study) -> str | None:
    """Why responses.parquet does not match the review the ledger recorded, or None: the
    exclusions it carries must be the verdicts `hitkit review` recorded under the [quality]
    rules in force (a study without a ledger, e.g. imported responses, is not checked)."""
    from hitkit.study.responses import RESPONSES_FILE
    from hitkit.survey.ledger import LEDGER_FILE, Ledger
    from hitkit.survey.quality import ReviewError, last_review_run, recorded_verdicts

    if not (study.root / LEDGER_FILE).is_file():
        return None
    with Ledger.for_study(study.root) as ledger:
        try:
            recorded_verdicts(ledger, study.config.quality)
        except ReviewError as exc:
            return str(exc)
        run = last_review_run(ledger)
        exports = [e for e in ledger.events("exported") if e["data"].get("file") == RESPONSES_FILE]
        if exports and exports[-1]["at"] < run["created_at"]:
            return ("responses.parquet was written before the last `hitkit review` "
                    f"({run['created_at']}): run `hitkit export` again")
    return None


@click.command(epilog="""\b
Examples:
  hitkit plan --study my-study --contrast training=adversarial:standard --width 0.5
  hitkit plan --study my-study --contrast architecture=vit:resnet --width 0.4 \\
              --target model-population --assurance 0.9 --simulations 50
""")
@study_option
@click.option("--contrast", required=True,
              help="FACTOR=LEVEL_A:LEVEL_B, the contrast to plan for.")
@click.option("--width", type=float, required=True,
              help="Goal: 94 % interval width of the contrast, in logits.")
@click.option("--assurance", type=float, default=0.8, show_default=True,
              help="Share of simulated studies that must reach the width.")
@click.option("--target", type=click.Choice(["these-models", "model-population"]),
              default=None, help="Inferential target (default: [analysis].target).")
@click.option("--simulations", type=click.IntRange(min=5), default=20, show_default=True,
              help="Simulated studies per candidate design.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@READ_LOSS_OPTION
def plan(study_dir: Path, contrast: str, width: float, assurance: float, target: str | None,
         simulations: int, seed: int, iri_loss: str | None) -> None:
    """Find the participants, trials and models per cell a contrast's precision needs.

    Simulates candidate designs (more participants, more models per cell) from the
    analysis model with the study's SDs (from analysis/posterior.nc when it exists)
    and reports, for each, the 94 % interval width of the contrast, the assurance of
    reaching --width, and the cost on the study's platform with its fees.
    """
    from tqdm import tqdm

    from analysis.planning import PlanError, format_report, plan_precision

    study = open_study(study_dir)
    bar = tqdm(total=None, desc="simulating designs", unit="design", leave=False,
               file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        report = plan_precision(study, contrast, width, assurance=assurance, reps=simulations,
                                target=target, seed=seed, progress=progress,
                                iri_loss=iri_loss)
    except PlanError as exc:
        bar.close()
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INPUT)
    bar.close()
    click.echo(format_report(report, study))


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items or None


def figure_options(command):
    """The options `hitkit figures` and `hitkit report` share: choices study.toml cannot make."""
    options = [
        click.option("--x-factor", default=None,
                     help="Architecture-like factor on the x axis of the alignment scatter "
                          "(default: a factor named like 'architecture', else the first)."),
        click.option("--group-factor", default=None,
                     help="Training-like factor that colours the points (default: a factor "
                          "named like 'training', else the next one)."),
        click.option("--ordered-factor", default=None,
                     help="Ordered factor (epochs, checkpoints) for the alignment-ordered "
                          "figure (default: a factor named like epoch/checkpoint/step; "
                          "skipped when there is none)."),
        click.option("--order", default=None, metavar="L1,L2,...",
                     help="Level order of --ordered-factor (default: numeric order)."),
        click.option("--reference", type=float, default=None,
                     help="Horizontal reference line of the ordered figure (alignment value, "
                          "e.g. a supervised baseline)."),
        click.option("--reference-label", default=None, help="Legend text of --reference."),
        click.option("--contrasts", type=click.Choice(["pairwise", "level", "all"]),
                     default="pairwise", show_default=True,
                     help="Contrasts in the forest plot: pairwise differences, each level "
                          "against the mean of levels, or both."),
        click.option("--gallery-models", default=None, metavar="M1,M2,...",
                     help="Models (rows) of the IRI gallery (default: the first 12)."),
        click.option("--gallery-target", default=None, metavar="TARGET_ID",
                     help="Target image of the gallery (default: the first with an IRI for "
                          "every model and loss)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _figure_options(kwargs: dict):
    from analysis.figures import FigureOptions

    return FigureOptions(
        x_factor=kwargs["x_factor"], group_factor=kwargs["group_factor"],
        ordered_factor=kwargs["ordered_factor"], order=_split(kwargs["order"]),
        reference=kwargs["reference"], reference_label=kwargs["reference_label"],
        contrasts=kwargs["contrasts"], gallery_models=_split(kwargs["gallery_models"]),
        gallery_target=kwargs["gallery_target"])


@click.command(epilog="""\b
Examples:
  hitkit figures --study my-study
  hitkit figures --study my-study --only alignment --only contrasts
  hitkit figures --study simclr --ordered-factor epochs --reference 0.42 \\
                 --reference-label "supervised ResNet-50"
  hitkit figures --study my-study --iri-loss tv      into figures/loss-tv/
\b
Figures: alignment, alignment-ordered, contrasts, gallery, proxy, quality, ppc.
Exit status: 0 = written (a figure the study cannot have is skipped with a
message); 2 = a missing or unreadable input, named in the message.
""")
@study_option
@click.option("--only", "only", multiple=True, metavar="NAME",
              help="Draw only this figure (repeatable).")
@READ_LOSS_OPTION
@figure_options
def figures(study_dir: Path, only: tuple[str, ...], iri_loss: str | None, **kwargs) -> None:
    """Draw the paper's figures from the stored analysis, as PDF and PNG in figures/.

    Reads analysis/ (written by `hitkit analyze`), responses.parquet, manifest.parquet
    with its image store, and proxy.csv. Each figure is written to
    figures/<name>.pdf and figures/<name>.png, sized for a two-column paper. With
    --iri-loss NAME (a loss other than the default) it reads analysis/loss-NAME/ and
    writes figures/loss-NAME/.
    """
    from analysis.figures import FigureInputError, write_figures

    study = open_study(study_dir)
    try:
        written = write_figures(study.root, _figure_options(kwargs), only=list(only) or None,
                                echo=click.echo, iri_loss=iri_loss)
    except (FigureInputError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INPUT)
    folder = written[0].parent if written else study.root / "figures"
    click.echo(f"{len(written) // 2} figure(s) in {folder}")


@click.command(epilog="""\b
Examples:
  hitkit report --study my-study
  hitkit report --study simclr --ordered-factor epochs --reference 0.42
  hitkit report --study my-study --iri-loss tv       report-tv.html
\b
Exit status: 0 = report.html written; 2 = a missing or unreadable input, named in
the message (run `hitkit analyze` first).
""")
@study_option
@READ_LOSS_OPTION
@figure_options
def report(study_dir: Path, iri_loss: str | None, **kwargs) -> None:
    """Write report.html: the study's results on one self-contained page.

    Study summary, data quality and exclusions by rule, the effects in words and
    numbers, the inferential target, the convergence gate, the statsmodels
    cross-check, posterior predictive misfits, the proxy calibration and every
    figure (embedded; the page loads nothing from the network). With --iri-loss NAME
    (a loss other than the default) it reads analysis/loss-NAME/ and writes
    report-NAME.html.
    """
    from analysis.figures import FigureInputError
    from analysis.report.page import write_report

    study = open_study(study_dir)
    try:
        write_report(study.root, _figure_options(kwargs), echo=click.echo, iri_loss=iri_loss)
    except (FigureInputError, ValueError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INPUT)
