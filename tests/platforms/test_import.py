"""`hitkit import-mturk`: batch-results CSV and API assignment XML into the ledger."""

from __future__ import annotations

import csv
import json
from pathlib import Path
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


# ---------------------------------------------- issue 13, observation 7: real archives

ARCHIVES = Path(__file__).parent / "archives"


def archive(tmp_path, study, name: str) -> Path:
    """A hand-written archive with the first HIT's trial IDs and correct answers filled in."""
    from string import Template

    trials = next(iter(hits(study).values()))
    assert len(trials) == 6
    values = {}
    for i, t in enumerate(trials):
        values[f"T{i}"], values[f"A{i}"] = t.trial_id, str(t.answer[0])
        for option in (0, 1):
            values[f"B{i}_{option}"] = "true" if t.answer[0] == option else "false"
    path = tmp_path / name
    path.write_bytes(Template((ARCHIVES / name).read_bytes().decode("utf-8")).safe_substitute(values)
                     .encode("utf-8"))
    return path


def run_import(study, *paths):
    return CliRunner().invoke(cli, ["import-mturk", "--study", str(study.root),
                                    *map(str, paths)])


def test_requester_csv_bom_crlf_mturk_times_and_per_assignment_errors(tmp_path):
    study = platform_study(tmp_path / "s", {"kind": "mturk"}, places=1)
    path = archive(tmp_path, study, "Batch_4711_batch_results.csv")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf") and b"\r\n" in path.read_bytes()
    result = run_import(study, path)
    assert "5 assignment(s) read, 2 stored" in result.output, result.output
    out = result.output
    assert "3LABELWORKERASSIGNMENT0000000" in out and "'left' is not an option index" in out
    assert "3BADRTASSIGNMENT00000000000000" in out and "field rt_" in out and "'fast'" in out
    assert "3EMPTYANSWERASSIGNMENT0000000" in out and "answer is empty" in out
    assert "hitkit design" not in out and "unanswered" not in out
    with Ledger.for_study(study.root) as ledger:
        rows = {r["platform_assignment_id"]: r for r in ledger.query("SELECT * FROM assignments")}
        approved = rows["3TMFV4NEP8HNB4WZ1DAJHQ8A0PEW8K"]
        assert approved["submitted_at"] == "2019-03-05T18:12:33+00:00"  # PST is UTC-8
        assert approved["started_at"] == "2019-03-05T18:02:41+00:00"
        assert approved["comment"] == "the second image was blurry on my screen"
        assert json.loads(approved["client"])["work_time_seconds"] == 592
        summer = rows["3JNQLM5FT4NZ7QFD6LUVSZQ1QDK2LY"]
        assert summer["submitted_at"] == "2019-03-10T11:05:19+00:00"  # PDT is UTC-7
        rts = [r["rt_ms"] for r in ledger.query(
            "SELECT rt_ms FROM responses WHERE assignment_id = ? ORDER BY trial_id",
            (summer["assignment_id"],))]
        assert rts.count(None) == 2 and 0 not in rts  # empty rt_ fields: unknown, not 0 ms
        paid = ledger.query("SELECT * FROM payments")
        assert [(p["assignment_id"], p["kind"], p["amount"], p["state"]) for p in paid] == [
            (approved["assignment_id"], "reward", "1.50", "paid")]


def test_semicolon_csv_without_rt_fields_is_not_excluded_by_rt_rules(tmp_path):
    from hitkit.study.config import load_study
    from hitkit.survey.quality import answered_by_assignment, assess

    study = platform_study(tmp_path / "s", {"kind": "mturk"}, places=1)
    result = run_import(study, archive(tmp_path, study, "Batch_4712_semicolon.csv"))
    assert "1 assignment(s) read, 1 stored" in result.output, result.output
    rules = load_study(study.root).config.quality
    with Ledger.for_study(study.root) as ledger:
        assert ledger.query_one("SELECT COUNT(*) FROM responses WHERE rt_ms IS NULL")[0] == 6
        assert ledger.query_one("SELECT comment FROM assignments")[0] == "ok; thanks"
        (aid, answered), = answered_by_assignment(ledger).items()
    q = assess(aid, answered, rules)
    assert q.median_rt_ms is None and q.fast_share is None
    assert not q.excluded, q.exclusion_reason
    assert q.not_assessed and "not assessable" in q.not_assessed[0]


def test_unknown_delimiter_is_named(tmp_path):
    study = platform_study(tmp_path / "s", {"kind": "mturk"}, places=1)
    path = tmp_path / "results.csv"
    path.write_text("AssignmentId:WorkerId:AssignmentStatus\n3A:AW:Submitted\n")
    result = run_import(study, path)
    assert result.exit_code != 0
    assert "semicolon" in result.output and "tab" in result.output and "AssignmentId" in result.output


def test_boto3_json_pages_per_assignment_errors_and_uploaded_file_key(tmp_path):
    study = platform_study(tmp_path / "s", {"kind": "mturk"}, places=1)
    result = run_import(study, archive(tmp_path, study, "list_assignments_for_hit.json"))
    out = result.output
    assert "3 assignment(s) read, 1 stored" in out, out
    assert "3XMLBROKENANSWER00000000000000" in out and "not valid QuestionFormAnswers" in out
    assert "3XMLNESTEDANSWER00000000000000" in out and "nested" in out
    with Ledger.for_study(study.root) as ledger:
        row = ledger.query_one("SELECT * FROM assignments")
        assert row["submitted_at"] == "2019-03-05T18:12:33+00:00"
        client = json.loads(row["client"])
        assert client["answer.screenshot"] == "3XMLAPPROVEDASSIGNMENT00000000/screenshot.png"
        rts = sorted((r["rt_ms"] is None) for r in ledger.query("SELECT rt_ms FROM responses"))
        assert rts == [False] + [True] * 5
        assert ledger.query_one("SELECT COUNT(*) FROM payments WHERE kind = 'reward'")[0] == 1


def test_amti_jsonl_with_crowd_html_task_answers(tmp_path):
    study = platform_study(tmp_path / "s", {"kind": "mturk"}, places=1)
    result = run_import(study, archive(tmp_path, study, "assignments.jsonl"))
    out = result.output
    assert "2 assignment(s) read, 1 stored" in out, out
    assert "3CROWDNESTEDASSIGNMENT00000000" in out and "nested value" in out
    assert "hitkit design" not in out
    with Ledger.for_study(study.root) as ledger:
        row = ledger.query_one("SELECT * FROM assignments")
        assert row["comment"] == "nice task"
        assert row["submitted_at"] == "2019-03-05T18:12:33+00:00"
        assert ledger.query_one("SELECT COUNT(*) FROM responses")[0] == 6
