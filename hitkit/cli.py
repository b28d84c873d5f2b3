"""`hitkit`: the one command for every stage of a study."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hitkit import __version__
from hitkit.config import ConfigError, find_study_file, load_study
from hitkit.plan import check_paths, format_plan, plan_study

EPILOG = """\b
Examples:
  hitkit validate data/examples/demo.toml     check a study file and print its plan
  hitkit validate --study studies/cifar10     the same for a study folder
Every command takes --study DIR (default: the current folder).
"""


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hitkit")
def cli() -> None:
    """Measure whether a network's learned invariances match human perception.

    A study is a folder with a study.toml; each command reads and writes files in it.
    """


@cli.command(
    epilog="""\b
Examples:
  hitkit validate data/examples/demo.toml
  hitkit validate --study my-study
  hitkit validate --config-only data/examples/paper-cifar10.toml
"""
)
@click.argument("file", required=False, type=click.Path(path_type=Path))
@click.option(
    "--study",
    "study_dir",
    type=click.Path(path_type=Path),
    help="Study folder holding study.toml (default: the current folder).",
)
@click.option(
    "--config-only",
    is_flag=True,
    help="Check study.toml alone, not the checkpoints and folders it names.",
)
def validate(file: Path | None, study_dir: Path | None, config_only: bool) -> None:
    """Check a study.toml and the files it names, and print the study's plan.

    The plan gives the numbers of models, targets, seeds, losses and IRIs, the
    generation work in image-steps, the trials, HITs and participants, and the
    estimated cost on the chosen platform with its fees.
    """
    if file is not None and study_dir is not None:
        raise click.UsageError("give either FILE or --study DIR, not both")
    target = file if file is not None else study_dir
    try:
        study = load_study(target)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    errors, notes = ([], []) if config_only else check_paths(study)
    click.echo(format_plan(study, plan_study(study.config), notes))
    if errors:
        click.echo("", err=True)
        for error in errors:
            click.echo(f"{study.path}: {error}", err=True)
        sys.exit(2)
    click.echo(f"\n{find_study_file(target)}: valid")


def main() -> None:
    cli(prog_name="hitkit")


if __name__ == "__main__":
    main()
