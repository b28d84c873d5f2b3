"""The participant page: one template, script and stylesheet for every platform.

Served by the survey app (hitkit.survey.web), the page loads the script and the
stylesheet from /static (the app's Content-Security-Policy allows no inline script)
and talks to the JSON API. Embedded in an MTurk HTMLQuestion
(hitkit.platforms.mturk.question) there is no server behind it: both are inlined,
the HIT's trials travel in the page as JSON (trial IDs and image URLs by position,
never an answer, a kind or an image ID) and the responses go to MTurk's form.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from hitkit.study.config import SurveySection
from hitkit.survey.design import Trial

HERE = Path(__file__).parent
STATIC = HERE / "static"  # the served app mounts this folder at /static

_templates = Environment(loader=FileSystemLoader(HERE), autoescape=select_autoescape(["html"]),
                         trim_blocks=True, lstrip_blocks=True)


def _render(survey: SurveySection, **page: Any) -> str:
    return _templates.get_template("survey.html").render(
        title=survey.title, consent=survey.consent, instructions=survey.instructions,
        task=survey.task, k=survey.k or 2, practice=survey.practice,
        desktop_only=survey.desktop_only, time_estimate=survey.time_estimate_minutes, **page)


def served_page(survey: SurveySection, *, preview: bool, mobile: bool) -> str:
    """The page the survey app serves; the API gives it the trials."""
    return _render(survey, preview=preview, mobile=mobile, inline=None)


def embedded_page(survey: SurveySection, trials: Sequence[Trial], practice: dict[str, Any],
                  image_url: Callable[[str], str]) -> str:
    """One self-contained page for a HIT. Preview and the desktop-only rule are decided
    in the browser (from MTurk's assignmentId and the device), the same page serving both.
    The practice trial goes without its answer: the page finds the correct option as the
    one showing the top image itself."""
    data = {
        "trials": [{"trial_id": t.trial_id, "query": [image_url(i) for i in t.query],
                    "options": [image_url(i) for i in t.options]} for t in trials],
        "practice": {"query": [image_url(i) for i in practice["query"]],
                     "options": [image_url(i) for i in practice["options"]]},
    }
    text = json.dumps(data, separators=(",", ":"))
    # no '<', '>' or '&' inside <script>: the data can close neither it nor a CDATA section
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    inline = {"css": _inlined("survey.css", "</style"), "js": _inlined("survey.js", "</script"),
              "data": Markup(text)}
    return _render(survey, preview=False, mobile=False, inline=inline)


def _inlined(name: str, closing: str) -> Markup:
    text = (STATIC / name).read_text(encoding="utf-8")
    if closing in text.lower() or "]]>" in text:
        raise ValueError(f"{name} contains {closing!r} or ']]>', which would end the page's element")
    return Markup(text)
