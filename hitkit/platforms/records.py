"""What the platform backends write into the ledger besides journaled actions.

Batches, review outcomes (assignment state and the reward payment), bonus
payment rows, submissions that arrive through a platform's API (MTurk's
HTMLQuestion answers, imported MTurk results) and the raw answers archive.
Raw platform participant IDs go into `assignments.participant_key` only.
Money arrives here as integer minor units; `payments.amount` keeps the text it
always had ("1.50"), so ledgers written before still read (`amount_text`,
`amount_minor`).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from hitkit.platforms.base import Bonus, PlatformError
from hitkit.study.fees import to_major_units, to_minor_units
from hitkit.survey.hits import active_design_id
from hitkit.survey.ledger import Ledger, dumps, now_iso
from hitkit.survey.submission import Submission


def digest(*parts: object, length: int = 16) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:length]


def open_batch(ledger: Ledger, platform: str) -> Any:
    design_id = active_design_id(ledger)
    if design_id is None:
        raise PlatformError("the ledger has no HITs: run `hitkit design` first")
    return ledger.query_one(
        "SELECT * FROM batches WHERE design_id = ? AND platform = ? AND state = 'open'"
        " ORDER BY created_at DESC LIMIT 1", (design_id, platform))


def open_batches(ledger: Ledger, platform: str) -> list[Any]:
    """Every open batch of the platform, of any design (what `hitkit expire` closes)."""
    return ledger.query("SELECT * FROM batches WHERE platform = ? AND state = 'open'"
                        " ORDER BY created_at", (platform,))


def confirm(ledger: Ledger, assignment_id: str, platform: str, **proof: Any) -> None:
    """The platform listed this assignment's submission for the same participant and session:
    it is no longer a claim (only confirmed submissions reach review, pay and export)."""
    with ledger.transaction() as con:
        cur = con.execute("UPDATE assignments SET confirmation = 'confirmed', confirmed_at = ?"
                          " WHERE assignment_id = ? AND confirmation != 'confirmed'",
                          (now_iso(), assignment_id))
        if cur.rowcount:
            ledger.add_event("confirmed", assignment_id, platform=platform, **proof)


def create_batch(ledger: Ledger, platform: str, places: int, settings: dict[str, Any]) -> Any:
    design_id = active_design_id(ledger)
    if design_id is None:
        raise PlatformError("the ledger has no HITs: run `hitkit design` first")
    batch_id = platform[0] + secrets.token_hex(6)
    with ledger.transaction() as con:
        con.execute(
            "INSERT INTO batches (batch_id, design_id, platform, state, places, settings, created_at)"
            " VALUES (?, ?, ?, 'open', ?, ?, ?)",
            (batch_id, design_id, platform, places, dumps(settings), now_iso()))
        ledger.add_event("batch_created", batch_id, platform=platform, places=places)
    return ledger.query_one("SELECT * FROM batches WHERE batch_id = ?", (batch_id,))


def set_external_id(ledger: Ledger, batch_id: str, external_id: str) -> None:
    with ledger.transaction() as con:
        con.execute("UPDATE batches SET external_id = ? WHERE batch_id = ? AND external_id IS NULL",
                    (external_id, batch_id))


def close_batch(ledger: Ledger, batch_id: str) -> None:
    with ledger.transaction() as con:
        con.execute("UPDATE batches SET state = 'closed' WHERE batch_id = ?", (batch_id,))
        ledger.add_event("batch_closed", batch_id)


def amount_text(minor: int) -> str:
    """How payments.amount stores an amount: major units with two places ("1.50")."""
    return str(to_major_units(minor))


def amount_minor(text: str) -> int:
    """payments.amount as integer minor units."""
    return to_minor_units(text)


def planned_places(ledger: Ledger) -> int:
    design_id = active_design_id(ledger)
    row = ledger.query_one(
        "SELECT COALESCE(SUM(max_assignments), 0) AS n FROM hits WHERE design_id = ? AND state = 'open'",
        (design_id,))
    return int(row["n"])


def record_review(ledger: Ledger, assignment_id: str, state: str, reward_minor: int | None,
                  currency: str, action_key: str | None, message: str | None = None) -> None:
    """An approval (with its reward payment) or a rejection, as the platform confirmed it."""
    with ledger.transaction() as con:
        row = con.execute("SELECT state FROM assignments WHERE assignment_id = ?",
                          (assignment_id,)).fetchone()
        if row is None or row["state"] == state:
            return
        con.execute("UPDATE assignments SET state = ? WHERE assignment_id = ?", (state, assignment_id))
        stamp = now_iso()
        if state == "approved" and reward_minor is not None:
            con.execute(
                "INSERT OR IGNORE INTO payments (payment_id, assignment_id, kind, amount, currency,"
                " reason, action_key, state, created_at, updated_at)"
                " VALUES (?, ?, 'reward', ?, ?, '', ?, 'paid', ?, ?)",
                ("pay-" + digest(assignment_id, "reward"), assignment_id, amount_text(reward_minor),
                 currency, action_key, stamp, stamp))
        ledger.add_event(state, assignment_id, **({"message": message} if message else {}))


def record_imported_reward(ledger: Ledger, assignment_id: str, reward_minor: int,
                           currency: str) -> None:
    """The reward of an assignment imported as Approved: paid on the platform before hitkit
    saw it (no action of hitkit's paid it, so no action key)."""
    stamp = now_iso()
    with ledger.transaction() as con:
        cur = con.execute(
            "INSERT OR IGNORE INTO payments (payment_id, assignment_id, kind, amount, currency,"
            " reason, action_key, state, created_at, updated_at)"
            " VALUES (?, ?, 'reward', ?, ?, 'imported', NULL, 'paid', ?, ?)",
            ("pay-" + digest(assignment_id, "reward"), assignment_id, amount_text(reward_minor),
             currency, stamp, stamp))
        if cur.rowcount:
            ledger.add_event("reward_imported", assignment_id, amount=amount_text(reward_minor))


def plan_bonuses(ledger: Ledger, bonuses: list[Bonus], currency: str) -> list[str]:
    """Payment rows for the bonuses (one per assignment and reason, ever); their payment IDs.

    A bonus already planned or paid for the same assignment and reason is not
    planned again: UNIQUE (assignment_id, kind, reason) is the double-payment guard.
    """
    ids = []
    with ledger.transaction() as con:
        for b in bonuses:
            if b.amount_minor <= 0:
                raise PlatformError(f"bonus for {b.assignment_id}: amount "
                                    f"{amount_text(b.amount_minor)} must be positive")
            if con.execute("SELECT 1 FROM assignments WHERE assignment_id = ?",
                           (b.assignment_id,)).fetchone() is None:
                raise PlatformError(f"bonus: no assignment {b.assignment_id} in the ledger")
            payment_id = "pay-" + digest(b.assignment_id, "bonus", b.reason)
            stamp = now_iso()
            cur = con.execute(
                "INSERT OR IGNORE INTO payments (payment_id, assignment_id, kind, amount, currency,"
                " reason, state, created_at, updated_at) VALUES (?, ?, 'bonus', ?, ?, ?, 'planned', ?, ?)",
                (payment_id, b.assignment_id, amount_text(b.amount_minor), currency, b.reason,
                 stamp, stamp))
            if cur.rowcount:
                ledger.add_event("bonus_planned", b.assignment_id, payment_id=payment_id,
                                 amount=amount_text(b.amount_minor))
            ids.append(payment_id)
    return ids


def payments(ledger: Ledger, payment_ids: list[str]) -> list[Any]:
    marks = ",".join("?" * len(payment_ids))
    return ledger.query(f"SELECT * FROM payments WHERE payment_id IN ({marks}) ORDER BY payment_id",
                        tuple(payment_ids)) if payment_ids else []


def bind_payments(ledger: Ledger, payment_ids: list[str], action_key: str) -> None:
    """Tie planned payments to the action that will pay them (before it is journaled)."""
    with ledger.transaction() as con:
        for pid in payment_ids:
            con.execute("UPDATE payments SET action_key = ?, updated_at = ? WHERE payment_id = ?"
                        " AND action_key IS NULL AND state = 'planned'", (action_key, now_iso(), pid))


def settle_payments(ledger: Ledger, payment_ids: list[str], state: str) -> None:
    with ledger.transaction() as con:
        for pid in payment_ids:
            con.execute("UPDATE payments SET state = ?, updated_at = ? WHERE payment_id = ?",
                        (state, now_iso(), pid))
            ledger.add_event("bonus_" + state, pid)


def unpaid_bonus_runs(ledger: Ledger, payment_ids: list[str]) -> dict[str | None, list[str]]:
    """The given payments not yet paid, grouped by the action bound to them (None: unbound)."""
    runs: dict[str | None, list[str]] = {}
    for row in payments(ledger, payment_ids):
        if row["state"] != "paid":
            runs.setdefault(row["action_key"], []).append(row["payment_id"])
    return runs


def first_sent(ledger: Ledger, key: str, after: str | None = None) -> str | None:
    """When the action `key` was first sent (ISO time; only sends after `after` count),
    None if it never was: how long an idempotency token sent with it still protects a
    repeat."""
    row = ledger.query_one("SELECT MIN(at) AS at FROM events WHERE kind = 'action_sent'"
                           " AND json_extract(data, '$.key') = ? AND at > ?", (key, after or ""))
    return row["at"] if row is not None else None


def settle_unresolved(ledger: Ledger, payment_id: str, paid: bool, note: str = "") -> str:
    """The operator's answer for a payment the platform's record could not settle
    (`hitkit pay --settle PAYMENT=paid|unpaid`, after looking at the requester site).

    paid: the payment and its action are recorded as done, nothing will be sent.
    unpaid: the action is marked so the next `hitkit pay` may send it again (the platform
    backend still asks the platform first). Returns what was recorded.
    """
    row = ledger.query_one("SELECT * FROM payments WHERE payment_id = ?", (payment_id,))
    if row is None:
        raise PlatformError(f"--settle: no payment {payment_id} in the ledger")
    if row["state"] == "paid":
        raise PlatformError(f"--settle: payment {payment_id} is already recorded as paid")
    key = row["action_key"]
    if key is None or ledger.query_one("SELECT 1 FROM actions WHERE idempotency_key = ?",
                                       (key,)) is None:
        raise PlatformError(f"--settle: payment {payment_id} was never sent; `hitkit pay` sends it")
    # `at`: sends before the verdict no longer count for the token's window
    answer = {"operator": "paid" if paid else "unpaid", "note": note, "at": now_iso()}
    ledger.settle(key, "done" if paid else "failed", answer)
    if paid:
        settle_payments(ledger, [payment_id], "paid")
    ledger.event("payment_settled_by_operator", payment_id, paid=paid, note=note)
    return answer["operator"]


def paid_bonus_count(ledger: Ledger, assignment_id: str) -> int:
    row = ledger.query_one("SELECT COUNT(*) AS n FROM payments WHERE assignment_id = ? AND"
                           " kind = 'bonus' AND state = 'paid'", (assignment_id,))
    return int(row["n"])


def archive_raw(ledger: Ledger, platform: str, subject: str, raw: dict[str, Any]) -> bool:
    """Keep a platform's raw answer (platforms delete them: MTurk after 120 days); once per content."""
    text = dumps(raw)
    sha = hashlib.sha256(text.encode()).hexdigest()
    with ledger.transaction() as con:
        seen = con.execute("SELECT 1 FROM events WHERE kind = 'raw_archived' AND subject = ?"
                           " AND json_extract(data, '$.sha256') = ?", (subject, sha)).fetchone()
        if seen:
            return False
        ledger.add_event("raw_archived", subject, platform=platform, sha256=sha, raw=raw)
    return True


def store_submission(ledger: Ledger, *, hit_id: str, batch_id: str | None, platform: str,
                     participant_key: str, platform_assignment_id: str, submission: Submission,
                     submitted_at: str | None, state: str = "submitted",
                     started_at: str | None = None) -> tuple[str, bool]:
    """An assignment whose responses came through the platform's API (one transaction);
    confirmed, since the platform itself handed them over.

    Returns (hitkit assignment ID, created); the same platform assignment twice is a no-op.
    """
    with ledger.transaction() as con:
        row = con.execute(
            "SELECT assignment_id FROM assignments WHERE platform = ? AND platform_assignment_id = ?",
            (platform, platform_assignment_id)).fetchone()
        if row is not None:
            return row["assignment_id"], False
        assignment_id = "a" + digest(platform, platform_assignment_id, length=24)
        stamp = now_iso()
        con.execute(
            "INSERT INTO assignments (assignment_id, hit_id, batch_id, platform, participant_key,"
            " platform_assignment_id, state, started_at, submitted_at, completion_code,"
            " submission_sha256, comment, client, confirmation, confirmed_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'confirmed', ?)",
            (assignment_id, hit_id, batch_id, platform, participant_key, platform_assignment_id,
             state, started_at or submitted_at or stamp, submitted_at or stamp,
             digest(assignment_id, length=8).upper(),
             submission.sha256, submission.comment, dumps(submission.client), stamp))
        con.executemany(
            "INSERT INTO responses (response_id, assignment_id, trial_id, choice, rt_ms, received_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(f"{assignment_id}-{r.trial_id}", assignment_id, r.trial_id, json.dumps(list(r.choice)),
              r.rt_ms, stamp) for r in submission.responses])
        ledger.add_event("submitted", assignment_id, platform=platform,
                         responses=len(submission.responses))
    return assignment_id, True
