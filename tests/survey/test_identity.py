"""Issue 12, identity: an arrival is a claim until the platform confirms it.

Each test is an attack from the issue, run against the real app on 127.0.0.1 (or the
ledger functions it calls): invented platform identities, place squatting, resuming
someone else's assignment by their participant ID, forged MTurk hitIds beyond
MaxAssignments, links that outlive `hitkit expire` or `design --replace`, and
[quality] edited after review.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from click.testing import CliRunner
from survey_helpers import make_study, published_platform_batches

from hitkit.cli.main import cli
from hitkit.platforms import admission, app_callbacks, records
from hitkit.platforms.local import publish_local
from hitkit.study.manifest import MANIFEST
from hitkit.study.tables import read_table
from hitkit.survey import ledger as ledger_module
from hitkit.survey.assignments import Arrival, AssignmentError, start_assignment, submit
from hitkit.survey.design import make_design
from hitkit.survey.hits import hit_trials, store_design
from hitkit.survey.ledger import Ledger
from hitkit.survey.quality import review
from hitkit.survey.submission import parse_submission
from hitkit.survey.web.app import create_app
from hitkit.survey.web.serving import background_server


def designed(root, places: int = 1, **options):
    study = make_study(root, responses_per_iri=places, **options)
    design = make_design(read_table(root / "manifest.parquet", MANIFEST), study.config)
    with Ledger.for_study(root) as ledger:
        store_design(ledger, design, places)
    return study


def answers(trials) -> dict:
    return {"responses": [{"trial_id": t.trial_id, "choice": t.answer[0], "rt_ms": 900.0}
                          for t in trials], "client": {"width": 1280}}


def prolific(pid: str, study_id: str = "s1", session: str | None = None) -> dict:
    return {"PROLIFIC_PID": pid, "STUDY_ID": study_id, "SESSION_ID": session or f"sess-{pid}"}


def total_places(ledger) -> int:
    return ledger.query_one("SELECT SUM(max_assignments) FROM hits WHERE state = 'open'")[0]


# ------------------------------------------------------------ observation 1


def test_invented_platform_identities_on_a_local_only_study_are_refused(tmp_path):
    study = designed(tmp_path / "study")
    with Ledger.for_study(study.root) as ledger:
        publish_local(study, ledger)
        app = create_app(study, ledger, **app_callbacks(study, ledger))
        with background_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
            for i in range(20):
                reply = client.post("/api/assignments", json=prolific(f"5finvented{i:02d}",
                                                                      f"STUDY{i}"))
                assert reply.status_code == 403, reply.text
                assert "assignment_id" not in reply.json() and f"5finvented{i:02d}" not in reply.text
                forged = {"workerId": f"AFORGED{i}", "assignmentId": f"3ASSIGN{i}",
                          "hitId": f"3HITFORGED{i}"}
                assert client.post("/api/assignments", json=forged).status_code == 403
        # an app without the platforms' callbacks admits no platform arrival either
        with background_server(create_app(study, ledger)) as url:
            assert httpx.post(f"{url}/api/assignments", json=prolific("5fbare"),
                              timeout=30).status_code == 403
        assert ledger.query_one("SELECT COUNT(*) FROM assignments")[0] == 0


def test_only_confirmed_submissions_reach_review_export_and_status(tmp_path):
    """A claim with the real STUDY_ID is admitted, but until collect confirms it, it is
    listed, not reviewed, exported or paid."""
    study = designed(tmp_path / "study", places=2)
    with Ledger.for_study(study.root) as ledger:
        published_platform_batches(ledger, "s1")
        token = publish_local(study, ledger, cap=1).links[0].token
        genuine = start_assignment(ledger, Arrival("local", f"local:{token}", link_token=token), 60)
        claim = start_assignment(ledger, admission(ledger)["prolific"](Arrival(
            "prolific", "prolific:5fclaim", platform_assignment_id="s1",
            platform_session_id="sessclaim")), 60)
        for a in (genuine, claim):
            trials = hit_trials(ledger, a.hit_id)
            submit(ledger, a.assignment_id, parse_submission(answers(trials), trials))
        states = dict(ledger.query("SELECT assignment_id, confirmation FROM assignments"))
        assert states == {genuine.assignment_id: "confirmed", claim.assignment_id: "unconfirmed"}
        assert [q.assignment_id for q in review(ledger, study.config.quality)] == \
            [genuine.assignment_id]
    runner = CliRunner()
    result = runner.invoke(cli, ["status", "--study", str(study.root), "--platform", "local"])
    assert "unconfirmed submissions: 1" in result.output and claim.assignment_id in result.output
    result = runner.invoke(cli, ["review", "--study", str(study.root)])
    assert result.exit_code == 0 and "Unconfirmed: 1" in result.output
    assert runner.invoke(cli, ["export", "--study", str(study.root)]).exit_code == 0
    import pyarrow.parquet as pq

    exported = {r["assignment_id"] for r in pq.read_table(study.root / "responses.parquet").to_pylist()}
    assert exported == {genuine.assignment_id}


# ------------------------------------------------------------ observation 2


def test_64_forged_arrivals_cannot_block_a_genuine_link(tmp_path):
    study = designed(tmp_path / "study")
    with Ledger.for_study(study.root) as ledger:
        token = publish_local(study, ledger, cap=1).links[0].token
        places = total_places(ledger)
        app = create_app(study, ledger, **app_callbacks(study, ledger))
        with background_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
            codes = {client.post("/api/assignments", json=prolific(f"5fsquat{i:02d}")).status_code
                     for i in range(max(64, places))}
            assert codes == {403}
            assert client.post("/api/assignments", json={"token": token}).status_code == 201


def test_unconfirmed_claims_hold_places_only_for_the_time_limit(tmp_path):
    """Claims with the real STUDY_ID (which every Prolific participant sees) may fill the
    places for the assignment's time limit, even when they submit; then the places return."""
    study = designed(tmp_path / "study")
    with Ledger.for_study(study.root) as ledger:
        published_platform_batches(ledger, "s1")
        token = publish_local(study, ledger, cap=1).links[0].token
        admit = admission(ledger)["prolific"]
        for i in range(total_places(ledger)):
            a = start_assignment(ledger, admit(Arrival(
                "prolific", f"prolific:5fsquat{i}", platform_assignment_id="s1",
                platform_session_id=f"s{i}")), 60)
            trials = hit_trials(ledger, a.hit_id)
            submit(ledger, a.assignment_id, parse_submission(answers(trials), trials))
        genuine = Arrival("local", f"local:{token}", link_token=token)
        with pytest.raises(AssignmentError, match="all places"):
            start_assignment(ledger, genuine, 60)  # within the time limit: held
        past = (datetime.now(UTC) - timedelta(minutes=61)).isoformat(timespec="microseconds")
        with ledger.transaction() as con:
            con.execute("UPDATE assignments SET started_at = ?", (past,))
        assert start_assignment(ledger, genuine, 60).state == "started"


# ------------------------------------------------------------ observation 3


def test_knowing_a_participant_id_does_not_resume_their_assignment(tmp_path):
    study = designed(tmp_path / "study", places=2)
    with Ledger.for_study(study.root) as ledger:
        hits = published_platform_batches(ledger, "s1")
        mturk_hit = next(v for k, v in hits.items() if k not in ("prolific", "mturk"))
        app = create_app(study, ledger, **app_callbacks(study, ledger))
        with background_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
            victim = prolific("5fvictim", session="victimsession")
            started = client.post("/api/assignments", json=victim).json()
            aid = started["assignment_id"]
            hit = client.get(f"/api/assignments/{aid}").json()
            body = {"responses": [{"trial_id": t["trial_id"], "choice": 0, "rt_ms": 900.0}
                                  for t in hit["trials"]], "client": {}}
            code = client.post(f"/api/assignments/{aid}/submit", json=body).json()["completion_code"]
            for session in ("attackersession", "victimsession"):
                for study_id in ("s1", "s2"):
                    if (session, study_id) == ("victimsession", "s1"):
                        continue
                    stolen = client.post("/api/assignments",
                                         json=prolific("5fvictim", study_id, session))
                    assert 400 <= stolen.status_code < 500
                    assert aid not in stolen.text and code not in stolen.text
            # the victim's own session still resumes
            assert client.post("/api/assignments", json=victim).json()["completion_code"] == code
            worker = {"workerId": "AVICTIM", "assignmentId": "3VICTIMASSIGN", "hitId": mturk_hit}
            mine = client.post("/api/assignments", json=worker).json()["assignment_id"]
            stolen = client.post("/api/assignments", json={**worker, "assignmentId": "3OTHER"})
            assert stolen.status_code == 403 and mine not in stolen.text


# ------------------------------------------------------------ observation 4


def test_forged_mturk_arrivals_cannot_exceed_max_assignments(tmp_path):
    study = designed(tmp_path / "study", places=4)
    with Ledger.for_study(study.root) as ledger:
        hits = published_platform_batches(ledger, "s1")
        hit_id, mturk_hit = next((k, v) for k, v in hits.items() if k not in ("prolific", "mturk"))
        app = create_app(study, ledger, **app_callbacks(study, ledger))
        with background_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
            codes = [client.post("/api/assignments", json={
                "workerId": f"AFORGED{i:02d}", "assignmentId": f"3FORGED{i:02d}",
                "hitId": mturk_hit}).status_code for i in range(34)]
        assert codes.count(201) == 4 and set(codes[4:]) == {409}
        on_hit = ledger.query_one("SELECT COUNT(*) FROM assignments WHERE hit_id = ?", (hit_id,))[0]
        assert on_hit == 4


def test_the_hit_cap_holds_under_concurrent_forged_arrivals(tmp_path):
    import threading

    study = designed(tmp_path / "study", places=4)
    with Ledger.for_study(study.root) as ledger:
        hits = published_platform_batches(ledger, "s1")
        hit_id, mturk_hit = next((k, v) for k, v in hits.items() if k not in ("prolific", "mturk"))
        codes = []
        with background_server(create_app(study, ledger, **app_callbacks(study, ledger))) as url:
            def arrive(i):
                with httpx.Client(base_url=url, timeout=30) as client:
                    codes.append(client.post("/api/assignments", json={
                        "workerId": f"ARACE{i:02d}", "assignmentId": f"3RACE{i:02d}",
                        "hitId": mturk_hit}).status_code)

            threads = [threading.Thread(target=arrive, args=(i,)) for i in range(20)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert sorted(codes) == [201] * 4 + [409] * 16
        assert ledger.query_one("SELECT COUNT(*) FROM assignments WHERE hit_id = ?",
                                (hit_id,))[0] == 4


# ------------------------------------------------------------ observation 7


def test_after_expire_no_link_or_batch_admits_anyone(tmp_path):
    study = designed(tmp_path / "study", places=3)
    root = str(study.root)
    runner = CliRunner()
    with Ledger.for_study(study.root) as ledger:
        before_replace = publish_local(study, ledger, cap=1).links[0].token
    text = (study.root / "study.toml").read_text().replace("seed = 0\n", "seed = 5\n", 1)
    (study.root / "study.toml").write_text(text)
    assert runner.invoke(cli, ["design", "--study", root, "--replace"]).exit_code == 0
    with Ledger.for_study(study.root) as ledger:
        open_link = publish_local(study, ledger, open_link=True, cap=10).links[0].token
        single = publish_local(study, ledger, cap=2, new=True).links[0].token
        published_platform_batches(ledger, "s1")
        app = create_app(study, ledger, **app_callbacks(study, ledger))
        with background_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
            def start(body):
                return client.post("/api/assignments", json=body).status_code

            # a link published before `design --replace` admits nobody into the new design
            assert start({"token": before_replace}) == 410
            assert start({"token": open_link, "participant": "early"}) == 201
            result = runner.invoke(cli, ["expire", "--study", root, "--platform", "local", "--yes"])
            assert result.exit_code == 0, result.output
            with ledger.transaction() as con:  # as `hitkit expire --platform prolific/mturk` do
                for batch in records.open_batches(ledger, "prolific") + \
                        records.open_batches(ledger, "mturk"):
                    con.execute("UPDATE batches SET state = 'closed' WHERE batch_id = ?",
                                (batch["batch_id"],))
            assert start({"token": open_link, "participant": "late"}) == 410
            assert start({"token": single}) == 410
            assert start({"token": before_replace}) == 410
            assert start(prolific("5fafterexpire")) == 403
            assert start({"workerId": "AAFTER", "assignmentId": "3AFTER",
                          "hitId": "3HIT0000"}) == 403
        states = {r[0] for r in ledger.query("SELECT state FROM batches")}
        assert states == {"closed"}


# ------------------------------------------------------------ observation 8


def reviewed_study(tmp_path):
    study = designed(tmp_path / "study", places=2)
    with Ledger.for_study(study.root) as ledger:
        for token in [link.token for link in publish_local(study, ledger, cap=3).links]:
            a = start_assignment(ledger, Arrival("local", f"local:{token}", link_token=token), 60)
            trials = hit_trials(ledger, a.hit_id)
            submit(ledger, a.assignment_id, parse_submission(answers(trials), trials))
    runner = CliRunner()
    assert runner.invoke(cli, ["review", "--study", str(study.root)]).exit_code == 0
    return study, runner


def test_editing_quality_after_review_stops_export_and_analyze(tmp_path):
    study, runner = reviewed_study(tmp_path)
    root = str(study.root)
    assert runner.invoke(cli, ["export", "--study", root]).exit_code == 0
    toml = study.root / "study.toml"
    toml.write_text(toml.read_text().replace("min_catch_accuracy = 0.5", "min_catch_accuracy = 1.0")
                    .replace("min_median_rt_ms = 300", "min_median_rt_ms = 1000"))
    for command in ("export", "analyze"):
        result = runner.invoke(cli, [command, "--study", root])
        assert result.exit_code != 0
        assert "min_catch_accuracy, min_median_rt_ms" in result.output, command
    refused = runner.invoke(cli, ["review", "--study", root])
    assert refused.exit_code == 1 and "--reason" in refused.output
    result = runner.invoke(cli, ["review", "--study", root, "--reason", "pre-registration typo"])
    assert result.exit_code == 0, result.output
    with Ledger.for_study(study.root) as ledger:
        run = ledger.query_one("SELECT * FROM review_runs ORDER BY run_id DESC LIMIT 1")
        assert run["reason"] == "pre-registration typo"
        assert run["changed"] == '["min_catch_accuracy","min_median_rt_ms"]'
        # every assignment now has the verdict of the new run (median RT 900 < 1000 ms)
        assert ledger.query_one("SELECT COUNT(*) FROM reviews WHERE excluded = 1")[0] == 3
    assert runner.invoke(cli, ["export", "--study", root]).exit_code == 0
    import pyarrow.parquet as pq

    rows = pq.read_table(study.root / "responses.parquet").to_pylist()
    assert rows and all(r["excluded"] for r in rows)


def test_export_uses_the_recorded_verdict_not_a_recomputed_one(tmp_path):
    study, runner = reviewed_study(tmp_path)
    with Ledger.for_study(study.root) as ledger:  # a verdict reviewed by a person, recorded
        aid = ledger.query_one("SELECT assignment_id FROM assignments LIMIT 1")[0]
        with ledger.transaction() as con:
            con.execute("INSERT INTO reviews (assignment_id, excluded, exclusion_rules,"
                        " exclusion_reason, reject, metrics, created_at) VALUES"
                        " (?, 1, '[\"catch_accuracy\"]', 'recorded', 0, '{}', 'now')", (aid,))
    assert runner.invoke(cli, ["export", "--study", str(study.root)]).exit_code == 0
    import pyarrow.parquet as pq

    rows = pq.read_table(study.root / "responses.parquet").to_pylist()
    assert {r["exclusion_reason"] for r in rows if r["assignment_id"] == aid} == {"recorded"}


def test_export_needs_a_review(tmp_path):
    study = designed(tmp_path / "study")
    result = CliRunner().invoke(cli, ["export", "--study", str(study.root)])
    assert result.exit_code == 1 and "run `hitkit review` first" in result.output


# -------------------------------------------------------------- migration


def test_a_schema_2_ledger_is_confirmed_where_it_holds_the_proof(tmp_path, monkeypatch):
    path = tmp_path / "ledger.sqlite"
    with monkeypatch.context() as old:
        old.setattr(ledger_module, "MIGRATIONS", ledger_module.MIGRATIONS[:2])
        old.setattr(ledger_module, "SCHEMA_VERSION", 2)
        Ledger(path).close()
    con = sqlite3.connect(path)
    con.executescript("""
        INSERT INTO designs VALUES ('d', '2afc', 0, 1, 1, '', 'then');
        INSERT INTO hits VALUES ('h', 'd', 0, 9, 'open', '{}', 'then');
        INSERT INTO assignments (assignment_id, hit_id, platform, participant_key,
            platform_session_id, state, started_at, submitted_at, completion_code) VALUES
            ('local1', 'h', 'local', 'local:t', NULL, 'submitted', 'then', 'then', 'c'),
            ('listed', 'h', 'prolific', 'prolific:p1', 'sub1', 'submitted', 'then', 'then', 'c'),
            ('other', 'h', 'prolific', 'prolific:p2', 'forged', 'submitted', 'then', 'then', 'c'),
            ('never', 'h', 'prolific', 'prolific:p3', 'sub3', 'submitted', 'then', 'then', 'c');
        INSERT INTO events (at, kind, subject, data) VALUES
            ('then', 'prolific_submission', 'listed', '{"submission_id":"sub1","status":"APPROVED"}'),
            ('then', 'prolific_submission', 'other', '{"submission_id":"sub2","status":"APPROVED"}');
    """)
    con.close()
    with Ledger(path) as ledger:
        assert ledger.schema_version == ledger_module.SCHEMA_VERSION >= 3
        states = dict(ledger.query("SELECT assignment_id, confirmation FROM assignments"))
    assert states == {"local1": "confirmed", "listed": "confirmed", "other": "unconfirmed",
                      "never": "unconfirmed"}
