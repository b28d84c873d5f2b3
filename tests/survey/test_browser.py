"""The participant page in Debian's Chromium, driven by Playwright.

Opens the preview (inert), then a participant link: consent, instructions, the
practice trial with feedback, every trial by keyboard and by mouse, submit,
the completion code; then checks the ledger holds exactly those responses.
"""

import json
import shutil
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import sync_playwright
from survey_helpers import ROOT, ServerProcess, make_study, run_cli

from hitkit.platforms.local import publish_local
from hitkit.survey.ledger import Ledger

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = ROOT / "test-artifacts"

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail("Chromium is missing: run `make setup` (apt-get install chromium)")
    study = make_study(tmp_path_factory.mktemp("browser") / "study", size=32)
    run_cli("design", "--study", str(study.root))
    with Ledger.for_study(study.root) as ledger:
        tokens = [link.token for link in publish_local(study, ledger, cap=3).links]
    server = ServerProcess(study.root).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            try:
                yield study, server.url, tokens, browser
            finally:
                browser.close()
    finally:
        server.stop()


def test_preview_is_inert(site):
    _, url, _, browser = site
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.goto(f"{url}/?preview=1")
    page.wait_for_selector("#screen-preview:not([hidden]) #options button")
    buttons = page.locator("#options button")
    assert buttons.count() == 2
    assert all(buttons.nth(i).is_disabled() for i in range(2))
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("1")
    page.wait_for_timeout(300)
    assert posts == []
    assert page.locator("#screen-consent").is_hidden()
    alts = [page.locator("img").nth(i).get_attribute("alt") for i in range(page.locator("img").count())]
    assert all("target" not in a and "iri" not in a for a in alts)
    page.close()


def test_a_participant_takes_the_whole_study(site):
    study, url, tokens, browser = site
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{url}/?token={tokens[0]}")

    # consent: the button stays disabled until the box is ticked
    page.wait_for_selector("#screen-consent:not([hidden])")
    assert page.locator("#consent-go").is_disabled()
    page.get_by_label("I have read the above and agree to take part.").check()
    page.locator("#consent-go").click()
    page.wait_for_selector("#screen-instructions:not([hidden])")
    page.get_by_role("button", name="Start").click()

    # practice: try the left image; if that was wrong the page says so and we try the right
    shown = 1
    page.wait_for_selector(f'#app[data-shown="{shown}"]')
    assert page.locator("#trial-label").inner_text() == "Practice"
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("document.getElementById('feedback').textContent.length > 0")
    if "Not quite" in page.locator("#feedback").inner_text():
        shown += 1
        page.wait_for_selector(f'#app[data-shown="{shown}"]')
        page.keyboard.press("ArrowRight")
    page.wait_for_selector("#practice-next:not([hidden])")
    assert "Correct" in page.locator("#feedback").inner_text()
    page.locator("#practice-next").click()

    # the trials: even ones by keyboard, odd ones by mouse
    chosen = []
    i = 0
    while True:
        shown += 1
        page.wait_for_selector(f'#app[data-shown="{shown}"]')
        label = page.locator("#trial-label").inner_text()
        total = int(label.split(" of ")[1])
        assert label == f"Trial {i + 1} of {total}"
        assert int(page.locator("#progress").get_attribute("value") or 0) == i
        images = page.locator("#screen-trial img")
        assert images.count() == 3
        for n in range(3):  # loaded before shown
            assert images.nth(n).evaluate("img => img.complete && img.naturalWidth > 0")
        alts = {images.nth(n).get_attribute("alt") for n in range(3)}
        assert alts == {"Image to compare", "Left image", "Right image"}
        if i == 2:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "survey-trial.png"))
        choice = (i * 7 + 3) % 3 % 2
        if i % 2 == 0:
            page.keyboard.press(["ArrowLeft", "ArrowRight"][choice] if i % 4 == 0 else str(choice + 1))
        else:
            page.get_by_role("button", name=["Left image", "Right image"][choice]).click()
        chosen.append(choice)
        i += 1
        if i == total:
            break

    page.wait_for_selector("#screen-done:not([hidden])")
    code = page.locator("#completion-code").inner_text()
    assert len(code) == 8
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "survey-done.png"))
    assert errors == []

    with Ledger.for_study(study.root) as ledger:
        assignment = ledger.query_one(
            "SELECT * FROM assignments WHERE link_token = ?", (tokens[0],))
        assert assignment["state"] == "submitted" and assignment["completion_code"] == code
        rows = ledger.query(
            "SELECT r.choice, r.rt_ms FROM responses r JOIN trials t USING (trial_id)"
            " WHERE r.assignment_id = ? ORDER BY t.position", (assignment["assignment_id"],))
        assert [json.loads(r["choice"])[0] for r in rows] == chosen
        assert all(r["rt_ms"] > 0 for r in rows)
        client = json.loads(assignment["client"])
        assert client["width"] == 1280 and client["pixel_ratio"] == 1
        total_rows = ledger.query_one("SELECT COUNT(*) FROM responses")[0]
        assert total_rows == len(chosen)

    # coming back with the same link shows the completion code, not the study again
    page.goto(f"{url}/?token={tokens[0]}")
    page.wait_for_selector("#screen-done:not([hidden])")
    assert page.locator("#completion-code").inner_text() == code
    page.close()


def test_a_phone_is_turned_away(site):
    _, url, tokens, browser = site
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
        user_agent="Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148")
    page = context.new_page()
    page.goto(f"{url}/?token={tokens[1]}")
    page.wait_for_selector("#screen-blocked:not([hidden])")
    assert "desktop or laptop" in page.locator("#screen-blocked").inner_text()
    context.close()


def test_matching_by_keys_and_clicks(site, tmp_path):
    _, _, _, browser = site
    study = make_study(tmp_path / "matching", size=32, task="matching", k=3, targets=6,
                       trials_per_hit=4, catch_per_hit=1, repeat_share=0.0)
    run_cli("design", "--study", str(study.root))
    with Ledger.for_study(study.root) as ledger:
        token = publish_local(study, ledger, cap=1).links[0].token
    server = ServerProcess(study.root).start()
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(f"{server.url}/?token={token}")
        page.get_by_label("I have read the above and agree to take part.").check()
        page.locator("#consent-go").click()
        page.get_by_role("button", name="Start").click()
        page.wait_for_selector('#app[data-shown="1"]')
        with Ledger.for_study(study.root) as ledger:
            aid = ledger.query_one("SELECT assignment_id FROM assignments")[0]
        answer = httpx.get(f"{server.url}/api/assignments/{aid}").json()["practice"]["answer"]
        for option in answer:  # the practice trial, by keyboard
            page.keyboard.press(str(option + 1))
        page.wait_for_selector("#practice-next:not([hidden])")
        page.locator("#practice-next").click()
        chosen, shown, i = [], 1, 0
        while True:
            shown += 1
            page.wait_for_selector(f'#app[data-shown="{shown}"]')
            total = int(page.locator("#trial-label").inner_text().split(" of ")[1])
            assert page.locator("#query figure.current").count() == 1
            order = [2, 0, 1] if i % 2 else [0, 1, 2]
            if i == 0:
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "survey-matching.png"))
            for option in order:
                if i % 2:
                    page.get_by_role("button", name=f"Image {option + 1}").click()
                else:
                    page.keyboard.press(str(option + 1))
            chosen.append(order)
            i += 1
            if i == total:
                break
        page.wait_for_selector("#screen-done:not([hidden])")
        with Ledger.for_study(study.root) as ledger:
            rows = ledger.query("SELECT r.choice FROM responses r JOIN trials t USING (trial_id)"
                                " ORDER BY t.position")
        assert [json.loads(r["choice"]) for r in rows] == chosen
        page.close()
    finally:
        server.stop()
    assert token not in server.log.read_text()  # no raw participant ID in the server's log


def test_a_prolific_participant_is_sent_back_to_prolific(site):
    """Prolific's completion URL: a link on the done screen, then a redirect after 3 s."""
    from hitkit.platforms import records
    from hitkit.platforms.prolific.platform import completion_url

    study, url, _, browser = site
    with Ledger.for_study(study.root) as ledger:  # as `hitkit publish --platform prolific` leaves it
        batch = records.create_batch(ledger, "prolific", 1, {})
        records.set_external_id(ledger, batch["batch_id"], "browserstudy1")
        ledger.journal(f"prolific:publish:{batch['batch_id']}", "prolific", "publish_study")
        ledger.settle(f"prolific:publish:{batch['batch_id']}", "done", {"status": "ACTIVE"})
        back = completion_url(study, ledger, "browserstudy1")
    identity = {"PROLIFIC_PID": "5fbrowserparticipant", "STUDY_ID": "browserstudy1",
                "SESSION_ID": "browsersession1"}
    with httpx.Client(base_url=url, timeout=30) as client:  # the trials themselves: see above
        aid = client.post("/api/assignments", json=identity).json()["assignment_id"]
        hit = client.get(f"/api/assignments/{aid}").json()
        responses = [{"trial_id": t["trial_id"], "choice": 0, "rt_ms": 700.0} for t in hit["trials"]]
        done = client.post(f"/api/assignments/{aid}/submit", json={"responses": responses}).json()
        assert done["completion_url"] == back
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    # Prolific itself is not reachable from the test: answer its completion page here
    page.route("https://app.prolific.com/**",
               lambda route: route.fulfill(status=200, content_type="text/html", body="<p>done</p>"))
    page.goto(f"{url}/?" + "&".join(f"{k}={v}" for k, v in identity.items()))
    page.wait_for_selector("#screen-done:not([hidden])")
    assert page.locator("#completion-code").text_content() == done["completion_code"]
    link = page.get_by_role("link", name="Return to the study platform")
    assert link.get_attribute("href") == back
    page.wait_for_url(back, timeout=15_000)
    page.close()
