"""The Prolific backend against the fake Prolific API: the happy path and its guards."""

from __future__ import annotations

import os

import pytest

from hitkit.platforms import Bonus, PlatformError, open_platform
from hitkit.platforms.prolific.api import load_token
from hitkit.survey.ledger import Ledger
from tests.platforms.helpers import LONG_MESSAGE, platform_study, prolific_participant

PUBLIC = "https://survey.example.org/s/"


@pytest.fixture
def study(tmp_path):
    return platform_study(tmp_path / "study", {"kind": "prolific", "currency": "GBP",
                                               "prolific": {"public_url": PUBLIC}}, places=2)


def platform(study, ledger, fake, **options):
    return open_platform(study, "prolific", ledger, api_url=fake.api_url, token=fake.token,
                         read_timeout=1.0, **options)


def test_publish_collect_review_bonus(study, prolific_fake):
    fake = prolific_fake
    with Ledger.for_study(study.root) as ledger:
        p = platform(study, ledger, fake)
        published = p.publish()
        assert published.created and published.places == 6
        draft = fake.studies[published.external_id]
        fields = draft.fields
        assert fields["external_study_url"].startswith(PUBLIC + "?PROLIFIC_PID={{%PROLIFIC_PID%}}")
        assert "{{%STUDY_ID%}}" in fields["external_study_url"]
        assert "{{%SESSION_ID%}}" in fields["external_study_url"]
        assert fields["reward"] == 150 and fields["estimated_completion_time"] == 5
        assert fields["device_compatibility"] == ["desktop"]
        assert fields["total_available_places"] == 6
        assert {f["filter_id"] for f in fields["filters"]} == {"participant_group_blocklist"}
        assert draft.status == "ACTIVE"
        code = fields["completion_codes"][0]["code"]
        # a second publish is a no-op: the same batch, the same study
        again = p.publish()
        assert not again.created and again.external_id == published.external_id
        assert len(fake.studies) == 1

        pids = [f"{i:024x}" for i in range(1, 6)]
        ids = [prolific_participant(fake, ledger, published.external_id, pid, code,
                                    correct=i != 4) for i, pid in enumerate(pids)]
        got = p.collect()
        assert sorted(got.awaiting_review) == sorted(ids) and not got.problems
        summary = p.approve(ids[:4])
        assert sorted(summary.done) == sorted(ids[:4])
        rejected = p.reject(ids[4:], LONG_MESSAGE)
        assert rejected.done == ids[4:]
        assert p.approve(ids[:4]).already == ids[:4]  # nothing sent twice
        bonuses = [Bonus(a, 40, "catch-trial accuracy bonus") for a in ids[:4]]
        paid = p.bonus(bonuses)
        planned = ledger.query("SELECT payment_id FROM payments WHERE kind = 'bonus'")
        assert sorted(paid.done) == sorted(r["payment_id"] for r in planned) and len(planned) == 4
        assert p.bonus(bonuses).done == []  # already paid: nothing sent
        assert fake.double_payments() == {}
        assert sorted(fake.paid_bonuses(s.id) for s in fake.submissions.values()) == \
            sorted([[40]] * 4 + [[]])
        states = {s.participant_id: s.status for s in fake.submissions.values()}
        assert sorted(states.values()) == ["APPROVED"] * 4 + ["REJECTED"]
        ledger_states = sorted(r["state"] for r in ledger.query("SELECT state FROM assignments"))
        assert ledger_states == ["approved"] * 4 + ["rejected"]
        # a later participant is blocked: the completion code put everyone in the past group
        group = fake.participant_groups[fields["completion_codes"][0]["actions"][1]["participant_group"]]
        assert set(group.members) == set(pids)
        p.expire()
        assert draft.status == "STOPPED"
        assert ledger.open_actions() == []


def test_second_batch_blocks_past_participants(study, prolific_fake):
    fake = prolific_fake
    with Ledger.for_study(study.root) as ledger:
        p = platform(study, ledger, fake)
        first = p.publish()
        code = fake.studies[first.external_id].fields["completion_codes"][0]["code"]
        prolific_participant(fake, ledger, first.external_id, "a" * 24, code)
        second = p.publish(new=True)
        assert second.external_id != first.external_id
        from tests.fakes.prolific import ParticipantRefused

        with pytest.raises(ParticipantRefused, match="blocked participant group"):
            fake.participant_starts(second.external_id, "a" * 24)
        fake.participant_starts(second.external_id, "b" * 24)


def test_reward_below_minimum_hourly_is_refused_unless_forced(tmp_path, prolific_fake):
    study = platform_study(tmp_path / "low", {"kind": "prolific", "prolific": {
        "public_url": PUBLIC, "minimum_hourly": 30.0}})
    with Ledger.for_study(study.root) as ledger:
        with pytest.raises(PlatformError, match="below Prolific's minimum"):
            platform(study, ledger, prolific_fake).publish()
        assert prolific_fake.studies == {}
        result = platform(study, ledger, prolific_fake, force=True).publish()
        assert any("--force" in n for n in result.notes)


def test_budget_cap_and_rejection_message_length(tmp_path, prolific_fake):
    study = platform_study(tmp_path / "cap", {"kind": "prolific", "budget_cap": 2.0,
                                              "prolific": {"public_url": PUBLIC}})
    with Ledger.for_study(study.root) as ledger:
        with pytest.raises(PlatformError, match="budget_cap"):
            platform(study, ledger, prolific_fake).publish()
        with pytest.raises(PlatformError, match="at least 100"):
            platform(study, ledger, prolific_fake).reject(["a1"], "too short")


def test_token_from_env_or_private_file(tmp_path, study):
    with pytest.raises(PlatformError, match="PROLIFIC_TOKEN") as info:
        load_token(study, environ={})
    assert load_token(study, environ={"PROLIFIC_TOKEN": "sekrit-1"}) == "sekrit-1"
    token_file = tmp_path / "token"
    token_file.write_text("sekrit-2\n")
    os.chmod(token_file, 0o644)
    settings = study.config.platform.prolific.model_copy(update={"token_file": str(token_file)})
    study.config.platform.prolific = settings
    with pytest.raises(PlatformError, match="chmod 600") as info:
        load_token(study, environ={})
    assert "sekrit" not in str(info.value)
    os.chmod(token_file, 0o600)
    assert load_token(study, environ={}) == "sekrit-2"


def test_wrong_token_is_a_clear_error_without_the_token(study, prolific_fake):
    with Ledger.for_study(study.root) as ledger:
        p = open_platform(study, "prolific", ledger, api_url=prolific_fake.api_url,
                          token="wrong-token-123")
        with pytest.raises(PlatformError, match="token was refused") as info:
            p.publish()
        assert "wrong-token-123" not in str(info.value) and "wrong-token-123" not in repr(p.api)


def test_completion_url_for_the_survey_app(study, prolific_fake):
    from hitkit.platforms.prolific.platform import completion_url

    with Ledger.for_study(study.root) as ledger:
        published = platform(study, ledger, prolific_fake).publish()
        code = prolific_fake.studies[published.external_id].fields["completion_codes"][0]["code"]
        assert completion_url(study, ledger, published.external_id) == \
            f"https://app.prolific.com/submissions/complete?cc={code}"
        assert completion_url(study, ledger, "not-ours") is None


def test_approve_skips_submissions_not_awaiting_review(study, prolific_fake):
    fake = prolific_fake
    with Ledger.for_study(study.root) as ledger:
        p = platform(study, ledger, fake)
        study_id = p.publish().external_id
        code = fake.studies[study_id].fields["completion_codes"][0]["code"]
        done = prolific_participant(fake, ledger, study_id, "c" * 24, code)
        # this one stored its responses but has not returned to Prolific yet
        from hitkit.survey.assignments import Arrival, start_assignment, submit
        from hitkit.survey.hits import hit_trials
        from hitkit.survey.submission import parse_submission
        from tests.platforms.helpers import answers

        session = fake.participant_starts(study_id, "d" * 24)
        a = start_assignment(ledger, Arrival("prolific", "prolific:" + "d" * 24,
                                             platform_assignment_id=study_id,
                                             platform_session_id=session.submission_id), 60)
        trials = hit_trials(ledger, a.hit_id)
        submit(ledger, a.assignment_id, parse_submission(answers(trials), trials))
        got = p.collect()
        assert got.awaiting_review == [done] and got.pending == 1
        summary = p.approve([done, a.assignment_id])
        assert summary.done == [done] and "ACTIVE" in summary.failed[a.assignment_id]
