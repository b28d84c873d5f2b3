"""Where a study stands in the ledger: places, assignments by state, responses stored.

Every platform fills the same tables, so progress is read from the ledger alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from hitkit.survey.hits import active_design_id
from hitkit.survey.ledger import Ledger


def planned_places(ledger: Ledger, design_id: str) -> int:
    row = ledger.query_one(
        "SELECT COALESCE(SUM(max_assignments), 0) AS n FROM hits WHERE design_id = ? AND state = 'open'",
        (design_id,))
    return int(row["n"])


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


@dataclass(frozen=True)
class Claim:
    assignment_id: str
    platform: str
    submitted_at: str


def unconfirmed(ledger: Ledger) -> list[Claim]:
    """Submitted assignments no platform has confirmed yet (an arrival is a claim until then):
    they are counted and listed, never reviewed, paid or exported."""
    rows = ledger.query(
        "SELECT assignment_id, platform, submitted_at FROM assignments"
        " WHERE state != 'started' AND confirmation != 'confirmed' ORDER BY submitted_at")
    return [Claim(r["assignment_id"], r["platform"], r["submitted_at"] or "") for r in rows]
