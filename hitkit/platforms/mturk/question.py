"""MTurk question XML: the self-contained HTMLQuestion page, or an ExternalQuestion.

The HTMLQuestion page carries the HIT's trials (trial IDs and image URLs,
never the answer key), shows them one at a time, and posts one hidden field
`results` (JSON: responses, client) with the `assignmentId` to
``turkSubmitTo + "/mturk/externalSubmit"``. In preview
(assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE) it shows the first trial and
nothing can be answered or submitted. MTurk limits the Question to 65,535
bytes; image URLs keep it small, data URIs only fit tiny images.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from html import escape
from xml.sax.saxutils import escape as xml_escape

from hitkit.platforms.base import PlatformError
from hitkit.survey.design import Trial

HTML_NS = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2011-11-11/HTMLQuestion.xsd"
EXTERNAL_NS = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2006-07-14/ExternalQuestion.xsd"
MAX_QUESTION_BYTES = 65535
PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1em auto;max-width:900px;color:#222}}
.row{{display:flex;gap:1.5em;justify-content:center;margin:1em 0}}
.row img{{width:192px;height:192px;image-rendering:pixelated;border:3px solid #ccc}}
button.opt{{background:none;border:0;padding:0;cursor:pointer}}
button.opt:disabled{{cursor:default;opacity:.6}}
#status{{text-align:center;font-weight:bold}}
</style></head>
<body>
<h1>{title}</h1>
<div id="instructions">{instructions}</div>
<p id="status"></p>
<div id="trial"><div class="row" id="query"></div><p style="text-align:center">Which image below looks more like the image above? (keys: 1, 2, ...)</p><div class="row" id="options"></div></div>
<form id="mturk_form" method="POST" action="">
<input type="hidden" id="assignmentId" name="assignmentId" value="">
<input type="hidden" id="results" name="results" value="">
</form>
<script>
const TRIALS = {trials};
const params = new URLSearchParams(location.search);
const assignmentId = params.get("assignmentId") || "{preview}";
const preview = assignmentId === "{preview}";
const responses = [];
let index = 0, shownAt = 0;
function el(tag, attrs) {{ const e = document.createElement(tag); Object.assign(e, attrs); return e; }}
function show(i) {{
  const t = TRIALS[i];
  const q = document.getElementById("query"), o = document.getElementById("options");
  q.replaceChildren(...t.query.map((src) => el("img", {{src, alt: "image to match"}})));
  o.replaceChildren(...t.options.map((src, k) => {{
    const b = el("button", {{type: "button", className: "opt", disabled: preview}});
    b.dataset.choice = String(k);
    b.append(el("img", {{src, alt: "option " + (k + 1)}}));
    b.addEventListener("click", () => choose(k));
    return b;
  }}));
  document.getElementById("status").textContent = preview
    ? "Preview: accept the HIT to start." : "Trial " + (i + 1) + " of " + TRIALS.length;
  shownAt = performance.now();
}}
function choose(k) {{
  if (preview || index >= TRIALS.length) return;
  responses.push({{trial_id: TRIALS[index].trial_id, choice: k,
                   rt_ms: Math.round(performance.now() - shownAt)}});
  index += 1;
  if (index < TRIALS.length) {{ show(index); return; }}
  const submitTo = (params.get("turkSubmitTo") || "https://www.mturk.com").replace(/\\/$/, "");
  const form = document.getElementById("mturk_form");
  form.action = submitTo + "/mturk/externalSubmit";
  document.getElementById("assignmentId").value = assignmentId;
  document.getElementById("results").value = JSON.stringify({{responses,
    client: {{width: innerWidth, height: innerHeight, pixel_ratio: devicePixelRatio}}}});
  document.getElementById("status").textContent = "Submitting...";
  form.submit();
}}
document.addEventListener("keydown", (e) => {{
  const k = Number(e.key) - 1;
  if (k >= 0 && k < (TRIALS[index] || {{options: []}}).options.length) choose(k);
}});
show(0);
</script>
</body></html>
"""


def html_page(title: str, instructions: str, trials: list[Trial],
              image_url: Callable[[str], str]) -> str:
    """The HIT page; trials carry IDs and image URLs only (never `answer` or `kind`)."""
    shown = [{"trial_id": t.trial_id, "query": [image_url(i) for i in t.query],
              "options": [image_url(i) for i in t.options]} for t in trials]
    data = json.dumps(shown, separators=(",", ":"))
    # inside <script> and a CDATA section: neither may be closed by the data
    data = data.replace("</", "<\\/").replace("]]>", "]]\\u003e")
    return PAGE.format(title=escape(title), instructions=escape(instructions or ""),
                       trials=data, preview=PREVIEW)


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
