"""The `local` platform: participant links for lab, pilot and simulated participants.

Publishing creates a batch in the ledger and its links: one single-use link per
planned participant, or one open link with a cap. Participants arrive with
``?token=...``; the server gives each the least-filled HIT. Nothing is remote:
collecting reads the ledger, approving or rejecting records the decision there,
and a bonus is recorded as a payment the lab makes by hand (state 'planned').
"""

from __future__ import annotations

import csv
import secrets
from dataclasses import dataclass
from pathlib import Path

from hitkit.platforms import records
from hitkit.platforms.base import (
    ActionSummary,
    BatchStatus,
    Bonus,
    CollectResult,
    PlatformError,
    PublishResult,
)
from hitkit.study.config import Study
from hitkit.study.fees import to_minor_units
from hitkit.survey.hits import active_design_id
from hitkit.survey.ledger import Ledger, dumps, now_iso
from hitkit.survey.progress import planned_places, progress


@dataclass(frozen=True)
class Link:
    url: str
    token: str
    cap: int


@dataclass(frozen=True)
class Batch:
    batch_id: str
    design_id: str
    places: int
    links: list[Link]
    csv_path: Path
    created: bool


def link_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/?token={token}"


def publish_local(study: Study, ledger: Ledger, open_link: bool = False,
                  cap: int | None = None, new: bool = False) -> Batch:
    """Create (or return the open) local batch of the active design and write its links CSV."""
    design_id = active_design_id(ledger)
    if design_id is None:
        raise PlatformError("the ledger has no HITs: run `hitkit design` first")
    settings = study.config.platform.local
    places = planned_places(ledger, design_id)
    existing = ledger.query_one(
        "SELECT * FROM batches WHERE design_id = ? AND platform = 'local' AND state = 'open'"
        " ORDER BY created_at DESC LIMIT 1", (design_id,))
    if existing is not None and not new:
        rows = ledger.query("SELECT token, cap FROM links WHERE batch_id = ? ORDER BY created_at, token",
                            (existing["batch_id"],))
        links = [Link(link_url(settings.base_url, r["token"]), r["token"], r["cap"]) for r in rows]
        path = write_links(study.root, existing["batch_id"], links)
        return Batch(existing["batch_id"], design_id, existing["places"], links, path, False)
    batch_id = "b" + secrets.token_hex(6)
    if open_link:
        link_cap = cap or settings.open_link_cap or places
        tokens = [(secrets.token_urlsafe(12), link_cap)]
    else:
        tokens = [(secrets.token_urlsafe(12), 1) for _ in range(cap or places)]
    # journal first: a crash between here and the commit leaves a pending action, not a lost batch
    action = ledger.journal(f"local:publish:{batch_id}", "local", "publish", batch_id,
                            {"design_id": design_id, "links": len(tokens), "open": open_link})
    stamp = now_iso()
    with ledger.transaction() as con:
        con.execute(
            "INSERT INTO batches (batch_id, design_id, platform, state, places, settings, created_at)"
            " VALUES (?, ?, 'local', 'open', ?, ?, ?)",
            (batch_id, design_id, sum(c for _, c in tokens),
             dumps({"base_url": settings.base_url, "open_link": open_link}), stamp))
        con.executemany("INSERT INTO links (token, batch_id, cap, created_at) VALUES (?, ?, ?, ?)",
                        [(t, batch_id, c, stamp) for t, c in tokens])
        ledger.add_event("batch_published", batch_id, platform="local", links=len(tokens))
    ledger.settle(action.idempotency_key, "done", {"batch_id": batch_id})
    links = [Link(link_url(settings.base_url, t), t, c) for t, c in tokens]
    path = write_links(study.root, batch_id, links)
    return Batch(batch_id, design_id, sum(c for _, c in tokens), links, path, True)


def write_links(root: Path, batch_id: str, links: list[Link]) -> Path:
    path = root / f"links-{batch_id}.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["link", "token", "cap", "batch_id"])
        for link in links:
            writer.writerow([link.url, link.token, link.cap, batch_id])
    return path



class LocalPlatform:
    kind = "local"

    def __init__(self, study: Study, ledger: Ledger, *, open_link: bool = False,
                 cap: int | None = None, **_: object):
        self.study, self.ledger = study, ledger
        self.open_link, self.cap = open_link, cap
        self.currency = study.config.platform.currency

    def publish(self, *, new: bool = False) -> PublishResult:
        batch = publish_local(self.study, self.ledger, self.open_link, self.cap, new)
        return PublishResult("local", batch.batch_id, None, batch.places, batch.created,
                             [link.url for link in batch.links], links_file=batch.csv_path,
                             caps=[link.cap for link in batch.links])

    def status(self) -> BatchStatus:
        batch = records.open_batch(self.ledger, "local")
        p = progress(self.ledger)
        return BatchStatus("local", batch["batch_id"] if batch else "", None,
                           "open" if batch else "none", p.places, dict(p.by_state),
                           ledger_only=True)

    def collect(self) -> CollectResult:
        """Nothing to fetch: participants submit straight into the ledger. Its progress."""
        p = progress(self.ledger)
        self.ledger.event("collected", None, platform="local", submitted=p.submitted)
        rows = self.ledger.query("SELECT assignment_id, state FROM assignments WHERE platform = 'local'")
        awaiting = [r["assignment_id"] for r in rows if r["state"] == "submitted"]
        return CollectResult("local", 0, awaiting, sum(r["state"] == "approved" for r in rows),
                             sum(r["state"] == "rejected" for r in rows),
                             sum(r["state"] == "started" for r in rows), progress=p)

    def approve(self, assignment_ids: list[str]) -> ActionSummary:
        reward_minor = to_minor_units(self.study.config.survey.reward)
        for aid in assignment_ids:
            records.record_review(self.ledger, aid, "approved", reward_minor, self.currency,
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
        """Close every open local batch (every link, of every design)."""
        closed = []
        for batch in records.open_batches(self.ledger, "local"):
            records.close_batch(self.ledger, batch["batch_id"])
            closed.append(batch["batch_id"])
        return closed
