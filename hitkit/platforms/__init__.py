"""Crowdsourcing platforms behind one interface (base.Platform): local, prolific, mturk.

Commands call the module-level functions here with the platform's kind; each
opens the backend with `open_platform` and runs one step. `PLATFORMS` maps each
kind to the function that opens it: a new crowd platform is one module (a class
with the base.Platform methods) plus one entry there. Every outward call is
journaled in the ledger first (see hitkit.platforms.once), so any step can be
re-run after a crash or an error without duplicating a study, HIT, approval or
payment.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hitkit.platforms.base import (
    ActionSummary,
    BatchStatus,
    Bonus,
    CollectResult,
    OutcomeUnknown,
    Platform,
    PlatformError,
    PublishResult,
)
from hitkit.study.config import Study
from hitkit.survey.ledger import Ledger

__all__ = [
    "ActionSummary", "BatchStatus", "Bonus", "CollectResult", "OutcomeUnknown", "Platform",
    "PlatformError", "PublishResult", "PLATFORMS", "KINDS", "open_platform", "publish", "status",
    "collect", "approve", "reject", "bonus", "expire", "app_callbacks", "admission",
]

# Each opener takes (study, ledger, **options) and ignores the options meant for other
# platforms, so one set of command-line flags serves every kind. The imports are deferred:
# a command pays for httpx or boto3 only when it uses that platform.


def _local(study: Study, ledger: Ledger, **options: Any) -> Platform:
    """options: open_link, cap."""
    from hitkit.platforms.local import LocalPlatform

    return LocalPlatform(study, ledger, **options)


def _prolific(study: Study, ledger: Ledger, **options: Any) -> Platform:
    """options: api or token (default: token_env/token_file), api_url or endpoint_url, force,
    read_timeout, bonus_settle_seconds, attempts, checkpoint."""
    from hitkit.platforms.prolific.platform import ProlificPlatform

    return ProlificPlatform.open(study, ledger, **options)


def _mturk(study: Study, ledger: Ledger, **options: Any) -> Platform:
    """options: production, yes, confirm, endpoint_url, client, read_timeout, attempts,
    checkpoint, image_url or image_base_url."""
    from hitkit.platforms.mturk.platform import MTurkPlatform

    return MTurkPlatform.open(study, ledger, **options)


PLATFORMS: dict[str, Callable[..., Platform]] = {
    "local": _local,
    "prolific": _prolific,
    "mturk": _mturk,
}
KINDS = tuple(PLATFORMS)


def open_platform(study: Study, kind: str | None, ledger: Ledger, **options: Any) -> Platform:
    """The backend for `kind` (default: [platform].kind), opened with its options (see PLATFORMS)."""
    kind = kind or study.config.platform.kind
    if kind not in PLATFORMS:
        raise PlatformError(f"[platform].kind {kind!r}: expected one of {', '.join(KINDS)}")
    return PLATFORMS[kind](study, ledger, **options)


def _run(study: Study, kind: str | None, ledger: Ledger | None, options: dict, step):
    own = ledger is None
    ledger = ledger or Ledger.for_study(study.root)
    try:
        return step(open_platform(study, kind, ledger, **options))
    finally:
        if own:
            ledger.close()


def publish(study: Study, platform_kind: str | None = None, *, ledger: Ledger | None = None,
            new: bool = False, **options: Any) -> PublishResult:
    return _run(study, platform_kind, ledger, options, lambda p: p.publish(new=new))


def status(study: Study, platform_kind: str | None = None, *, ledger: Ledger | None = None,
           **options: Any) -> BatchStatus:
    return _run(study, platform_kind, ledger, options, lambda p: p.status())


def collect(study: Study, platform_kind: str | None = None, *, ledger: Ledger | None = None,
            **options: Any) -> CollectResult:
    return _run(study, platform_kind, ledger, options, lambda p: p.collect())


def approve(study: Study, assignment_ids: list[str], platform_kind: str | None = None, *,
            ledger: Ledger | None = None, **options: Any) -> ActionSummary:
    return _run(study, platform_kind, ledger, options, lambda p: p.approve(assignment_ids))


def reject(study: Study, assignment_ids: list[str], message: str, platform_kind: str | None = None,
           *, ledger: Ledger | None = None, **options: Any) -> ActionSummary:
    return _run(study, platform_kind, ledger, options, lambda p: p.reject(assignment_ids, message))


def bonus(study: Study, bonuses: list[Bonus], platform_kind: str | None = None, *,
          ledger: Ledger | None = None, **options: Any) -> ActionSummary:
    return _run(study, platform_kind, ledger, options, lambda p: p.bonus(bonuses))


def expire(study: Study, platform_kind: str | None = None, *, ledger: Ledger | None = None,
           **options: Any) -> list[str]:
    return _run(study, platform_kind, ledger, options, lambda p: p.expire())


def app_callbacks(study: Study, ledger: Ledger) -> dict[str, Any]:
    """The platforms' parts of the participant web app, as keyword arguments of
    hitkit.survey.web.app.create_app: where a finished participant is sent back to
    (Prolific's completion page) and what admits an arrival (`admit`: the open batch
    published for its STUDY_ID or hitId, and the hitkit HIT behind an MTurk hitId)."""
    from hitkit.platforms.prolific.platform import completion_url

    def prolific_return(assignment) -> str | None:
        # STUDY_ID is kept as the assignment's platform_assignment_id (see the app's arrival_from)
        row = ledger.query_one("SELECT platform_assignment_id FROM assignments"
                               " WHERE assignment_id = ?", (assignment.assignment_id,))
        study_id = row["platform_assignment_id"] if row else None
        return completion_url(study, ledger, study_id) if study_id else None

    return {"completion_urls": {"prolific": prolific_return}, "admit": admission(ledger)}


def admission(ledger: Ledger) -> dict[str, Any]:
    """platform -> what admits its arrivals (see hitkit.survey.assignments.start_assignment):
    the arrival with the open batch that was published for it, or None."""
    from hitkit.platforms.mturk.platform import admit_arrival as admit_mturk
    from hitkit.platforms.prolific.platform import admit_arrival as admit_prolific

    return {"prolific": lambda arrival: admit_prolific(ledger, arrival),
            "mturk": lambda arrival: admit_mturk(ledger, arrival)}
