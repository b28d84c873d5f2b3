"""ledger.sqlite: the study's source of truth for HITs, assignments, responses and payments.

One SQLite file in the study folder, in WAL mode, written only inside explicit
transactions (``BEGIN IMMEDIATE``), so concurrent submissions are serialised and
a crash (even ``kill -9``) never leaves half a submission behind.

Rules the schema enforces with triggers:
- nothing is ever deleted (every table refuses DELETE);
- events, responses, trials and reviews are append-only (UPDATE is refused);
  a correction is a new row or a new event, never an edit.

Outward actions (creating a HIT on a platform, paying a bonus) are journaled in
``actions`` under an idempotency key *before* they are sent: :meth:`Ledger.journal`
returns the existing row when the key is already there, so a retry after a crash
sees what was attempted and never sends a second payment.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LEDGER_FILE = "ledger.sqlite"

# Each entry migrates the schema from version i to i + 1. Append, never edit.
MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

    CREATE TABLE designs (
        design_id TEXT PRIMARY KEY,
        task TEXT NOT NULL,
        seed INTEGER NOT NULL,
        hits INTEGER NOT NULL,
        trials INTEGER NOT NULL,
        trials_sha256 TEXT NOT NULL,
        created_at TEXT NOT NULL
    );

    CREATE TABLE hits (
        hit_id TEXT PRIMARY KEY,
        design_id TEXT NOT NULL REFERENCES designs(design_id),
        ordinal INTEGER NOT NULL,
        max_assignments INTEGER NOT NULL CHECK (max_assignments >= 1),
        state TEXT NOT NULL CHECK (state IN ('open', 'retired')),
        practice TEXT NOT NULL,
        created_at TEXT NOT NULL
    );

    CREATE TABLE trials (
        trial_id TEXT PRIMARY KEY,
        hit_id TEXT NOT NULL REFERENCES hits(hit_id),
        position INTEGER NOT NULL,
        task TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('main', 'catch', 'repeat')),
        query TEXT NOT NULL,
        options TEXT NOT NULL,
        answer TEXT NOT NULL,
        repeat_of TEXT,
        UNIQUE (hit_id, position)
    );

    CREATE TABLE batches (
        batch_id TEXT PRIMARY KEY,
        design_id TEXT NOT NULL REFERENCES designs(design_id),
        platform TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('open', 'closed')),
        places INTEGER NOT NULL,
        external_id TEXT,
        settings TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL
    );

    CREATE TABLE links (
        token TEXT PRIMARY KEY,
        batch_id TEXT NOT NULL REFERENCES batches(batch_id),
        cap INTEGER NOT NULL CHECK (cap >= 1),
        created_at TEXT NOT NULL
    );

    CREATE TABLE assignments (
        assignment_id TEXT PRIMARY KEY,
        hit_id TEXT NOT NULL REFERENCES hits(hit_id),
        batch_id TEXT REFERENCES batches(batch_id),
        platform TEXT NOT NULL,
        participant_key TEXT NOT NULL,
        link_token TEXT,
        platform_assignment_id TEXT,
        platform_session_id TEXT,
        state TEXT NOT NULL CHECK (state IN ('started', 'submitted', 'approved', 'rejected', 'returned')),
        started_at TEXT NOT NULL,
        submitted_at TEXT,
        completion_code TEXT NOT NULL,
        submission_sha256 TEXT,
        comment TEXT,
        client TEXT,
        UNIQUE (hit_id, participant_key)
    );
    CREATE INDEX assignments_participant ON assignments(participant_key);

    CREATE TABLE responses (
        response_id TEXT PRIMARY KEY,
        assignment_id TEXT NOT NULL REFERENCES assignments(assignment_id),
        trial_id TEXT NOT NULL REFERENCES trials(trial_id),
        choice TEXT NOT NULL,
        rt_ms REAL NOT NULL,
        received_at TEXT NOT NULL,
        UNIQUE (assignment_id, trial_id)
    );

    CREATE TABLE actions (
        action_id INTEGER PRIMARY KEY AUTOINCREMENT,
        idempotency_key TEXT NOT NULL UNIQUE,
        platform TEXT NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT,
        request TEXT NOT NULL DEFAULT '{}',
        state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'done', 'failed')),
        response TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );

    CREATE TABLE payments (
        payment_id TEXT PRIMARY KEY,
        assignment_id TEXT NOT NULL REFERENCES assignments(assignment_id),
        kind TEXT NOT NULL CHECK (kind IN ('reward', 'bonus')),
        amount TEXT NOT NULL,
        currency TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        action_key TEXT REFERENCES actions(idempotency_key),
        state TEXT NOT NULL CHECK (state IN ('planned', 'sent', 'paid', 'failed')),
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        UNIQUE (assignment_id, kind, reason)
    );

    CREATE TABLE reviews (
        review_id INTEGER PRIMARY KEY AUTOINCREMENT,
        assignment_id TEXT NOT NULL REFERENCES assignments(assignment_id),
        excluded INTEGER NOT NULL,
        exclusion_reason TEXT,
        reject INTEGER NOT NULL,
        message TEXT,
        metrics TEXT NOT NULL,
        created_at TEXT NOT NULL
    );

    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        subject TEXT,
        data TEXT NOT NULL DEFAULT '{}'
    );
    """
    + "".join(
        f"""
    CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
    BEGIN SELECT RAISE(ABORT, 'the ledger never deletes: record a correction event instead'); END;
    """
        for table in (
            "meta", "designs", "hits", "trials", "batches", "links", "assignments",
            "responses", "actions", "payments", "reviews", "events",
        )
    )
    + "".join(
        f"""
    CREATE TRIGGER {table}_append_only BEFORE UPDATE ON {table}
    BEGIN SELECT RAISE(ABORT, '{table} is append-only: record a correction event instead'); END;
    """
        for table in ("events", "responses", "trials", "reviews")
    ),
    # 1 -> 2: the codes of the rules that excluded (JSON list, hitkit.study.exclusions);
    # NULL in reviews recorded before, whose exclusion_reason is the only record
    """
    ALTER TABLE reviews ADD COLUMN exclusion_rules TEXT;
    """,
    # 2 -> 3: an arrival is a claim until the platform confirms it (hitkit.survey.assignments);
    # each `hitkit review` run records the [quality] rules it applied (export reads them).
    # Assignments of older ledgers are confirmed where the ledger already holds the proof:
    # local ones came in through a link (the only way in), a Prolific submission listed for
    # the same session, an MTurk record the platform handed over.
    """
    ALTER TABLE assignments ADD COLUMN confirmation TEXT NOT NULL DEFAULT 'unconfirmed'
        CHECK (confirmation IN ('unconfirmed', 'confirmed', 'refused'));
    ALTER TABLE assignments ADD COLUMN confirmed_at TEXT;
    UPDATE assignments SET confirmation = 'confirmed', confirmed_at = started_at
        WHERE platform = 'local';
    UPDATE assignments SET confirmation = 'confirmed', confirmed_at = started_at
        WHERE platform = 'prolific' AND EXISTS (SELECT 1 FROM events e
            WHERE e.kind = 'prolific_submission' AND e.subject = assignments.assignment_id
            AND json_extract(e.data, '$.submission_id') = assignments.platform_session_id);
    UPDATE assignments SET confirmation = 'confirmed', confirmed_at = started_at
        WHERE platform = 'mturk' AND state != 'started' AND EXISTS (SELECT 1 FROM events e
            WHERE e.kind = 'raw_archived' AND e.subject = assignments.platform_assignment_id);
    CREATE TABLE review_runs (
        run_id INTEGER PRIMARY KEY AUTOINCREMENT,
        rules TEXT NOT NULL,
        changed TEXT NOT NULL DEFAULT '[]',
        reason TEXT,
        assignments INTEGER NOT NULL,
        created_at TEXT NOT NULL
    );
    ALTER TABLE reviews ADD COLUMN run_id INTEGER REFERENCES review_runs(run_id);
    CREATE TRIGGER review_runs_no_delete BEFORE DELETE ON review_runs
    BEGIN SELECT RAISE(ABORT, 'the ledger never deletes: record a correction event instead'); END;
    CREATE TRIGGER review_runs_append_only BEFORE UPDATE ON review_runs
    BEGIN SELECT RAISE(ABORT, 'review_runs is append-only: record a correction event instead'); END;
    """,
    # 3 -> 4: a response time may be unknown (NULL): imported MTurk results without an
    # rt_<trial> field. SQLite cannot drop NOT NULL in place: the table is copied (DROP
    # TABLE fires no delete trigger) and its triggers recreated.
    """
    CREATE TABLE responses_v4 (
        response_id TEXT PRIMARY KEY,
        assignment_id TEXT NOT NULL REFERENCES assignments(assignment_id),
        trial_id TEXT NOT NULL REFERENCES trials(trial_id),
        choice TEXT NOT NULL,
        rt_ms REAL,
        received_at TEXT NOT NULL,
        UNIQUE (assignment_id, trial_id)
    );
    INSERT INTO responses_v4 SELECT response_id, assignment_id, trial_id, choice, rt_ms,
        received_at FROM responses;
    DROP TABLE responses;
    ALTER TABLE responses_v4 RENAME TO responses;
    CREATE TRIGGER responses_no_delete BEFORE DELETE ON responses
    BEGIN SELECT RAISE(ABORT, 'the ledger never deletes: record a correction event instead'); END;
    CREATE TRIGGER responses_append_only BEFORE UPDATE ON responses
    BEGIN SELECT RAISE(ABORT, 'responses is append-only: record a correction event instead'); END;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


class LedgerError(RuntimeError):
    """A ledger that cannot be opened or used (newer schema, corrupt file)."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


EVENT_TEXT_CHARS = 200  # longer strings in an event are cut, and the cut counted
EVENT_MAX_BYTES = 4096  # an event's data beyond this is replaced by {"oversized": true}


def _bounded(value: Any, cut: list[int], depth: int = 0) -> Any:
    """`value` with long strings shortened and deep or long containers cut; cut[0] counts
    the characters (or entries) left out."""
    if isinstance(value, str):
        if len(value) > EVENT_TEXT_CHARS:
            cut[0] += len(value) - EVENT_TEXT_CHARS
            return value[:EVENT_TEXT_CHARS]
        return value
    if isinstance(value, dict | list | tuple):
        items = list(value.items()) if isinstance(value, dict) else list(enumerate(value))
        if depth >= 4 or len(items) > 50:
            cut[0] += len(items)
            return "..."
        if isinstance(value, dict):
            return {_bounded(str(k), cut, depth): _bounded(v, cut, depth + 1) for k, v in items}
        return [_bounded(v, cut, depth + 1) for _, v in items]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**63:
        cut[0] += 1
        return "..."
    return value


@dataclass(frozen=True)
class Action:
    """A journaled outward action; ``created`` is False when the key was already there."""

    action_id: int
    idempotency_key: str
    platform: str
    kind: str
    subject: str | None
    request: dict[str, Any]
    state: str
    response: dict[str, Any] | None
    attempts: int
    created: bool


class Ledger:
    """A connection to ledger.sqlite, shared by the threads of one process.

    SQLite serialises writers; the lock keeps this process's threads from
    interleaving statements of different transactions on the one connection.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self._con = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
        except sqlite3.Error as exc:
            raise LedgerError(f"{self.path}: cannot open the ledger: {exc}") from None
        self._con.row_factory = sqlite3.Row
        self._con.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit reported to a participant survives power loss, not just kill -9.
        self._con.execute("PRAGMA synchronous=FULL")
        self._con.execute("PRAGMA foreign_keys=ON")
        self._con.execute("PRAGMA busy_timeout=30000")
        self._migrate()

    # ------------------------------------------------------------ plumbing

    @classmethod
    def for_study(cls, root: str | Path) -> Ledger:
        return cls(Path(root) / LEDGER_FILE)

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return int(self._con.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        with self._lock:
            version = self.schema_version
            if version > SCHEMA_VERSION:
                raise LedgerError(
                    f"{self.path}: schema version {version} is newer than this hitkit "
                    f"understands ({SCHEMA_VERSION}); upgrade hitkit"
                )
            for target in range(version, SCHEMA_VERSION):
                self._con.execute("BEGIN IMMEDIATE")
                try:
                    # executescript would commit the open transaction; run statement by statement.
                    for statement in _split_sql(MIGRATIONS[target]):
                        self._con.execute(statement)
                    self._con.execute(f"PRAGMA user_version={target + 1}")
                    self._insert_event("migrated", None, {"to_version": target + 1})
                    self._con.execute("COMMIT")
                except BaseException:
                    self._con.execute("ROLLBACK")
                    raise

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An explicit write transaction; commits on success, rolls back on any error."""
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                yield self._con
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")

    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._con.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: tuple | dict = ()) -> sqlite3.Row | None:
        with self._lock:
            return self._con.execute(sql, params).fetchone()

    def _insert_event(self, kind: str, subject: str | None, data: dict[str, Any]) -> None:
        # an event can carry what a participant sent (a rejected field's name): bounded,
        # so that a request cannot grow the ledger by more than EVENT_MAX_BYTES
        cut = [0]
        text = dumps(_bounded(data, cut))
        if len(text) > EVENT_MAX_BYTES:
            cut[0] += len(text)
            text = dumps({"oversized": True})
        if cut[0]:
            text = text[:-1] + ("," if text != "{}" else "") + f'"truncated_chars":{cut[0]}}}'
        if subject is not None and len(subject) > EVENT_TEXT_CHARS:
            subject = subject[:EVENT_TEXT_CHARS]
        self._con.execute(
            "INSERT INTO events (at, kind, subject, data) VALUES (?, ?, ?, ?)",
            (now_iso(), kind, subject, text),
        )

    def event(self, kind: str, subject: str | None = None, **data: Any) -> None:
        """Append an event in its own transaction (use :meth:`add_event` inside one)."""
        with self.transaction():
            self._insert_event(kind, subject, data)

    def add_event(self, kind: str, subject: str | None = None, **data: Any) -> None:
        """Append an event inside the caller's open transaction."""
        self._insert_event(kind, subject, data)

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        rows = (
            self.query("SELECT * FROM events WHERE kind = ? ORDER BY seq", (kind,))
            if kind
            else self.query("SELECT * FROM events ORDER BY seq")
        )
        return [
            {"seq": r["seq"], "at": r["at"], "kind": r["kind"], "subject": r["subject"],
             "data": json.loads(r["data"])}
            for r in rows
        ]

    # -------------------------------------------------------- outward actions

    def journal(
        self,
        key: str,
        platform: str,
        kind: str,
        subject: str | None = None,
        request: dict[str, Any] | None = None,
    ) -> Action:
        """Record an outward action before it is sent; the existing row if `key` is known.

        The caller sends only when the returned action is not yet ``done``, and then
        reports the outcome with :meth:`settle`. A crash between the two leaves a
        ``pending``/``sent`` row that a retry reconciles with the platform first.
        """
        with self.transaction() as con:
            row = con.execute("SELECT * FROM actions WHERE idempotency_key = ?", (key,)).fetchone()
            created = row is None
            if created:
                stamp = now_iso()
                con.execute(
                    "INSERT INTO actions (idempotency_key, platform, kind, subject, request, state,"
                    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
                    (key, platform, kind, subject, dumps(request or {}), stamp, stamp),
                )
                self._insert_event("action_journaled", subject, {"key": key, "kind": kind})
                row = con.execute(
                    "SELECT * FROM actions WHERE idempotency_key = ?", (key,)
                ).fetchone()
        return _action(row, created)

    def settle(self, key: str, state: str, response: dict[str, Any] | None = None) -> Action:
        """Move a journaled action to 'sent', 'done' or 'failed', with the platform's reply."""
        if state not in ("sent", "done", "failed"):
            raise ValueError(f"action state {state!r} (allowed: sent, done, failed)")
        with self.transaction() as con:
            row = con.execute("SELECT * FROM actions WHERE idempotency_key = ?", (key,)).fetchone()
            if row is None:
                raise LedgerError(f"no journaled action with key {key!r}")
            if row["state"] == "done" and state != "done":
                raise LedgerError(f"action {key!r} is already done; record a correction instead")
            con.execute(
                "UPDATE actions SET state = ?, response = ?, attempts = attempts + ?, updated_at = ?"
                " WHERE idempotency_key = ?",
                (state, dumps(response) if response is not None else row["response"],
                 1 if state == "sent" else 0, now_iso(), key),
            )
            self._insert_event("action_" + state, row["subject"], {"key": key})
            row = con.execute("SELECT * FROM actions WHERE idempotency_key = ?", (key,)).fetchone()
        return _action(row, False)

    def open_actions(self) -> list[Action]:
        """Actions journaled but not settled as done or failed: what a restart must reconcile."""
        rows = self.query(
            "SELECT * FROM actions WHERE state IN ('pending', 'sent') ORDER BY action_id"
        )
        return [_action(r, False) for r in rows]


def _action(row: sqlite3.Row, created: bool) -> Action:
    return Action(
        action_id=row["action_id"],
        idempotency_key=row["idempotency_key"],
        platform=row["platform"],
        kind=row["kind"],
        subject=row["subject"],
        request=json.loads(row["request"]),
        state=row["state"],
        response=json.loads(row["response"]) if row["response"] else None,
        attempts=row["attempts"],
        created=created,
    )


def _split_sql(script: str) -> list[str]:
    """Statements of a migration script; trigger bodies keep their inner semicolons."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements
