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
        assert draft.status == "COMPLETED"  # STOP -> COMPLETED, as the document says
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
    study = platform_study(tmp_path / "low", {"kind": "prolific", "currency": "GBP", "prolific": {
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
                                             platform_session_id=session.submission_id,
                                             batch_id=p._batch()["batch_id"]), 60)
        trials = hit_trials(ledger, a.hit_id)
        submit(ledger, a.assignment_id, parse_submission(answers(trials), trials))
        got = p.collect()
        assert got.awaiting_review == [done] and got.pending == 1
        summary = p.approve([done, a.assignment_id])
        assert summary.done == [done] and "ACTIVE" in summary.failed[a.assignment_id]


# ---- issue 13: Prolific as its published OpenAPI document describes it -------------------

from tests.fakes.faults import FaultKind  # noqa: E402
from tests.fakes.prolific import FakeProlific, ParticipantRefused  # noqa: E402


def set_settings(study, **update):
    study.config.platform.prolific = study.config.platform.prolific.model_copy(update=update)


def fake_with(**options):
    return FakeProlific(**options)


def code_of(fake, study_id):
    return fake.studies[study_id].fields["completion_codes"][0]["code"]


def test_workspace_comes_from_the_workspaces_endpoint_or_the_setting(study):
    """Observation 1: GET /users/me/ has only id and email; with two workspaces and no
    [platform.prolific].workspace_id nothing is published and the error names the setting."""
    with fake_with(workspaces=2) as fake, Ledger.for_study(study.root) as ledger:
        with pytest.raises(PlatformError, match=r"\[platform.prolific\] workspace_id") as info:
            platform(study, ledger, fake).publish()
        assert fake.workspace_ids[0] in str(info.value) and fake.studies == {}
        set_settings(study, workspace_id=fake.workspace_ids[1])
        published = platform(study, ledger, fake).publish()
        groups = list(fake.participant_groups.values())
        assert [g.workspace_id for g in groups] == [fake.workspace_ids[1]]
        filters = fake.studies[published.external_id].fields["filters"]
        assert {"filter_id": "participant_group_blocklist",
                "selected_values": [groups[0].id]} in filters
        assert not fake.internal_errors and not fake.spec_problems
    with fake_with(workspaces=0) as fake, Ledger.for_study(study.root) as ledger:
        set_settings(study, workspace_id=None)
        with pytest.raises(PlatformError, match="0 workspaces"):
            platform(study, ledger, fake).publish(new=True)


def test_exclusion_never_skipped_and_uses_documented_filters(study, prolific_fake):
    """Observation 1/6: earlier batches' participants, even those who returned, are kept out
    by previous_studies_blocklist; block_list goes through a group (no custom_blocklist);
    a missing exclusion filter stops publishing."""
    fake = prolific_fake
    set_settings(study, block_list=["e" * 24])
    with Ledger.for_study(study.root) as ledger:
        p = platform(study, ledger, fake)
        first = p.publish().external_id
        prolific_participant(fake, ledger, first, "a" * 24, code_of(fake, first))
        left = fake.participant_starts(first, "b" * 24)
        fake.participant_returns(left.submission_id)  # never completed: not in the group
        second = p.publish(new=True).external_id
        filters = {f["filter_id"]: f["selected_values"]
                   for f in fake.studies[second].fields["filters"]}
        assert filters["previous_studies_blocklist"] == [first]
        assert set(filters) == {"previous_studies_blocklist", "participant_group_blocklist"}
        for pid, why in (("a" * 24, "blocked participant group|previous study"),
                         ("b" * 24, "previous study"), ("e" * 24, "blocked participant group")):
            with pytest.raises(ParticipantRefused, match=why):
                fake.participant_starts(second, pid)
        fake.participant_starts(second, "c" * 24)
        del fake.filters["previous_studies_blocklist"]
        with pytest.raises(PlatformError, match="previous_studies_blocklist"):
            p.publish(new=True)
        assert len(fake.studies) == 2 and not fake.spec_problems


def test_bonus_whose_answer_is_lost_is_never_paid_again(study):
    """Observation 3: pay is asynchronous and not idempotent. A lost answer and a bonus not
    listed yet: unresolved with the settling command, never a second pay call."""
    with fake_with(bonus_lag_requests=10_000) as fake, Ledger.for_study(study.root) as ledger:
        p = platform(study, ledger, fake, bonus_settle_seconds=0)
        study_id = p.publish().external_id
        aid = prolific_participant(fake, ledger, study_id, "a" * 24, code_of(fake, study_id))
        p.collect()
        assert p.approve([aid]).done == [aid]
        fake.faults.inject(FaultKind.TIMEOUT_AFTER_APPLY, operation="pay_bonus_payments",
                           times=10)
        fake.faults.stall_seconds = 1.5
        bonus = [Bonus(aid, 30, "bonus for careful work")]
        first = p.bonus(bonus)
        (pid, why), = first.failed.items()
        assert why.startswith("unresolved") and first.done == []
        assert f"hitkit pay --settle {pid}=paid" in why
        assert ledger.query_one("SELECT state FROM payments WHERE payment_id = ?",
                                (pid,))["state"] == "sent"
        again = p.bonus(bonus)  # a later run: still not listed, still not paid again
        assert pid in again.failed and "--settle" in again.failed[pid]
        assert sum(b.pay_count for b in fake.bulk_bonuses.values()) == 1
        fake.settle_bonuses()  # Prolific's "following minutes" pass
        fake.faults.clear()
        assert p.bonus(bonus).done == [pid]
        assert fake.double_payments() == {} and fake.paid_bonuses(fake.submissions[
            next(iter(fake.submissions))].id) == [30]


def test_unresolved_bonus_settled_unpaid_is_sent_once_more(study):
    """Observation 3: a pay call that never arrived stays unresolved until the operator
    settles it; `unpaid` lets the next run send it, once."""
    from hitkit.platforms.records import settle_unresolved

    with fake_with() as fake, Ledger.for_study(study.root) as ledger:
        p = platform(study, ledger, fake, bonus_settle_seconds=0)
        study_id = p.publish().external_id
        aid = prolific_participant(fake, ledger, study_id, "a" * 24, code_of(fake, study_id))
        p.collect()
        p.approve([aid])
        fake.faults.inject(FaultKind.DROP_BEFORE_APPLY, operation="pay_bonus_payments", times=10)
        bonus = [Bonus(aid, 30, "bonus for careful work")]
        (pid, why), = p.bonus(bonus).failed.items()
        assert "--settle" in why and fake.payments[-1].kind == "reward"
        fake.faults.clear()
        assert p.bonus(bonus).failed  # still unresolved: nothing sent on hitkit's own judgement
        settle_unresolved(ledger, pid, paid=False, note="not on the Prolific bonuses page")
        assert p.bonus(bonus).done == [pid]
        assert [pay.cents for pay in fake.payments if pay.kind == "bonus"] == [30]


def test_listing_follows_next_links_with_limit_and_offset(study, tmp_path):
    """Observation 4: limit/offset and `_links.next`, no page numbers of our own; a server
    that ignores the paging but keeps answering `next` stops collect with an error."""
    from tests.platforms.helpers import copy_study

    template = study
    for ignore in (False, True):
        study = copy_study(template, tmp_path / f"ignore-{ignore}")
        with fake_with(ignore_paging=ignore) as fake, Ledger.for_study(study.root) as ledger:
            p = platform(study, ledger, fake)
            p.page_size = 2
            study_id = p.publish(new=True).external_id
            ids = [prolific_participant(fake, ledger, study_id, f"{i:024x}", code_of(fake, study_id))
                   for i in range(5)]
            if ignore:
                with pytest.raises(PlatformError, match="ignored the paging"):
                    p.collect()
                listed = [r for r in fake.requests if r.operation == "list_study_submissions"]
                assert len(listed) == 2
            else:
                assert sorted(p.collect().awaiting_review) == sorted(ids)
            assert not fake.internal_errors  # no undocumented `page`/`page_size` sent


def test_rate_checked_on_minutes_sent_and_currency_on_the_account(study, prolific_fake):
    """Observation 5: 0.60 for 4.5 min is 8.00/h, but Prolific is sent 5 min (7.20/h);
    a USD study on a GBP account is refused before anything is created."""
    study.config.survey = study.config.survey.model_copy(
        update={"reward": 0.60, "time_estimate_minutes": 4.5})
    with Ledger.for_study(study.root) as ledger:
        with pytest.raises(PlatformError, match=r"sent as 5.*7\.20/hour"):
            platform(study, ledger, prolific_fake).publish()
        study.config.survey = study.config.survey.model_copy(update={"reward": 1.5})
        study.config.platform = study.config.platform.model_copy(update={"currency": "USD"})
        with pytest.raises(PlatformError, match=r"currency is USD.*pays in GBP"):
            platform(study, ledger, prolific_fake).publish()
        assert prolific_fake.studies == {} and prolific_fake.participant_groups == {}


def test_processing_after_a_lost_approve_is_not_a_failure(study):
    """Observation 6: the approve answer is lost and Prolific shows PROCESSING."""
    with fake_with(approve_processing_requests=10_000) as fake, \
            Ledger.for_study(study.root) as ledger:
        p = platform(study, ledger, fake)
        p.attempts = 2
        study_id = p.publish().external_id
        aid = prolific_participant(fake, ledger, study_id, "a" * 24, code_of(fake, study_id))
        p.collect()
        fake.faults.inject(FaultKind.HTTP_500_AFTER_APPLY, operation="bulk_approve", times=2)
        summary = p.approve([aid])
        assert summary.done == [aid] and summary.failed == {}
        p.collect()  # the listing says PROCESSING: counted as approved, not a problem
        assert p.approve([aid]).already == [aid]
        assert sum(pay.kind == "reward" for pay in fake.payments) == 1


def test_bulk_approve_in_chunks(study, prolific_fake, monkeypatch):
    """Observation 6: at most BULK_APPROVE_MAX IDs a request (1,000 documented)."""
    from hitkit.platforms.prolific import platform as module

    monkeypatch.setattr(module, "BULK_APPROVE_MAX", 2)
    fake = prolific_fake
    with Ledger.for_study(study.root) as ledger:
        p = platform(study, ledger, fake)
        study_id = p.publish().external_id
        ids = [prolific_participant(fake, ledger, study_id, f"{i:024x}", code_of(fake, study_id))
               for i in range(5)]
        p.collect()
        assert sorted(p.approve(ids).done) == sorted(ids)
        sizes = [len(__import__("json").loads(r.body)["submission_ids"])
                 for r in fake.requests if r.operation == "bulk_approve"]
        assert sizes == [2, 2, 1]


def test_retry_after_as_an_http_date():
    """Observation 6: RFC 9110 allows Retry-After as a date."""
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    import httpx

    from hitkit.platforms.prolific.api import retry_after

    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    when = format_datetime(now + timedelta(seconds=20), usegmt=True)
    assert retry_after(httpx.Response(429, headers={"Retry-After": when}), now) == 20.0
    assert retry_after(httpx.Response(429, headers={"Retry-After": "7"}), now) == 7.0
    assert retry_after(httpx.Response(429, headers={"Retry-After": "soon"}), now) == 1.0


def test_returned_and_timed_out_with_data_are_reported(study, prolific_fake):
    fake = prolific_fake
    from hitkit.survey.assignments import Arrival, start_assignment, submit
    from hitkit.survey.hits import hit_trials
    from hitkit.survey.submission import parse_submission
    from tests.platforms.helpers import answers

    with Ledger.for_study(study.root) as ledger:
        p = platform(study, ledger, fake)
        study_id = p.publish().external_id
        stored = {}
        for pid, leave in (("r" * 24, fake.participant_returns),
                           ("f" * 24, fake.participant_times_out)):
            session = fake.participant_starts(study_id, pid)
            a = start_assignment(ledger, Arrival("prolific", "prolific:" + pid,
                                                 platform_assignment_id=study_id,
                                                 platform_session_id=session.submission_id,
                                                 batch_id=p._batch()["batch_id"]), 60)
            trials = hit_trials(ledger, a.hit_id)
            submit(ledger, a.assignment_id, parse_submission(answers(trials), trials))
            leave(session.submission_id)
            stored[a.assignment_id] = session
        problems = p.collect().problems
        for aid, word in zip(stored, ("RETURNED", "TIMED-OUT"), strict=True):
            assert any(aid in line and word in line and "bonus" in line for line in problems)


def test_status_shows_auto_approval_and_places_can_be_added(study, prolific_fake):
    fake = prolific_fake
    with Ledger.for_study(study.root) as ledger:
        p = platform(study, ledger, fake)
        study_id = p.publish().external_id
        prolific_participant(fake, ledger, study_id, "a" * 24, code_of(fake, study_id))
        notes = p.status().notes
        assert any("21 days" in n and "1 submission" in n for n in notes)
        before = fake.studies[study_id].fields["total_available_places"]
        assert p.add_places(3) == before + 3
        assert fake.studies[study_id].fields["total_available_places"] == before + 3
        assert p.add_places(3) == before + 6 and p.status().places == before + 6


def test_test_publish_uses_prolific_test_study(study, tmp_path):
    from tests.platforms.helpers import copy_study

    other = copy_study(study, tmp_path / "other")
    with fake_with(test_studies_enabled=False) as fake, Ledger.for_study(other.root) as ledger:
        with pytest.raises(PlatformError, match="test participant"):
            platform(other, ledger, fake).publish(test=True)
    with fake_with(test_studies_enabled=True) as fake, Ledger.for_study(study.root) as ledger:
        fake.test_participants.append("t" * 24)
        result = platform(study, ledger, fake).publish(new=True, test=True)
        assert fake.studies[result.external_id].status == "UNPUBLISHED"
        tests = [s for s in fake.studies.values() if s.id != result.external_id]
        assert len(tests) == 1 and tests[0].status == "ACTIVE"
        assert any("test study" in n for n in result.notes)


def test_cli_publish_test_add_places_and_status(study, prolific_fake, monkeypatch):
    """`hitkit publish --test` / `--add-places N` and the auto-approval line of `hitkit status`."""
    from click.testing import CliRunner

    from hitkit.cli.main import cli

    fake = prolific_fake
    fake.test_studies_enabled = True
    fake.test_participants.append("t" * 24)
    monkeypatch.setenv("PROLIFIC_TOKEN", fake.token)
    base = ["--study", str(study.root), "--platform", "prolific", "--endpoint-url", fake.api_url]
    runner = CliRunner()
    tested = runner.invoke(cli, ["publish", *base, "--test"])
    assert tested.exit_code == 0, tested.output
    assert "test study" in tested.output
    assert runner.invoke(cli, ["publish", *base]).exit_code == 0
    more = runner.invoke(cli, ["publish", *base, "--add-places", "2"])
    assert more.exit_code == 0 and "8 place(s)" in more.output, more.output
    with Ledger.for_study(study.root) as ledger:
        study_id = ledger.query_one("SELECT external_id FROM batches")[0]
        prolific_participant(fake, ledger, study_id, "a" * 24, code_of(fake, study_id))
    shown = runner.invoke(cli, ["status", *base])
    assert shown.exit_code == 0 and "21 days" in shown.output, shown.output
    wrong = runner.invoke(cli, ["publish", "--study", str(study.root), "--platform", "local",
                                "--add-places", "2"])
    assert wrong.exit_code != 0 and "prolific" in wrong.output
