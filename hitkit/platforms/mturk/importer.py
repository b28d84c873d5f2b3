"""`hitkit import-mturk`: MTurk results from the web "batch results" CSV or API assignment XML.

Historic MTurk studies (and batches whose HITs Amazon has since deleted) come
into the ledger like collected ones, so `hitkit review` and `hitkit export`
treat them the same. Each assignment's answers are read as
- a `results` field holding hitkit's submission JSON (what hitkit's
  HTMLQuestion page posts), or
- one field per trial, named by its trial ID, holding the chosen option
  index (a matching trial: the indices joined by commas), with an optional
  `rt_<trial_id>` field in milliseconds.
The HIT is found from the trial IDs. CSV answer columns are `Answer.<field>`.
The WorkerId goes into `assignments.participant_key` only; the raw row is
archived in the ledger without it. Importing the same file twice adds nothing.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from hitkit.platforms import records
from hitkit.platforms.base import PlatformError
from hitkit.platforms.mturk.answers import parse_answers
from hitkit.survey.hits import hit_trials
from hitkit.survey.ledger import Ledger
from hitkit.survey.submission import SubmissionError, parse_submission

STATES = {"Submitted": "submitted", "Approved": "approved", "Rejected": "rejected"}


@dataclass
class ImportResult:
    read: int = 0
    stored: int = 0
    already: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Record:
    assignment_id: str
    worker_id: str
    hit_id: str
    status: str
    submit_time: str | None
    answers: dict[str, str]
    raw: dict[str, Any]


def read_csv(path: Path) -> list[Record]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"AssignmentId", "WorkerId", "AssignmentStatus"} - set(reader.fieldnames or [])
        if missing:
            raise PlatformError(f"{path}: not an MTurk batch results CSV (missing column(s) "
                                f"{', '.join(sorted(missing))})")
        out = []
        for row in reader:
            answers = {k[len("Answer."):]: v for k, v in row.items() if k and k.startswith("Answer.")}
            raw = {k: v for k, v in row.items() if k != "WorkerId"}
            out.append(Record(row["AssignmentId"], row["WorkerId"], row.get("HITId", ""),
                              row["AssignmentStatus"], row.get("SubmitTime") or None, answers, raw))
        return out


def read_xml(path: Path) -> list[Record]:
    try:
        root = SafeET.fromstring(path.read_bytes())
    except (SafeET.ParseError, DefusedXmlException) as exc:
        raise PlatformError(f"{path}: not readable XML: {exc}") from None
    out = []
    for node in root.iter():
        if node.tag.rsplit("}", 1)[-1] != "Assignment":
            continue
        fields = {child.tag.rsplit("}", 1)[-1]: (child.text or "") for child in node}
        if "AssignmentId" not in fields:
            continue
        answers = parse_answers(fields.get("Answer", ""))
        raw = {k: v for k, v in fields.items() if k != "WorkerId"}
        out.append(Record(fields["AssignmentId"], fields.get("WorkerId", ""), fields.get("HITId", ""),
                          fields.get("AssignmentStatus", "Submitted"),
                          fields.get("SubmitTime") or None, answers, raw))
    if not out:
        raise PlatformError(f"{path}: no <Assignment> elements found")
    return out


def body_from(answers: dict[str, str]) -> dict[str, Any]:
    if "results" in answers:
        try:
            return json.loads(answers["results"])
        except ValueError as exc:
            raise PlatformError(f"the results field is not JSON: {exc}") from None
    responses = []
    for name, value in answers.items():
        if name.startswith("rt_") or not value.strip():
            continue
        parts = [int(v) for v in value.split(",")] if value.replace(",", "").strip().isdigit() else None
        if parts is None:
            continue  # a free-text field (a comment box), not a trial
        rt = answers.get(f"rt_{name}", "0") or "0"
        responses.append({"trial_id": name, "choice": parts[0] if len(parts) == 1 else parts,
                          "rt_ms": float(rt)})
    return {"responses": responses, "comment": answers.get("comment", "")}


def import_mturk(ledger: Ledger, path: str | Path) -> ImportResult:
    path = Path(path)
    if not path.exists():
        raise PlatformError(f"{path}: no such file")
    recs = read_xml(path) if path.suffix.lower() == ".xml" else read_csv(path)
    result = ImportResult(read=len(recs))
    for rec in recs:
        state = STATES.get(rec.status)
        if state is None:
            result.problems.append(f"{rec.assignment_id}: status {rec.status!r} skipped")
            continue
        if not rec.worker_id:
            result.problems.append(f"{rec.assignment_id}: no WorkerId")
            continue
        records.archive_raw(ledger, "mturk", rec.assignment_id, {"source": path.name, **rec.raw})
        try:
            body = body_from(rec.answers)
            trial_ids = [r.get("trial_id") for r in body.get("responses", []) if isinstance(r, dict)]
            row = ledger.query_one("SELECT hit_id FROM trials WHERE trial_id = ?",
                                   (trial_ids[0] if trial_ids else "",))
            if row is None:
                raise PlatformError("its trial IDs are not in the ledger's design "
                                    "(run `hitkit design` for this study first)")
            submission = parse_submission(body, hit_trials(ledger, row["hit_id"]))
        except (PlatformError, SubmissionError, ValueError) as exc:
            result.problems.append(f"{rec.assignment_id}: {exc}")
            continue
        _, created = records.store_submission(
            ledger, hit_id=row["hit_id"], batch_id=None, platform="mturk",
            participant_key=f"mturk:{rec.worker_id}", platform_assignment_id=rec.assignment_id,
            submission=submission, submitted_at=rec.submit_time, state=state)
        if created:
            result.stored += 1
        else:
            result.already += 1
    ledger.event("mturk_imported", None, file=path.name, read=result.read, stored=result.stored,
                 already=result.already, problems=len(result.problems))
    return result
