"""What every stage command shares: the --study option and opening a study or its ledger.

A bad study.toml prints the config error (it already names file and field) and exits
with status 2, the same for every command.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hitkit.config import ConfigError, Study, load_study
from hitkit.ledger import Ledger, LedgerError

EXIT_BAD_INPUT = 2

study_option = click.option(
    "--study", "study_dir", default=".", show_default=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Study folder holding study.toml.")


def open_study(study_dir: Path) -> Study:
    """The study in a folder (or a study.toml file); a bad one prints its errors, exits 2."""
    try:
        return load_study(study_dir)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_BAD_INPUT)


def open_ledger(study: Study) -> Ledger:
    try:
        return Ledger.for_study(study.root)
    except LedgerError as exc:
        raise click.ClickException(str(exc)) from None
