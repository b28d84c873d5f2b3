"""Prolific under randomized fault schedules and crashes: nothing duplicated, lost or paid twice.

Modes (tests/platforms/schedules.py): ``plain``; ``lag``: listings show a submission's
status some requests late and an approved submission reads PROCESSING for a while;
``async``: a paid bulk bonus is paid some requests after the call (Prolific: "in the
following minutes") and throttling answers Retry-After as an HTTP date. A run that stops
on an unresolved bonus is followed by what an operator does: wait (the fake settles its
pending payments), run again, and where Prolific shows no such bonus, `hitkit pay --settle
PAYMENT=unpaid`.
"""

from __future__ import annotations

import random

import pytest

from hitkit.platforms import Bonus, PlatformError, open_platform
from hitkit.platforms.records import settle_unresolved
from hitkit.survey.ledger import Ledger
from tests.fakes.faults import FaultKind
from tests.fakes.prolific import FakeProlific
from tests.platforms.helpers import LONG_MESSAGE, copy_study, platform_study, prolific_participant
from tests.platforms.schedules import Crash, CrashPlan, Tally

SCHEDULES = 60
MODES = ("plain", "lag", "async")
TALLY = Tally()
PUBLIC = "https://survey.example.org/s/"


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return platform_study(tmp_path_factory.mktemp("prolific") / "study",
                          {"kind": "prolific", "currency": "GBP",
                           "prolific": {"public_url": PUBLIC}}, places=2)


def mode_of(seed: int) -> str:
    return MODES[seed % len(MODES)]


def make_fake(seed: int) -> FakeProlific:
    rng = random.Random(f"prolific-mode|{seed}")
    mode = mode_of(seed)
    if mode == "lag":
        return FakeProlific(seed=seed, listing_lag_requests=rng.randint(1, 4),
                            approve_processing_requests=rng.randint(1, 30))
    if mode == "async":
        return FakeProlific(seed=seed, bonus_lag_requests=rng.randint(1, 40),
                            retry_after_http_date=True)
    return FakeProlific(seed=seed)


def operator_settles(fake: FakeProlific, ledger: Ledger) -> None:
    """After a stop on an unresolved bonus: the minutes pass, then every bonus Prolific
    still does not show is recorded as unpaid (what the operator reads on the site)."""
    fake.settle_bonuses()
    rows = ledger.query("SELECT p.payment_id, p.assignment_id FROM payments p JOIN actions x"
                        " ON x.idempotency_key = p.action_key WHERE p.kind = 'bonus'"
                        " AND p.state != 'paid' AND x.state = 'sent'")
    for row in rows:
        event = [e for e in ledger.events("prolific_submission")
                 if e["subject"] == row["assignment_id"]][-1]
        if not fake.paid_bonuses(event["data"]["submission_id"]):
            settle_unresolved(ledger, row["payment_id"], paid=False, note="schedule operator")


def run_schedule(seed: int, study, fake: FakeProlific) -> dict:
    rng = random.Random(f"prolific-schedule|{seed}")
    fake.faults.stall_seconds = 0.25
    fake.faults.randomize(seed, rate=rng.choice([0.1, 0.2, 0.3]), max_consecutive=2)
    crash = CrashPlan.from_seed(seed)
    participants = [f"{rng.getrandbits(96):024x}" for _ in range(6)]
    bad = set(rng.sample(range(6), rng.choice([0, 1, 2])))
    joined: dict[str, str] = {}  # participant -> hitkit assignment ID
    restarts = unresolved = 0
    for _ in range(30):
        ledger = Ledger.for_study(study.root)
        try:
            p = open_platform(study, "prolific", ledger, api_url=fake.api_url, token=fake.token,
                              read_timeout=0.1, checkpoint=crash, bonus_settle_seconds=0)
            p.attempts = 6
            published = p.publish()
            study_id = published.external_id
            code = fake.studies[study_id].fields["completion_codes"][0]["code"]
            for i, pid in enumerate(participants):  # participants act once, whatever we do
                if pid not in joined:
                    joined[pid] = prolific_participant(fake, ledger, study_id, pid, code,
                                                       correct=i not in bad)
            got = p.collect()
            if got.problems:  # a lagging listing: not every submission is listed yet
                raise PlatformError("; ".join(got.problems))
            reject = [joined[participants[i]] for i in sorted(bad)]
            keep = [a for a in joined.values() if a not in reject]
            for summary in (p.approve(keep), p.reject(reject, LONG_MESSAGE),
                            p.bonus([Bonus(a, 25, "bonus for careful work")
                                     for a in keep])):
                if summary.failed:
                    raise PlatformError(str(summary.failed))
            p.collect()
            return {"ledger": ledger, "study_id": study_id, "joined": joined, "keep": keep,
                    "reject": reject, "crash": crash, "restarts": restarts,
                    "unresolved": unresolved}
        except (Crash, PlatformError) as exc:
            restarts += 1
            if "hitkit pay --settle" in str(exc):
                unresolved += 1
                operator_settles(fake, ledger)
            ledger.close()
    raise AssertionError(f"seed {seed}: did not finish in 30 runs\n{fake.faults.describe()}")


@pytest.mark.parametrize("seed", range(SCHEDULES))
def test_prolific_fault_schedule(seed, template, tmp_path):
    study = copy_study(template, tmp_path / "study")
    with make_fake(seed) as fake:
        out = run_schedule(seed, study, fake)
        ledger = out["ledger"]
        why = f"seed {seed} ({mode_of(seed)}), crashes {out['crash'].crashed}\n" \
              f"{fake.faults.describe()}"
        fake.settle_bonuses()  # what was paid arrives, eventually; then count it
        with fake.lock:
            duplicates = fake.duplicate_studies()
            doubles = fake.double_payments()
            subs = {s.participant_id: s for s in fake.submissions.values()}
            bonus_paid = {s.id: list(s.bonus_payments) for s in fake.submissions.values()}
            studies = list(fake.studies)
        rows = {r["participant_key"].split(":", 1)[1]: r for r in ledger.query(
            "SELECT a.*, (SELECT COUNT(*) FROM responses r WHERE r.assignment_id = a.assignment_id)"
            " AS n FROM assignments a")}
        lost = [pid for pid in subs if pid not in rows or rows[pid]["n"] == 0]
        # counted before the assertions, so a failing schedule still shows in the tally
        TALLY.record(mode_of(seed), sum(len(ids) - 1 for ids in duplicates.values()),
                     len(lost), sum(len(cents) - 1 for cents in doubles.values()))
        TALLY.faults.update(e.kind.value for e in fake.faults.events)
        TALLY.crashes.update(point for point, _ in out["crash"].crashed)
        TALLY.restarts += out["restarts"]
        TALLY.unresolved += out["unresolved"]
        assert duplicates == {} and studies == [out["study_id"]], why
        assert doubles == {}, why
        # no submission lost: every participant's data is in the ledger, reviewed as on Prolific
        assert lost == [], why
        for pid, s in subs.items():
            want = "approved" if rows[pid]["assignment_id"] in out["keep"] else "rejected"
            assert rows[pid]["state"] == want and s.status == want.upper(), why
            expected_bonus = [25] if want == "approved" else []
            assert bonus_paid[s.id] == expected_bonus, why
        # the ledger agrees with Prolific about money
        rewards = ledger.query("SELECT * FROM payments WHERE kind = 'reward' AND state = 'paid'")
        assert len(rewards) == sum(p.kind == "reward" for p in fake.payments) == len(out["keep"])
        bonuses = ledger.query("SELECT * FROM payments WHERE kind = 'bonus' AND state = 'paid'")
        assert len(bonuses) == sum(p.kind == "bonus" for p in fake.payments) == len(out["keep"])
        assert ledger.open_actions() == [], why
        assert ledger.query_one("SELECT external_id FROM batches")[0] == out["study_id"]
        ledger.close()


def test_prolific_schedules_summary(capsys):
    """Runs last in this file: the counts for the report (see -s or the junit log)."""
    with capsys.disabled():
        print("\n" + TALLY.line("prolific"))
    if TALLY.schedules:
        assert TALLY.faults[FaultKind.TIMEOUT_AFTER_APPLY.value] > 0
        assert TALLY.crashes["journaled"] > 0 and TALLY.crashes["sent"] > 0
