"""MTurk question XML: the HTMLQuestion page, or an ExternalQuestion.

The HTMLQuestion page is the participant page of the survey app (hitkit.survey.frontend:
the same template, script and stylesheet, inlined), so consent, instructions, the
practice trial, the desktop-only rule, progress and keys are the same on MTurk. It
carries the HIT's trials (trial IDs and image URLs, never the answer key or a trial's
kind) and posts one hidden field `results` (JSON: responses, client) with the
`assignmentId` to ``turkSubmitTo + "/mturk/externalSubmit"``, the shape
hitkit.platforms.mturk.answers reads. In preview
(assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE) it shows an example trial and nothing
can be answered or submitted. MTurk limits the Question to 65,535 bytes; image URLs
keep it small, data URIs only fit tiny images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from hitkit.platforms.base import PlatformError
from hitkit.study.config import SurveySection
from hitkit.survey.design import Trial
from hitkit.survey.frontend import embedded_page

HTML_NS = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2011-11-11/HTMLQuestion.xsd"
EXTERNAL_NS = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2006-07-14/ExternalQuestion.xsd"
MAX_QUESTION_BYTES = 65535


def html_page(survey: SurveySection, trials: Sequence[Trial], practice: dict[str, Any],
              image_url: Callable[[str], str]) -> str:
    """The HIT's page; trials carry IDs and image URLs only (never `answer` or `kind`),
    the practice trial (``hitkit.survey.hits.hit_practice``) its image URLs only."""
    return embedded_page(survey, trials, practice, image_url)


def html_question(page: str, frame_height: int = 0) -> str:
    if "]]>" in page:
        raise PlatformError("the HIT page contains ']]>', which would end its CDATA section")
    xml = (f'<HTMLQuestion xmlns="{HTML_NS}"><HTMLContent><![CDATA[{page}]]></HTMLContent>'
           f"<FrameHeight>{frame_height}</FrameHeight></HTMLQuestion>")
    return check_size(xml)


def external_question(url: str, frame_height: int = 0) -> str:
    if not url.startswith("https://"):
        raise PlatformError(f"[platform.mturk] external_url {url!r}: MTurk requires https://")
    xml = (f'<ExternalQuestion xmlns="{EXTERNAL_NS}"><ExternalURL>{xml_escape(url)}</ExternalURL>'
           f"<FrameHeight>{frame_height}</FrameHeight></ExternalQuestion>")
    return check_size(xml)


def check_size(xml: str) -> str:
    size = len(xml.encode("utf-8"))
    if size > MAX_QUESTION_BYTES:
        raise PlatformError(f"the HIT's Question is {size} bytes; MTurk allows {MAX_QUESTION_BYTES}. "
                            "Serve the images from --image-base-url instead of inlining them, "
                            "or use fewer trials per HIT")
    return xml
