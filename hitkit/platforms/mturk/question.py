"""MTurk question XML: the HTMLQuestion page, or an ExternalQuestion.

The HTMLQuestion page is the participant page of the survey app (hitkit.survey.frontend:
the same template, script and stylesheet, inlined), so consent, instructions, the
practice trial, the desktop-only rule, progress and keys are the same on MTurk. It
carries the HIT's trials (trial IDs and image URLs, never the answer key or a trial's
kind) and posts one hidden field `results` (JSON: responses, client) with the
`assignmentId` to ``turkSubmitTo + "/mturk/externalSubmit"``, the shape
hitkit.platforms.mturk.answers reads. In preview
(assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE) it shows an example trial and nothing
can be answered or submitted. MTurk limits the Question to 65,535 bytes: inlined
images fit only tiny HITs (a 16-trial HIT of 32-px images inlines ~48 slots of ~4.3 KB
of base64 each, about 210 KB), so `publish` checks every HIT's size before sending
anything and names the remedy: images hosted per slot (`hosted_page`, written by
`hitkit export-images`).

Inlined images (`inline_page`) are encoded per slot like the served ones
(hitkit.survey.served_images): every trial's image is its own data URI, all of one
length, so the page's text does not tell which slots show the same image (a catch
trial's query and its answer, a target shown as a foil elsewhere). The practice trial
(not data) shows each of its images under one URI, so the page can still find its
correct option as the one showing the top image. Images hosted at an `image_base_url`
keep the protection: one file per slot, its bytes that slot's encoding, its name a
keyed hash of the slot (hitkit.platforms.mturk.platform.export_images).
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from hitkit.platforms.base import PlatformError
from hitkit.study.config import SurveySection
from hitkit.study.images import ImageStore
from hitkit.survey.design import Trial
from hitkit.survey.frontend import embedded_page
from hitkit.survey.served_images import MEDIA_TYPE, SlotImages

HTML_NS = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2011-11-11/HTMLQuestion.xsd"
EXTERNAL_NS = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2006-07-14/ExternalQuestion.xsd"
MAX_QUESTION_BYTES = 65535


def html_page(survey: SurveySection, trials: Sequence[Trial], practice: dict[str, Any],
              image_url: Callable[[str], str]) -> str:
    """The HIT's page; trials carry IDs and image URLs only (never `answer` or `kind`),
    the practice trial (``hitkit.survey.hits.hit_practice``) its image URLs only."""
    return embedded_page(survey, trials, practice, image_url)


@dataclass(frozen=True)
class SlotPlan:
    """A HIT's images by slot: the trials and practice with slot names in place of image
    IDs, which image each slot shows, and the HIT's image group (its canvas)."""

    trials: list[Trial]
    practice: dict[str, list[str]]
    images: dict[str, str]  # slot -> image ID
    group: list[str]


def slot_plan(trials: Sequence[Trial], practice: dict[str, Any], prefix: str = "") -> SlotPlan:
    """One slot per place an image is shown; the practice trial shows each of its images
    under one slot (its correct option is found as the one showing the top image)."""
    images: dict[str, str] = {}

    def slot(name: str, image_id: str) -> str:
        images[prefix + name] = image_id
        return prefix + name

    slotted = [replace(t, query=tuple(slot(f"{t.trial_id}/q{n}", i) for n, i in enumerate(t.query)),
                       options=tuple(slot(f"{t.trial_id}/o{n}", i) for n, i in enumerate(t.options)))
               for t in trials]
    practice_slots = {key: [slot(f"practice/{i}", i) for i in practice[key]]
                      for key in ("query", "options")}
    group = sorted({i for t in trials for i in (*t.query, *t.options)}
                   | set(practice["query"]) | set(practice["options"]))
    return SlotPlan(slotted, practice_slots, images, group)


def inline_page(survey: SurveySection, trials: Sequence[Trial], practice: dict[str, Any],
                images: ImageStore) -> str:
    """The HIT's page with every image inlined as a data URI of its own slot."""
    slots = SlotImages(images, secrets.token_bytes(32))
    plan = slot_plan(trials, practice)
    uris = {slot: f"data:{MEDIA_TYPE};base64," + base64.b64encode(
                slots.slot_bytes(image_id, plan.group, slot)).decode("ascii")
            for slot, image_id in plan.images.items()}
    return embedded_page(survey, plan.trials, plan.practice, uris.__getitem__)


def hosted_page(survey: SurveySection, plan: SlotPlan, slot_url: Callable[[str], str]) -> str:
    """The HIT's page with every slot's image at its own URL (`hitkit export-images`
    wrote one file per slot under a keyed name: a URL tells nothing across slots)."""
    return embedded_page(survey, plan.trials, plan.practice, slot_url)


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


class QuestionTooLarge(PlatformError):
    def __init__(self, size: int):
        super().__init__(f"the HIT's Question is {size:,} bytes; MTurk allows "
                         f"{MAX_QUESTION_BYTES:,} bytes. {REMEDY}")
        self.size = size


REMEDY = ("Host the images instead of inlining them: `hitkit export-images --study DIR --to "
          "s3://bucket/prefix` (or `--to FOLDER` and upload that folder), then `hitkit publish "
          "--platform mturk --image-base-url https://<where they are served>`; or use fewer "
          "trials per HIT ([survey].trials_per_hit)")


def check_size(xml: str) -> str:
    size = len(xml.encode("utf-8"))
    if size > MAX_QUESTION_BYTES:
        raise QuestionTooLarge(size)
    return xml
