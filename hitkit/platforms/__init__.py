"""Crowdsourcing platforms behind one interface (base.Platform): local, prolific, mturk.

Commands call the module-level functions here with the platform's kind; each
opens the backend with `open_platform` and runs one step. Every outward call is
journaled in the ledger first (see hitkit.platforms.once), so any step can be
re-run after a crash or an error without duplicating a study, HIT, approval or
payment.
"""

from __future__ import annotations

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
    "PlatformError", "PublishResult", "open_platform", "publish", "status", "collect",
    "approve", "reject", "bonus", "expire", "app_callbacks",
]


def open_platform(study: Study, kind: str | None, ledger: Ledger, **options: Any) -> Platform:
    """The backend for `kind` (default: [platform].kind).

    prolific options: api_url, token (default: from token_env/token_file), force,
    read_timeout, bonus_settle_seconds, checkpoint. mturk options: production, yes,
    endpoint_url, client, read_timeout, checkpoint, image_url, confirm.
    """
    kind = kind or study.config.platform.kind
    if kind == "local":
        from hitkit.platforms.local import LocalPlatform

        return LocalPlatform(study, ledger, **options)
    if kind == "prolific":
        from hitkit.platforms.prolific.platform import (
            API_URL,
            ProlificAPI,
            ProlificPlatform,
            load_token,
        )

        api = options.pop("api", None) or ProlificAPI(
            options.pop("token", None) or load_token(study), options.pop("api_url", None) or API_URL,
            read_timeout=options.pop("read_timeout", None))
        for name in ("token", "api_url", "read_timeout"):
            options.pop(name, None)
        return ProlificPlatform(study, ledger, api, **options)
    if kind == "mturk":
        from hitkit.platforms.mturk.platform import MTurkPlatform

        return MTurkPlatform.open(study, ledger, **options)
    raise PlatformError(f"[platform].kind {kind!r}: expected local, prolific or mturk")


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
    (Prolific's completion page) and which hitkit HIT an arrival's platform HIT ID
    stands for (MTurk hands out the places of its HITs itself)."""
    from hitkit.platforms.mturk.platform import hitkit_hit_for
    from hitkit.platforms.prolific.platform import completion_url

    def prolific_return(assignment) -> str | None:
        # STUDY_ID is kept as the assignment's platform_assignment_id (see the app's arrival_from)
        row = ledger.query_one("SELECT platform_assignment_id FROM assignments"
                               " WHERE assignment_id = ?", (assignment.assignment_id,))
        study_id = row["platform_assignment_id"] if row else None
        return completion_url(study, ledger, study_id) if study_id else None

    return {"completion_urls": {"prolific": prolific_return},
            "hit_for": {"mturk": lambda mturk_hit_id: hitkit_hit_for(ledger, mturk_hit_id)}}
