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
    # the open batch that admits a Prolific or MTurk arrival (hitkit.platforms.admit finds
    # it from STUDY_ID or hitId); None: nothing published admits it, and it is refused
    batch_id: str | None = None


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
    """Resume the participant's assignment, or give them the least-filled open HIT of the
    batch's design (or the HIT the platform chose: `arrival.hit_id`, an MTurk ExternalQuestion).

    Who may arrive: a local arrival needs a valid link token of an open batch of the
    current design; a Prolific or MTurk arrival needs `arrival.batch_id`, the open batch
    the platform's callback found for it (hitkit.platforms.admit), or it is refused. Local
    arrivals are confirmed by their token; the others stay claims until `hitkit collect`
    sees the platform list them. One assignment per participant per study: resuming needs
    the same session (Prolific SESSION_ID and STUDY_ID, MTurk assignmentId).

    A place is held by a confirmed, finished assignment, and by any other assignment
    only for `hold_minutes` after it started (unconfirmed ones cannot squat). The places
    of a HIT, of a link and of a platform batch are checked in one write transaction, so
    they hold under concurrency.
    """
    arrival = _with_link_identity(ledger, arrival)
    cutoff = (datetime.now(UTC) - timedelta(minutes=hold_minutes)).isoformat(timespec="microseconds")
    with ledger.transaction() as con:
        row = con.execute(
            "SELECT a.* FROM assignments a JOIN hits h USING (hit_id)"
            " WHERE a.participant_key = ? AND h.state = 'open'"
            " ORDER BY a.started_at DESC LIMIT 1", (arrival.participant_key,)).fetchone()
        if row is not None:
            _check_same_session(row, arrival)
            ledger.add_event("assignment_resumed", row["assignment_id"])
            return _assignment(row, resumed=True)
        batch = _admitting_batch(con, arrival)
        open_hits = con.execute("SELECT 1 FROM hits WHERE state = 'open' AND design_id = ?"
                                " LIMIT 1", (batch["design_id"],)).fetchone()
        if open_hits is None:
            if con.execute("SELECT 1 FROM hits WHERE state = 'open' LIMIT 1").fetchone() is None:
                raise AssignmentError("this study has no HITs yet", 409, "study")
            # a link (or batch) published before `hitkit design --replace`
            raise AssignmentError("this link belongs to a design that was replaced", 410,
                                  "token" if arrival.platform == "local" else "study")
        if arrival.platform != "local":
            taken = con.execute(f"SELECT COUNT(*) FROM assignments a WHERE a.batch_id = ?"
                                f" AND {HOLDS_PLACE}", (batch["batch_id"], cutoff)).fetchone()[0]
            if taken >= batch["places"]:
                raise AssignmentError("all places in this study are taken", 409, "study")
        if arrival.hit_id is not None:
            # the platform hands out this HIT's places itself (MTurk's MaxAssignments), but
            # a forged arrival never comes through the platform: count its places here too
            hit = con.execute("SELECT hit_id, state, max_assignments FROM hits WHERE hit_id = ?"
                              " AND design_id = ?", (arrival.hit_id, batch["design_id"])).fetchone()
            if hit is None or hit["state"] != "open":
                raise AssignmentError("this HIT is no longer open", 410, "hitId")
            taken = con.execute(f"SELECT COUNT(*) FROM assignments a WHERE a.hit_id = ?"
                                f" AND {HOLDS_PLACE}", (hit["hit_id"], cutoff)).fetchone()[0]
            if taken >= hit["max_assignments"]:
                raise AssignmentError("all places of this HIT are taken", 409, "hitId")
        else:
            hit = _least_filled_hit(con, batch["design_id"], cutoff)
        if hit is None:
            raise AssignmentError("all places in this study are taken", 409, "study")
        assignment_id = "a" + secrets.token_hex(12)
        stamp = now_iso()
        confirmed = arrival.platform == "local"  # the link token is the proof
        con.execute(
            "INSERT INTO assignments (assignment_id, hit_id, batch_id, platform, participant_key,"
            " link_token, platform_assignment_id, platform_session_id, state, started_at,"
            " completion_code, confirmation, confirmed_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'started', ?, ?, ?, ?)",
            (assignment_id, hit["hit_id"], batch["batch_id"], arrival.platform,
             arrival.participant_key, arrival.link_token, arrival.platform_assignment_id,
             arrival.platform_session_id, stamp, new_code(),
             "confirmed" if confirmed else "unconfirmed", stamp if confirmed else None),
        )
        ledger.add_event("assignment_started", assignment_id, hit_id=hit["hit_id"],
                         platform=arrival.platform, batch_id=batch["batch_id"])
        row = con.execute("SELECT * FROM assignments WHERE assignment_id = ?",
                          (assignment_id,)).fetchone()
    return _assignment(row)


# A place is held by a confirmed assignment that was finished (submitted, reviewed,
# returned), and by any assignment not refused by its platform for `hold_minutes` after it
# started; the one parameter is that cutoff.
HOLDS_PLACE = ("(a.confirmation = 'confirmed' AND a.state != 'started'"
               " OR a.confirmation != 'refused' AND a.started_at > ?)")


def _check_same_session(row, arrival: Arrival) -> None:
    """Resuming needs the session the assignment was started with, not just the participant
    ID (which others can learn): Prolific's STUDY_ID and SESSION_ID, MTurk's assignmentId.
    A local participant key already contains its link token."""
    if arrival.platform == "local":
        return
    same = (row["platform_assignment_id"] == arrival.platform_assignment_id
            and row["platform_session_id"] == arrival.platform_session_id)
    if not same:
        field = "SESSION_ID" if arrival.platform == "prolific" else "assignmentId"
        raise AssignmentError("this participant already has an assignment in this study under "
                              "another session: one assignment per participant", 403, field)


def _admitting_batch(con, arrival: Arrival):
    """The open batch that admits this arrival: its link's batch (local), or the batch the
    platform's callback found (Prolific, MTurk); an AssignmentError otherwise."""
    if arrival.link_token is not None:
        link = con.execute(
            "SELECT l.cap, b.* FROM links l JOIN batches b USING (batch_id) WHERE l.token = ?",
            (arrival.link_token,)).fetchone()
        if link is None or arrival.platform != "local":
            raise AssignmentError("this link is not valid for this study", 404, "token")
        if link["state"] != "open":
            raise AssignmentError("this study link is closed", 410, "token")
        used = con.execute("SELECT COUNT(*) FROM assignments WHERE link_token = ?",
                           (arrival.link_token,)).fetchone()[0]
        if used >= link["cap"]:
            raise AssignmentError("this link has been used up", 410, "token")
        return link
    if arrival.platform == "local" or arrival.batch_id is None:
        # nothing the platform published admits it: an invented identity
        raise AssignmentError(f"this study is not open to these {arrival.platform} "
                              "parameters", 403, "study")
    batch = con.execute("SELECT * FROM batches WHERE batch_id = ? AND platform = ?",
                        (arrival.batch_id, arrival.platform)).fetchone()
    if batch is None:
        raise AssignmentError(f"this study is not open to these {arrival.platform} "
                              "parameters", 403, "study")
    if batch["state"] != "open":
        raise AssignmentError("this study is closed", 410, "study")
    return batch


def _least_filled_hit(con, design_id: str, cutoff: str):
    """The design's open HIT with the fewest places held (see HOLDS_PLACE), or None when
    every place is taken."""
    return con.execute(
        f"""
        SELECT h.hit_id FROM hits h
        LEFT JOIN assignments a ON a.hit_id = h.hit_id AND {HOLDS_PLACE}
        WHERE h.state = 'open' AND h.design_id = ?
        GROUP BY h.hit_id
        HAVING COUNT(a.assignment_id) < h.max_assignments
        ORDER BY COUNT(a.assignment_id), h.ordinal
        LIMIT 1
        """,
        (cutoff, design_id),
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
