"""The Prolific fake against Prolific's published OpenAPI document (tests/fakes/prolific_openapi),
and the behaviours the document states in prose: asynchronous bonus payment, lagging
listings, PROCESSING after approve, Retry-After as an HTTP date, limit/offset paging."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import pytest

from tests.fakes import prolific_openapi
from tests.fakes.faults import FaultKind
from tests.fakes.fixtures import prolific_client
from tests.fakes.prolific import FakeProlific
from tests.fakes_tests.prolific_helpers import REASON, draft, published


def test_the_document_is_the_trimmed_published_one():
    spec = prolific_openapi.spec()
    assert spec["info"]["title"] == "Prolific API for Data Collectors"
    assert len(spec["paths"]) == 19
    # what the old fake got wrong, read from the document itself
    assert set(spec["components"]["schemas"]["User"]["properties"]) == {"id", "email"}
    ops = spec["paths"]["/api/v1/studies/{id}/submissions/"]["get"]["parameters"]
    assert [p["name"] for p in ops if p["in"] == "query"] == ["ordering"]
    assert "not idempotent" in spec["paths"]["/api/v1/bulk-bonus-payments/{id}/pay/"]["post"][
        "description"]


def test_the_checks_catch_what_the_old_fake_did():
    user = {"id": "a", "email": "b", "workspace_id": "w", "currency_code": "GBP"}
    problems = prolific_openapi.check_response("GET", "/api/v1/users/me/", 200, user)
    assert any("workspace_id" in p for p in problems)
    assert any("'page'" in p for p in prolific_openapi.check_request(
        "GET", "/api/v1/studies/x/submissions/", {"page": "1"}, None))
    assert prolific_openapi.check_response(
        "POST", "/api/v1/bulk-bonus-payments/x/pay/", 202, {})  # the answer is a string
    assert prolific_openapi.check_request(
        "POST", "/api/v1/submissions/x/transition/", {}, {"action": "EXPLODE"})
    assert prolific_openapi.check_request("GET", "/api/v1/nowhere/", {}, None)


def test_a_full_lifecycle_conforms(prolific_fake):
    """Every answer below is checked against the document by the fake itself; none strays."""
    fake = prolific_fake
    fake.test_studies_enabled = True
    with prolific_client(fake) as client:
        assert client.get("/users/me/").json() == {"id": fake.researcher_id,
                                                    "email": "researcher@example.org"}
        (workspace,) = client.get("/workspaces/").json()["results"]
        assert client.get(f"/workspaces/{workspace['id']}/balance/").json()[
            "currency_code"] == "GBP"
        filters = {f["filter_id"] for f in client.get(
            "/filters/", params={"workspace_id": workspace["id"]}).json()["results"]}
        assert {"previous_studies_blocklist", "participant_group_blocklist"} <= filters
        assert "custom_blocklist" not in filters
        group = client.post("/participant-groups/", json={
            "name": "g", "workspace_id": workspace["id"]}).json()["id"]
        client.post(f"/participant-groups/{group}/participants/", json={"participant_ids": ["p"]})
        client.get("/participant-groups/", params={"workspace_id": workspace["id"]})
        study_id = published(client)
        fake.participant_submits(study_id, "a" * 24, "C1REVIEW")
        subs = client.get(f"/studies/{study_id}/submissions/").json()["results"]
        assert client.post("/submissions/bulk-approve/",
                           json={"submission_ids": [subs[0]["id"]]}).status_code == 200
        bulk = client.post("/submissions/bonus-payments/", json={
            "study_id": study_id, "csv_bonuses": f"{subs[0]['id']},0.25"}).json()
        assert client.post(f"/bulk-bonus-payments/{bulk['id']}/pay/").status_code == 202
        client.get(f"/submissions/{subs[0]['id']}/")
        client.get("/submissions/", params={"study": study_id, "status": "approved"})
        draft_id = client.post("/studies/", json=draft(internal_name="t")).json()["id"]
        client.post("/researchers/participants/", json={"email": "t@example.org"})
        assert client.post(f"/studies/{draft_id}/test-study").status_code == 200
        client.patch(f"/studies/{study_id}/", json={"total_available_places": 9})
        client.post(f"/studies/{study_id}/transition/", json={"action": "STOP"})
        assert client.get(f"/studies/{study_id}/").json()["status"] == "COMPLETED"
        client.get("/studies/")
    assert fake.spec_problems == [] and fake.internal_errors == []


def test_undocumented_filters_and_bodies_are_refused(prolific_fake):
    with prolific_client(prolific_fake) as client:
        refused = client.post("/studies/", json=draft(filters=[
            {"filter_id": "custom_blocklist", "selected_values": ["x"]}]))
        assert refused.status_code == 400 and "custom_blocklist" in str(refused.json())
        wrong = client.post("/studies/", json=draft(reward="1.50"))
        assert wrong.status_code == 400 and "reward" in wrong.json()["error"]["detail"]
    assert prolific_fake.spec_problems  # remembered, for tests that want none


def test_bonus_is_paid_asynchronously_and_again_on_every_call():
    with FakeProlific(bonus_lag_requests=3) as fake, prolific_client(fake) as client:
        study_id = published(client)
        sid = fake.participant_submits(study_id, "a" * 24, "C1REVIEW")
        client.post(f"/submissions/{sid}/transition/", json={"action": "APPROVE"})
        bulk = client.post("/submissions/bonus-payments/", json={
            "study_id": study_id, "csv_bonuses": f"{sid},0.40"}).json()
        paid = client.post(f"/bulk-bonus-payments/{bulk['id']}/pay/")
        assert paid.status_code == 202 and isinstance(paid.json(), str)
        assert client.get(f"/submissions/{sid}/").json()["bonus_payments"] == []  # not yet
        client.post(f"/bulk-bonus-payments/{bulk['id']}/pay/")  # not idempotent
        assert fake.pending_bonus_payments() == 2
        for _ in range(4):  # "in the following minutes": here, a few requests later
            client.get("/users/me/")
        assert client.get(f"/submissions/{sid}/").json()["bonus_payments"] == [40, 40]
        assert fake.pending_bonus_payments() == 0
        fake.settle_bonuses()
        assert fake.paid_bonuses(sid) == [40, 40] and fake.double_payments()


def test_listings_lag_and_approve_shows_processing():
    with FakeProlific(listing_lag_requests=2, approve_processing_requests=2) as fake, \
            prolific_client(fake) as client:
        study_id = published(client)
        sid = fake.participant_submits(study_id, "a" * 24, "C1REVIEW")
        assert client.get(f"/studies/{study_id}/submissions/").json()["results"] == []
        client.get("/users/me/")
        listed = client.get(f"/studies/{study_id}/submissions/").json()["results"]
        assert [s["status"] for s in listed] == ["AWAITING REVIEW"]
        client.post(f"/submissions/{sid}/transition/", json={"action": "APPROVE"})
        assert client.get(f"/submissions/{sid}/").json()["status"] == "PROCESSING"
        client.get("/users/me/")
        assert client.get(f"/submissions/{sid}/").json()["status"] == "APPROVED"
    assert fake.internal_errors == []


def test_retry_after_as_an_http_date():
    with FakeProlific(retry_after_seconds=30, retry_after_http_date=True) as fake, \
            prolific_client(fake) as client:
        fake.faults.inject(FaultKind.THROTTLE, operation="get_user")
        throttled = client.get("/users/me/")
        assert throttled.status_code == 429
        assert parsedate_to_datetime(throttled.headers["Retry-After"]).tzinfo is not None


@pytest.mark.parametrize("ignore", [False, True])
def test_limit_offset_paging_with_next_links(ignore):
    with FakeProlific(ignore_paging=ignore) as fake, prolific_client(fake) as client:
        study_id = published(client, total_available_places=5)
        for i in range(5):
            fake.participant_submits(study_id, f"{i:024x}", "C1REVIEW")
        page = client.get(f"/studies/{study_id}/submissions/",
                          params={"limit": 2, "offset": 2}).json()
        nxt = page["_links"]["next"]["href"]
        assert "limit=2" in nxt and f"offset={2 if ignore else 4}" in nxt
        again = client.get(nxt.replace(fake.api_url, "")).json()
        if ignore:  # the first page again, and still a `next`
            assert again["results"] == client.get(
                f"/studies/{study_id}/submissions/", params={"limit": 2}).json()["results"]
            assert again["_links"]["next"]["href"]
        else:
            assert len(again["results"]) == 1 and again["_links"]["next"]["href"] is None
    assert REASON  # the shared helpers stay importable
