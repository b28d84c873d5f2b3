"""The ledger: WAL, schema version and migrations, append-only, nothing deleted, journaling."""

import sqlite3

import pytest

from hitkit.survey import ledger as ledger_module
from hitkit.survey.ledger import SCHEMA_VERSION, Ledger, LedgerError


def test_new_ledger_is_wal_and_at_the_current_version(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        assert ledger.schema_version == SCHEMA_VERSION
        assert ledger.query_one("PRAGMA journal_mode")[0] == "wal"
        assert [e["kind"] for e in ledger.events()] == ["migrated"] * SCHEMA_VERSION
    # opening again applies nothing twice
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        assert len(ledger.events("migrated")) == SCHEMA_VERSION


def test_a_later_migration_is_applied_once_to_an_old_ledger(tmp_path, monkeypatch):
    Ledger(tmp_path / "ledger.sqlite").close()
    extra = "CREATE TABLE notes (note_id INTEGER PRIMARY KEY, text TEXT NOT NULL);"
    monkeypatch.setattr(ledger_module, "MIGRATIONS", ledger_module.MIGRATIONS + (extra,))
    monkeypatch.setattr(ledger_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        assert ledger.schema_version == SCHEMA_VERSION + 1
        assert ledger.query("SELECT * FROM notes") == []
        assert [e["data"]["to_version"] for e in ledger.events("migrated")] == list(
            range(1, SCHEMA_VERSION + 2))


def test_a_newer_ledger_is_refused(tmp_path):
    con = sqlite3.connect(tmp_path / "ledger.sqlite")
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION + 5}")
    con.close()
    with pytest.raises(LedgerError, match="newer than this hitkit"):
        Ledger(tmp_path / "ledger.sqlite")


def test_nothing_is_deleted_and_events_are_append_only(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        ledger.event("note", "x", text="hello")
        ledger.journal("k1", "local", "publish")
        for sql in ("DELETE FROM events", "UPDATE events SET kind = 'other'",
                    "DELETE FROM actions"):
            with pytest.raises(sqlite3.IntegrityError, match="never deletes|append-only"):
                with ledger.transaction() as con:
                    con.execute(sql)
        assert [e["kind"] for e in ledger.events()][-2:] == ["note", "action_journaled"]
        tables = {r[0] for r in ledger.query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
        triggers = {r[0] for r in ledger.query("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        assert {f"{t}_no_delete" for t in tables} <= triggers
        assert {f"{t}_append_only" for t in ("events", "responses", "trials", "reviews")} <= triggers


def test_a_failed_transaction_leaves_nothing(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        before = len(ledger.events())
        with pytest.raises(RuntimeError):
            with ledger.transaction():
                ledger.add_event("half")
                raise RuntimeError("crash in the middle")
        assert len(ledger.events()) == before


def test_journal_before_sending_is_idempotent(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        first = ledger.journal("bonus:a1:late", "prolific", "bonus", "a1", {"amount": "0.50"})
        assert first.created and first.state == "pending"
        again = ledger.journal("bonus:a1:late", "prolific", "bonus", "a1", {"amount": "9.99"})
        assert not again.created and again.request == {"amount": "0.50"}
        assert [a.idempotency_key for a in ledger.open_actions()] == ["bonus:a1:late"]
        ledger.settle("bonus:a1:late", "sent")
        done = ledger.settle("bonus:a1:late", "done", {"id": "B1"})
        assert done.state == "done" and done.response == {"id": "B1"} and done.attempts == 1
        assert ledger.open_actions() == []
        with pytest.raises(LedgerError, match="already done"):
            ledger.settle("bonus:a1:late", "failed")
