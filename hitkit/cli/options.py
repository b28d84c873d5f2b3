"""What every stage command shares: the --study option and opening a study or its ledger.

A bad study.toml prints the config error (it already names file and field) and exits
with status 2, the same for every command.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hitkit.platforms import KINDS
from hitkit.study.config import Study, load_study
from hitkit.study.config_errors import ConfigError
from hitkit.survey.ledger import Ledger, LedgerError

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


# ------------------------------------------------------------ platform commands

platform_option = click.option(
    "--platform", type=click.Choice(KINDS), default=None,
    help="Where participants come from (default: [platform].kind).")
production_option = click.option(
    "--production", is_flag=True, help="mturk: the production endpoint (real money).")
endpoint_option = click.option(
    "--endpoint-url", default=None,
    help="mturk: an MTurk-compatible endpoint; prolific: the API base URL (testing).")


def platform_options(production: bool = False, yes: bool = False,
                     endpoint_url: str | None = None, force: bool = False,
                     image_base_url: str | None = None, open_link: bool = False,
                     cap: int | None = None) -> dict:
    """open_platform() options from command-line flags; each platform takes those it knows
    (see hitkit.platforms.PLATFORMS) and ignores the rest."""
    return {"production": production, "yes": yes, "endpoint_url": endpoint_url, "force": force,
            "image_base_url": image_base_url, "open_link": open_link, "cap": cap,
            "confirm": lambda q: click.confirm(q, default=False)}


def platform_call(kind: str, step, *args, hint: str = "", **kwargs):
    """Run a hitkit.platforms step; its PlatformError becomes a clean command-line error
    (with `hint`, e.g. that re-running is safe)."""
    from hitkit.platforms import PlatformError

    try:
        return step(*args, **kwargs)
    except PlatformError as exc:
        # messages name hitkit's IDs, never a participant's (see hitkit.platforms.base)
        raise click.ClickException(f"{kind}: {exc}{hint}") from None
