"""Studies, participants and end-state checks shared by the platform tests."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import tomli_w

from hitkit.platforms import admission
from hitkit.study.config import Study, load_study
from hitkit.study.manifest import MANIFEST
from hitkit.study.tables import read_table
from hitkit.survey.assignments import Arrival, start_assignment, submit
from hitkit.survey.design import make_design
from hitkit.survey.hits import hit_trials, store_design
from hitkit.survey.ledger import Ledger
from hitkit.survey.submission import parse_submission
from tests.survey.survey_helpers import make_study

LONG_MESSAGE = ("Thank you for taking part. Unfortunately most of the attention-check trials, "
                "where the answer is shown plainly, were answered wrongly, so we cannot accept it.")


def platform_study(root: Path, platform: dict, places: int = 1, size: int = 8,
                   **options) -> Study:
    """A tiny 2AFC study (images of `size` px) with its design stored in the ledger and
    [platform] set."""
    options.setdefault("models", 2)
    options.setdefault("losses", 1)
    options.setdefault("targets", 6)
    options.setdefault("trials_per_hit", 6)
    options.setdefault("catch_per_hit", 1)
    options.setdefault("responses_per_iri", places)
    study = make_study(root, size=size, **options)
    data = tomllib.loads((root / "study.toml").read_text())
    data["platform"] = platform
    data["survey"]["reward"] = 1.5
    data["survey"]["time_estimate_minutes"] = 5
    data["quality"]["rejection_message"] = LONG_MESSAGE
    (root / "study.toml").write_text(tomli_w.dumps(data))
    study = load_study(root)
    design = make_design(read_table(root / "manifest.parquet", MANIFEST), study.config)
    with Ledger.for_study(root) as ledger:
        store_design(ledger, design, study.config.survey.responses_per_iri)
    return study


def copy_study(template: Study, root: Path) -> Study:
    shutil.copytree(template.root, root)
    return load_study(root)


def answers(trials, correct: bool = True) -> dict:
    """A submission body: every trial answered (correctly, or every catch trial wrongly)."""
    out = []
    for t in trials:
        choice = t.answer[0] if (correct or t.kind != "catch") else 1 - t.answer[0]
        out.append({"trial_id": t.trial_id, "choice": choice, "rt_ms": 900.0})
    return {"responses": out, "client": {"width": 1280}}


def prolific_participant(fake, ledger: Ledger, study_id: str, pid: str, code: str,
                         correct: bool = True) -> str:
    """A participant starts on Prolific, does the survey (ledger), returns with the code."""
    session = fake.participant_starts(study_id, pid)
    q = {k: v[0] for k, v in parse_qs(urlsplit(session.url).query).items()}
    arrival = Arrival("prolific", f"prolific:{q['PROLIFIC_PID']}",
                      platform_assignment_id=q["STUDY_ID"], platform_session_id=q["SESSION_ID"])
    # admitted as the web app admits it: the published study behind STUDY_ID
    arrival = admission(ledger)["prolific"](arrival) or arrival
    assignment = start_assignment(ledger, arrival, hold_minutes=60)
    trials = hit_trials(ledger, assignment.hit_id)
    submit(ledger, assignment.assignment_id, parse_submission(answers(trials, correct), trials))
    fake.participant_submits(study_id, pid, code)
    return assignment.assignment_id


def ledger_dump(ledger: Ledger, skip: set[tuple[str, str]] = frozenset()) -> str:
    """Every value of every table as text, except the (table, column) pairs in `skip`."""
    parts = []
    tables = [r["name"] for r in ledger.query("SELECT name FROM sqlite_master WHERE type='table'")]
    for table in tables:
        for row in ledger.query(f"SELECT * FROM {table}"):  # noqa: S608 - names from sqlite_master
            for column in row.keys():
                if (table, column) not in skip:
                    parts.append(str(row[column]))
    return "\n".join(parts)
