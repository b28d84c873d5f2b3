"""httpx against the Prolific fake: the study lifecycle as the API reference describes it."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.fakes.fixtures import prolific_client
from tests.fakes.prolific import ParticipantRefused
from tests.fakes_tests.prolific_helpers import REASON, draft, published


def test_token_auth(prolific_fake):
    assert httpx.get(prolific_fake.api_url + "/users/me/").status_code == 401
    wrong = httpx.get(prolific_fake.api_url + "/users/me/", headers={"Authorization": "Token nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["status"] == 401
    bearer = httpx.get(
        prolific_fake.api_url + "/users/me/",
        headers={"Authorization": f"Bearer {prolific_fake.token}"},
    )
    assert bearer.status_code == 401
    with prolific_client(prolific_fake) as client:
        me = client.get("/users/me/")
    assert me.status_code == 200 and me.json()["id"] == prolific_fake.researcher_id


def test_create_draft_study_echoes_the_request(prolific_fake):
    with prolific_client(prolific_fake) as client:
        created = client.post("/studies/", json=draft())
        assert created.status_code == 201
        study = created.json()
        assert re.fullmatch(r"[0-9a-f]{24}", study["id"])
        assert study["status"] == "UNPUBLISHED"
        for key, value in draft().items():
            assert study[key] == value
        assert client.get(f"/studies/{study['id']}/").json() == study
        listed = client.get("/studies/").json()
        assert [s["id"] for s in listed["results"]] == [study["id"]]
        # cost is StudyShort's (the listing), not the Study's
        assert listed["results"][0]["total_cost"] == 3 * 150 + 150  # reward x places + 33.33 %


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": None}, "name"),
        ({"reward": 0}, "reward"),
        ({"reward": "1.50"}, "reward"),
        ({"total_available_places": None}, "total_available_places"),
        ({"external_study_url": "https://survey.example.org/s/demo"}, "external_study_url"),
        ({"external_study_url": "not a url"}, "external_study_url"),
        ({"completion_codes": []}, "completion_codes"),
        (
            {
                "completion_codes": [
                    {"code": "SAME", "code_type": "COMPLETED", "actions": []},
                    {"code": "SAME", "code_type": "OTHER", "actions": []},
                ]
            },
            "completion_codes",
        ),
        (
            {
                "completion_codes": [
                    {
                        "code": "BOTH",
                        "code_type": "COMPLETED",
                        "actions": [
                            {"action": "AUTOMATICALLY_APPROVE"},
                            {"action": "MANUALLY_REVIEW"},
                        ],
                    }
                ]
            },
            "completion_codes",
        ),
        ({"device_compatibility": ["desktop", "watch"]}, "device_compatibility"),
        ({"filters": [{"selected_values": ["1"]}]}, "filters"),
    ],
)
def test_invalid_drafts_are_refused_with_the_field(prolific_fake, overrides, field):
    with prolific_client(prolific_fake) as client:
        refused = client.post("/studies/", json=draft(**overrides))
    assert refused.status_code == 400
    assert field in refused.json()["error"]["detail"]
    assert not prolific_fake.studies


def test_minimum_hourly_reward_when_configured(prolific_fake):
    prolific_fake.min_hourly_reward = 600  # 6.00 an hour
    with prolific_client(prolific_fake) as client:
        assert client.post("/studies/", json=draft(reward=99)).status_code == 400  # 5.94 an hour
        assert client.post("/studies/", json=draft(reward=100)).status_code == 201


def test_publish_update_and_delete_rules(prolific_fake):
    with prolific_client(prolific_fake) as client:
        study_id = client.post("/studies/", json=draft()).json()["id"]
        patched = client.patch(f"/studies/{study_id}/", json={"reward": 200})
        assert patched.status_code == 200 and patched.json()["reward"] == 200
        publish = client.post(f"/studies/{study_id}/transition/", json={"action": "PUBLISH"})
        assert publish.json()["status"] == "ACTIVE"
        assert client.get("/studies/").json()["results"][0]["published_at"]
        again = client.post(f"/studies/{study_id}/transition/", json={"action": "PUBLISH"})
        assert again.status_code == 400  # a retried publish must check the status instead
        assert client.patch(f"/studies/{study_id}/", json={"reward": 300}).status_code == 400
        more = client.patch(f"/studies/{study_id}/", json={"total_available_places": 5})
        assert more.json()["total_available_places"] == 5
        fewer = client.patch(f"/studies/{study_id}/", json={"total_available_places": 4})
        assert fewer.status_code == 400
        assert client.delete(f"/studies/{study_id}/").status_code == 400
        paused = client.post(f"/studies/{study_id}/transition/", json={"action": "PAUSE"})
        assert paused.json()["status"] == "PAUSED"
        with pytest.raises(ParticipantRefused):
            prolific_fake.participant_starts(study_id, "p1")
        started = client.post(f"/studies/{study_id}/transition/", json={"action": "START"})
        assert started.json()["status"] == "ACTIVE"

        draft_id = client.post("/studies/", json=draft()).json()["id"]
        assert client.delete(f"/studies/{draft_id}/").status_code == 204
        assert client.get(f"/studies/{draft_id}/").status_code == 404


def test_participants_arrive_with_placeholders_and_complete(prolific_fake):
    with prolific_client(prolific_fake) as client:
        study_id = published(client)
        session = prolific_fake.participant_starts(study_id, "5f0c0ffee0000000000000a1")
        assert session.url == (
            "https://survey.example.org/s/demo?PROLIFIC_PID=5f0c0ffee0000000000000a1"
            f"&STUDY_ID={study_id}&SESSION_ID={session.submission_id}"
        )
        with pytest.raises(ParticipantRefused):
            prolific_fake.participant_starts(study_id, "5f0c0ffee0000000000000a1")  # once only
        with pytest.raises(ParticipantRefused):
            prolific_fake.participant_starts(study_id, "p-phone", device="mobile")
        reviewed = prolific_fake.participant_submits(
            study_id, "5f0c0ffee0000000000000a1", "C1REVIEW"
        )
        assert reviewed == session.submission_id
        auto = prolific_fake.participant_submits(study_id, "p2", "C2AUTO")
        unknown = prolific_fake.participant_submits(study_id, "p3", "WRONG")
        with pytest.raises(ParticipantRefused):
            prolific_fake.participant_submits(study_id, "p4", "C1REVIEW")  # 3 places taken

        rows = client.get(f"/studies/{study_id}/submissions/").json()["results"]
        assert {r["id"]: (r["status"], r["study_code"]) for r in rows} == {
            reviewed: ("AWAITING REVIEW", "C1REVIEW"),
            auto: ("APPROVED", "C2AUTO"),
            unknown: ("AWAITING REVIEW", "WRONG"),
        }
        assert client.get(f"/studies/{study_id}/").json()["status"] == "AWAITING REVIEW"
        full = client.get(f"/submissions/{auto}/").json()
        assert full["participant"] == "p2" and full["study_id"] == study_id
        assert [(p.kind, p.cents) for p in prolific_fake.payments] == [("reward", 150)]

        for submission_id in (reviewed, unknown):
            client.post(f"/submissions/{submission_id}/transition/", json={"action": "APPROVE"})
        assert client.get(f"/studies/{study_id}/").json()["status"] == "COMPLETED"


def test_returned_submissions_free_their_place(prolific_fake):
    with prolific_client(prolific_fake) as client:
        study_id = published(client, total_available_places=1)
        session = prolific_fake.participant_starts(study_id, "p1")
        prolific_fake.participant_returns(session.submission_id)
        prolific_fake.participant_submits(study_id, "p2", "C1REVIEW")
        statuses = [
            r["status"] for r in client.get(f"/studies/{study_id}/submissions/").json()["results"]
        ]
    assert statuses == ["RETURNED", "AWAITING REVIEW"]


def test_submission_lists_paginate_and_filter(prolific_fake):
    with prolific_client(prolific_fake) as client:
        study_id = published(client, total_available_places=45)
        ids = [
            prolific_fake.participant_submits(study_id, f"p{i:02d}", "C1REVIEW") for i in range(45)
        ]
        seen, url, pages = [], f"/studies/{study_id}/submissions/", 0
        while url:
            page = client.get(url).json()
            assert page["meta"]["count"] == 45
            seen += [r["id"] for r in page["results"]]
            url = page["_links"]["next"]["href"]
            pages += 1
        assert seen == ids and pages == 3

        client.post(f"/submissions/{ids[0]}/transition/", json={"action": "APPROVE"})
        approved = client.get(
            "/submissions/", params={"study": study_id, "status": "approved"}
        ).json()
        assert [r["id"] for r in approved["results"]] == [ids[0]]
        waiting = client.get(
            "/submissions/",
            params={"study": study_id, "status": "awaiting_review", "page_size": 100},
        ).json()
        assert len(waiting["results"]) == 44


def test_approve_and_reject_transitions(prolific_fake):
    with prolific_client(prolific_fake) as client:
        study_id = published(client)
        good = prolific_fake.participant_submits(study_id, "p1", "C1REVIEW")
        bad = prolific_fake.participant_submits(study_id, "p2", "C1REVIEW")
        url = f"/submissions/{bad}/transition/"
        short = client.post(
            url, json={"action": "REJECT", "message": "no", "rejection_category": "FAILED_CHECK"}
        )
        assert short.status_code == 400 and "message" in short.json()["error"]["detail"]
        odd = client.post(
            url, json={"action": "REJECT", "message": REASON, "rejection_category": "MEH"}
        )
        assert odd.status_code == 400 and "rejection_category" in odd.json()["error"]["detail"]
        rejected = client.post(
            url, json={"action": "REJECT", "message": REASON, "rejection_category": "FAILED_CHECK"}
        )
        assert rejected.status_code == 200 and rejected.json()["status"] == "REJECTED"
        assert client.post(url, json={"action": "APPROVE"}).status_code == 400  # cannot be restored

        first = client.post(f"/submissions/{good}/transition/", json={"action": "APPROVE"})
        second = client.post(f"/submissions/{good}/transition/", json={"action": "APPROVE"})
        assert first.json()["status"] == second.json()["status"] == "APPROVED"
        assert len(prolific_fake.payments) == 1  # the documented idempotence: no second payment
        assert (
            client.post(f"/submissions/{good}/transition/", json={"action": "EXPLODE"}).status_code
            == 400
        )


def test_bulk_approve_both_payloads(prolific_fake):
    with prolific_client(prolific_fake) as client:
        study_id = published(client, total_available_places=4)
        subs = [prolific_fake.participant_submits(study_id, f"p{i}", "C1REVIEW") for i in range(4)]
        refused = client.post(
            "/submissions/bulk-approve/", json={"submission_ids": [subs[0], "f" * 24]}
        )
        assert refused.status_code == 400 and "f" * 24 in str(refused.json()["error"]["detail"])
        assert prolific_fake.submissions[subs[0]].status == "AWAITING REVIEW"  # all or nothing

        ok = client.post("/submissions/bulk-approve/", json={"submission_ids": subs[:2]})
        assert ok.status_code == 200 and "successfully" in ok.json()
        by_participant = client.post(
            "/submissions/bulk-approve/",
            json={"study_id": study_id, "participant_ids": ["p2", "p3", "p0"]},
        )
        assert by_participant.status_code == 200
    assert {s.status for s in prolific_fake.submissions.values()} == {"APPROVED"}
    assert len(prolific_fake.payments) == 4


def test_bonus_set_up_then_pay_and_paying_twice_pays_twice(prolific_fake):
    with prolific_client(prolific_fake) as client:
        study_id = published(client)
        sub1 = prolific_fake.participant_submits(study_id, "p1", "C1REVIEW")
        sub2 = prolific_fake.participant_submits(study_id, "p2", "C1REVIEW")
        wrong = client.post(
            "/submissions/bonus-payments/",
            json={"study_id": study_id, "csv_bonuses": "p1,1.00\nstranger,2.00\n"},
        )
        assert wrong.status_code == 400 and "stranger" in str(wrong.json()["error"]["detail"])
        created = client.post(
            "/submissions/bonus-payments/",
            json={"study_id": study_id, "csv_bonuses": f"p1,1.25\n{sub2},0.50\n"},
        )
        assert created.status_code == 201
        bonus = created.json()
        assert (bonus["study"], bonus["amount"], bonus["fees"]) == (study_id, 175, 58)
        assert bonus["total_amount"] == 233
        assert prolific_fake.payments == []  # setting up pays nothing

        assert client.post(f"/bulk-bonus-payments/{bonus['id']}/pay/").status_code == 202
        assert client.get(f"/submissions/{sub1}/").json()["bonus_payments"] == [125]
        assert client.post(f"/bulk-bonus-payments/{bonus['id']}/pay/").status_code == 202
    assert prolific_fake.paid_bonuses(sub1) == [125, 125]  # the documented hazard
    assert prolific_fake.paid_bonuses(sub2) == [50, 50]
    assert prolific_fake.bulk_bonuses[bonus["id"]].pay_count == 2


def test_participant_groups_as_block_lists(prolific_fake):
    with prolific_client(prolific_fake) as client:
        assert client.post("/participant-groups/", json={"name": "no workspace"}).status_code == 400
        group = client.post(
            "/participant-groups/",
            json={
                "name": "took part in demo",
                "workspace_id": prolific_fake.workspace_id,
                "participant_ids": ["p-old"],
            },
        ).json()
        added = client.post(
            f"/participant-groups/{group['id']}/participants/",
            json={"participant_ids": ["p-old", "p-x"]},
        )
        assert [r["participant_id"] for r in added.json()["results"]] == ["p-old", "p-x"]
        removed = client.request(
            "DELETE",
            f"/participant-groups/{group['id']}/participants/",
            json={"participant_ids": ["p-x"]},
        )
        assert [r["participant_id"] for r in removed.json()["results"]] == ["p-old"]
        assert client.get(f"/participant-groups/{group['id']}/").json()["participant_count"] == 1
        listed = client.get(
            "/participant-groups/", params={"workspace_id": prolific_fake.workspace_id}
        )
        assert [g["id"] for g in listed.json()["results"]] == [group["id"]]

        # Study 1 adds its finishers to the group; study 2 blocks the group.
        codes = [
            {
                "code": "DONE",
                "code_type": "COMPLETED",
                "actions": [
                    {"action": "MANUALLY_REVIEW"},
                    {"action": "ADD_TO_PARTICIPANT_GROUP", "participant_group": group["id"]},
                ],
            }
        ]
        first = published(client, completion_codes=codes)
        prolific_fake.participant_submits(first, "p-new", "DONE")
        members = client.get(f"/participant-groups/{group['id']}/participants/").json()["results"]
        assert {m["participant_id"] for m in members} == {"p-old", "p-new"}

        blocked = [{"filter_id": "participant_group_blocklist", "selected_values": [group["id"]]}]
        second = published(client, filters=blocked)
        for pid in ("p-old", "p-new"):
            with pytest.raises(ParticipantRefused):
                prolific_fake.participant_starts(second, pid)
        prolific_fake.participant_starts(second, "p-fresh")

        allow = [{"filter_id": "custom_allowlist", "selected_values": ["p-invited"]}]
        third = published(client, filters=allow)
        with pytest.raises(ParticipantRefused):
            prolific_fake.participant_starts(third, "p-fresh")
        prolific_fake.participant_starts(third, "p-invited")


def test_unknown_paths_and_ids(prolific_fake):
    with prolific_client(prolific_fake) as client:
        assert client.get("/nothing-here/").status_code == 404
        assert client.get("/studies/" + "0" * 24 + "/").status_code == 404
        assert client.get("/submissions/" + "0" * 24 + "/").status_code == 404
        assert client.post("/bulk-bonus-payments/" + "0" * 24 + "/pay/").status_code == 404
        assert (
            client.post(
                "/studies/", content=b"{not json", headers={"Content-Type": "application/json"}
            ).status_code
            == 400
        )
