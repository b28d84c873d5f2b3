"""Request builders shared by the MTurk fake's tests."""

from __future__ import annotations

import re

from botocore.exceptions import ClientError

ENTITY_ID = re.compile(r"^[A-Z0-9]+$")
HTML_NS = (
    "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2011-11-11/HTMLQuestion.xsd"
)
EXTERNAL_NS = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2006-07-14/ExternalQuestion.xsd"
PAGE = (
    "<!DOCTYPE html><html><head><meta charset='utf-8'><title>t</title></head><body>"
    "<form id='f' method='post' action='/mturk/externalSubmit'>"
    "<input type='hidden' name='assignmentId' value=''><input name='results' value='{}'>"
    "</form></body></html>"
)


def html_question(page: str = PAGE, frame_height: int = 0) -> str:
    return (
        f'<HTMLQuestion xmlns="{HTML_NS}"><HTMLContent><![CDATA[{page}]]></HTMLContent>'
        f"<FrameHeight>{frame_height}</FrameHeight></HTMLQuestion>"
    )


def external_question(url: str) -> str:
    return (
        f'<ExternalQuestion xmlns="{EXTERNAL_NS}"><ExternalURL>{url}</ExternalURL>'
        "<FrameHeight>600</FrameHeight></ExternalQuestion>"
    )


def make_hit_type(client, **overrides) -> str:
    params = dict(
        Title="Which image looks more like the reference?",
        Description="Two-alternative forced choice",
        Keywords="images,perception",
        Reward="0.50",
        AssignmentDurationInSeconds=600,
        AutoApprovalDelayInSeconds=3600,
    )
    params.update(overrides)
    return client.create_hit_type(**params)["HITTypeId"]


def make_hit(client, hit_type: str, **overrides) -> dict:
    params = dict(
        HITTypeId=hit_type,
        MaxAssignments=3,
        LifetimeInSeconds=3600,
        Question=html_question(),
        RequesterAnnotation="batch=b1",
    )
    params.update(overrides)
    return client.create_hit_with_hit_type(**params)["HIT"]


def turk_code(error: ClientError) -> str:
    return error.response["TurkErrorCode"]
