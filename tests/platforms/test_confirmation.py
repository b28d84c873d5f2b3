"""Issue 12, identity on the platforms (against the fakes): `hitkit collect` confirms an
assignment only when the platform lists its submission for the same participant and
session; claims stay out of review, pay and export; `hitkit expire` stops every batch."""

from __future__ import annotations

import httpx
import pytest

from hitkit import platforms
from hitkit.platforms import admission, app_callbacks, records
from hitkit.survey.assignments import Arrival, start_assignment, submit
from hitkit.survey.hits import hit_trials
from hitkit.survey.ledger import Ledger
from hitkit.survey.quality import review
from hitkit.survey.submission import parse_submission
from hitkit.survey.web.app import create_app
from hitkit.survey.web.serving import background_server
from tests.fakes.fixtures import mturk_client
from tests.platforms.helpers import answers, platform_study, prolific_participant

PROLIFIC = {"kind": "prolific", "currency": "GBP",
            "prolific": {"public_url": "https://survey.example.org/"}}
EXTERNAL = {"kind": "mturk", "currency": "USD",
            "mturk": {"question": "external", "external_url": "https://survey.example.org/"}}


def claim(ledger, study_id: str, pid: str, session: str) -> str:
    """An arrival with the real STUDY_ID (every participant sees it) and a made-up or
    someone else's identity, which submits."""
    arrival = admission(ledger)["prolific"](Arrival(
        "prolific", f"prolific:{pid}", platform_assignment_id=study_id,
        platform_session_id=session))
    assert arrival is not None  # admitted: the study is real and open
    a = start_assignment(ledger, arrival, 60)
    trials = hit_trials(ledger, a.hit_id)
    submit(ledger, a.assignment_id, parse_submission(answers(trials), trials))
    return a.assignment_id


def confirmation(ledger, aid: str) -> str:
    return ledger.query_one("SELECT confirmation FROM assignments WHERE assignment_id = ?",
                            (aid,))[0]


def test_prolific_collect_confirms_only_the_listed_participant_and_session(tmp_path,
                                                                           prolific_fake):
    fake = prolific_fake
    study = platform_study(tmp_path / "study", PROLIFIC, places=2)
    opts = {"api_url": fake.api_url, "token": fake.token}
    with Ledger.for_study(study.root) as ledger:
        study_id = platforms.publish(study, "prolific", ledger=ledger, **opts).external_id
        code = fake.studies[study_id].fields["completion_codes"][0]["code"]
        genuine = prolific_participant(fake, ledger, study_id, "a" * 24, code)
        invented = claim(ledger, study_id, "b" * 24, "inventedsession")
        # a real Prolific participant, but the ledger's assignment has another session
        fake.participant_starts(study_id, "c" * 24)
        other_session = claim(ledger, study_id, "c" * 24, "notthesession")
        fake.participant_submits(study_id, "c" * 24, code)
        assert {confirmation(ledger, a) for a in (genuine, invented, other_session)} == \
            {"unconfirmed"}
        result = platforms.collect(study, "prolific", ledger=ledger, **opts)
        assert result.awaiting_review == [genuine]
        assert confirmation(ledger, genuine) == "confirmed"
        assert confirmation(ledger, invented) == confirmation(ledger, other_session) == "unconfirmed"
        assert any(other_session in p and "another session" in p for p in result.problems)
        assert [q.assignment_id for q in review(ledger, study.config.quality)] == [genuine]


def test_mturk_collect_confirms_the_listed_assignment_not_a_forged_one(tmp_path, mturk_fake):
    fake = mturk_fake
    study = platform_study(tmp_path / "study", EXTERNAL, places=3)
    opts = {"client": mturk_client(fake), "endpoint_url": fake.url}
    with Ledger.for_study(study.root) as ledger:
        platforms.publish(study, "mturk", ledger=ledger, **opts)
        mturk_hit = sorted(fake.hits)[0]
        fake.add_worker("A1REALWORKER")
        real = fake.worker_accepts(mturk_hit, "A1REALWORKER")
        app = create_app(study, ledger, **app_callbacks(study, ledger))
        ids = {}
        with background_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
            for name, body in (("thief", {"workerId": "A1THIEF", "assignmentId": real}),
                               ("real", {"workerId": "A1REALWORKER", "assignmentId": real}),
                               ("forged", {"workerId": "A1FORGED", "assignmentId": "3FORGED"})):
                reply = client.post("/api/assignments", json={**body, "hitId": mturk_hit})
                assert reply.status_code == 201, reply.text
                aid = ids[name] = reply.json()["assignment_id"]
                hit = ledger.query_one("SELECT hit_id FROM assignments WHERE assignment_id = ?",
                                       (aid,))[0]
                done = client.post(f"/api/assignments/{aid}/submit",
                                   json=answers(hit_trials(ledger, hit))).json()
                if name == "real":
                    fake.worker_submits(mturk_hit, "A1REALWORKER", {
                        "assignmentId": real, "completion_code": done["completion_code"]})
        result = platforms.collect(study, "mturk", ledger=ledger, **opts)
        assert result.awaiting_review == [ids["real"]]
        assert confirmation(ledger, ids["real"]) == "confirmed"
        assert confirmation(ledger, ids["forged"]) == confirmation(ledger, ids["thief"]) == \
            "unconfirmed"
        assert [q.assignment_id for q in review(ledger, study.config.quality)] == [ids["real"]]


def test_prolific_expire_stops_every_open_study(tmp_path, prolific_fake):
    fake = prolific_fake
    study = platform_study(tmp_path / "study", PROLIFIC, places=1)
    opts = {"api_url": fake.api_url, "token": fake.token}
    with Ledger.for_study(study.root) as ledger:
        first = platforms.publish(study, "prolific", ledger=ledger, **opts).external_id
        second = platforms.publish(study, "prolific", ledger=ledger, new=True, **opts).external_id
        assert first != second
        stopped = platforms.expire(study, "prolific", ledger=ledger, **opts)
        assert sorted(stopped) == sorted([first, second])
        assert {fake.study_status(fake.studies[s]) for s in (first, second)} & {"ACTIVE"} == set()
        assert records.open_batches(ledger, "prolific") == []
        app = create_app(study, ledger, **app_callbacks(study, ledger))
        with background_server(app) as url:
            for study_id in (first, second):
                reply = httpx.post(f"{url}/api/assignments", timeout=30, json={
                    "PROLIFIC_PID": "5f" + "a" * 22, "STUDY_ID": study_id, "SESSION_ID": "x"})
                assert reply.status_code == 403
        with pytest.raises(platforms.PlatformError, match="no open Prolific batch"):
            platforms.expire(study, "prolific", ledger=ledger, **opts)
