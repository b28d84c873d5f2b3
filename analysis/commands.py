"""The analysis stage's CLI commands: `hitkit analyze` and `hitkit plan`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hitkit.config import ConfigError, load_study

EXIT_INPUT = 2  # bad study.toml or responses
EXIT_GATE = 3  # the fit did not pass the convergence gate

STUDY_OPTION = click.option(
    "--study", "study_dir", type=click.Path(path_type=Path), default=Path("."),
    show_default=True, help="Study folder holding study.toml.")


def _load(study_dir: Path):
    try:
        return load_study(study_dir)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_INPUT)


@click.command(epilog="""\b
Examples:
  hitkit analyze --study my-study
  hitkit analyze --study my-study --include-excluded     sensitivity run
  hitkit analyze --study my-study --compare              LOO over model variants
  hitkit analyze --study my-study --sampler pymc --draws 2000
\b
Exit status: 0 = the fit passed the gate and results were written;
2 = bad study.toml or responses.parquet; 3 = the convergence gate failed.
""")
@STUDY_OPTION
@click.option("--include-excluded", is_flag=True,
              help="Keep rows excluded by [quality] rules (a sensitivity run; written to "
                   "analysis/sensitivity-include-excluded/).")
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
def analyze(study_dir: Path, include_excluded: bool, sampler: str | None, draws: int | None,
            tune: int | None, chains: int | None, seed: int | None, compare: bool,
            quiet: bool) -> None:
    """Fit the hierarchical model of human alignment to responses.parquet.

    One Bernoulli row per response, p = chance + (1 - chance - lapse) * logistic(eta),
    with zero-sum factor effects and participant, image and model effects. The fit
    must pass the convergence gate (R-hat <= 1.01, bulk and tail ESS >= 400, no
    divergences, BFMI >= 0.3) before any effect is written. Outputs go to the study's
    analysis/ folder: posterior.nc, effects.csv/.md, alignment.csv, sds.csv, ppc.csv,
    crosscheck.csv, diagnostics.csv, summary.json (and compare.csv).
    """
    from analysis.analyze import run_analysis
    from analysis.data import AnalysisDataError
    from analysis.fit import SamplerError, SampleSettings

    study = _load(study_dir)
    settings = SampleSettings.from_config(
        study.config.analysis, sampler=sampler, draws=draws, tune=tune, chains=chains,
        seed=seed, progress=not quiet)
    try:
        result = run_analysis(study, include_excluded=include_excluded, compare=compare,
                              settings=settings, echo=click.echo)
    except (AnalysisDataError, SamplerError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INPUT)
    if not result.gate.passed:
        click.echo(
            f"\nThe fit did not pass the convergence gate; no effects were written. "
            f"Diagnostics: {result.folder / 'diagnostics.csv'}", err=True)
        sys.exit(EXIT_GATE)


@click.command(epilog="""\b
Examples:
  hitkit plan --study my-study --contrast training=adversarial:standard --width 0.5
  hitkit plan --study my-study --contrast architecture=vit:resnet --width 0.4 \\
              --target model-population --assurance 0.9 --simulations 50
""")
@STUDY_OPTION
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
def plan(study_dir: Path, contrast: str, width: float, assurance: float, target: str | None,
         simulations: int, seed: int) -> None:
    """Find the participants, trials and models per cell a contrast's precision needs.

    Simulates candidate designs (more participants, more models per cell) from the
    analysis model with the study's SDs (from analysis/posterior.nc when it exists)
    and reports, for each, the 94 % interval width of the contrast, the assurance of
    reaching --width, and the cost on the study's platform with its fees.
    """
    from tqdm import tqdm

    from analysis.planning import PlanError, format_report, plan_precision

    study = _load(study_dir)
    bar = tqdm(total=None, desc="simulating designs", unit="design", leave=False,
               file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        report = plan_precision(study, contrast, width, assurance=assurance, reps=simulations,
                                target=target, seed=seed, progress=progress)
    except PlanError as exc:
        bar.close()
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_INPUT)
    bar.close()
    click.echo(format_report(report, study))
