"""Assignments: a participant arrives, gets a HIT (or resumes theirs), submits once.

Every platform comes through :func:`start_assignment` with an :class:`Arrival`
(how the participant is identified there) and through :func:`submit`; the
platform decides only how a participant arrives and how completion is reported.
Raw platform IDs are stored in the ledger's `participant_key` and nowhere else:
events and errors name hitkit's own assignment IDs.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from hitkit.survey.ledger import Ledger, dumps, now_iso
from hitkit.survey.submission import Submission

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: codes get typed by hand


class AssignmentError(RuntimeError):
    def __init__(self, message: str, status: int, field: str = "assignment"):
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field


@dataclass(frozen=True)
class Arrival:
    platform: str  # local, prolific, mturk
    participant_key: str  # "<platform>:<platform's participant ID>" (raw; ledger only)
    link_token: str | None = None
    platform_assignment_id: str | None = None
    platform_session_id: str | None = None
    platform_hit_id: str | None = None
    # an open (multi-use) local link tells its participants apart by this browser-held ID
    link_participant: str | None = None
    # the hitkit HIT the platform already chose (an MTurk ExternalQuestion's hitId), if any
    hit_id: str | None = None


@dataclass(frozen=True)
class Assignment:
    assignment_id: str
    hit_id: str
    platform: str
    state: str
    completion_code: str
    started_at: str
    submitted_at: str | None
    resumed: bool = False


@dataclass(frozen=True)
class Receipt:
    assignment_id: str
    completion_code: str
    stored: int  # responses stored by this request (0 for a replay)
    duplicate: bool


def new_code(length: int = 8) -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))


def _assignment(row, resumed: bool = False) -> Assignment:
    return Assignment(row["assignment_id"], row["hit_id"], row["platform"], row["state"],
                      row["completion_code"], row["started_at"], row["submitted_at"], resumed)


def get_assignment(ledger: Ledger, assignment_id: str) -> Assignment | None:
    row = ledger.query_one("SELECT * FROM assignments WHERE assignment_id = ?", (assignment_id,))
    return _assignment(row) if row else None


def start_assignment(ledger: Ledger, arrival: Arrival, hold_minutes: float) -> Assignment:
    """Resume the participant's assignment, or give them the least-filled open HIT
    (or the HIT the platform chose: `arrival.hit_id`, from an MTurk ExternalQuestion).

    A started assignment holds its place for `hold_minutes`; after that an
    unsubmitted one no longer counts against the HIT's places (it can still be
    submitted). One assignment per participant per HIT is a UNIQUE constraint.
    """
    arrival = _with_link_identity(ledger, arrival)
    cutoff = (datetime.now(UTC) - timedelta(minutes=hold_minutes)).isoformat(timespec="microseconds")
    with ledger.transaction() as con:
        row = con.execute(
            "SELECT a.* FROM assignments a JOIN hits h USING (hit_id)"
            " WHERE a.participant_key = ? AND h.state = 'open' AND h.hit_id = COALESCE(?, h.hit_id)"
            " ORDER BY a.started_at DESC LIMIT 1",
            (arrival.participant_key, arrival.hit_id),
        ).fetchone()
        if row is not None:
            ledger.add_event("assignment_resumed", row["assignment_id"])
            return _assignment(row, resumed=True)
        batch_id = None
        if arrival.link_token is not None:
            link = con.execute(
                "SELECT l.cap, b.batch_id, b.state FROM links l JOIN batches b USING (batch_id)"
                " WHERE l.token = ?", (arrival.link_token,)).fetchone()
            if link is None:
                raise AssignmentError("this link is not valid for this study", 404, "token")
            if link["state"] != "open":
                raise AssignmentError("this study link is closed", 410, "token")
            used = con.execute("SELECT COUNT(*) FROM assignments WHERE link_token = ?",
                               (arrival.link_token,)).fetchone()[0]
            if used >= link["cap"]:
                raise AssignmentError("this link has been used up", 410, "token")
            batch_id = link["batch_id"]
        if arrival.hit_id is not None:
            # the platform hands out this HIT's places itself (MTurk's MaxAssignments)
            hit = con.execute("SELECT hit_id, state FROM hits WHERE hit_id = ?",
                              (arrival.hit_id,)).fetchone()
            if hit is None or hit["state"] != "open":
                raise AssignmentError("this HIT is no longer open", 410, "hitId")
        else:
            hit = _least_filled_hit(con, cutoff)
        if hit is None:
            if con.execute("SELECT 1 FROM hits WHERE state = 'open' LIMIT 1").fetchone() is None:
                raise AssignmentError("this study has no HITs yet", 409, "study")
            raise AssignmentError("all places in this study are taken", 409, "study")
        assignment_id = "a" + secrets.token_hex(12)
        con.execute(
            "INSERT INTO assignments (assignment_id, hit_id, batch_id, platform, participant_key,"
            " link_token, platform_assignment_id, platform_session_id, state, started_at,"
            " completion_code) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'started', ?, ?)",
            (assignment_id, hit["hit_id"], batch_id, arrival.platform, arrival.participant_key,
             arrival.link_token, arrival.platform_assignment_id, arrival.platform_session_id,
             now_iso(), new_code()),
        )
        ledger.add_event("assignment_started", assignment_id, hit_id=hit["hit_id"],
                         platform=arrival.platform)
        row = con.execute("SELECT * FROM assignments WHERE assignment_id = ?",
                          (assignment_id,)).fetchone()
    return _assignment(row)


def _least_filled_hit(con, cutoff: str):
    """The open HIT with the fewest places taken (abandoned assignments older than `cutoff`
    no longer count), or None when every place is taken."""
    return con.execute(
        """
        SELECT h.hit_id FROM hits h
        LEFT JOIN assignments a ON a.hit_id = h.hit_id
             AND (a.state != 'started' OR a.started_at > ?)
        WHERE h.state = 'open'
        GROUP BY h.hit_id
        HAVING COUNT(a.assignment_id) < h.max_assignments
        ORDER BY COUNT(a.assignment_id), h.ordinal
        LIMIT 1
        """,
        (cutoff,),
    ).fetchone()


def _with_link_identity(ledger: Ledger, arrival: Arrival) -> Arrival:
    """A single-use link is the participant; an open link adds the browser's ID."""
    if arrival.link_token is None or arrival.link_participant is None:
        return arrival
    row = ledger.query_one("SELECT cap FROM links WHERE token = ?", (arrival.link_token,))
    if row is None or row["cap"] == 1:
        return arrival
    key = f"{arrival.participant_key}:{arrival.link_participant}"
    return replace(arrival, participant_key=key)


def submit(ledger: Ledger, assignment_id: str, submission: Submission) -> Receipt:
    """Store a validated submission once; a replay returns the first receipt."""
    with ledger.transaction() as con:
        row = con.execute("SELECT * FROM assignments WHERE assignment_id = ?",
                          (assignment_id,)).fetchone()
        if row is None:
            raise AssignmentError("no such assignment", 404)
        fingerprint = submission.sha256
        if row["state"] != "started":
            if row["submission_sha256"] == fingerprint:
                ledger.add_event("submit_replayed", assignment_id)
                return Receipt(assignment_id, row["completion_code"], 0, True)
            ledger.add_event("submit_conflict", assignment_id)
            raise AssignmentError(
                "this assignment was already submitted with different responses; "
                "the first submission is kept", 409)
        stamp = now_iso()
        con.executemany(
            "INSERT INTO responses (response_id, assignment_id, trial_id, choice, rt_ms,"
            " received_at) VALUES (?, ?, ?, ?, ?, ?)",
            [(f"{assignment_id}-{r.trial_id}", assignment_id, r.trial_id,
              json.dumps(list(r.choice)), r.rt_ms, stamp) for r in submission.responses],
        )
        con.execute(
            "UPDATE assignments SET state = 'submitted', submitted_at = ?, submission_sha256 = ?,"
            " comment = ?, client = ? WHERE assignment_id = ?",
            (stamp, fingerprint, submission.comment, dumps(submission.client), assignment_id),
        )
        ledger.add_event("submitted", assignment_id, responses=len(submission.responses))
    return Receipt(assignment_id, row["completion_code"], len(submission.responses), False)
