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
    with pytest.raises(PlatformError, match="65,535"):
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
        # one file per slot: no URL, size or hash is shared by two slots
        files = [f.read_bytes() for f in (tmp_path / "public").iterdir()]
        assert len(set(files)) == len(files) and len({len(b) for b in files}) == 1
        for mturk_hit, hit in mturk_fake.hits.items():
            assert "https://img.example.org/s1/" in hit.question and "data:image" not in hit.question
            assert "target" not in hit.question and "seed" not in hit.question and "iri" not in hit.question
            assert any(name in hit.question for name in names)
            assert hitkit_hit_for(ledger, mturk_hit) == hit.annotation.rsplit("hit=", 1)[1]
        with pytest.raises(PlatformError, match="https"):
            platform(study, ledger, mturk_fake, image_base_url="http://img.example.org/")


# ---------------------------------------------------------------- issue 13, observation 2

def approved_one(study, ledger, fake) -> tuple[MTurkPlatform, str]:
    p = platform(study, ledger, fake)
    p.publish()
    work(fake, ledger, sorted(fake.hits)[0], "AWORKERLOST01")
    aid = p.collect().awaiting_review[0]
    assert p.approve([aid]).done == [aid]
    return p, aid


@pytest.mark.parametrize("turk_code", ["AWS.MechanicalTurk.DuplicateRequest", ""])
def test_lost_bonus_answer_lagging_listing_and_token_window_pay_once(study, mturk_fake, turk_code):
    """Lost answer -> botocore's retry refused as a duplicate (RequestError, any wording) ->
    ListBonusPayments lags -> `hitkit pay` after MTurk forgot the token: never a second 0.30."""
    from datetime import timedelta

    from tests.fakes.faults import FaultKind

    fake = mturk_fake
    fake.bonus_listing_lag = 3600.0
    fake.duplicate_turk_code = turk_code
    with Ledger.for_study(study.root) as ledger:
        p, aid = approved_one(study, ledger, fake)
        fake.faults.inject(FaultKind.DROP_AFTER_APPLY, operation="SendBonus")
        first = p.bonus([Bonus(aid, 30, "accuracy bonus")])
        assert len(fake.bonuses) == 1 and first.done == []
        (pid, why), = first.failed.items()
        assert why.startswith("unresolved:") and f"--settle {pid}=paid" in why
        assert ledger.query_one("SELECT state FROM payments WHERE payment_id = ?", (pid,))[0] == "sent"
        assert ledger.query_one("SELECT state FROM actions WHERE kind = 'send_bonus'")[0] == "sent"
        # a day later: MTurk has forgotten the token and the listing still lags
        fake.advance(25 * 3600)
        fake.bonus_listing_lag = 30 * 3600.0
        later = p.now() + timedelta(hours=25)
        p.now = lambda: later
        again = p.bonus([Bonus(aid, 30, "accuracy bonus")])
        assert len(fake.bonuses) == 1, "paid twice"
        assert "no longer protects a repeat" in again.failed[pid]
        # the listing catches up: the next run settles it as paid without sending
        fake.bonus_listing_lag = 0.0
        sends = sum(r.operation == "SendBonus" for r in fake.requests)
        settled = p.bonus([Bonus(aid, 30, "accuracy bonus")])
        assert settled.done == [pid] and len(fake.bonuses) == 1
        assert sum(r.operation == "SendBonus" for r in fake.requests) == sends
        assert fake.bonuses[0].reason.startswith("accuracy bonus (ref ")


def test_failed_bonus_is_reconciled_before_any_resend(study, mturk_fake):
    """A ledger whose bonus action says `failed` (an old run read the duplicate refusal as a
    failure) is not sent again when MTurk lists the payment."""
    fake = mturk_fake
    with Ledger.for_study(study.root) as ledger:
        p, aid = approved_one(study, ledger, fake)
        assert p.bonus([Bonus(aid, 30, "accuracy bonus")]).done
        (pid,) = [r["payment_id"] for r in ledger.query("SELECT payment_id FROM payments"
                                                        " WHERE kind = 'bonus'")]
        with ledger.transaction() as con:  # what the old code left behind
            con.execute("UPDATE payments SET state = 'planned' WHERE payment_id = ?", (pid,))
            con.execute("UPDATE actions SET state = 'failed' WHERE kind = 'send_bonus'")
        assert p.bonus([Bonus(aid, 30, "accuracy bonus")]).done == [pid]
        assert len(fake.bonuses) == 1


def test_unresolved_payment_settled_by_the_operator(study, mturk_fake):
    from datetime import timedelta

    from click.testing import CliRunner

    from hitkit.cli.main import cli
    from tests.fakes.faults import FaultKind

    fake = mturk_fake
    fake.bonus_listing_lag = 10 ** 9
    with Ledger.for_study(study.root) as ledger:
        p, aid = approved_one(study, ledger, fake)
        fake.faults.inject(FaultKind.DROP_AFTER_APPLY, operation="SendBonus", times=3)
        (pid, _), = p.bonus([Bonus(aid, 30, "accuracy bonus")]).failed.items()
    out = CliRunner().invoke(cli, ["pay", "--study", str(study.root), "--settle", f"{pid}=paid"])
    assert out.exit_code == 0 and "recorded as paid" in out.output, out.output
    with Ledger.for_study(study.root) as ledger:
        p = platform(study, ledger, fake)
        later = p.now() + timedelta(hours=30)
        p.now = lambda: later
        assert p.bonus([Bonus(aid, 30, "accuracy bonus")]).already == [pid]
        assert len(fake.bonuses) == 1


# ---------------------------------------------------------------- issue 13, observation 8

# the demo's HIT (hitkit/examples/demo.toml): 20 trials, 8 of them catch trials, 32-px images
DEMO_SIZE = {"trials_per_hit": 20, "catch_per_hit": 8, "targets": 20}


def test_demo_size_hit_is_refused_before_anything_is_sent(tmp_path, mturk_fake):
    """20 trials of 32-px images inlined: far over 65,535 bytes, said before any call."""
    study = platform_study(tmp_path / "demo", MTURK, places=1, size=32, **DEMO_SIZE)
    with Ledger.for_study(study.root) as ledger:
        p = platform(study, ledger, mturk_fake)
        with pytest.raises(PlatformError) as caught:
            p.publish()
        text = str(caught.value)
        assert "65,535" in text and "bytes" in text and "20 trials" in text
        assert "hitkit export-images" in text and "--image-base-url" in text
        size = int(text.split("Question is ")[1].split(" bytes")[0].replace(",", ""))
        assert size > 2 * MAX_QUESTION_BYTES
        assert [r.operation for r in mturk_fake.requests] == []  # nothing sent, not even a read
        assert ledger.query("SELECT * FROM batches") == []


def test_demo_size_hit_publishes_with_images_hosted_per_slot(tmp_path, mturk_fake):
    from click.testing import CliRunner

    from hitkit.cli.main import cli

    study = platform_study(tmp_path / "demo", MTURK, places=1, size=32, **DEMO_SIZE)
    out = CliRunner().invoke(cli, ["export-images", "--study", str(study.root),
                                   "--to", str(tmp_path / "public")])
    assert out.exit_code == 0, out.output
    files = {f.name: f.read_bytes() for f in (tmp_path / "public").iterdir()}
    base = "https://img.example.org/demo/"
    with Ledger.for_study(study.root) as ledger:
        p = platform(study, ledger, mturk_fake, image_base_url=base)
        p.publish()
        for hit in mturk_fake.hits.values():
            assert len(hit.question.encode()) <= MAX_QUESTION_BYTES
            urls = [u for u in hit.question.split('"') if u.startswith(base)]
            trials = hit_trials(ledger, hit_of(mturk_fake, hit.id))
            slots = sum(len(t.query) + len(t.options) for t in trials)
            data_urls = {u for u in urls if u[len(base):] in files}
            # every trial slot has its own URL, each one a file export-images wrote
            assert len(data_urls) >= slots and all(u[len(base):] in files for u in urls)
        assert len(set(files.values())) == len(files)  # no two slots share bytes
        assert len({len(b) for b in files.values()}) == 1  # nor a size


def test_fake_duplicate_token_and_lagging_listing_as_the_model_documents(mturk_fake):
    """The fake's SendBonus repeat is a RequestError with the request ID in its message
    (botocore's model), and ListBonusPayments may lag behind SendBonus."""
    from botocore.exceptions import ClientError

    fake = mturk_fake
    fake.bonus_listing_lag = 60.0
    client = mturk_client(fake, attempts=1)
    hit_type = client.create_hit_type(Title="t", Description="d", Reward="0.10",
                                      AssignmentDurationInSeconds=600)["HITTypeId"]
    hit = client.create_hit_with_hit_type(HITTypeId=hit_type, MaxAssignments=1,
                                          LifetimeInSeconds=3600,
                                          Question=html_question("<p>x</p>"))["HIT"]["HITId"]
    fake.add_worker("AWORKERFAKE01")
    assignment = fake.worker_submits(hit, "AWORKERFAKE01", {"results": "{}"})
    bonus = {"WorkerId": "AWORKERFAKE01", "AssignmentId": assignment, "BonusAmount": "0.30",
             "Reason": "r", "UniqueRequestToken": "t" * 64}
    client.send_bonus(**bonus)
    with pytest.raises(ClientError) as refused:
        client.send_bonus(**bonus)
    error = refused.value.response
    assert error["Error"]["Code"] == "RequestError"
    assert "UniqueRequestToken" not in error["Error"]["Message"]
    assert fake.bonuses[0].request_id in error["Error"]["Message"]
    assert client.list_bonus_payments(AssignmentId=assignment)["BonusPayments"] == []
    fake.advance(61)
    assert len(client.list_bonus_payments(AssignmentId=assignment)["BonusPayments"]) == 1


def test_operator_unpaid_verdict_lets_the_next_pay_send_once(study, mturk_fake):
    from datetime import timedelta

    from hitkit.platforms.records import settle_unresolved
    from tests.fakes.faults import FaultKind

    fake = mturk_fake
    with Ledger.for_study(study.root) as ledger:
        p, aid = approved_one(study, ledger, fake)
        # every attempt dropped before MTurk applied it: nothing paid, outcome unknown
        fake.faults.inject(FaultKind.DROP_BEFORE_APPLY, operation="SendBonus", times=100)
        (pid, why), = p.bonus([Bonus(aid, 30, "accuracy bonus")]).failed.items()
        fake.faults.clear()
        later = p.now() + timedelta(hours=30)
        p.now = lambda: later
        fake.advance(30 * 3600)
        still = p.bonus([Bonus(aid, 30, "accuracy bonus")])
        assert "no longer protects a repeat" in still.failed[pid] and fake.bonuses == []
        assert settle_unresolved(ledger, pid, paid=False, note="not on the requester site") == "unpaid"
        assert p.bonus([Bonus(aid, 30, "accuracy bonus")]).done == [pid]
        assert p.bonus([Bonus(aid, 30, "accuracy bonus")]).already == [pid]
        assert len(fake.bonuses) == 1
