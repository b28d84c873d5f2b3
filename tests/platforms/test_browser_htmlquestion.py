"""The HTMLQuestion page in Debian's Chromium, framed the way MTurk frames it.

The fake MTurk serves /mturk/task/<HIT> with the HIT in an iframe and MTurk's
query parameters (assignmentId, hitId, turkSubmitTo, workerId; preview with
ASSIGNMENT_ID_NOT_AVAILABLE). The page is the survey app's page, inlined: preview
must be inert, a phone is turned away, a worker gives consent, passes the practice
trial (feedback on a wrong answer), answers every trial, and the page posts
`results` to the fake's /mturk/externalSubmit, which the existing parsers read and
`collect` brings into the ledger.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from playwright.sync_api import sync_playwright

from hitkit.platforms import open_platform
from hitkit.platforms.mturk.answers import parse_answers, submission_body
from hitkit.platforms.mturk.question import MAX_QUESTION_BYTES
from hitkit.survey.hits import hit_practice, hit_trials
from hitkit.survey.ledger import Ledger
from hitkit.survey.submission import parse_submission
from tests.fakes.fixtures import mturk_client
from tests.platforms.helpers import platform_study

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
CONSENT = "I have read the above and agree to take part."

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail("Chromium is missing: run `make setup` (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def published(tmp_path, fake, **options):
    """A study published on the fake: (platform, ledger, MTurk HIT ID, hitkit HIT ID)."""
    study = platform_study(tmp_path / "study", {"kind": "mturk", "currency": "USD"}, places=1,
                           **options)
    ledger = Ledger.for_study(study.root)
    p = open_platform(study, "mturk", ledger, client=mturk_client(fake), endpoint_url=fake.url)
    p.publish()
    mturk_hit, hit = sorted(fake.hits.items())[0]
    return p, ledger, mturk_hit, hit.annotation.rsplit("hit=", 1)[1]


def embedded_data(question: str) -> dict:
    found = re.search(r'<script type="application/json" id="hit-data">(.*?)</script>', question, re.S)
    assert found, "the page carries no #hit-data"
    return json.loads(found.group(1))


def posts_of(page) -> list[tuple[str, str | None]]:
    posts: list[tuple[str, str | None]] = []
    page.on("request", lambda r: posts.append((r.url, r.post_data)) if r.method == "POST" else None)
    return posts


def consent_and_instructions(frame):
    frame.locator("#screen-consent:not([hidden])").wait_for()
    assert frame.locator("#consent-go").is_disabled()  # until the box is ticked
    frame.get_by_label(CONSENT).check()
    frame.locator("#consent-go").click()
    frame.locator("#screen-instructions:not([hidden])").wait_for()
    frame.get_by_role("button", name="Start").click()


def test_the_page_carries_trial_ids_and_urls_only(tmp_path, mturk_fake):
    p, ledger, mturk_hit, hit_id = published(tmp_path, mturk_fake)
    with ledger:
        question = mturk_fake.hits[mturk_hit].question
        assert len(question.encode()) <= MAX_QUESTION_BYTES
        data = embedded_data(question)
        trials = hit_trials(ledger, hit_id)
        assert [t["trial_id"] for t in data["trials"]] == [t.trial_id for t in trials]
        assert all(set(t) == {"trial_id", "query", "options"} for t in data["trials"])
        assert set(data["practice"]) == {"query", "options"}  # no answer: the page derives it
        text = json.dumps(data)
        assert "answer" not in text and "catch" not in text and "repeat" not in text
        assert all(u.startswith("data:image/png;base64,") for t in data["trials"] for u in t["query"])


def test_preview_is_inert(tmp_path, mturk_fake, browser):
    fake = mturk_fake
    _, ledger, mturk_hit, _ = published(tmp_path, fake)
    with ledger:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        posts = posts_of(page)
        page.goto(fake.task_url(mturk_hit))
        frame = page.frame_locator("#hit-frame")
        frame.locator("#screen-preview:not([hidden]) #options button").first.wait_for()
        assert "Preview" in frame.locator("#screen-preview").inner_text()
        buttons = frame.locator("#options button")
        assert buttons.count() == 2
        assert all(buttons.nth(i).is_disabled() for i in range(2))
        frame.locator("body").press("1")
        frame.locator("body").press("ArrowLeft")
        page.wait_for_timeout(300)
        assert posts == [] and frame.locator("#screen-consent").is_hidden()
        assert len(fake.assignments) == 0
        page.close()


def test_a_phone_is_turned_away(tmp_path, mturk_fake, browser):
    fake = mturk_fake
    _, ledger, mturk_hit, _ = published(tmp_path, fake)
    with ledger:
        context = browser.new_context(
            viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
            user_agent="Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148")
        page = context.new_page()
        posts = posts_of(page)
        page.goto(fake.task_url(mturk_hit, "A2PHONEWORKER"))
        frame = page.frame_locator("#hit-frame")
        frame.locator("#screen-blocked:not([hidden])").wait_for()
        assert "desktop or laptop" in frame.locator("#screen-blocked").inner_text()
        assert frame.locator("#screen-consent").is_hidden() and frame.locator("#screen-trial").is_hidden()
        page.wait_for_timeout(300)
        assert posts == []
        assert [a.status for a in fake.assignments.values()] == ["Accepted"]
        context.close()


def test_a_worker_takes_the_whole_hit(tmp_path, mturk_fake, browser):
    fake = mturk_fake
    p, ledger, mturk_hit, hit_id = published(tmp_path, fake)
    with ledger:
        trials = hit_trials(ledger, hit_id)
        practice = hit_practice(ledger, hit_id)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        posts = posts_of(page)
        page.goto(fake.task_url(mturk_hit, "A1BROWSERWORKER"))
        frame = page.frame_locator("#hit-frame")
        consent_and_instructions(frame)

        # practice: a wrong answer is explained and the trial shown again
        frame.locator('#app[data-shown="1"]').wait_for()
        assert frame.locator("#trial-label").inner_text() == "Practice"
        right = practice["answer"][0]
        frame.locator("body").press(str(2 - right))
        frame.locator("#feedback").filter(has_text="Not quite").wait_for()
        frame.locator('#app[data-shown="2"]').wait_for()
        frame.locator("body").press(["ArrowLeft", "ArrowRight"][right])
        frame.locator("#practice-next:not([hidden])").wait_for()
        assert "Correct" in frame.locator("#feedback").inner_text()
        frame.locator("#practice-next").click()

        chosen = []
        for i, trial in enumerate(trials):
            frame.locator(f'#app[data-shown="{i + 3}"]').wait_for()
            assert frame.locator("#trial-label").inner_text() == f"Trial {i + 1} of {len(trials)}"
            choice = trial.answer[0] if i % 3 else 1 - trial.answer[0]
            if i % 2:
                frame.locator("body").press(str(choice + 1))
            else:
                frame.get_by_role("button", name=["Left image", "Right image"][choice]).click()
            chosen.append(choice)
        frame.locator("#submitted").wait_for()
        assert errors == []
        assert [a.status for a in fake.assignments.values()] == ["Submitted"]

        # the form post: the assignment and one `results` field, as answers.py reads it
        [(url, body)] = posts
        assert url == f"{fake.url}/mturk/externalSubmit"
        form = {k: v[0] for k, v in parse_qs(body or "").items()}
        assignment_id = next(iter(fake.assignments))
        assert form.keys() == {"assignmentId", "results"} and form["assignmentId"] == assignment_id
        answer = fake.assignments[assignment_id].answer
        submission = parse_submission(submission_body(parse_answers(answer)), trials)
        assert [r.trial_id for r in submission.responses] == [t.trial_id for t in trials]
        assert [r.choice for r in submission.responses] == [(c,) for c in chosen]
        assert all(r.rt_ms > 0 for r in submission.responses)
        assert submission.client["width"] >= 700 and submission.client["pixel_ratio"] == 1

        got = p.collect()
        assert got.new == 1 and not got.problems
        rows = ledger.query("SELECT r.trial_id, r.choice FROM responses r JOIN trials t USING"
                            " (trial_id) ORDER BY t.position")
        assert [r["trial_id"] for r in rows] == [t.trial_id for t in trials]
        assert [json.loads(r["choice"]) for r in rows] == [[c] for c in chosen]
        page.close()


def test_matching_on_mturk(tmp_path, mturk_fake, browser):
    fake = mturk_fake
    _, ledger, mturk_hit, hit_id = published(tmp_path, fake, task="matching", k=3,
                                             trials_per_hit=4, repeat_share=0.0)
    with ledger:
        trials = hit_trials(ledger, hit_id)
        practice = hit_practice(ledger, hit_id)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(fake.task_url(mturk_hit, "A3MATCHWORKER"))
        frame = page.frame_locator("#hit-frame")
        consent_and_instructions(frame)
        frame.locator('#app[data-shown="1"]').wait_for()
        for option in practice["answer"]:
            frame.locator("body").press(str(option + 1))
        frame.locator("#practice-next:not([hidden])").wait_for()
        frame.locator("#practice-next").click()
        chosen = []
        for i, _ in enumerate(trials):
            frame.locator(f'#app[data-shown="{i + 2}"]').wait_for()
            assert frame.locator("#query figure.current").count() == 1
            order = [2, 0, 1] if i % 2 else [0, 1, 2]
            for option in order:
                if i % 2:
                    frame.get_by_role("button", name=f"Image {option + 1}").click()
                else:
                    frame.locator("body").press(str(option + 1))
            chosen.append(tuple(order))
        frame.locator("#submitted").wait_for()
        answer = next(iter(fake.assignments.values())).answer
        submission = parse_submission(submission_body(parse_answers(answer)), trials)
        assert [r.choice for r in submission.responses] == chosen
        page.close()
