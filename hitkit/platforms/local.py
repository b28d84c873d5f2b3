"""The `local` platform behind the common interface: links from hitkit.local_platform.

Nothing is remote: approving or rejecting records the decision in the ledger,
and a bonus is recorded as a payment the lab makes by hand (state 'planned').
"""

from __future__ import annotations

from hitkit.config import Study
from hitkit.fees import to_cents
from hitkit.ledger import Ledger
from hitkit.local_platform import PublishError, progress, publish_local
from hitkit.platforms import records
from hitkit.platforms.base import (
    ActionSummary,
    BatchStatus,
    Bonus,
    CollectResult,
    PlatformError,
    PublishResult,
)


class LocalPlatform:
    kind = "local"

    def __init__(self, study: Study, ledger: Ledger, *, open_link: bool = False,
                 cap: int | None = None, **_: object):
        self.study, self.ledger = study, ledger
        self.open_link, self.cap = open_link, cap
        self.currency = study.config.platform.currency

    def publish(self, *, new: bool = False) -> PublishResult:
        try:
            batch = publish_local(self.study, self.ledger, self.open_link, self.cap, new)
        except PublishError as exc:
            raise PlatformError(str(exc)) from None
        return PublishResult("local", batch.batch_id, None, batch.places, batch.created,
                             [link.url for link in batch.links], [f"links in {batch.csv_path}"])

    def status(self) -> BatchStatus:
        batch = records.open_batch(self.ledger, "local")
        p = progress(self.ledger)
        return BatchStatus("local", batch["batch_id"] if batch else "", None,
                           "open" if batch else "none", p.places, dict(p.by_state))

    def collect(self) -> CollectResult:
        rows = self.ledger.query("SELECT assignment_id, state FROM assignments WHERE platform = 'local'")
        awaiting = [r["assignment_id"] for r in rows if r["state"] == "submitted"]
        return CollectResult("local", 0, awaiting, sum(r["state"] == "approved" for r in rows),
                             sum(r["state"] == "rejected" for r in rows),
                             sum(r["state"] == "started" for r in rows))

    def approve(self, assignment_ids: list[str]) -> ActionSummary:
        reward = to_cents(self.study.config.survey.reward)
        for aid in assignment_ids:
            records.record_review(self.ledger, aid, "approved", reward, self.currency,
                                  None)
        return ActionSummary(list(assignment_ids), [])

    def reject(self, assignment_ids: list[str], message: str) -> ActionSummary:
        for aid in assignment_ids:
            records.record_review(self.ledger, aid, "rejected", None, self.currency,
                                  None, message)
        return ActionSummary(list(assignment_ids), [])

    def bonus(self, bonuses: list[Bonus]) -> ActionSummary:
        ids = records.plan_bonuses(self.ledger, bonuses, self.currency)
        return ActionSummary(ids, [])

    def expire(self) -> list[str]:
        batch = records.open_batch(self.ledger, "local")
        if batch is not None:
            records.close_batch(self.ledger, batch["batch_id"])
            return [batch["batch_id"]]
        return []
