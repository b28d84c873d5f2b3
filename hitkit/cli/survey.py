"""The survey's commands: design, serve, publish, collect, status, simulate, review, export."""

from __future__ import annotations

import sys
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
from hitkit.platforms import KINDS
from hitkit.study.config import Study
from hitkit.study.manifest import MANIFEST, MANIFEST_FILE
from hitkit.study.tables import TableError, read_table, write_table
from hitkit.study.trials import TRIALS_FILE
from hitkit.survey.design import DesignError, make_design
from hitkit.survey.hits import HitError, store_design
from hitkit.survey.ledger import Ledger, LedgerError

# ------------------------------------------------------------------ design


@click.command(epilog="""\b
Examples:
  hitkit design --study my-study
  hitkit design --study my-study --replace   retire a design that already has participants
""")
@study_option
@click.option("--replace", is_flag=True,
              help="Retire the ledger's current design even if it already has assignments.")
def design(study_dir: Path, replace: bool) -> None:
    """Make the trials and HITs: trials.parquet and the HITs in ledger.sqlite.

    Reads manifest.parquet (written by `hitkit generate`). The answer key is
    kept in trials.parquet and the ledger only; it is never sent to a browser.
    """
    study = open_study(study_dir)
    try:
        manifest = read_table(study.root / MANIFEST_FILE, MANIFEST)
        result = make_design(manifest, study.config)
    except (TableError, DesignError) as exc:
        raise click.ClickException(str(exc)) from None
    missing = missing_images(study, manifest, result)
    if missing:
        raise click.ClickException(
            f"{len(missing)} image file(s) the design shows are missing, e.g. "
            + ", ".join(missing[:3]) + " (manifest.parquet names them: re-run `hitkit generate`)")
    write_table(result.table(), study.root / TRIALS_FILE)
    with open_ledger(study) as ledger:
        try:
            stored = store_design(ledger, result, study.config.survey.responses_per_iri, replace)
        except HitError as exc:
            raise click.ClickException(str(exc)) from None
    trials = result.trials
    kinds = {k: sum(t.kind == k for t in trials) for k in ("main", "catch", "repeat")}
    sizes = sorted({len(h.trials) for h in result.hits})
    click.echo(f"design {result.design_id}: {len(result.hits)} HITs, {len(trials)} trials "
               f"({kinds['main']} main, {kinds['catch']} catch, {kinds['repeat']} repeats), "
               f"{'-'.join(map(str, (sizes[0], sizes[-1]))) if len(sizes) > 1 else sizes[0]} "
               "trials per HIT")
    click.echo(f"wrote {study.root / TRIALS_FILE}")
    if stored.created:
        click.echo(f"ledger: stored {len(result.hits)} HITs × "
                   f"{study.config.survey.responses_per_iri} places")
        for old in stored.retired:
            click.echo(f"ledger: retired the open HITs of design {old}")
    else:
        click.echo("ledger: this design was already stored (unchanged)")
    for note in result.notes:
        click.echo(f"note: {note}", err=True)


def missing_images(study: Study, manifest, result) -> list[str]:
    """Local image files the design shows that do not exist (s3:// ones are not checked)."""
    from hitkit.study.images import ImageError, ImageStore, image_uris

    try:
        store = ImageStore(study.root, image_uris(manifest))
    except ImageError as exc:
        raise click.ClickException(str(exc)) from None
    shown = {i for t in result.trials for i in (*t.query, *t.options)}
    shown |= {i for h in result.hits for i in (*h.practice["query"], *h.practice["options"])}
    missing = []
    for image_id in sorted(shown):
        path = store.path(image_id) if image_id in store.uris else None
        if image_id not in store.uris:
            missing.append(f"{image_id} (no URI)")
        elif path is not None and not path.is_file():
            missing.append(str(path))
    return missing


# ------------------------------------------------------------------- serve


@click.command(epilog="""\b
Examples:
  hitkit serve --study my-study
  hitkit serve --study my-study --host 0.0.0.0 --port 8080
Open http://127.0.0.1:8000/?preview=1 to see the task without taking part.
""")
@study_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: any free port).")
@click.option("--rate-limit/--no-rate-limit", default=True, show_default=True,
              help="Limit assignment starts and rejected submissions per client address, "
                   "loopback included (docs/survey.md, \"Rate limits\"). Turn off only for a "
                   "load test with `hitkit simulate --url`.")
def serve(study_dir: Path, host: str, port: int, rate_limit: bool) -> None:
    """Serve the participant web app and its API (Starlette under uvicorn)."""
    from hitkit.platforms import app_callbacks
    from hitkit.survey.web.app import create_app
    from hitkit.survey.web.guard import RateLimits
    from hitkit.survey.web.serving import serve as run

    study = open_study(study_dir)
    try:
        ledger = Ledger.for_study(study.root)
        # a participant behind a reverse proxy on this host is seen as loopback unless the
        # proxy sets X-Forwarded-For: limits apply to loopback too, so none slips through
        limits = RateLimits(exempt_loopback=False, enabled=rate_limit)
        app = create_app(study, ledger, **app_callbacks(study, ledger), rate_limits=limits)
    except (TableError, LedgerError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"serving study {study.config.study.id!r} on http://{host}:{port} "
               f"(preview: http://{host}:{port}/?preview=1); Ctrl-C stops")
    run(app, host, port)


# ----------------------------------------------------------------- publish


@click.command(epilog="""\b
Examples:
  hitkit publish --study my-study --platform local            one link per planned participant
  hitkit publish --study my-study --platform local --open-link --cap 30
  hitkit publish --study my-study --platform prolific         draft study, then published
  hitkit publish --study my-study --platform prolific --test  a Prolific test study only
  hitkit publish --study my-study --platform prolific --add-places 10
  hitkit publish --study my-study --platform mturk            sandbox HITs
  hitkit publish --study my-study --platform mturk --production --yes
""")
@study_option
@platform_option
@click.option("--open-link", is_flag=True, help="local: one shared link instead of one per participant.")
@click.option("--cap", type=click.IntRange(1), default=None,
              help="local: links to make, or the open link's number of uses (default: the plan's places).")
@click.option("--new", is_flag=True, help="Make a new batch even if one is open.")
@click.option("--force", is_flag=True,
              help="prolific: publish even if the reward is below [platform.prolific].minimum_hourly.")
@production_option
@click.option("--yes", is_flag=True, help="mturk: do not ask before publishing to production.")
@endpoint_option
@click.option("--image-base-url", default=None,
              help="mturk HTMLQuestion: the https:// base URL where `export_images` output is hosted "
                   "(default: small images inlined).")
@click.option("--add-places", type=click.IntRange(1), default=None,
              help="prolific: add this many places to the open batch's study (a completed study "
                   "recruits again).")
@click.option("--test", "test_study", is_flag=True,
              help="prolific: create the draft and a Prolific test study for the workspace's test "
                   "participants (where the account has the feature); nothing is published.")
def publish(study_dir: Path, platform: str | None, open_link: bool, cap: int | None,
            new: bool, force: bool, production: bool, yes: bool, endpoint_url: str | None,
            image_base_url: str | None, add_places: int | None = None,
            test_study: bool = False) -> None:
    """Open the study to participants: a batch in the ledger and its links.

    local: participant links (CSV and terminal); prolific: a draft study, then
    published; mturk: a HIT type and one HIT per hitkit HIT (sandbox unless
    --production). Safe to re-run: every platform call is journaled in the ledger first, so a
    re-run after an error finishes the job and never creates a second study or HIT.
    """
    import hitkit.platforms as platforms

    study = open_study(study_dir)
    platform = platform or study.config.platform.kind
    options = platform_options(production, yes, endpoint_url, force, image_base_url, open_link, cap)
    if (add_places or test_study) and platform != "prolific":
        raise click.UsageError("--add-places and --test are for --platform prolific")
    with open_ledger(study) as ledger:
        if add_places:
            total = platform_call(platform, lambda: platforms.open_platform(
                study, platform, ledger, **options).add_places(add_places))
            click.echo(f"{platform}: the open batch's study now has {total} place(s)")
            return
        if test_study:
            result = platform_call(platform, lambda: platforms.open_platform(
                study, platform, ledger, **options).publish(new=new, test=True))
        else:
            result = platform_call(platform, platforms.publish, study, platform, ledger=ledger,
                                   new=new, **options)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    state = "created" if result.created else "already open (use --new for another)"
    if result.links_file is not None:  # participant links we hand out ourselves
        click.echo(f"batch {result.batch_id} {state}: {result.places} place(s), "
                   f"{len(result.urls)} link(s) in {result.links_file}")
        for url, uses in zip(result.urls, result.caps, strict=True):
            click.echo(url + (f"   (open link, {uses} uses)" if uses > 1 else ""))
        return
    click.echo(f"batch {result.batch_id} {state} on {platform}: {result.places} place(s), "
               f"{platform} ID {result.external_id or '–'}")
    for url in result.urls:
        click.echo(url)


# ------------------------------------------------------ collect and status


@click.command(epilog="""\b
Examples:
  hitkit collect --study my-study
  hitkit collect --study my-study --platform prolific
  hitkit collect --study my-study --platform mturk --endpoint-url http://127.0.0.1:5000
""")
@study_option
@platform_option
@endpoint_option
@production_option
def collect(study_dir: Path, platform: str | None, endpoint_url: str | None,
            production: bool) -> None:
    """Collect submissions from the platform into the ledger and report progress.

    prolific/mturk: fetch the platform's submissions, match them to the
    assignments in the ledger (MTurk: store the answers) and report what awaits
    review. Safe to re-run.
    """
    import hitkit.platforms as platforms

    study = open_study(study_dir)
    platform = platform or study.config.platform.kind
    # collecting spends nothing: production needs no confirmation here
    options = platform_options(production, True, endpoint_url)
    with open_ledger(study) as ledger:
        result = platform_call(platform, platforms.collect, study, platform, ledger=ledger, **options)
    if result.progress is not None:  # the ledger is the platform: its progress is the news
        p = result.progress
        share = p.submitted / p.places if p.places else 0.0
        click.echo(f"{p.submitted} of {p.places} places submitted ({share:.0%}), "
                   f"{p.started} in progress, {p.responses} trial responses stored")
        if p.last_submitted_at:
            click.echo(f"last submission: {p.last_submitted_at}")
        if p.places and p.submitted >= p.places:
            click.echo("complete: run `hitkit review`, then `hitkit export`")
        return
    click.echo(f"{platform}: {result.new} new submission(s) stored, "
               f"{len(result.awaiting_review)} awaiting review, {result.approved} approved, "
               f"{result.rejected} rejected, {result.pending} pending")
    for problem in result.problems:
        click.echo(f"  problem: {problem}", err=True)
    if result.awaiting_review:
        click.echo("next: `hitkit review`, then `hitkit pay`")


@click.command(epilog="""\b
Examples:
  hitkit status --study my-study
  hitkit status --study my-study --hits     one line per HIT
  hitkit status --study my-study --platform prolific
""")
@study_option
@click.option("--hits", "per_hit", is_flag=True, help="List every open HIT's places.")
@click.option("--platform", type=click.Choice(KINDS), default=None,
              help="Also ask this platform about its open batch (default: [platform].kind).")
@endpoint_option
@production_option
def status(study_dir: Path, per_hit: bool, platform: str | None, endpoint_url: str | None,
           production: bool) -> None:
    """Show HITs and assignments by state (and the platform's view of its open batch).

    The ledger's part is always shown; when the platform cannot be asked (no
    token, unreachable), that is said on stderr and the exit status is 1.
    """
    from hitkit.survey.progress import hit_fill, progress, unconfirmed

    study = open_study(study_dir)
    platform = platform or study.config.platform.kind
    with open_ledger(study) as ledger:
        p = progress(ledger)
        fill = hit_fill(ledger) if per_hit else []
        batches = ledger.query("SELECT platform, state, COUNT(*) AS n FROM batches GROUP BY 1, 2")
        actions = ledger.open_actions()
        click.echo("HITs: " + (", ".join(f"{n} {s}" for s, n in sorted(p.hits_by_state.items()))
                               or "none (run `hitkit design`)"))
        click.echo(f"places: {p.places}")
        click.echo("assignments: " + (", ".join(f"{n} {s}" for s, n in sorted(p.by_state.items()))
                                      or "none"))
        click.echo(f"responses: {p.responses}")
        claims = unconfirmed(ledger)
        click.echo(f"unconfirmed submissions: {len(claims)}"
                   + (" (not reviewed, paid or exported until `hitkit collect` confirms them)"
                      if claims else ""))
        for c in claims[:20]:
            click.echo(f"  {c.assignment_id}  {c.platform}  submitted {c.submitted_at}")
        click.echo("batches: " + (", ".join(f"{r['n']} {r['platform']} {r['state']}" for r in batches)
                                  or "none (run `hitkit publish`)"))
        if actions:
            click.echo(f"unsettled platform actions: {len(actions)} (a later command reconciles them)")
        for hit_id, places, started, submitted in fill:
            click.echo(f"  {hit_id}  {submitted}/{places} submitted, {started} in progress")
        remote = platform_status(study, ledger, platform, endpoint_url, production)
    if remote is not None and not remote.ledger_only:  # local: the lines above are its view
        counts = ", ".join(f"{n} {s}" for s, n in sorted(remote.submissions_by_state.items()))
        click.echo(f"{platform} batch {remote.batch_id} ({remote.external_id or '–'}): "
                   f"{remote.state}, {remote.places} place(s); submissions: {counts or 'none'}")
        for note in remote.notes:
            click.echo(f"  {note}")


def platform_status(study: Study, ledger: Ledger, platform: str, endpoint_url: str | None,
                    production: bool):
    """The platform's BatchStatus of its open batch; None when none is open."""
    import hitkit.platforms as platforms
    from hitkit.platforms import records

    try:
        if records.open_batch(ledger, platform) is None:
            return None
    except platforms.PlatformError:  # no design yet: nothing published either
        return None
    options = platform_options(production, True, endpoint_url)
    return platform_call(platform, platforms.status, study, platform, ledger=ledger, **options)


# ---------------------------------------------------------------- simulate


@click.command(epilog="""\b
Examples:
  hitkit simulate --study my-study --participants 30
  hitkit simulate --study my-study --participants 200 \\
      --mix attentive=0.8,random=0.1,fast=0.05,side_biased=0.05
  hitkit simulate --study my-study --participants 10 --url http://127.0.0.1:8000
""")
@study_option
@click.option("--participants", "n", type=click.IntRange(1), required=True)
@click.option("--mix", default="attentive=0.8,random=0.1,fast=0.05,side_biased=0.05",
              show_default=True, help="Shares of behaviours: attentive, random, fast, side_biased.")
@click.option("--url", default=None,
              help="A running `hitkit serve` of this study (default: start one on 127.0.0.1).")
@click.option("--token", default=None, help="Use this open link's token instead of a new one.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0))
@click.option("--concurrency", default=50, show_default=True, type=click.IntRange(1))
@click.option("--slope", default=25.0, show_default=True, type=float,
              help="Attentive: logit per unit of box-window SSIM difference (7x7 uniform "
                   "windows; not the manifest's Gaussian SSIM).")
@click.option("--noise", default=0.03, show_default=True, type=click.FloatRange(0),
              help="Attentive: s.d. of noise on each similarity.")
@click.option("--lapse", default=0.04, show_default=True, type=click.FloatRange(0, 1),
              help="Attentive: share of random answers.")
def simulate(study_dir: Path, n: int, mix: str, url: str | None, token: str | None, seed: int,
             concurrency: int, slope: float, noise: float, lapse: float) -> None:
    """Take the survey with simulated participants, over the same HTTP API as a browser."""
    from tqdm import tqdm

    from hitkit.platforms.base import PlatformError
    from hitkit.platforms.local import publish_local
    from hitkit.survey.participants import Psychometric, SimulationError, parse_mix
    from hitkit.survey.participants import simulate as run
    from hitkit.survey.web.app import create_app
    from hitkit.survey.web.serving import background_server

    study = open_study(study_dir)
    try:
        shares = parse_mix(mix)
    except SimulationError as exc:
        raise click.BadParameter(str(exc), param_hint="--mix") from None
    with open_ledger(study) as ledger:
        if token is None:
            try:
                token = publish_local(study, ledger, open_link=True, cap=n, new=True).links[0].token
            except PlatformError as exc:
                raise click.ClickException(str(exc)) from None
        psychometric = Psychometric(slope=slope, noise=noise, lapse=lapse)
        with tqdm(total=n, desc="participants", unit="p", disable=not sys.stderr.isatty()) as bar:
            if url is None:
                with background_server(create_app(study, ledger)) as local_url:
                    report = run(local_url, token, n, shares, seed, concurrency, psychometric,
                                 progress=bar.update)
            else:
                report = run(url.rstrip("/"), token, n, shares, seed, concurrency, psychometric,
                             progress=bar.update)
    by = {}
    for o in report.completed:
        by[o.behaviour] = by.get(o.behaviour, 0) + 1
    click.echo(f"{len(report.completed)} of {n} simulated participants submitted in "
               f"{report.wall_seconds:.1f} s (" + ", ".join(f"{v} {k}" for k, v in sorted(by.items()))
               + ")")
    errors = {}
    for o in report.failed:
        errors[o.error] = errors.get(o.error, 0) + 1
    for message, count in errors.items():
        click.echo(f"  {count} not submitted: {message}", err=True)
    if report.failed and not report.completed:
        sys.exit(1)


# ------------------------------------------------------------------ review


@click.command(epilog="""\b
Examples:
  hitkit review --study my-study
  hitkit review --study my-study --reason "catch threshold was a typo (0.08 for 0.8)"
""")
@study_option
@click.option("--reason", default=None,
              help="Why [quality] changed since the last review (required then; recorded).")
def review(study_dir: Path, reason: str | None) -> None:
    """Score every confirmed submission by the [quality] rules; recommend what to do.

    Excluding data from the analysis (any rule) and rejecting payment (only the
    rule-defined fraud threshold, always with a message) are separate decisions.
    The verdicts and the rules are recorded: export and pay use them. Submissions
    the platform has not confirmed yet are listed, not scored (`hitkit collect`
    confirms them).
    """
    from rich.console import Console
    from rich.table import Table

    from hitkit.survey.progress import unconfirmed
    from hitkit.survey.quality import ReviewError
    from hitkit.survey.quality import review as run_review

    study = open_study(study_dir)
    with open_ledger(study) as ledger:
        try:
            verdicts = run_review(ledger, study.config.quality, reason)
        except ReviewError as exc:
            raise click.ClickException(str(exc)) from None
        claims = unconfirmed(ledger)
    table = Table(title=f"Quality of {len(verdicts)} submitted assignment(s)")
    for name in ("assignment", "n", "catch", "repeat", "median RT", "fast", "side",
                 "excluded", "payment"):
        table.add_column(name, no_wrap=name != "excluded")

    def fmt(value: float | None, pattern: str = "{:.2f}") -> str:
        return "–" if value is None else pattern.format(value)

    for q in verdicts:
        table.add_row(q.assignment_id, str(q.responses), fmt(q.catch_accuracy),
                      fmt(q.repeat_consistency), fmt(q.median_rt_ms, "{:.0f} ms"),
                      fmt(q.fast_share, "{:.0%}"), fmt(q.side_bias),
                      "; ".join([q.exclusion_reason or "no", *q.not_assessed]),
                      "REJECT" if q.reject else "approve")
    # a pipe or a log file gets the full width rather than rich's 80 columns
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    console.print(table, markup=False)
    excluded = sum(q.excluded for q in verdicts)
    rejected = [q for q in verdicts if q.reject]
    click.echo(f"\nRecommendation: keep {len(verdicts) - excluded} assignment(s) for analysis, "
               f"exclude {excluded} by the pre-registered rules (export marks them).")
    if rejected:
        click.echo(f"Reject payment for {len(rejected)} assignment(s) under the fraud rule "
                   f"(catch accuracy below {study.config.quality.reject_below_catch_accuracy:g}), "
                   f"with the message: {study.config.quality.rejection_message!r}. "
                   "Approve all others.")
    else:
        click.echo("Approve payment for every submitted assignment: none meets the fraud rule.")
    echo_unconfirmed(claims)


def echo_unconfirmed(claims: list) -> None:
    """The submissions no platform has confirmed: counted and listed, never scored or paid."""
    if not claims:
        return
    click.echo(f"\nUnconfirmed: {len(claims)} submitted assignment(s) that no platform lists "
               "yet (not reviewed, paid or exported; `hitkit collect` confirms them):")
    for c in claims[:50]:
        click.echo(f"  {c.assignment_id}  {c.platform}  submitted {c.submitted_at}")
    if len(claims) > 50:
        click.echo(f"  ... and {len(claims) - 50} more")


# ------------------------------------------------------------------ export


@click.command(epilog="""\b
Examples:
  hitkit export --study my-study
  hitkit export --study my-study --out /tmp/responses.parquet
""")
@study_option
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Where to write (default: responses.parquet in the study folder).")
def export(study_dir: Path, out: Path | None) -> None:
    """Write responses.parquet: one row per response, pseudonymised, with factors.

    Only confirmed submissions, with the exclusions `hitkit review` recorded; stops when
    [quality] changed since that review (the error names the fields).
    """
    from hitkit.survey.export import export_responses
    from hitkit.survey.pseudonym import SecretError
    from hitkit.survey.quality import ReviewError

    study = open_study(study_dir)
    with open_ledger(study) as ledger:
        try:
            path, rows = export_responses(study, ledger, out)
        except (TableError, SecretError, ReviewError) as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {rows} responses to {path}")


COMMANDS = (design, serve, publish, collect, status, simulate, review, export)
