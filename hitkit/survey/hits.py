"""HITs in the ledger: storing a design and reading its trials and answer key back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hitkit.survey.design import Design, Trial
from hitkit.survey.ledger import Ledger, dumps, now_iso


class HitError(RuntimeError):
    """A design that cannot be stored (another design already has participants)."""


@dataclass(frozen=True)
class StoredDesign:
    design_id: str
    created: bool  # False when this exact design was already in the ledger
    retired: list[str]  # earlier designs whose open HITs were retired


def store_design(ledger: Ledger, design: Design, max_assignments: int,
                 replace: bool = False) -> StoredDesign:
    """Insert the design's HITs and trials; the same design twice is a no-op.

    A different design retires the open HITs of earlier ones (an event records
    it; nothing is deleted). When an earlier design already has assignments,
    that needs ``replace=True``, because its participants' HITs stop being offered.
    """
    with ledger.transaction() as con:
        if con.execute("SELECT 1 FROM designs WHERE design_id = ?", (design.design_id,)).fetchone():
            return StoredDesign(design.design_id, False, [])
        older = [r["design_id"] for r in con.execute(
            "SELECT DISTINCT design_id FROM hits WHERE state = 'open'")]
        started = con.execute(
            "SELECT COUNT(*) FROM assignments a JOIN hits h USING (hit_id) WHERE h.state = 'open'"
        ).fetchone()[0]
        if older and started and not replace:
            raise HitError(
                f"the ledger's design {', '.join(older)} already has {started} assignment(s); "
                "pass --replace to retire its HITs and offer the new design"
            )
        stamp = now_iso()
        for old in older:
            con.execute("UPDATE hits SET state = 'retired' WHERE design_id = ? AND state = 'open'",
                        (old,))
            ledger.add_event("design_retired", old, replaced_by=design.design_id)
            # its links admit nobody any more (a participant would land in the new design);
            # platform batches stay open until `hitkit expire` stops them there, but admit
            # nobody either (hitkit.platforms.admission wants the current design)
            for batch in con.execute("SELECT batch_id FROM batches WHERE design_id = ? AND"
                                     " platform = 'local' AND state = 'open'", (old,)).fetchall():
                con.execute("UPDATE batches SET state = 'closed' WHERE batch_id = ?",
                            (batch["batch_id"],))
                ledger.add_event("batch_closed", batch["batch_id"], reason="design replaced")
        con.execute(
            "INSERT INTO designs (design_id, task, seed, hits, trials, trials_sha256, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (design.design_id, design.task, design.seed, len(design.hits), len(design.trials),
             design.trials_sha256, stamp),
        )
        for hit in design.hits:
            con.execute(
                "INSERT INTO hits (hit_id, design_id, ordinal, max_assignments, state, practice,"
                " created_at) VALUES (?, ?, ?, ?, 'open', ?, ?)",
                (hit.hit_id, design.design_id, hit.ordinal, max_assignments, dumps(hit.practice),
                 stamp),
            )
            con.executemany(
                "INSERT INTO trials (trial_id, hit_id, position, task, kind, query, options,"
                " answer, repeat_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(t.trial_id, t.hit_id, t.position, t.task, t.kind, dumps(list(t.query)),
                  dumps(list(t.options)), dumps(list(t.answer)), t.repeat_of) for t in hit.trials],
            )
        ledger.add_event("design_stored", design.design_id, hits=len(design.hits),
                         trials=len(design.trials))
    return StoredDesign(design.design_id, True, older)


def active_design_id(ledger: Ledger) -> str | None:
    row = ledger.query_one(
        "SELECT design_id FROM hits WHERE state = 'open' ORDER BY created_at DESC LIMIT 1")
    return row["design_id"] if row else None


def hit_trials(ledger: Ledger, hit_id: str) -> list[Trial]:
    """The HIT's trials with their answer key, in display order."""
    rows = ledger.query(
        "SELECT t.*, NULL AS model, NULL AS loss FROM trials t WHERE hit_id = ? ORDER BY position",
        (hit_id,),
    )
    return [
        Trial(
            trial_id=r["trial_id"], hit_id=r["hit_id"], position=r["position"], task=r["task"],
            kind=r["kind"], query=tuple(json.loads(r["query"])),
            options=tuple(json.loads(r["options"])), answer=tuple(json.loads(r["answer"])),
            chance=1.0 / len(json.loads(r["options"])), repeat_of=r["repeat_of"],
            model=None, loss=None,
        )
        for r in rows
    ]


def hit_practice(ledger: Ledger, hit_id: str) -> dict[str, Any]:
    row = ledger.query_one("SELECT practice FROM hits WHERE hit_id = ?", (hit_id,))
    return json.loads(row["practice"]) if row else {}
