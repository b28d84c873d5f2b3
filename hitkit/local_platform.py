"""The `local` platform: participant links for lab, pilot and simulated participants.

Publishing creates a batch in the ledger and its links: one single-use link per
planned participant, or one open link with a cap. Participants arrive with
``?token=...``; the server gives each the least-filled HIT. Collecting reads the
ledger (the local platform has nothing remote to fetch).
"""

from __future__ import annotations

import csv
import secrets
from dataclasses import dataclass
from pathlib import Path

from hitkit.config import Study
from hitkit.hits import active_design_id
from hitkit.ledger import Ledger, dumps, now_iso


class PublishError(RuntimeError):
    pass


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


def planned_places(ledger: Ledger, design_id: str) -> int:
    row = ledger.query_one(
        "SELECT COALESCE(SUM(max_assignments), 0) AS n FROM hits WHERE design_id = ? AND state = 'open'",
        (design_id,))
    return int(row["n"])


def publish_local(study: Study, ledger: Ledger, open_link: bool = False,
                  cap: int | None = None, new: bool = False) -> Batch:
    """Create (or return the open) local batch of the active design and write its links CSV."""
    design_id = active_design_id(ledger)
    if design_id is None:
        raise PublishError("the ledger has no HITs: run `hitkit design` first")
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


@dataclass(frozen=True)
class Progress:
    hits: int
    places: int
    started: int
    submitted: int
    responses: int
    last_submitted_at: str | None
    by_state: dict[str, int]
    hits_by_state: dict[str, int]


def progress(ledger: Ledger) -> Progress:
    """Where the study stands: places, assignments by state, responses stored."""
    design_id = active_design_id(ledger)
    hits_by_state = {r["state"]: r["n"] for r in ledger.query(
        "SELECT state, COUNT(*) AS n FROM hits GROUP BY state")}
    by_state = {r["state"]: r["n"] for r in ledger.query(
        "SELECT a.state, COUNT(*) AS n FROM assignments a JOIN hits h USING (hit_id)"
        " WHERE h.state = 'open' GROUP BY a.state")}
    responses = ledger.query_one(
        "SELECT COUNT(*) AS n FROM responses r JOIN assignments a USING (assignment_id)"
        " JOIN hits h ON h.hit_id = a.hit_id WHERE h.state = 'open'")["n"]
    last = ledger.query_one("SELECT MAX(submitted_at) AS at FROM assignments")["at"]
    submitted = sum(n for s, n in by_state.items() if s != "started")
    return Progress(
        hits=hits_by_state.get("open", 0),
        places=planned_places(ledger, design_id) if design_id else 0,
        started=by_state.get("started", 0), submitted=submitted, responses=responses,
        last_submitted_at=last, by_state=by_state, hits_by_state=hits_by_state,
    )


def hit_fill(ledger: Ledger) -> list[tuple[str, int, int, int]]:
    """(hit_id, places, started, submitted) for each open HIT."""
    rows = ledger.query(
        """SELECT h.hit_id, h.max_assignments AS places,
                  SUM(a.state = 'started') AS started,
                  SUM(a.state IS NOT NULL AND a.state != 'started') AS submitted
           FROM hits h LEFT JOIN assignments a USING (hit_id)
           WHERE h.state = 'open' GROUP BY h.hit_id ORDER BY h.ordinal""")
    return [(r["hit_id"], r["places"], r["started"] or 0, r["submitted"] or 0) for r in rows]
