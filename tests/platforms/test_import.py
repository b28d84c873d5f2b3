"""`hitkit import-mturk`: batch-results CSV and API assignment XML into the ledger."""

from __future__ import annotations

import csv
import json
from xml.sax.saxutils import escape

from click.testing import CliRunner

from hitkit.cli.main import cli
from hitkit.survey.hits import hit_trials
from hitkit.survey.ledger import Ledger
from tests.fakes.mturk import question_form_answers
from tests.platforms.helpers import answers, platform_study


def hits(study):
    with Ledger.for_study(study.root) as ledger:
        return {r["hit_id"]: hit_trials(ledger, r["hit_id"]) for r in ledger.query(
            "SELECT hit_id FROM hits ORDER BY ordinal")}


def test_batch_results_csv_per_trial_columns(tmp_path):
    study = platform_study(tmp_path / "s", {"kind": "mturk"}, places=2)
    by_hit = hits(study)
    trial_ids = sorted({t.trial_id for trials in by_hit.values() for t in trials})
    path = tmp_path / "Batch_1_batch_results.csv"
    header = ["HITId", "AssignmentId", "WorkerId", "AssignmentStatus", "SubmitTime",
              "Answer.comment"] + [f"Answer.{t}" for t in trial_ids] + [f"Answer.rt_{t}" for t in trial_ids]
    rows = []
    for n, (_hit_id, trials) in enumerate(by_hit.items()):
        row = {k: "" for k in header}
        row.update({"HITId": f"3HIT{n}", "AssignmentId": f"3ASSIGN{n}", "WorkerId": f"AWORKER{n}",
                    "AssignmentStatus": ["Approved", "Submitted", "Rejected"][n],
                    "SubmitTime": "Tue Mar 07 10:00:00 PST 2023", "Answer.comment": "fine"})
        for t in trials:
            row[f"Answer.{t.trial_id}"] = str(t.answer[0])
            row[f"Answer.rt_{t.trial_id}"] = "812"
        rows.append(row)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, header)
        writer.writeheader()
        writer.writerows(rows)
    runner = CliRunner()
    result = runner.invoke(cli, ["import-mturk", "--study", str(study.root), str(path)])
    assert result.exit_code == 0, result.output
    assert "3 assignment(s) read, 3 stored" in result.output
    assert "AWORKER" not in result.output
    again = runner.invoke(cli, ["import-mturk", "--study", str(study.root), str(path)])
    assert "0 stored, 3 already" in again.output
    with Ledger.for_study(study.root) as ledger:
        states = sorted(r["state"] for r in ledger.query("SELECT state FROM assignments"))
        assert states == ["approved", "rejected", "submitted"]
        n = ledger.query_one("SELECT COUNT(*) FROM responses")[0]
        assert n == sum(len(t) for t in by_hit.values())
        assert ledger.query_one("SELECT MIN(rt_ms) FROM responses")[0] == 812
        archived = ledger.events("raw_archived")
        assert len(archived) == 3 and all("AWORKER" not in json.dumps(e) for e in archived)


def test_api_assignment_xml_with_results_field(tmp_path):
    study = platform_study(tmp_path / "s", {"kind": "mturk"}, places=1)
    by_hit = hits(study)
    parts = []
    for n, trials in enumerate(by_hit.values()):
        answer = question_form_answers({"results": json.dumps(answers(trials))})
        parts.append(f"<Assignment><AssignmentId>3XML{n}</AssignmentId><WorkerId>AXMLWORKER{n}"
                     f"</WorkerId><HITId>3H{n}</HITId><AssignmentStatus>Submitted</AssignmentStatus>"
                     f"<Answer>{escape(answer)}</Answer></Assignment>")
    parts.append("<Assignment><AssignmentId>3BAD</AssignmentId><WorkerId>ABAD</WorkerId>"
                 "<AssignmentStatus>Submitted</AssignmentStatus><Answer></Answer></Assignment>")
    path = tmp_path / "assignments.xml"
    path.write_text("<GetAssignmentsForHITResult>" + "".join(parts) + "</GetAssignmentsForHITResult>")
    result = CliRunner().invoke(cli, ["import-mturk", "--study", str(study.root), str(path)])
    assert result.exit_code == 0, result.output
    assert f"{len(by_hit) + 1} assignment(s) read, {len(by_hit)} stored" in result.output
    assert "3BAD" in result.output  # the empty answer is reported, not silently dropped
