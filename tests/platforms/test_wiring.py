"""The survey stage wired to the platforms: `hitkit publish/collect/status/expire` for
Prolific and MTurk (against the fakes), Prolific's completion URL from the survey app,
and MTurk ExternalQuestion arrivals pinned to their HIT."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from click.testing import CliRunner

from hitkit import platforms
from hitkit.cli.main import cli
from hitkit.platforms import app_callbacks
from hitkit.platforms.mturk.platform import hitkit_hit_for
from hitkit.platforms.prolific.platform import completion_url
from hitkit.survey.hits import hit_trials
from hitkit.survey.ledger import Ledger
from hitkit.survey.web.app import create_app
from hitkit.survey.web.serving import background_server
from tests.fakes.fixtures import mturk_client
from tests.platforms.helpers import answers, ledger_dump, platform_study, prolific_participant

PROLIFIC = {"kind": "prolific", "currency": "GBP",
            "prolific": {"public_url": "https://survey.example.org/"}}
MTURK = {"kind": "mturk", "currency": "USD"}
EXTERNAL = {"kind": "mturk", "currency": "USD",
            "mturk": {"question": "external", "external_url": "https://survey.example.org/"}}


def hitkit_cli(*args: str, env: dict | None = None, code: int = 0):
    result = CliRunner().invoke(cli, list(args), env=env)
    assert result.exit_code == code, result.output
    return result


def test_cli_publish_collect_status_expire_on_prolific(tmp_path, prolific_fake):
    fake = prolific_fake
    study = platform_study(tmp_path / "study", PROLIFIC, places=1)
    where = ["--study", str(study.root), "--endpoint-url", fake.api_url]
    # no token: the platform's error is a clean command-line error, the token never printed
    result = hitkit_cli("publish", *where, env={"PROLIFIC_TOKEN": ""}, code=1)
    assert "prolific: no Prolific API token" in result.output and "Traceback" not in result.output
    env = {"PROLIFIC_TOKEN": fake.token}

    result = hitkit_cli("publish", *where, env=env)
    (study_id,) = fake.studies
    assert f"created on prolific: 3 place(s), prolific ID {study_id}" in result.output
    assert f"https://app.prolific.com/researcher/studies/{study_id}" in result.output
    assert "note: estimated cost" in result.stderr and fake.token not in result.output
    again = hitkit_cli("publish", *where, env=env)
    assert "already open" in again.output and len(fake.studies) == 1  # a re-run adds nothing

    code = fake.studies[study_id].fields["completion_codes"][0]["code"]
    with Ledger.for_study(study.root) as ledger:
        prolific_participant(fake, ledger, study_id, "c" * 24, code)
    result = hitkit_cli("collect", *where, env=env)
    assert ("prolific: 1 new submission(s) stored, 1 awaiting review, 0 approved, 0 rejected, "
            "0 pending") in result.output
    result = hitkit_cli("status", *where, env=env)
    assert "prolific batch" in result.output and f"({study_id}): ACTIVE, 3 place(s)" in result.output
    assert "submissions: 1 AWAITING REVIEW" in result.output
    # Prolific cannot be asked: the ledger's part is still shown, and the exit status says so
    result = hitkit_cli("status", *where, env={"PROLIFIC_TOKEN": ""}, code=1)
    assert "assignments: 1 submitted" in result.output and "no Prolific API token" in result.output

    result = hitkit_cli("expire", *where, "--yes", env=env)
    assert f"stopped 1: {study_id}" in result.output
    assert fake.study_status(fake.studies[study_id]) not in ("ACTIVE", "PAUSED")
    assert "c" * 24 not in "".join([result.output, result.stderr])


def test_cli_publish_refuses_low_pay_unless_forced(tmp_path, prolific_fake):
    study = platform_study(tmp_path / "study", PROLIFIC, places=1)
    where = ["--study", str(study.root), "--endpoint-url", prolific_fake.api_url]
    env = {"PROLIFIC_TOKEN": prolific_fake.token}
    text = (study.root / "study.toml").read_text().replace("reward = 1.5", "reward = 0.1")
    (study.root / "study.toml").write_text(text)
    result = hitkit_cli("publish", *where, env=env, code=1)
    assert "below Prolific's minimum" in result.output and not prolific_fake.studies
    result = hitkit_cli("publish", *where, "--force", env=env)
    assert "published anyway: --force" in result.stderr and len(prolific_fake.studies) == 1


def test_cli_publish_collect_expire_on_mturk(tmp_path, mturk_fake, monkeypatch):
    fake = mturk_fake
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAHITKITWIRINGTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wiring/test/secret")
    study = platform_study(tmp_path / "study", MTURK, places=1)
    where = ["--study", str(study.root), "--endpoint-url", fake.url]
    result = hitkit_cli("publish", *where, "--image-base-url", "http://images.example.org/", code=1)
    assert "must be https://" in result.output and not fake.hits

    result = hitkit_cli("publish", *where, "--platform", "mturk")
    assert len(fake.hits) == 3 and "created on mturk: 3 place(s)" in result.output
    (hit_type,) = fake.hit_types
    assert f"mturk ID {hit_type}" in result.output
    assert "Amazon closed" not in result.stderr  # not an Amazon endpoint
    hitkit_cli("publish", *where)
    assert len(fake.hits) == 3  # re-run: HITs found again, none duplicated

    mturk_hit, hit = sorted(fake.hits.items())[0]
    with Ledger.for_study(study.root) as ledger:
        trials = hit_trials(ledger, hitkit_hit_for(ledger, mturk_hit))
    fake.add_worker("A1WIRINGWORKER")
    fake.worker_submits(mturk_hit, "A1WIRINGWORKER", {"results": json.dumps(answers(trials))})
    result = hitkit_cli("collect", *where)
    assert "mturk: 1 new submission(s) stored, 1 awaiting review" in result.output
    assert "A1WIRINGWORKER" not in result.output + result.stderr
    result = hitkit_cli("status", *where)
    assert "mturk batch" in result.output and "Assignable" in result.output

    assert "not confirmed" in CliRunner().invoke(cli, ["expire", *where], input="n\n").output
    result = hitkit_cli("expire", *where, "--yes")
    assert "stopped 3" in result.output
    assert {fake.hit_status(h) for h in fake.hits.values()} <= {"Reviewable", "Unassignable"}
    with Ledger.for_study(study.root) as ledger:
        assert ledger.query_one("SELECT state FROM batches WHERE platform = 'mturk'")[0] == "closed"


def test_a_prolific_arrival_is_sent_back_with_the_completion_url(tmp_path, prolific_fake):
    fake = prolific_fake
    study = platform_study(tmp_path / "study", PROLIFIC, places=1)
    opts = {"api_url": fake.api_url, "token": fake.token}
    with Ledger.for_study(study.root) as ledger:
        study_id = platforms.publish(study, "prolific", ledger=ledger, **opts).external_id
        code = fake.studies[study_id].fields["completion_codes"][0]["code"]
        expected = completion_url(study, ledger, study_id)
        assert expected == f"https://app.prolific.com/submissions/complete?cc={code}"
        pid = "5f" + "d" * 22
        session = fake.participant_starts(study_id, pid)
        params = {k: v[0] for k, v in parse_qs(urlsplit(session.url).query).items()}
        with background_server(create_app(study, ledger, **app_callbacks(study, ledger))) as url, \
                httpx.Client(base_url=url, timeout=30) as client:
            page = client.get("/", params=params)
            assert page.status_code == 200 and 'data-preview="0"' in page.text
            started = client.post("/api/assignments", json=params)
            assert started.status_code == 201 and "completion_url" not in started.json()
            aid = started.json()["assignment_id"]
            hit = client.get(f"/api/assignments/{aid}").json()
            assert "completion_url" not in hit  # not before the work is done
            trials = hit_trials(ledger, ledger.query_one(
                "SELECT hit_id FROM assignments WHERE assignment_id = ?", (aid,))[0])
            done = client.post(f"/api/assignments/{aid}/submit", json=answers(trials)).json()
            assert done["completion_url"] == expected
            resumed = client.post("/api/assignments", json=params).json()
            assert resumed["completion_url"] == expected  # coming back later: sent back again
            # a Prolific study hitkit did not publish admits nobody
            other = {**params, "PROLIFIC_PID": "5f" + "e" * 22, "STUDY_ID": "notourstudy"}
            refused = client.post("/api/assignments", json=other)
            assert refused.status_code == 403 and "assignment_id" not in refused.json()
        fake.participant_submits(study_id, pid, code)
        result = platforms.collect(study, "prolific", ledger=ledger, **opts)
        assert result.awaiting_review == [aid]
        assert pid not in ledger_dump(ledger, {("assignments", "participant_key")})


@pytest.fixture
def external(tmp_path, mturk_fake):
    study = platform_study(tmp_path / "study", EXTERNAL, places=2)
    ledger = Ledger.for_study(study.root)
    opts = {"client": mturk_client(mturk_fake), "endpoint_url": mturk_fake.url}
    platforms.publish(study, "mturk", ledger=ledger, **opts)
    yield study, ledger, mturk_fake, opts
    ledger.close()


def test_an_external_question_arrival_is_pinned_to_its_hit(external):
    study, ledger, fake, opts = external
    assert all("ExternalQuestion" in h.question for h in fake.hits.values())
    # the last HIT first: unpinned, a new participant would get the least-filled first HIT
    ordinal = {r["hit_id"]: r["ordinal"] for r in ledger.query("SELECT hit_id, ordinal FROM hits")}
    pairs = [(m, hitkit_hit_for(ledger, m)) for m in fake.hits]
    by_mturk = dict(sorted(pairs, key=lambda pair: -ordinal.get(pair[1], 0)))
    assert len(set(by_mturk.values())) == 3 and None not in by_mturk.values()
    workers = iter(f"A2PINWORKER{i}" for i in range(10))
    with background_server(create_app(study, ledger, **app_callbacks(study, ledger))) as url, \
            httpx.Client(base_url=url, timeout=30) as client:
        for mturk_hit, hit_id in by_mturk.items():
            worker = next(workers)
            fake.add_worker(worker)
            mturk_assignment = fake.worker_accepts(mturk_hit, worker)
            arrival = {"assignmentId": mturk_assignment, "hitId": mturk_hit, "workerId": worker}
            reply = client.post("/api/assignments", json=arrival)
            assert reply.status_code == 201, reply.text
            aid = reply.json()["assignment_id"]
            row = ledger.query_one("SELECT hit_id FROM assignments WHERE assignment_id = ?",
                                   (aid,))
            assert row["hit_id"] == hit_id
            again = client.post("/api/assignments", json=arrival).json()
            assert again["assignment_id"] == aid and again["resumed"]
        # the survey app stores the work; MTurk's answer carries only the completion code
        mturk_hit, hit_id = next(iter(by_mturk.items()))
        worker = next(workers)
        fake.add_worker(worker)
        mturk_assignment = fake.worker_accepts(mturk_hit, worker)
        arrival = {"assignmentId": mturk_assignment, "hitId": mturk_hit, "workerId": worker}
        aid = client.post("/api/assignments", json=arrival).json()["assignment_id"]
        reply = client.post(f"/api/assignments/{aid}/submit",
                            json=answers(hit_trials(ledger, hit_id))).json()
    fake.worker_submits(mturk_hit, worker, {"assignmentId": mturk_assignment,
                                            "completion_code": reply["completion_code"]})
    result = platforms.collect(study, "mturk", ledger=ledger, **opts)
    assert result.awaiting_review == [aid] and result.problems == [] and result.new == 0
    assert worker not in ledger_dump(ledger, {("assignments", "participant_key")})


def test_an_external_question_arrival_for_a_closed_hit_is_refused(external):
    study, ledger, fake, opts = external
    mturk_hit = sorted(fake.hits)[0]
    hit_id = hitkit_hit_for(ledger, mturk_hit)
    with ledger.transaction() as con:
        con.execute("UPDATE hits SET state = 'retired' WHERE hit_id = ?", (hit_id,))
    with background_server(create_app(study, ledger, **app_callbacks(study, ledger))) as url:
        arrival = {"assignmentId": "ASSIGNCLOSED1", "hitId": mturk_hit, "workerId": "A3CLOSEDWORKER"}
        reply = httpx.post(f"{url}/api/assignments", json=arrival, timeout=30)
    assert reply.status_code == 410 and reply.json()["error"]["field"] == "hitId"
    assert "A3CLOSEDWORKER" not in reply.text
