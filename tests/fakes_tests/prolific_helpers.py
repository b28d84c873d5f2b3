"""Request builders shared by the Prolific fake's tests."""

from __future__ import annotations

import httpx

STUDY_URL = (
    "https://survey.example.org/s/demo?PROLIFIC_PID={{%PROLIFIC_PID%}}"
    "&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
)
REASON = (
    "You answered fewer than half of the catch trials correctly; those trials show the "
    "reference image itself, so they have an obvious answer."
)


def draft(**overrides) -> dict:
    body = {
        "name": "Which image looks more like the reference?",
        "internal_name": "demo batch 1",
        "description": "Compare images; about 10 minutes.",
        "external_study_url": STUDY_URL,
        "prolific_id_option": "url_parameters",
        "completion_codes": [
            {
                "code": "C1REVIEW",
                "code_type": "COMPLETED",
                "actions": [{"action": "MANUALLY_REVIEW"}],
            },
            {
                "code": "C2AUTO",
                "code_type": "OTHER",
                "actions": [{"action": "AUTOMATICALLY_APPROVE"}],
            },
        ],
        "total_available_places": 3,
        "reward": 150,
        "estimated_completion_time": 10,
        "maximum_allowed_time": 40,
        "device_compatibility": ["desktop"],
        "filters": [{"filter_id": "age", "selected_range": {"lower": 18, "upper": 65}}],
    }
    body.update(overrides)
    return body


def published(client: httpx.Client, **overrides) -> str:
    created = client.post("/studies/", json=draft(**overrides))
    assert created.status_code == 201, created.text
    study_id = created.json()["id"]
    assert (
        client.post(f"/studies/{study_id}/transition/", json={"action": "PUBLISH"}).status_code
        == 200
    )
    return study_id
