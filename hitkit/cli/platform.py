"""`hitkit pay`, `hitkit import-mturk`, `hitkit export-images` and `hitkit expire`."""

from __future__ import annotations

import csv
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path

import click

from hitkit.cli.options import (
    endpoint_option,
    open_ledger,
    open_study,
    platform_call,
    platform_option,
    platform_options,
    production_option,
    study_option,
)
from hitkit.platforms.base import Bonus, PlatformError
from hitkit.study.fees import to_major_units, to_minor_units


def amount_minor(text: str) -> int | None:
    """An amount as typed (0.50, in the study currency) in minor units; None if it is not one."""
    try:
        amount = Decimal(text)
    except InvalidOperation:
        return None
    return to_minor_units(amount) if amount.is_finite() else None


def read_bonus_csv(path: Path) -> list[Bonus]:
    out = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not {"assignment_id", "amount", "reason"} <= set(reader.fieldnames or []):
            raise click.BadParameter(f"{path}: needs the columns assignment_id, amount, reason",
                                     param_hint="--bonus-csv")
        for i, row in enumerate(reader, start=2):
            amount = amount_minor(row["amount"])
            if amount is None:
                raise click.BadParameter(f"{path} line {i}: amount {row['amount']!r} is not a number",
                                         param_hint="--bonus-csv")
            if not row["reason"].strip():
                raise click.BadParameter(f"{path} line {i}: empty reason", param_hint="--bonus-csv")
            out.append(Bonus(row["assignment_id"].strip(), amount, row["reason"].strip()))
    return out


@click.command(epilog="""\b
Examples:
  hitkit review --study my-study && hitkit pay --study my-study
  hitkit pay --study my-study --bonus 0.50 --bonus-reason "Thank you: bonus for accuracy"
  hitkit pay --study my-study --bonus-csv bonuses.csv --yes
  hitkit pay --study my-study --platform mturk --production --yes
""")
@study_option
@platform_option
@click.option("--bonus", "bonus_amount", type=str, default=None,
              help="Pay this bonus (in the study currency) to every approved assignment.")
@click.option("--bonus-reason", default=None, help="Shown to participants; required with --bonus.")
@click.option("--bonus-csv", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=None, help="CSV with assignment_id, amount, reason.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation before paying.")
@click.option("--dry-run", is_flag=True, help="Show what would be approved, rejected and paid.")
@click.option("--settle", "settle", multiple=True, metavar="PAYMENT=paid|unpaid",
              help="Record what the platform's site shows for a payment `hitkit pay` reported "
                   "as unresolved (paid: never sent again; unpaid: the next run may send it).")
@production_option
@endpoint_option
def pay(study_dir: Path, platform: str | None, bonus_amount: str | None, bonus_reason: str | None,
        bonus_csv: Path | None, yes: bool, dry_run: bool, settle: tuple[str, ...],
        production: bool, endpoint_url: str | None) -> None:
    """Approve, reject and pay bonuses as `hitkit review` decided; exactly once.

    Approves every reviewed assignment except those the pre-registered fraud
    rule rejects (rejected with [quality].rejection_message). Only submissions the
    platform confirmed (`hitkit collect`) are paid. Every call is
    journaled in the ledger first: re-running after an error or a crash
    finishes the job and never pays twice.
    """
    from hitkit.platforms import open_platform

    study = open_study(study_dir)
    if settle:
        from hitkit.platforms.records import settle_unresolved

        with open_ledger(study) as ledger:
            for item in settle:
                payment_id, _, verdict = item.partition("=")
                if verdict not in ("paid", "unpaid"):
                    raise click.BadParameter(f"{item!r}: write PAYMENT=paid or PAYMENT=unpaid",
                                             param_hint="--settle")
                try:
                    recorded = settle_unresolved(ledger, payment_id.strip(), verdict == "paid",
                                                 "hitkit pay --settle")
                except PlatformError as exc:
                    raise click.ClickException(str(exc)) from None
                click.echo(f"{payment_id.strip()}: recorded as {recorded}")
        return
    kind = platform or study.config.platform.kind
    bonuses: list[Bonus] = []
    if bonus_amount is not None and not bonus_reason:
        raise click.BadParameter("give --bonus-reason with --bonus", param_hint="--bonus-reason")
    with open_ledger(study) as ledger:
        rows = ledger.query(
            "SELECT a.assignment_id, a.state, r.reject, r.message FROM assignments a"
            " LEFT JOIN reviews r ON r.review_id = (SELECT MAX(review_id) FROM reviews"
            " WHERE assignment_id = a.assignment_id) WHERE a.platform = ?"
            " AND a.state IN ('submitted', 'approved', 'rejected')"
            " AND a.confirmation = 'confirmed'", (kind,))  # a claim is never paid
        unreviewed = [r["assignment_id"] for r in rows if r["state"] == "submitted" and r["reject"] is None]
        if unreviewed:
            raise click.ClickException(f"{len(unreviewed)} submitted assignment(s) not reviewed yet "
                                       "(first: {}); run `hitkit review` first".format(unreviewed[0]))
        todo = [r for r in rows if r["state"] == "submitted"]
        approve = [r["assignment_id"] for r in todo if not r["reject"]]
        reject = [r["assignment_id"] for r in todo if r["reject"]]
        approved_all = [r["assignment_id"] for r in rows if r["state"] == "approved"] + approve
        if bonus_amount is not None:
            amount = amount_minor(bonus_amount)
            if amount is None:
                raise click.BadParameter(f"{bonus_amount!r} is not an amount", param_hint="--bonus")
            bonuses += [Bonus(a, amount, bonus_reason) for a in approved_all]
        if bonus_csv is not None:
            bonuses += read_bonus_csv(bonus_csv)
        total_minor = sum(b.amount_minor for b in bonuses)
        currency = study.config.platform.currency
        click.echo(f"{kind}: approve {len(approve)}, reject {len(reject)}, "
                   f"{len(bonuses)} bonus(es) totalling {to_major_units(total_minor):.2f} "
                   f"{currency} (before fees)")
        if dry_run or not (approve or reject or bonuses):
            return
        if not yes and not click.confirm("Go ahead?", default=False):
            raise click.ClickException("not confirmed; nothing sent")
        try:
            p = open_platform(study, kind, ledger,
                              **platform_options(production, yes, endpoint_url))
            failures = {}
            for note in getattr(p, "notes", []):
                click.echo(f"note: {note}", err=True)
            if approve:
                s = p.approve(approve)
                click.echo(f"approved {len(s.done)} (already {len(s.already)})")
                failures.update(s.failed)
            if reject:
                message = next((r["message"] for r in todo if r["reject"] and r["message"]),
                               study.config.quality.rejection_message)
                s = p.reject(reject, message)
                click.echo(f"rejected {len(s.done)} (already {len(s.already)})")
                failures.update(s.failed)
            if bonuses:
                s = p.bonus(bonuses)
                click.echo(f"bonuses paid {len(s.done)} (already paid {len(s.already)})")
                failures.update(s.failed)
        except PlatformError as exc:
            raise click.ClickException(f"{exc} (re-run `hitkit pay` to continue safely)") from None
    for subject, why in failures.items():
        click.echo(f"  not done: {subject}: {why}", err=True)
    if failures:
        sys.exit(1)


@click.command("import-mturk", epilog="""\b
Examples:
  hitkit import-mturk --study my-study Batch_4711_batch_results.csv
  hitkit import-mturk --study my-study assignments.xml
  hitkit import-mturk --study my-study list_assignments.json assignments.jsonl
""")
@study_option
@click.argument("files", nargs=-1, required=True,
                type=click.Path(path_type=Path, dir_okay=False, exists=True))
def import_mturk(study_dir: Path, files: tuple[Path, ...]) -> None:
    """Import MTurk results into the ledger: the requester site's batch-results CSV, API
    assignment XML, or boto3 ListAssignmentsForHIT JSON / one Assignment per line (JSONL).

    Run `hitkit design` for the study first: answers are matched to its trials.
    Worker IDs stay in the ledger; exports carry pseudonyms.
    """
    from hitkit.platforms.mturk.importer import import_mturk as run

    study = open_study(study_dir)
    failed = False
    with open_ledger(study) as ledger:
        for path in files:
            try:
                result = run(ledger, path, to_minor_units(study.config.survey.reward))
            except PlatformError as exc:
                raise click.ClickException(str(exc)) from None
            click.echo(f"{path.name}: {result.read} assignment(s) read, {result.stored} stored, "
                       f"{result.already} already in the ledger, {len(result.problems)} skipped")
            for problem in result.problems[:20]:
                click.echo(f"  skipped {problem}", err=True)
            failed |= bool(result.problems) and not result.stored and not result.already
    if failed:
        sys.exit(1)


@click.command("export-images", epilog="""\b
Examples:
  hitkit export-images --study my-study --to s3://my-bucket/study-1/img
  hitkit publish --study my-study --platform mturk --image-base-url https://my-bucket.s3.amazonaws.com/study-1/img
  hitkit export-images --study my-study --to public-images/   (then upload the folder)
""")
@study_option
@click.option("--to", "destination", required=True,
              help="A folder, or s3://bucket/prefix (boto3's credentials), to write the images to.")
def export_images(study_dir: Path, destination: str) -> None:
    """Write the open HITs' images for hosting: one file per slot, under keyed names.

    For MTurk HITs too large to inline their images (MTurk's 65,535-byte Question
    limit): host what this writes and publish with --image-base-url. Each place an
    image is shown gets its own file and encoding, so neither a URL nor a file's size
    or hash tells which slots show the same image. Run it after `hitkit design`.
    """
    from hitkit.platforms.mturk.platform import export_images as run
    from hitkit.study.s3 import S3Error

    study = open_study(study_dir)
    with open_ledger(study) as ledger:
        try:
            written = run(study, ledger, destination)
        except (PlatformError, S3Error, OSError) as exc:
            raise click.ClickException(str(exc)) from None
    if not written:
        raise click.ClickException("no open HITs: run `hitkit design` first")
    click.echo(f"{written} image file(s) written to {destination}; serve them over https:// and "
               "pass that address to `hitkit publish --platform mturk --image-base-url`")


@click.command(epilog="""\b
Examples:
  hitkit expire --study my-study --platform prolific --yes    stop the Prolific study
  hitkit expire --study my-study --platform mturk             expire the batch's HITs
""")
@study_option
@platform_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@production_option
@endpoint_option
def expire(study_dir: Path, platform: str | None, yes: bool, production: bool,
           endpoint_url: str | None) -> None:
    """Stop recruiting: stop the Prolific study, expire the MTurk HITs, close the batch.

    Work already submitted stays collectable: run `hitkit collect` and `hitkit pay`
    afterwards as usual. Safe to re-run.
    """
    from hitkit.platforms import expire as run

    study = open_study(study_dir)
    kind = platform or study.config.platform.kind
    if not yes and not click.confirm(f"Stop recruiting on {kind}?", default=False):
        raise click.ClickException("not confirmed; nothing sent")
    with open_ledger(study) as ledger:
        stopped = platform_call(kind, run, study, kind, ledger=ledger,
                                hint=" (re-run `hitkit expire` to continue safely)",
                                **platform_options(production, True, endpoint_url))
    click.echo(f"{kind}: batch closed; stopped {len(stopped)}: " + (", ".join(stopped) or "nothing"))


COMMANDS = (pay, import_mturk, expire)
