"""Each injected fault, as boto3 (standard retry mode) observes it against the MTurk fake."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from tests.fakes.faults import FaultKind
from tests.fakes.fixtures import mturk_client
from tests.fakes.mturk import FakeMTurk
from tests.fakes_tests.mturk_helpers import make_hit, make_hit_type


def calls(fake: FakeMTurk, operation: str) -> list[dict]:
    return [json.loads(r.body) for r in fake.requests if r.operation == operation]


@pytest.mark.parametrize(
    ("kind", "code", "status"),
    [
        (FaultKind.HTTP_500, "ServiceFault", 500),
        (FaultKind.HTTP_503, "ServiceUnavailableException", 503),
        (FaultKind.THROTTLE, "ThrottlingException", 400),
    ],
)
def test_error_faults_surface_without_retries_and_pass_with_them(mturk_fake, kind, code, status):
    once = mturk_client(mturk_fake, attempts=1)
    mturk_fake.faults.inject(kind, operation="GetAccountBalance")
    with pytest.raises(ClientError) as caught:
        once.get_account_balance()
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status

    retrying = mturk_client(mturk_fake, attempts=3)
    mturk_fake.faults.inject(kind, operation="GetAccountBalance")
    assert retrying.get_account_balance()["AvailableBalance"] == "10000.00"
    assert len(calls(mturk_fake, "GetAccountBalance")) == 3  # 1 + (fault, retry)


def test_timeout_after_apply_with_a_token_is_recovered_not_duplicated(mturk_fake):
    client = mturk_client(mturk_fake, attempts=3, read_timeout=1.0)
    hit_type = make_hit_type(client)
    mturk_fake.faults.inject(FaultKind.TIMEOUT_AFTER_APPLY, operation="CreateHITWithHITType")
    with pytest.raises(ClientError) as caught:
        make_hit(client, hit_type, UniqueRequestToken="study-1-item-7")
    # boto3 retried the identical request; the service remembered the token.
    assert caught.value.response["TurkErrorCode"] == "AWS.MechanicalTurk.HitAlreadyExists"
    sent = calls(mturk_fake, "CreateHITWithHITType")
    assert len(sent) == 2 and sent[0] == sent[1]
    assert len(mturk_fake.hits) == 1
    (hit_id,) = mturk_fake.hits
    assert hit_id in caught.value.response["Error"]["Message"]


def test_timeout_after_apply_without_a_token_duplicates(mturk_fake):
    # The hazard the token exists for: the SDK's own retry creates a second HIT.
    client = mturk_client(mturk_fake, attempts=3, read_timeout=1.0)
    hit_type = make_hit_type(client)
    mturk_fake.faults.inject(FaultKind.TIMEOUT_AFTER_APPLY, operation="CreateHITWithHITType")
    make_hit(client, hit_type)
    assert len(mturk_fake.hits) == 2
    assert list(mturk_fake.duplicate_hits().values()) == [list(mturk_fake.hits)]


@pytest.mark.parametrize(
    ("kind", "error", "applied"),
    [
        (FaultKind.TIMEOUT_BEFORE_APPLY, ReadTimeoutError, False),
        (FaultKind.TIMEOUT_AFTER_APPLY, ReadTimeoutError, True),
        (FaultKind.DROP_BEFORE_APPLY, ConnectionClosedError, False),
        (FaultKind.DROP_AFTER_APPLY, ConnectionClosedError, True),
        (FaultKind.HTTP_500_AFTER_APPLY, ClientError, True),
    ],
)
def test_connection_faults_without_retries(mturk_fake, kind, error, applied):
    client = mturk_client(mturk_fake, attempts=1, read_timeout=1.0)
    hit_type = make_hit_type(client)
    mturk_fake.faults.inject(kind, operation="CreateHITWithHITType")
    with pytest.raises(error):
        make_hit(client, hit_type, UniqueRequestToken="tok")
    assert len(mturk_fake.hits) == (1 if applied else 0)
    assert mturk_fake.faults.count(kind, "CreateHITWithHITType") == 1
    # The next call goes through: the fault was one-shot.
    if applied:
        with pytest.raises(ClientError):
            make_hit(client, hit_type, UniqueRequestToken="tok")
    else:
        make_hit(client, hit_type, UniqueRequestToken="tok")
    assert len(mturk_fake.hits) == 1


def test_dropped_connection_before_apply_is_retried(mturk_fake):
    client = mturk_client(mturk_fake, attempts=3)
    hit_type = make_hit_type(client)
    mturk_fake.faults.inject(FaultKind.DROP_BEFORE_APPLY, operation="CreateHITWithHITType")
    hit = make_hit(client, hit_type, UniqueRequestToken="tok")
    assert list(mturk_fake.hits) == [hit["HITId"]]


def test_bonus_applied_then_500_is_not_paid_twice_with_a_token(mturk_fake):
    client = mturk_client(mturk_fake, attempts=3)
    hit = make_hit(client, make_hit_type(client))
    assignment_id = mturk_fake.worker_submits(hit["HITId"], "AWORKER1", {"results": "1"})
    client.approve_assignment(AssignmentId=assignment_id)
    mturk_fake.faults.inject(FaultKind.HTTP_500_AFTER_APPLY, operation="SendBonus")
    with pytest.raises(ClientError) as caught:
        client.send_bonus(
            WorkerId="AWORKER1",
            AssignmentId=assignment_id,
            BonusAmount="0.75",
            Reason="bonus",
            UniqueRequestToken="bonus-1",
        )
    assert caught.value.response["Error"]["Code"] == "RequestError"  # the retry hit the token
    assert len(mturk_fake.bonuses) == 1 and mturk_fake.double_bonuses() == {}
    assert [p.kind for p in mturk_fake.payments] == ["reward", "bonus"]


def test_seeded_schedule_is_bounded_and_replays(mturk_fake):
    client = mturk_client(mturk_fake, attempts=3)
    # Every request faults, but never more than twice in a row per operation, so three
    # attempts always get through; kinds without backoff-heavy throttling keep it quick.
    mturk_fake.faults.randomize(
        seed=11,
        rate=1.0,
        kinds=(FaultKind.HTTP_500, FaultKind.DROP_BEFORE_APPLY),
        operations={"GetAccountBalance", "ListHITs"},
    )
    for _ in range(2):
        assert client.get_account_balance()["AvailableBalance"] == "10000.00"
        assert client.list_hits()["HITs"] == []
    first = [(e.operation, e.call, e.kind) for e in mturk_fake.faults.events]
    assert len(first) == 8
    assert "seed=11" in mturk_fake.faults.describe()

    with FakeMTurk() as replay:
        again = mturk_client(replay, attempts=3)
        replay.faults.randomize(
            seed=11,
            rate=1.0,
            kinds=(FaultKind.HTTP_500, FaultKind.DROP_BEFORE_APPLY),
            operations={"GetAccountBalance", "ListHITs"},
        )
        for _ in range(2):  # the same calls in a different order: the same faults per call
            again.list_hits()
            again.get_account_balance()
        assert sorted((e.operation, e.call, e.kind) for e in replay.faults.events) == sorted(first)
