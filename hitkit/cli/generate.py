"""The generation stage's commands: `hitkit generate` and `hitkit proxy`."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from generation.archs import UnknownArchError
from generation.checkpoints import CheckpointError
from generation.distances import MissingWeightsError
from generation.network import LayerError
from generation.targets import TargetError
from hitkit.cli.options import open_study, study_option
from hitkit.study.config_errors import ConfigError
from hitkit.study.store import StoreError
from hitkit.study.tables import TableError, read_table

KNOWN_ERRORS = (ConfigError, CheckpointError, LayerError, MissingWeightsError, UnknownArchError,
                StoreError, TargetError, TableError)


@click.command(epilog="""\b
Examples:
  hitkit generate --study my-study            train missing demo models, make every IRI
  hitkit generate --study my-study --device cuda:0
  torchrun --nproc-per-node 4 -m hitkit.cli generate --study my-study --device cuda
  hitkit generate --study my-study --replace-stale   after retraining a checkpoint
A killed run resumes where it stopped when started again.
""")
@study_option
@click.option("--device", default="auto", show_default=True,
              help="cpu, cuda (under torchrun: GPU LOCAL_RANK), cuda:N (one process only), or "
                   "auto (cuda when present, else cpu).")
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
@click.option("--replace-stale", is_flag=True,
              help="Remake the IRIs whose checkpoint file changed since they were made "
                   "(without it such a run stops and lists them).")
@click.option("--trust-checkpoints", is_flag=True,
              help="Unpickle every checkpoint in full (may run code in the file); per model: "
                   "`trust = true` in study.toml.")
def generate(study_dir: Path, device: str, progress: bool, replace_stale: bool,
             trust_checkpoints: bool) -> None:
    """Make the study's IRIs and write manifest.parquet.

    Trains demo models that have a [models.train] table and no checkpoint yet,
    plans models × targets × seeds × losses, optimises each batch of targets ×
    seeds, stores lossless PNGs (folder or S3) and writes one manifest row per IRI.
    Under torchrun each rank makes its share; rank 0 writes the manifest.
    """
    from generation.run import GenerationError, run_generation

    study = open_study(study_dir)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            summary = run_generation(study, device, progress=progress,
                                     log=lambda m: click.echo(m, err=True),
                                     trust_checkpoints=trust_checkpoints,
                                     replace_stale=replace_stale)
    except (*KNOWN_ERRORS, GenerationError) as exc:
        raise click.ClickException(str(exc)) from None
    if summary.manifest is not None:
        replaced = f", {summary.replaced} stale IRI(s) replaced" if summary.replaced else ""
        click.echo(f"{summary.manifest}: {summary.iris} IRIs "
                   f"({summary.made} batch(es) made now, {summary.done_before} before{replaced})")


@click.command(epilog="""\b
Examples:
  hitkit proxy --study my-study
  hitkit proxy --study my-study --resamples 5000 --level 0.9
""")
@study_option
@click.option("--resamples", default=2000, show_default=True, type=click.IntRange(100),
              help="Bootstrap resamples (of targets) for the interval.")
@click.option("--level", default=0.95, show_default=True, type=click.FloatRange(0.5, 0.999),
              help="Interval coverage.")
def proxy(study_dir: Path, resamples: int, level: float) -> None:
    """Score IRIs with the machine 2AFC stand-in and write proxy.csv.

    An IRI is aligned when it is at least as close to its target as to its seed
    under [generation].distance_metric. Prints alignment per model and loss with
    a bootstrap interval over targets, the mean per factor level, and whether
    adversarially trained models come out more aligned (the paper's direction).
    """
    from generation.proxy import (
        factor_means,
        paper_direction,
        proxy_alignment,
        write_proxy,
    )
    from hitkit.study.manifest import MANIFEST, MANIFEST_FILE
    from hitkit.study.proxy import PROXY_FILE

    study = open_study(study_dir)
    factors = study.config.analysis.factors
    try:
        manifest = read_table(study.root / MANIFEST_FILE, MANIFEST, factors)
    except TableError as exc:
        raise click.ClickException(
            f"{exc} (run `hitkit generate --study {study_dir}` first)") from None
    rows = proxy_alignment(manifest, factors, resamples, level, study.config.study.seed)
    path = write_proxy(rows, study.root / PROXY_FILE, factors)
    width = max(len(r.model) for r in rows)
    pct = int(round(level * 100))
    click.echo(f"{'model':<{width}}  loss            aligned  {pct}% interval   margin    n"
               "   median error")
    for r in rows:
        click.echo(f"{r.model:<{width}}  {r.loss:<14}  {r.alignment:6.2f}   "
                   f"[{r.ci_low:.2f}, {r.ci_high:.2f}]  {r.mean_margin:+.3f}  {r.n_iris:3d}"
                   f"   {r.median_rep_error:.4f}")
    means = factor_means(rows, factors)
    margins = factor_means(rows, factors, "mean_margin")
    for factor, levels in means.items():
        click.echo(f"{factor}: aligned " + ", ".join(f"{k} {v:.2f}" for k, v in levels.items())
                   + "; margin " + ", ".join(f"{k} {v:+.3f}" for k, v in margins[factor].items()))
    for verdict in (paper_direction(means), paper_direction(margins, "margin")):
        if verdict:
            click.echo(verdict)
    click.echo(f"{path}: written (metric {rows[0].metric if rows else '-'})")
