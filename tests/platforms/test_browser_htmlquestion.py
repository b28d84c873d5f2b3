"""The HTMLQuestion page in Debian's Chromium, framed the way MTurk frames it.

The fake MTurk serves /mturk/task/<HIT> with the HIT in an iframe and MTurk's
query parameters (assignmentId, hitId, turkSubmitTo, workerId; preview with
ASSIGNMENT_ID_NOT_AVAILABLE). Preview must be inert; a worker answers every
trial, the page posts to the fake's /mturk/externalSubmit, and `collect`
brings exactly those answers into the ledger.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from hitkit.platforms import open_platform
from hitkit.survey.hits import hit_trials
from hitkit.survey.ledger import Ledger
from tests.fakes.fixtures import mturk_client
from tests.platforms.helpers import platform_study

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]

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


def test_htmlquestion_preview_inert_then_submit(tmp_path, mturk_fake, browser):
    fake = mturk_fake
    study = platform_study(tmp_path / "study", {"kind": "mturk", "currency": "USD"}, places=1)
    with Ledger.for_study(study.root) as ledger:
        p = open_platform(study, "mturk", ledger, client=mturk_client(fake), endpoint_url=fake.url)
        p.publish()
        mturk_hit, hit = sorted(fake.hits.items())[0]
        trials = hit_trials(ledger, hit.annotation.rsplit("hit=", 1)[1])
        assert '"answer"' not in hit.question and "catch" not in hit.question

        page = browser.new_page(viewport={"width": 1280, "height": 900})
        posts: list[str] = []
        page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
        page.goto(fake.task_url(mturk_hit))
        frame = page.frame_locator("#hit-frame")
        frame.locator("#status").filter(has_text="Preview").wait_for()
        buttons = frame.locator("#options button")
        assert buttons.count() == 2
        assert all(buttons.nth(i).is_disabled() for i in range(2))
        frame.locator("body").press("1")
        page.wait_for_timeout(300)
        assert posts == [] and "Preview" in frame.locator("#status").inner_text()
        assert len(fake.assignments) == 0

        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(fake.task_url(mturk_hit, "A1BROWSERWORKER"))
        frame = page.frame_locator("#hit-frame")
        chosen = []
        for i, trial in enumerate(trials):
            frame.locator("#status").filter(has_text=f"Trial {i + 1} of {len(trials)}").wait_for()
            choice = trial.answer[0] if i % 3 else 1 - trial.answer[0]
            if i % 2:
                frame.locator("body").press(str(choice + 1))
            else:
                frame.locator(f'#options button[data-choice="{choice}"]').click()
            chosen.append(choice)
        frame.locator("#submitted").wait_for()
        assert [a.status for a in fake.assignments.values()] == ["Submitted"]

        got = p.collect()
        assert got.new == 1 and not got.problems
        rows = ledger.query("SELECT r.trial_id, r.choice FROM responses r JOIN trials t USING"
                            " (trial_id) ORDER BY t.position")
        assert [r["trial_id"] for r in rows] == [t.trial_id for t in trials]
        assert [int(r["choice"].strip("[]")) for r in rows] == chosen
