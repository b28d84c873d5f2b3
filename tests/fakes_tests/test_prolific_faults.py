"""Each injected fault, as httpx observes it against the Prolific fake."""

from __future__ import annotations

import httpx
import pytest

from tests.fakes.faults import FaultKind
from tests.fakes.fixtures import prolific_client
from tests.fakes.prolific import FakeProlific
from tests.fakes_tests.prolific_helpers import draft, published


@pytest.mark.parametrize(
    ("kind", "status"),
    [(FaultKind.HTTP_500, 500), (FaultKind.HTTP_503, 503), (FaultKind.THROTTLE, 429)],
)
def test_error_faults(prolific_fake, kind, status):
    prolific_fake.retry_after_seconds = 7
    prolific_fake.faults.inject(kind, operation="create_study")
    with prolific_client(prolific_fake) as client:
        failed = client.post("/studies/", json=draft())
        assert failed.status_code == status
        assert failed.json()["error"]["status"] == status
        if kind is FaultKind.THROTTLE:
            assert failed.headers["Retry-After"] == "7"
        assert not prolific_fake.studies  # nothing applied
        assert client.post("/studies/", json=draft()).status_code == 201


@pytest.mark.parametrize(
    ("kind", "error", "applied"),
    [
        (FaultKind.TIMEOUT_BEFORE_APPLY, httpx.ReadTimeout, False),
        (FaultKind.TIMEOUT_AFTER_APPLY, httpx.ReadTimeout, True),
        (FaultKind.DROP_BEFORE_APPLY, httpx.RemoteProtocolError, False),
        (FaultKind.DROP_AFTER_APPLY, httpx.RemoteProtocolError, True),
    ],
)
def test_connection_faults_on_create_study(prolific_fake, kind, error, applied):
    prolific_fake.faults.inject(kind, operation="create_study")
    with prolific_client(prolific_fake, read_timeout=1.0) as client:
        with pytest.raises(error):
            client.post("/studies/", json=draft())
        assert len(prolific_fake.studies) == (1 if applied else 0)
        # A naive retry after an applied request makes a second draft: the duplicate a
        # client must avoid by listing its studies (e.g. by internal_name) first.
        assert client.post("/studies/", json=draft()).status_code == 201
    assert len(prolific_fake.studies) == (2 if applied else 1)
    assert bool(prolific_fake.duplicate_studies()) == applied


def test_timed_out_pay_retried_naively_pays_twice(prolific_fake):
    with prolific_client(prolific_fake, read_timeout=1.0) as client:
        study_id = published(client)
        submission_id = prolific_fake.participant_submits(study_id, "p1", "C1REVIEW")
        bonus = client.post(
            "/submissions/bonus-payments/", json={"study_id": study_id, "csv_bonuses": "p1,1.00"}
        ).json()
        prolific_fake.faults.inject(FaultKind.TIMEOUT_AFTER_APPLY, operation="pay_bonus_payments")
        with pytest.raises(httpx.ReadTimeout):
            client.post(f"/bulk-bonus-payments/{bonus['id']}/pay/")
        assert prolific_fake.paid_bonuses(submission_id) == [
            100
        ]  # paid, though the client never heard
        client.post(f"/bulk-bonus-payments/{bonus['id']}/pay/")
    assert prolific_fake.paid_bonuses(submission_id) == [100, 100]
    assert list(prolific_fake.double_payments().values()) == [[100, 100]]


def test_approve_applied_then_500(prolific_fake):
    with prolific_client(prolific_fake) as client:
        study_id = published(client)
        submission_id = prolific_fake.participant_submits(study_id, "p1", "C1REVIEW")
        prolific_fake.faults.inject(
            FaultKind.HTTP_500_AFTER_APPLY, operation="transition_submission"
        )
        url = f"/submissions/{submission_id}/transition/"
        assert client.post(url, json={"action": "APPROVE"}).status_code == 500
        assert prolific_fake.submissions[submission_id].status == "APPROVED"
        retried = client.post(url, json={"action": "APPROVE"})  # idempotent: safe to repeat
        assert retried.status_code == 200 and retried.json()["status"] == "APPROVED"
    assert len(prolific_fake.payments) == 1 and prolific_fake.double_payments() == {}


def run_session(fake: FakeProlific, order: str) -> list[tuple[str, int, FaultKind]]:
    """A fixed sequence of calls under a seeded schedule; returns the faults injected."""
    fake.faults.randomize(
        seed="replay-me", rate=0.5, kinds=(FaultKind.HTTP_500, FaultKind.HTTP_503)
    )
    with prolific_client(fake) as client:
        for _ in range(6):
            calls = [lambda: client.get("/users/me/"), lambda: client.get("/studies/")]
            for call in calls if order == "forward" else reversed(calls):
                call()
    return sorted((e.operation, e.call, e.kind) for e in fake.faults.events)


def test_seeded_schedules_replay_independently_of_interleaving():
    with FakeProlific() as one, FakeProlific() as two, FakeProlific() as other:
        first = run_session(one, "forward")
        assert first  # rate 0.5 over 12 calls: some faults
        assert run_session(two, "backward") == first
        other.faults.randomize(
            seed="another", rate=0.5, kinds=(FaultKind.HTTP_500, FaultKind.HTTP_503)
        )
        with prolific_client(other) as client:
            for _ in range(6):
                client.get("/users/me/")
                client.get("/studies/")
        assert sorted((e.operation, e.call, e.kind) for e in other.faults.events) != first
