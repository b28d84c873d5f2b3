"""boto3, unchanged, against the MTurk fake: protocol, semantics and error shapes."""

from __future__ import annotations

import re
from decimal import Decimal

import botocore.exceptions
import defusedxml.ElementTree as SafeET
import httpx
import pytest
from botocore.exceptions import ClientError

from tests.fakes.fixtures import mturk_client
from tests.fakes.mturk import ANSWERS_NS, TARGET_PREFIX, WorkerNotQualified
from tests.fakes_tests.mturk_helpers import (
    ENTITY_ID,
    PAGE,
    external_question,
    html_question,
    make_hit,
    make_hit_type,
    turk_code,
)


def test_balance_and_hit_type_idempotence(mturk_fake):
    client = mturk_client(mturk_fake)
    assert client.get_account_balance()["AvailableBalance"] == "10000.00"
    first = make_hit_type(client)
    assert ENTITY_ID.match(first)
    assert make_hit_type(client) == first  # same properties: the existing HITTypeId
    assert make_hit_type(client, Reward="0.60") != first
    assert len(mturk_fake.hit_types) == 2


def test_create_hit_and_read_it_back(mturk_fake):
    client = mturk_client(mturk_fake)
    hit = make_hit(client, make_hit_type(client))
    assert ENTITY_ID.match(hit["HITId"])
    assert hit["HITStatus"] == "Assignable"
    assert hit["Reward"] == "0.50"
    assert hit["NumberOfAssignmentsAvailable"] == 3
    got = client.get_hit(HITId=hit["HITId"])["HIT"]
    assert got["RequesterAnnotation"] == "batch=b1"
    assert got["Question"] == html_question()
    assert got["Expiration"] > got["CreationTime"]  # parsed by botocore as datetimes
    listed = client.list_hits()["HITs"]
    assert [h["HITId"] for h in listed] == [hit["HITId"]]


def test_create_hit_in_one_call_shares_the_hit_type(mturk_fake):
    client = mturk_client(mturk_fake)
    hit = client.create_hit(
        Title="t",
        Description="d",
        Reward="0.50",
        AssignmentDurationInSeconds=600,
        LifetimeInSeconds=3600,
        MaxAssignments=2,
        Question=html_question(),
        UniqueRequestToken="one-call",
    )["HIT"]
    same_type = client.create_hit_type(
        Title="t", Description="d", Reward="0.50", AssignmentDurationInSeconds=600
    )["HITTypeId"]
    assert hit["HITTypeId"] == same_type
    with pytest.raises(ClientError) as caught:
        client.create_hit(
            Title="t",
            Description="d",
            Reward="0.50",
            AssignmentDurationInSeconds=600,
            LifetimeInSeconds=3600,
            Question=html_question(),
            UniqueRequestToken="one-call",
        )
    assert turk_code(caught.value) == "AWS.MechanicalTurk.HitAlreadyExists"


def test_reused_token_answers_hit_already_exists_with_the_hit_id(mturk_fake):
    client = mturk_client(mturk_fake)
    hit_type = make_hit_type(client)
    hit = make_hit(client, hit_type, UniqueRequestToken="study-1-batch-1-item-0")
    with pytest.raises(ClientError) as caught:
        make_hit(client, hit_type, UniqueRequestToken="study-1-batch-1-item-0")
    error = caught.value
    assert error.response["Error"]["Code"] == "RequestError"
    assert turk_code(error) == "AWS.MechanicalTurk.HitAlreadyExists"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    recovered = re.search(r"[A-Z0-9]{20,}", error.response["Error"]["Message"]).group(0)
    assert recovered == hit["HITId"]
    assert len(mturk_fake.hits) == 1


def test_tokens_expire_after_24_hours(mturk_fake):
    client = mturk_client(mturk_fake)
    hit_type = make_hit_type(client)
    make_hit(client, hit_type, UniqueRequestToken="tok")
    mturk_fake.advance(25 * 3600)
    make_hit(client, hit_type, UniqueRequestToken="tok")  # documented: may duplicate after 24 h
    assert len(mturk_fake.hits) == 2


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"Reward": "0.505"}, "Reward"),
        ({"Reward": "$0.50"}, "Reward"),
        ({"UniqueRequestToken": "t" * 65}, "UniqueRequestToken"),
        ({"Question": html_question("<p>" + "x" * 70000 + "</p>")}, "65535"),
        ({"Question": "<HTMLQuestion>"}, "XML"),
        ({"Question": external_question("http://insecure.example.org/task")}, "HTTPS"),
        ({"Question": "<Other xmlns='urn:x'/>"}, "question structure"),
        ({"RequesterAnnotation": "a" * 256}, "255"),
    ],
)
def test_server_side_validation_the_client_skips(mturk_fake, overrides, fragment):
    client = mturk_client(mturk_fake)
    hit_type = make_hit_type(client)
    reward = overrides.pop("Reward", None)
    with pytest.raises(ClientError) as caught:
        if reward is not None:
            make_hit_type(client, Reward=reward)
        else:
            make_hit(client, hit_type, **overrides)
    assert caught.value.response["Error"]["Code"] == "RequestError"
    assert fragment in caught.value.response["Error"]["Message"]
    assert not mturk_fake.hits


def test_worker_answers_are_question_form_answers_xml(mturk_fake):
    client = mturk_client(mturk_fake)
    hit = make_hit(client, make_hit_type(client))
    answers = {"results": '{"trials": [1, 2]}', "comment": "naïve <b>&</b>"}
    assignment_id = mturk_fake.worker_submits(hit["HITId"], "AWORKER1", answers)
    got = client.get_assignment(AssignmentId=assignment_id)
    assignment = got["Assignment"]
    assert got["HIT"]["HITId"] == hit["HITId"]
    assert assignment["AssignmentStatus"] == "Submitted"
    assert assignment["WorkerId"] == "AWORKER1"
    assert assignment["Answer"].startswith('<?xml version="1.0" encoding="ASCII"?>')
    root = SafeET.fromstring(assignment["Answer"].encode("ascii"))
    ns = {"a": ANSWERS_NS}
    parsed = {
        a.findtext("a:QuestionIdentifier", namespaces=ns): a.findtext("a:FreeText", namespaces=ns)
        for a in root.findall("a:Answer", ns)
    }
    assert parsed == answers


def test_list_assignments_paginates_and_filters_by_status(mturk_fake):
    client = mturk_client(mturk_fake)
    hit = make_hit(client, make_hit_type(client), MaxAssignments=150)
    ids = [
        mturk_fake.worker_submits(hit["HITId"], f"AW{i:05d}", {"results": str(i)})
        for i in range(150)
    ]
    paginator = client.get_paginator("list_assignments_for_hit")
    pages = list(paginator.paginate(HITId=hit["HITId"], PaginationConfig={"PageSize": 100}))
    assert [len(p["Assignments"]) for p in pages] == [100, 50]
    assert [a["AssignmentId"] for p in pages for a in p["Assignments"]] == ids

    # Without a page size the service's default (10) applies: 15 calls.
    before = sum(r.operation == "ListAssignmentsForHIT" for r in mturk_fake.requests)
    everything = paginator.paginate(HITId=hit["HITId"]).build_full_result()["Assignments"]
    after = sum(r.operation == "ListAssignmentsForHIT" for r in mturk_fake.requests)
    assert len(everything) == 150 and after - before == 15

    client.approve_assignment(AssignmentId=ids[0])
    client.reject_assignment(AssignmentId=ids[1], RequesterFeedback="Failed the catch trials.")
    by_status = {
        status: [
            a["AssignmentId"]
            for p in paginator.paginate(HITId=hit["HITId"], AssignmentStatuses=[status])
            for a in p["Assignments"]
        ]
        for status in ("Approved", "Rejected", "Submitted")
    }
    assert by_status["Approved"] == [ids[0]]
    assert by_status["Rejected"] == [ids[1]]
    assert len(by_status["Submitted"]) == 148


def test_accepted_and_returned_work_is_invisible(mturk_fake):
    client = mturk_client(mturk_fake)
    hit = make_hit(client, make_hit_type(client))
    accepted = mturk_fake.worker_accepts(hit["HITId"], "AWORKER1")
    returned = mturk_fake.worker_accepts(hit["HITId"], "AWORKER2")
    mturk_fake.worker_returns(returned)
    assert client.list_assignments_for_hit(HITId=hit["HITId"])["Assignments"] == []
    assert client.get_hit(HITId=hit["HITId"])["HIT"]["NumberOfAssignmentsPending"] == 1
    with pytest.raises(ClientError):
        client.get_assignment(AssignmentId=accepted)


def test_approve_reject_and_their_state_rules(mturk_fake):
    client = mturk_client(mturk_fake)
    hit = make_hit(client, make_hit_type(client))
    good = mturk_fake.worker_submits(hit["HITId"], "AWORKER1", {"results": "1"})
    bad = mturk_fake.worker_submits(hit["HITId"], "AWORKER2", {"results": "2"})

    client.approve_assignment(AssignmentId=good, RequesterFeedback="Thanks!")
    with pytest.raises(ClientError) as again:
        client.approve_assignment(AssignmentId=good)
    assert turk_code(again.value) == "AWS.MechanicalTurk.InvalidAssignmentState"
    with pytest.raises(ClientError):
        client.reject_assignment(AssignmentId=good, RequesterFeedback="too late")

    with pytest.raises(botocore.exceptions.ParamValidationError):
        client.reject_assignment(AssignmentId=bad)  # RequesterFeedback is required by the model
    client.reject_assignment(AssignmentId=bad, RequesterFeedback="Failed the catch trials.")
    assert mturk_fake.assignments[bad].status == "Rejected"
    client.approve_assignment(AssignmentId=bad, OverrideRejection=True)
    assert mturk_fake.assignments[bad].status == "Approved"

    # $0.50 reward + $0.10 fee, twice.
    assert [(p.kind, p.amount, p.fee) for p in mturk_fake.payments] == [
        ("reward", Decimal("0.50"), Decimal("0.10"))
    ] * 2
    assert client.get_account_balance()["AvailableBalance"] == "9998.80"


def test_auto_approval_after_the_configured_delay(mturk_fake):
    client = mturk_client(mturk_fake)
    hit = make_hit(client, make_hit_type(client, AutoApprovalDelayInSeconds=3600))
    assignment_id = mturk_fake.worker_submits(hit["HITId"], "AWORKER1", {"results": "1"})
    assignment = client.get_assignment(AssignmentId=assignment_id)["Assignment"]
    assert assignment["AssignmentStatus"] == "Submitted"
    assert (
        assignment["AutoApprovalTime"] - assignment["SubmitTime"]
    ).total_seconds() == pytest.approx(3600)
    mturk_fake.advance(3601)
    assert (
        client.get_assignment(AssignmentId=assignment_id)["Assignment"]["AssignmentStatus"]
        == "Approved"
    )
    assert len(mturk_fake.payments) == 1

    instant = make_hit(client, make_hit_type(client, AutoApprovalDelayInSeconds=0))
    other = mturk_fake.worker_submits(instant["HITId"], "AWORKER1", {"results": "1"})
    assert mturk_fake.assignments[other].status == "Approved"


def test_send_bonus_with_token_and_list_bonus_payments(mturk_fake):
    client = mturk_client(mturk_fake)
    hit = make_hit(client, make_hit_type(client))
    assignment_id = mturk_fake.worker_submits(hit["HITId"], "AWORKER1", {"results": "1"})
    client.approve_assignment(AssignmentId=assignment_id)
    bonus = dict(
        WorkerId="AWORKER1",
        AssignmentId=assignment_id,
        BonusAmount="1.25",
        Reason="Accuracy bonus",
        UniqueRequestToken="bonus-study1-a1",
    )
    client.send_bonus(**bonus)
    with pytest.raises(ClientError) as caught:
        client.send_bonus(**bonus)
    assert caught.value.response["Error"]["Code"] == "RequestError"
    assert len(mturk_fake.bonuses) == 1

    by_hit = client.list_bonus_payments(HITId=hit["HITId"])["BonusPayments"]
    by_assignment = client.list_bonus_payments(AssignmentId=assignment_id)["BonusPayments"]
    assert by_hit == by_assignment
    assert [(b["WorkerId"], b["BonusAmount"], b["Reason"]) for b in by_hit] == [
        ("AWORKER1", "1.25", "Accuracy bonus")
    ]
    with pytest.raises(ClientError):
        client.list_bonus_payments()
    with pytest.raises(ClientError):
        client.send_bonus(**{**bonus, "WorkerId": "AOTHER", "UniqueRequestToken": "other"})
    with pytest.raises(ClientError):
        client.send_bonus(**{**bonus, "BonusAmount": "1.255", "UniqueRequestToken": "third"})


def test_expire_then_delete(mturk_fake):
    client = mturk_client(mturk_fake)
    hit = make_hit(client, make_hit_type(client))
    hit_id = hit["HITId"]
    assignment_id = mturk_fake.worker_submits(hit_id, "AWORKER1", {"results": "1"})
    with pytest.raises(ClientError) as live:
        client.delete_hit(HITId=hit_id)
    assert "Assignable" in live.value.response["Error"]["Message"]

    client.update_expiration_for_hit(HITId=hit_id, ExpireAt=0)
    assert client.get_hit(HITId=hit_id)["HIT"]["HITStatus"] == "Reviewable"
    with pytest.raises(ClientError):
        client.delete_hit(HITId=hit_id)  # a submitted assignment is not reviewed yet
    client.approve_assignment(AssignmentId=assignment_id)
    client.delete_hit(HITId=hit_id)
    assert client.list_hits()["HITs"] == []
    assert client.get_hit(HITId=hit_id)["HIT"]["HITStatus"] == "Disposed"
    with pytest.raises(ClientError) as twice:
        client.delete_hit(HITId=hit_id)
    assert "Disposed" in twice.value.response["Error"]["Message"]


def test_hits_are_disposed_after_120_days(mturk_fake):
    client = mturk_client(mturk_fake)
    make_hit(client, make_hit_type(client))
    mturk_fake.advance(121 * 24 * 3600)
    assert client.list_hits()["HITs"] == []


def test_list_hits_paginates(mturk_fake):
    client = mturk_client(mturk_fake)
    hit_type = make_hit_type(client)
    created = [make_hit(client, hit_type)["HITId"] for _ in range(25)]
    pages = list(client.get_paginator("list_hits").paginate())
    assert [len(p["HITs"]) for p in pages] == [10, 10, 5]
    assert [h["HITId"] for p in pages for h in p["HITs"]] == created
    with pytest.raises(ClientError):
        client.list_hits(NextToken="not-a-token")


def test_qualifications_gate_workers(mturk_fake):
    client = mturk_client(mturk_fake)
    qual = client.create_qualification_type(
        Name="hitkit:participated:study-1",
        Description="Took part in study 1",
        QualificationTypeStatus="Active",
    )["QualificationType"]
    assert ENTITY_ID.match(qual["QualificationTypeId"])
    with pytest.raises(ClientError) as duplicate:
        client.create_qualification_type(
            Name="hitkit:participated:study-1",
            Description="again",
            QualificationTypeStatus="Active",
        )
    assert "already created" in duplicate.value.response["Error"]["Message"]
    assert (
        client.get_qualification_type(QualificationTypeId=qual["QualificationTypeId"])[
            "QualificationType"
        ]["Name"]
        == "hitkit:participated:study-1"
    )

    client.associate_qualification_with_worker(
        QualificationTypeId=qual["QualificationTypeId"],
        WorkerId="AVETERAN",
        IntegerValue=1,
        SendNotification=False,
    )
    workers = client.list_workers_with_qualification_type(
        QualificationTypeId=qual["QualificationTypeId"]
    )
    assert [q["WorkerId"] for q in workers["Qualifications"]] == ["AVETERAN"]

    hit_type = make_hit_type(
        client,
        QualificationRequirements=[
            {"QualificationTypeId": qual["QualificationTypeId"], "Comparator": "DoesNotExist"},
            {
                "QualificationTypeId": "000000000000000000L0",
                "Comparator": "GreaterThanOrEqualTo",
                "IntegerValues": [95],
            },
            {
                "QualificationTypeId": "00000000000000000071",
                "Comparator": "In",
                "LocaleValues": [{"Country": "US"}, {"Country": "GB"}],
            },
        ],
    )
    hit = make_hit(client, hit_type)
    mturk_fake.add_worker("ALOWRATE", approval_rate=90)
    mturk_fake.add_worker("AABROAD", country="DE")
    for refused in ("AVETERAN", "ALOWRATE", "AABROAD"):
        with pytest.raises(WorkerNotQualified):
            mturk_fake.worker_accepts(hit["HITId"], refused)
    mturk_fake.worker_submits(hit["HITId"], "ANEWCOMER", {"results": "1"})
    with pytest.raises(ClientError):
        make_hit_type(
            client,
            QualificationRequirements=[
                {"QualificationTypeId": "3NOSUCHTYPE", "Comparator": "Exists"}
            ],
        )


def test_html_question_page_and_external_submit(mturk_fake):
    client = mturk_client(mturk_fake)
    hit = make_hit(client, make_hit_type(client))
    with httpx.Client(base_url=mturk_fake.url) as browser:
        preview = browser.get(mturk_fake.task_url(hit["HITId"]))
        assert "assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE" in preview.text
        assert "turkSubmitTo" not in preview.text

        page = browser.get(mturk_fake.task_url(hit["HITId"], "AWORKER1"))
        frame_src = re.search(r"src='([^']+)'", page.text).group(1).replace("&amp;", "&")
        assert "workerId=AWORKER1" in frame_src and "turkSubmitTo=" in frame_src
        frame = browser.get(frame_src)
        assert frame.text == PAGE
        assignment_id = re.search(r"assignmentId=([A-Z0-9]+)", frame_src).group(1)

        assert browser.get("/mturk/externalSubmit").status_code == 405
        refused = browser.post(
            "/mturk/externalSubmit",
            data={"assignmentId": "ASSIGNMENT_ID_NOT_AVAILABLE", "results": "{}"},
        )
        assert refused.status_code == 400
        empty = browser.post(
            "/mturk/externalSubmit", data={"assignmentId": assignment_id, "hitId": "x"}
        )
        assert empty.status_code == 400
        done = browser.post(
            "/mturk/externalSubmit",
            data={"assignmentId": assignment_id, "hitId": hit["HITId"], "results": '{"a": 1}'},
        )
        assert done.status_code == 200
    assignment = client.get_assignment(AssignmentId=assignment_id)["Assignment"]
    assert assignment["AssignmentStatus"] == "Submitted"
    assert "<QuestionIdentifier>results</QuestionIdentifier>" in assignment["Answer"]
    assert "hitId" not in assignment["Answer"]  # reserved names are dropped


def test_error_shapes_as_botocore_parses_them(mturk_fake):
    client = mturk_client(mturk_fake, attempts=1)
    with pytest.raises(ClientError) as missing:
        client.get_hit(HITId="NOSUCHHIT")
    assert missing.value.response["Error"]["Code"] == "RequestError"
    assert isinstance(missing.value, client.exceptions.RequestError)
    assert missing.value.response["TurkErrorCode"] == "AWS.MechanicalTurk.HITDoesNotExist"

    mturk_fake.faults.inject("http_500", operation="GetAccountBalance")
    with pytest.raises(ClientError) as fault:
        client.get_account_balance()
    assert isinstance(fault.value, client.exceptions.ServiceFault)
    assert fault.value.response["Error"]["Code"] == "ServiceFault"
    assert fault.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert fault.value.response["TurkErrorCode"]

    raw = httpx.post(
        mturk_fake.url + "/",
        headers={
            "X-Amz-Target": f"{TARGET_PREFIX}.GetAccountBalance",
            "Content-Type": "application/x-amz-json-1.1",
        },
        content=b"{}",
    )
    assert raw.status_code == 403  # unsigned
    unknown = httpx.post(
        mturk_fake.url + "/",
        headers={
            "X-Amz-Target": f"{TARGET_PREFIX}.NotifyWorkers",
            "Content-Type": "application/x-amz-json-1.1",
            "Authorization": "AWS4-HMAC-SHA256 Credential=x",
        },
        content=b"{}",
    )
    assert unknown.status_code == 400 and unknown.json()["__type"] == "UnknownOperationException"
