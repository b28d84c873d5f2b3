"""Reading MTurk answers: QuestionFormAnswers XML (hardened parser) into a submission body."""

from __future__ import annotations

import json
from typing import Any

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from hitkit.platforms.base import PlatformError


def parse_answers(xml: str | bytes | None) -> dict[str, str]:
    """QuestionIdentifier -> FreeText (or the selection IDs, comma-joined); {} for an empty Answer."""
    if not xml:
        return {}
    data = xml.encode("utf-8") if isinstance(xml, str) else xml
    try:
        root = SafeET.fromstring(data)
    except (SafeET.ParseError, DefusedXmlException) as exc:
        raise PlatformError(f"Answer is not valid QuestionFormAnswers XML: {exc}") from None
    out: dict[str, str] = {}
    for answer in root:
        if _local(answer.tag) != "Answer":
            continue
        name, values = None, []
        for child in answer:
            tag = _local(child.tag)
            if tag == "QuestionIdentifier":
                name = (child.text or "").strip()
            elif tag in ("FreeText", "SelectionIdentifier", "OtherSelectionText",
                         "UploadedFileKey"):
                if len(child):  # markup inside an answer: not a value hitkit can read
                    raise PlatformError(f"answer {name or '(unnamed)'}: <{tag}> holds nested "
                                        f"elements (<{_local(child[0].tag)}>), not text")
                values.append(child.text or "")
        if name:
            out[name] = ",".join(values)
    return out


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def submission_body(answers: dict[str, str]) -> Any:
    """The survey submission in an answer's `results` field (HTMLQuestion pages post it)."""
    text = answers.get("results")
    if text is None:
        raise PlatformError("the answer has no `results` field")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise PlatformError(f"the `results` field is not JSON: {exc}") from None
