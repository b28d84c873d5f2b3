"""`hitkit`: the one command for every stage of a study."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from hitkit import __version__
from hitkit.cli.options import EXIT_BAD_INPUT, open_study
from hitkit.study.config import find_study_file
from hitkit.study.size import check_paths, format_size, study_size

EPILOG = """\b
Examples:
  hitkit demo                                 every stage on the demo study, on a CPU
  hitkit validate data/examples/demo.toml     check a study file and print its plan
  hitkit validate --study studies/cifar10     the same for a study folder
  hitkit generate --study studies/cifar10     then design, publish, collect, review, export
  hitkit analyze --study studies/cifar10      then figures and report
Every command takes --study DIR (default: the current folder).
"""


# Commands of the later stages, imported only when run: `hitkit --help` and
# `hitkit validate` must not pay for importing torch and PyMC.
# name -> (module, attribute, one-line help shown by `hitkit --help`)
LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "generate": ("hitkit.cli.generate", "generate", "Make the study's IRIs and write manifest.parquet."),
    "proxy": ("hitkit.cli.generate", "proxy", "Score IRIs with the machine 2AFC stand-in and write proxy.csv."),
    "design": ("hitkit.cli.survey", "design", "Make the trials and HITs: trials.parquet and the HITs in ledger.sqlite."),
    "serve": ("hitkit.cli.survey", "serve", "Serve the participant web app and its API (Starlette under uvicorn)."),
    "publish": ("hitkit.cli.survey", "publish", "Open the study to participants: a batch in the ledger and its links."),
    "collect": ("hitkit.cli.survey", "collect", "Collect submissions from the platform into the ledger and report progress."),
    "status": ("hitkit.cli.survey", "status", "Show HITs and assignments by state (and the platform's view of its open batch)."),
    "simulate": ("hitkit.cli.survey", "simulate", "Take the survey with simulated participants, over the same HTTP API as a browser."),
    "review": ("hitkit.cli.survey", "review", "Score every submitted assignment by the [quality] rules; recommend what to do."),
    "export": ("hitkit.cli.survey", "export", "Write responses.parquet: one row per response, pseudonymised, with factors."),
    "analyze": ("hitkit.cli.analysis", "analyze", "Fit the hierarchical model of human alignment to responses.parquet."),
    "plan": ("hitkit.cli.analysis", "plan", "Find the participants, trials and models per cell a contrast's precision needs."),
    "figures": ("hitkit.cli.analysis", "figures", "Draw the paper's figures from the stored analysis, as PDF and PNG in figures/."),
    "report": ("hitkit.cli.analysis", "report", "Write report.html: the study's results on one self-contained page."),
    "pay": ("hitkit.cli.platform", "pay", "Approve, reject and pay bonuses as `hitkit review` decided; exactly once."),
    "import-mturk": ("hitkit.cli.platform", "import_mturk", "Import MTurk results (batch-results CSV, assignment XML, boto3 JSON/JSONL) into the ledger."),
    "export-images": ("hitkit.cli.platform", "export_images", "Write the open HITs' images for hosting, one keyed file per slot (MTurk --image-base-url)."),
    "expire": ("hitkit.cli.platform", "expire", "Stop recruiting: stop the Prolific study, expire the MTurk HITs, close the batch."),
    "demo": ("hitkit.demo.run", "demo", "Run every stage of a study on the demo study, on a laptop CPU in minutes."),
}


class LazyGroup(click.Group):
    """A click group whose stage commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in LAZY_COMMANDS:
            module, attribute, _ = LAZY_COMMANDS[name]
            return getattr(importlib.import_module(module), attribute)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in LAZY_COMMANDS:
                rows.append((name, LAZY_COMMANDS[name][2]))
            else:
                rows.append((name, self.commands[name].get_short_help_str(limit=80)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"]},
)
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
    study = open_study(target)
    errors, notes = ([], []) if config_only else check_paths(study)
    click.echo(format_size(study, study_size(study.config), notes))
    click.echo(guesser_line(study.config))
    if errors:
        click.echo("", err=True)
        for error in errors:
            click.echo(f"{study.path}: {error}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    click.echo(f"\n{find_study_file(target)}: valid")


def guesser_line(config) -> str:
    """How often random answers pass the [quality] rules, with a warning above the limit."""
    from hitkit.survey.guessing import GUESSER_PASS_LIMIT, guesser_pass_rate

    rate = guesser_pass_rate(config.survey, config.quality)
    line = (f"quality rules: a participant answering at random passes {rate:.1%} of the time "
            f"({config.survey.catch_per_hit} catch trials, min_catch_accuracy "
            f"{config.quality.min_catch_accuracy:g})")
    if rate > GUESSER_PASS_LIMIT:
        line += (f"\nwarning: above {GUESSER_PASS_LIMIT:.0%}: raise [survey].catch_per_hit or "
                 "[quality].min_catch_accuracy (docs/survey.md, \"Threat model\")")
    return line


def main() -> None:
    cli(prog_name="hitkit")


if __name__ == "__main__":
    main()
