"""The MTurk backend against the fake MTurk service (boto3 unchanged, endpoint_url override)."""

from __future__ import annotations

import json

import defusedxml.ElementTree as SafeET
import pytest

from hitkit.platforms import Bonus, PlatformError, open_platform
from hitkit.platforms.mturk.answers import parse_answers
from hitkit.platforms.mturk.api import SANDBOX_URL
from hitkit.platforms.mturk.platform import CLOSURE_NOTICE, MTurkPlatform, reward_string
from hitkit.platforms.mturk.question import MAX_QUESTION_BYTES, html_question
from hitkit.study.fees import to_minor_units
from hitkit.survey.hits import hit_trials
from hitkit.survey.ledger import Ledger
from tests.fakes.fixtures import mturk_client
from tests.platforms.helpers import LONG_MESSAGE, answers, platform_study

MTURK = {"kind": "mturk", "currency": "USD", "mturk": {"auto_approval_days": 3}}


@pytest.fixture
def study(tmp_path):
    return platform_study(tmp_path / "study", MTURK, places=2)


def platform(study, ledger, fake, **options) -> MTurkPlatform:
    return open_platform(study, "mturk", ledger, client=mturk_client(fake, read_timeout=1.0),
                         endpoint_url=fake.url, **options)


def hit_of(fake, mturk_hit: str) -> str:
    return fake.hits[mturk_hit].annotation.rsplit("hit=", 1)[1]


def work(fake, ledger, mturk_hit: str, worker: str, correct: bool = True) -> str:
    trials = hit_trials(ledger, hit_of(fake, mturk_hit))
    fake.add_worker(worker)
    return fake.worker_submits(mturk_hit, worker, {"results": json.dumps(answers(trials, correct))})


def test_publish_collect_review_bonus(study, mturk_fake):
    fake = mturk_fake
    with Ledger.for_study(study.root) as ledger:
        p = platform(study, ledger, fake)
        published = p.publish()
        assert published.places == 6 and len(fake.hits) == 3
        assert CLOSURE_NOTICE not in published.notes  # not an Amazon endpoint
        hit_type = fake.hit_types[published.external_id]
        assert hit_type.reward == "1.50"
        comparators = {r["QualificationTypeId"]: r["Comparator"]
                       for r in hit_type.qualification_requirements}
        assert comparators["000000000000000000L0"] == "GreaterThanOrEqualTo"
        assert comparators["00000000000000000071"] == "In"
        assert "DoesNotExist" in comparators.values()
        for hit in fake.hits.values():
            assert hit.token and len(hit.token) == 64 and hit.annotation.startswith("hitkit;")
            assert "HTMLQuestion" in hit.question and len(hit.question.encode()) <= MAX_QUESTION_BYTES
            data = hit.question.split('id="hit-data">', 1)[1].split("</script>", 1)[0]
            assert '"answer"' not in hit.question and "catch" not in data  # the script itself has try/catch
        assert not p.publish().created and len(fake.hits) == 3  # a re-run creates nothing

        workers = ["A1WORKERONE", "A2WORKERTWO", "A3WORKERTHREE", "A4WORKERFOUR"]
        hits = sorted(fake.hits)
        platform_ids = [work(fake, ledger, hits[i % 3], w, correct=i != 3)
                        for i, w in enumerate(workers)]
        got = p.collect()
        assert got.new == 4 and len(got.awaiting_review) == 4 and not got.problems
        assert p.collect().new == 0  # incremental: nothing stored twice
        ids = {r["platform_assignment_id"]: r["assignment_id"] for r in ledger.query(
            "SELECT platform_assignment_id, assignment_id FROM assignments")}
        keep = [ids[a] for a in platform_ids[:3]]
        assert sorted(p.approve(keep).done) == sorted(keep)
        assert p.reject([ids[platform_ids[3]]], LONG_MESSAGE).done == [ids[platform_ids[3]]]
        assert sorted(p.approve(keep).already) == sorted(keep)
        paid = p.bonus([Bonus(a, 30, "accuracy bonus") for a in keep])
        assert len(paid.done) == 3
        assert p.bonus([Bonus(a, 30, "accuracy bonus") for a in keep]).done == []
        assert fake.double_bonuses() == {} and len(fake.bonuses) == 3
        assert sorted(a.status for a in fake.assignments.values()) == ["Approved"] * 3 + ["Rejected"]
        # the "participated" qualification went to every worker, silently
        assert {w for (_, w) in fake.qualifications} == set(workers)
        # raw answers archived, without the WorkerId
        archived = ledger.events("raw_archived")
        assert len(archived) == 4 and all("WorkerId" not in e["data"]["raw"] for e in archived)
        assert p.status().submissions_by_state["completed"] == 4
        expired = p.expire(delete=True)
        assert len(expired) == 3 and all(h.disposed for h in fake.hits.values())
        assert ledger.open_actions() == []


def test_production_needs_flag_confirmation_and_cap(tmp_path, mturk_fake):
    study = platform_study(tmp_path / "prod", MTURK)
    with Ledger.for_study(study.root) as ledger:
        with pytest.raises(PlatformError, match="budget_cap"):
            open_platform(study, "mturk", ledger, production=True, yes=True,
                          client=mturk_client(mturk_fake))
    capped = platform_study(tmp_path / "capped", {**MTURK, "budget_cap": 100.0})
    with Ledger.for_study(capped.root) as ledger:
        with pytest.raises(PlatformError, match="--yes"):
            open_platform(capped, "mturk", ledger, production=True, client=mturk_client(mturk_fake))
        with pytest.raises(PlatformError, match="not confirmed"):
            open_platform(capped, "mturk", ledger, production=True, confirm=lambda q: False,
                          client=mturk_client(mturk_fake))
        p = open_platform(capped, "mturk", ledger, production=True, confirm=lambda q: "PRODUCTION" in q,
                          client=mturk_client(mturk_fake))
        assert p.environment == "production" and CLOSURE_NOTICE in p.notes
        sandbox = open_platform(capped, "mturk", ledger, client=mturk_client(mturk_fake))
        assert sandbox.endpoint == SANDBOX_URL and CLOSURE_NOTICE in sandbox.notes


def test_budget_and_balance_guards(tmp_path):
    from tests.fakes.mturk import FakeMTurk

    study = platform_study(tmp_path / "s", {**MTURK, "budget_cap": 1.0})
    with FakeMTurk() as fake, Ledger.for_study(study.root) as ledger:
        with pytest.raises(PlatformError, match="budget_cap"):
            platform(study, ledger, fake).publish()
    study = platform_study(tmp_path / "t", MTURK)
    with FakeMTurk(balance="1.00") as fake, Ledger.for_study(study.root) as ledger:
        with pytest.raises(PlatformError, match="balance"):
            platform(study, ledger, fake).publish()
        assert fake.hits == {}


def test_reward_and_question_checks():
    assert reward_string(50) == "0.50" and reward_string(to_minor_units("1.005")) == "1.01"
    with pytest.raises(PlatformError):
        reward_string(0)
    with pytest.raises(PlatformError, match="65535"):
        html_question("<html><body>" + "x" * 70_000 + "</body></html>")
    with pytest.raises(PlatformError, match="CDATA"):
        html_question("<html>]]></html>")


def test_answers_parsed_with_a_hardened_parser():
    xml = ('<?xml version="1.0" encoding="ASCII"?><QuestionFormAnswers xmlns="http://mechanicalturk'
           '.amazonaws.com/AWSMechanicalTurkDataSchemas/2005-10-01/QuestionFormAnswers.xsd"><Answer>'
           '<QuestionIdentifier>results</QuestionIdentifier><FreeText>{"a":1}</FreeText></Answer>'
           '</QuestionFormAnswers>')
    assert parse_answers(xml) == {"results": '{"a":1}'}
    assert parse_answers("") == {}
    bomb = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
            '<QuestionFormAnswers>&b;</QuestionFormAnswers>')
    with pytest.raises(PlatformError):
        parse_answers(bomb)
    assert SafeET  # the module parses with defusedxml


def test_images_from_a_base_url_have_opaque_names(study, mturk_fake, tmp_path):
    from hitkit.platforms.mturk.platform import export_images, hitkit_hit_for

    with Ledger.for_study(study.root) as ledger:
        p = platform(study, ledger, mturk_fake, image_base_url="https://img.example.org/s1/")
        p.publish()
        written = export_images(study, ledger, tmp_path / "public")
        names = sorted(f.name for f in (tmp_path / "public").iterdir())
        assert written == len(names) > 0
        for mturk_hit, hit in mturk_fake.hits.items():
            assert "https://img.example.org/s1/" in hit.question and "data:image" not in hit.question
            assert "target" not in hit.question and "seed" not in hit.question and "iri" not in hit.question
            assert any(name in hit.question for name in names)
            assert hitkit_hit_for(ledger, mturk_hit) == hit.annotation.rsplit("hit=", 1)[1]
        with pytest.raises(PlatformError, match="https"):
            platform(study, ledger, mturk_fake, image_base_url="http://img.example.org/")
