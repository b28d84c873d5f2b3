"""`hitkit import-mturk`: MTurk results from the archives requesters have.

Formats (chosen by content, not only by suffix):
- the requester site's "batch results" CSV (`Batch_<n>_batch_results.csv`): a BOM,
  CRLF line ends and a `;` or tab delimiter (a spreadsheet's re-save) are accepted;
  answer columns are `Answer.<field>`;
- API assignment XML (GetAssignmentsForHIT / ListAssignmentsForHIT written as XML);
- boto3 `ListAssignmentsForHIT` responses saved as JSON (one response, a list of them,
  or a list of Assignment objects), and JSON Lines with one Assignment per line (the
  shape amti-style `assignments.jsonl` files hold).
Each assignment's answers are read as
- a `results` field holding hitkit's submission JSON (what hitkit's HTMLQuestion
  page posts), or
- crowd-html's `taskAnswers` field (`<crowd-form>` posts a JSON list with one object
  of field -> value), whose fields are read as below, or
- one field per trial, named by its trial ID, holding the chosen option index (a
  matching trial: the indices joined by commas), with an optional `rt_<trial_id>`
  field in milliseconds. A missing or empty `rt_<trial_id>` is an unknown response
  time, stored as NULL: hitkit.survey.quality then leaves the RT rules unassessed
  for it (and says so), never 0 ms.
SubmitTime and AcceptTime are stored as ISO 8601 UTC whether written the way MTurk's
CSV writes them (`Tue Mar 05 10:12:33 PST 2019`), as ISO 8601 or as epoch seconds.
The worker's `comment`, AcceptTime (as `started_at`), WorkTimeInSeconds and other
answer fields (an UploadedFileKey) are kept; an Approved assignment gets its reward
payment row (the CSV's Reward column, else the study's reward). A problem with one
assignment is reported with its AssignmentId and cause and does not stop the file.
The WorkerId goes into `assignments.participant_key` only; the raw record is archived
in the ledger without it. Importing the same file twice adds nothing.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from hitkit.platforms import records
from hitkit.platforms.base import PlatformError
from hitkit.platforms.mturk.answers import parse_answers
from hitkit.study.fees import to_minor_units
from hitkit.survey.hits import hit_trials
from hitkit.survey.ledger import Ledger
from hitkit.survey.submission import SubmissionError, parse_submission

STATES = {"Submitted": "submitted", "Approved": "approved", "Rejected": "rejected"}
REQUIRED = ("AssignmentId", "WorkerId", "AssignmentStatus")
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
# the zones MTurk's CSV writes (Java's Date.toString in Pacific time), and UTC
ZONES = {"PST": -8, "PDT": -7, "UTC": 0, "GMT": 0, "Z": 0}
MTURK_TIME = re.compile(r"^[A-Z][a-z]{2} ([A-Z][a-z]{2} \d{1,2} \d{2}:\d{2}:\d{2}) ([A-Z]{1,4}) (\d{4})$")
INDICES = re.compile(r"^\s*\d+(\s*,\s*\d+)*\s*$")
KNOWN = set(REQUIRED) | {"HITId", "SubmitTime", "AcceptTime", "WorkTimeInSeconds", "Answer",
                         "Reward", "AutoApprovalTime", "ApprovalTime", "RejectionTime",
                         "Deadline", "RequesterFeedback", "HITTypeId"}


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
    fields: dict[str, Any]  # SubmitTime, AcceptTime, WorkTimeInSeconds, Reward as found
    answers: dict[str, str] | None  # None: read from `answer_xml` per assignment
    raw: dict[str, Any]
    answer_xml: str | None = None


# ---------------------------------------------------------------- readers

def read_csv(path: Path) -> list[Record]:
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    first = text.split("\n", 1)[0]
    delimiter = next((d for d in DELIMITERS
                      if set(REQUIRED) <= {c.strip().strip('"') for c in first.split(d)}), None)
    if delimiter is None:
        raise PlatformError(
            f"{path}: not an MTurk batch results CSV: its first line has no columns "
            f"{', '.join(REQUIRED)} with any delimiter tried ({', '.join(DELIMITERS.values())}); "
            f"first line: {first[:120]!r}")
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    out = []
    for row in reader:
        row = {(k or "").strip(): (v if isinstance(v, str) else "") for k, v in row.items()}
        answers = {k[len("Answer."):]: v for k, v in row.items() if k.startswith("Answer.")}
        out.append(Record(row["AssignmentId"], row["WorkerId"], row.get("HITId", ""),
                          row["AssignmentStatus"], _fields(row), answers,
                          {k: v for k, v in row.items() if k != "WorkerId"}))
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
        out.append(_from_mapping(fields))
    if not out:
        raise PlatformError(f"{path}: no <Assignment> elements found")
    return out


def read_json(path: Path) -> tuple[list[Record], list[str]]:
    """boto3 responses (JSON) or one Assignment per line (JSON Lines); problems per line."""
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    items: list[Any] = []
    problems: list[str] = []
    try:
        items = [json.loads(text)]
    except ValueError:
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except ValueError as exc:
                    problems.append(f"line {n}: not JSON ({exc})")
    assignments: list[Any] = []
    for item in items:
        for one in item if isinstance(item, list) else [item]:
            if isinstance(one, dict) and isinstance(one.get("Assignments"), list):
                assignments += one["Assignments"]  # a ListAssignmentsForHIT response
            elif isinstance(one, dict) and isinstance(one.get("Assignment"), dict):
                assignments.append(one["Assignment"])  # a GetAssignment response
            else:
                assignments.append(one)
    out = []
    for n, a in enumerate(assignments, start=1):
        if not isinstance(a, dict) or not a.get("AssignmentId"):
            problems.append(f"record {n}: not an MTurk Assignment (no AssignmentId)")
            continue
        out.append(_from_mapping(a))
    if not out and not problems:
        raise PlatformError(f"{path}: no MTurk assignments found (expected boto3 "
                            "ListAssignmentsForHIT output or one Assignment per line)")
    return out, problems


def _fields(mapping: dict[str, Any]) -> dict[str, Any]:
    return {k: mapping[k] for k in ("SubmitTime", "AcceptTime", "WorkTimeInSeconds", "Reward")
            if mapping.get(k) not in (None, "")}


def _from_mapping(a: dict[str, Any]) -> Record:
    raw = {k: (v.isoformat() if isinstance(v, datetime) else v)
           for k, v in a.items() if k != "WorkerId"}
    return Record(str(a["AssignmentId"]), str(a.get("WorkerId") or ""), str(a.get("HITId") or ""),
                  str(a.get("AssignmentStatus") or "Submitted"), _fields(a), None, raw,
                  str(a.get("Answer") or ""))


# ---------------------------------------------------------------- values

def parse_time(value: Any, name: str) -> str:
    """An MTurk time (CSV text, ISO 8601, epoch seconds, datetime) as ISO 8601 UTC."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(value, UTC)
    else:
        text = str(value).strip()
        match = MTURK_TIME.match(text)
        try:
            if match:
                if match.group(2) not in ZONES:
                    raise ValueError(f"time zone {match.group(2)!r} (known: {', '.join(ZONES)})")
                local = datetime.strptime(f"{match.group(1)} {match.group(3)}", "%b %d %H:%M:%S %Y")
                moment = local.replace(tzinfo=timezone(timedelta(hours=ZONES[match.group(2)])))
            else:
                moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
                moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        except ValueError as exc:
            raise PlatformError(f"{name} {text[:60]!r} is not a time MTurk writes "
                                f"('Tue Mar 05 10:12:33 PST 2019', ISO 8601 or epoch seconds): "
                                f"{exc}") from None
    return moment.astimezone(UTC).isoformat()


def task_answers(text: str) -> dict[str, str]:
    """crowd-html's `taskAnswers` (a JSON list holding one object) as flat fields."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PlatformError(f"field taskAnswers is not JSON: {exc}") from None
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if not isinstance(data, dict):
        raise PlatformError("field taskAnswers: expected crowd-form's list with one object "
                            f"of field -> value, got {type(data).__name__}")
    out = {}
    for name, value in data.items():
        if isinstance(value, dict) and value and all(isinstance(v, bool) for v in value.values()):
            value = ",".join(k for k, v in value.items() if v)  # crowd-radio / checkboxes
        elif isinstance(value, dict) and set(value) == {"on"}:
            value = "1" if value["on"] else ""
        if isinstance(value, dict | list):
            raise PlatformError(f"field taskAnswers.{name}: a nested value "
                                f"({json.dumps(value)[:60]}) where one answer is expected")
        out[str(name)] = "" if value is None else str(value)
    return out


def body_from(ledger: Ledger, answers: dict[str, str]) -> tuple[dict[str, Any], set[str]]:
    """The submission body for parse_submission, and the trials whose RT is unknown."""
    if "taskAnswers" in answers:
        answers = {**{k: v for k, v in answers.items() if k != "taskAnswers"},
                   **task_answers(answers["taskAnswers"])}
    if "results" in answers:
        try:
            return json.loads(answers["results"]), set()
        except ValueError as exc:
            raise PlatformError(f"field results is not JSON: {exc}") from None
    if not any(v.strip() for v in answers.values()):
        raise PlatformError("its answer is empty (no field has a value)")
    names = sorted(answers)
    marks = ",".join("?" * len(names))
    trial_ids = {r["trial_id"] for r in ledger.query(
        f"SELECT trial_id FROM trials WHERE trial_id IN ({marks})", tuple(names))}
    if not trial_ids:
        if ledger.query_one("SELECT 1 FROM trials LIMIT 1") is None:
            raise PlatformError("the ledger has no trials: run `hitkit design` for this study first")
        raise PlatformError(
            f"none of its fields ({', '.join(names[:6])}{', ...' if len(names) > 6 else ''}) is a "
            "trial ID of this study's design: expected one field per trial named by its trial "
            "ID, a `results` field, or crowd-html `taskAnswers`")
    responses, unknown_rt = [], set()
    for name in sorted(trial_ids):
        value = answers[name].strip()
        if not value:
            continue  # unanswered: parse_submission names it
        if not INDICES.match(value):
            raise PlatformError(f"field {name}: {value[:40]!r} is not an option index (hitkit "
                                "expects the chosen option's 0-based position, e.g. '1', or "
                                "positions joined by commas; a label cannot be mapped back)")
        parts = [int(v) for v in value.split(",")]
        rt_text = (answers.get(f"rt_{name}") or "").strip()
        if rt_text:
            try:
                rt = float(rt_text)
            except ValueError:
                raise PlatformError(f"field rt_{name}: {rt_text[:40]!r} is not a number of "
                                    "milliseconds") from None
        else:
            rt, _ = 0.0, unknown_rt.add(name)  # placeholder; stored as NULL
        responses.append({"trial_id": name, "choice": parts[0] if len(parts) == 1 else parts,
                          "rt_ms": rt})
    return {"responses": responses, "comment": answers.get("comment", "")}, unknown_rt


# ---------------------------------------------------------------- import

def read_any(path: Path) -> tuple[list[Record], list[str]]:
    head = path.read_bytes()[:2048].decode("utf-8-sig", errors="replace").lstrip()
    if path.suffix.lower() == ".xml" or head.startswith("<"):
        return read_xml(path), []
    if path.suffix.lower() in (".json", ".jsonl") or head.startswith(("{", "[")):
        return read_json(path)
    return read_csv(path), []


def import_mturk(ledger: Ledger, path: str | Path, reward_minor: int | None = None) -> ImportResult:
    path = Path(path)
    if not path.exists():
        raise PlatformError(f"{path}: no such file")
    recs, file_problems = read_any(path)
    result = ImportResult(read=len(recs), problems=list(file_problems))
    for rec in recs:
        try:
            created = _import_one(ledger, path, rec, reward_minor)
        except (PlatformError, SubmissionError) as exc:
            result.problems.append(f"assignment {rec.assignment_id}: {exc}")
            continue
        except (ValueError, TypeError) as exc:  # a value of an unexpected type in JSON
            result.problems.append(f"assignment {rec.assignment_id}: unreadable record "
                                   f"({type(exc).__name__}: {exc})")
            continue
        if created is None:
            continue
        if created:
            result.stored += 1
        else:
            result.already += 1
    ledger.event("mturk_imported", None, file=path.name, read=result.read, stored=result.stored,
                 already=result.already, problems=len(result.problems))
    return result


def _import_one(ledger: Ledger, path: Path, rec: Record, reward_minor: int | None) -> bool:
    state = STATES.get(rec.status)
    if state is None:
        raise PlatformError(f"status {rec.status!r} is not one hitkit imports "
                            f"({', '.join(STATES)})")
    if not rec.worker_id:
        raise PlatformError("no WorkerId")
    records.archive_raw(ledger, "mturk", rec.assignment_id, {"source": path.name, **rec.raw})
    answers = rec.answers if rec.answers is not None else parse_answers(rec.answer_xml)
    submitted = parse_time(rec.fields["SubmitTime"], "SubmitTime") if "SubmitTime" in rec.fields else None
    accepted = parse_time(rec.fields["AcceptTime"], "AcceptTime") if "AcceptTime" in rec.fields else None
    work_time = rec.fields.get("WorkTimeInSeconds")
    if work_time is not None:
        try:
            work_time = int(float(work_time))
        except ValueError:
            raise PlatformError(f"WorkTimeInSeconds {str(work_time)[:20]!r} is not a number") from None
    body, unknown_rt = body_from(ledger, answers)
    trial_ids = [r.get("trial_id") for r in body.get("responses", []) if isinstance(r, dict)]
    row = ledger.query_one("SELECT hit_id FROM trials WHERE trial_id = ?",
                           (trial_ids[0] if trial_ids else "",))
    if row is None:
        raise PlatformError("its trial IDs are not in the ledger's design "
                            "(run `hitkit design` for this study first)")
    submission = parse_submission(body, hit_trials(ledger, row["hit_id"]))
    extra = {k: v for k, v in answers.items()
             if k not in {r.trial_id for r in submission.responses} and not k.startswith("rt_")
             and k not in ("results", "comment", "taskAnswers") and v}
    client = {**submission.client, "source": "import-mturk"}
    if work_time is not None:
        client["work_time_seconds"] = work_time
    for key, value in list(extra.items())[:8]:  # an UploadedFileKey, a free-text box
        client[f"answer.{key}"[:40]] = str(value)[:300]
    submission = replace(submission, client=client, responses=tuple(
        replace(r, rt_ms=None) if r.trial_id in unknown_rt else r for r in submission.responses))
    aid, created = records.store_submission(
        ledger, hit_id=row["hit_id"], batch_id=None, platform="mturk",
        participant_key=f"mturk:{rec.worker_id}", platform_assignment_id=rec.assignment_id,
        submission=submission, submitted_at=submitted, state=state, started_at=accepted)
    if created and state == "approved":
        amount = reward_minor
        reward = str(rec.fields.get("Reward") or "").strip().lstrip("$")
        try:
            amount = to_minor_units(reward) if reward else reward_minor
        except (ArithmeticError, ValueError):
            pass  # the study's reward; the archived row keeps what the file said
        if amount is not None:
            records.record_imported_reward(ledger, aid, amount, "USD")
    return created
