"""MTurk under randomized fault schedules and crashes: no duplicate HITs, lost work or double bonuses.

Modes (tests.platforms.schedules): 50 `plain` schedules; 15 `lag` schedules, where
ListBonusPayments lists a paid bonus only 10-60 min later; 15 `late` schedules, where the
listing lags as well and every run that stops on an unresolved payment is followed by a
25-hour pause, so MTurk has forgotten the UniqueRequestToken when the bonus is retried.
"""

from __future__ import annotations

import json
import random

import pytest

from hitkit.platforms import Bonus, PlatformError, open_platform
from hitkit.survey.hits import hit_trials
from hitkit.survey.ledger import Ledger
from tests.fakes.faults import FaultKind
from tests.fakes.fixtures import mturk_client
from tests.fakes.mturk import FakeMTurk
from tests.platforms.helpers import LONG_MESSAGE, answers, copy_study, platform_study
from tests.platforms.schedules import Crash, CrashPlan, Tally

SCHEDULES = 50
MODES = [("plain", seed) for seed in range(SCHEDULES)] + [
    (mode, seed) for mode in ("lag", "late") for seed in range(1000, 1015)]
TALLY = Tally()


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return platform_study(tmp_path_factory.mktemp("mturk") / "study",
                          {"kind": "mturk", "currency": "USD"}, places=2)


def run_schedule(seed: int, study, fake: FakeMTurk, mode: str = "plain") -> dict:
    from datetime import UTC, datetime, timedelta

    rng = random.Random(f"mturk-schedule|{seed}")
    lag = rng.choice([600.0, 1800.0, 3600.0]) if mode in ("lag", "late") else 0.0
    fake.bonus_listing_lag = lag
    pause = timedelta(hours=25) if mode == "late" else timedelta(seconds=lag)
    offset = timedelta()  # how far the operator's clock has moved (the fake's moves with it)
    unresolved = 0
    fake.faults.stall_seconds = 0.3
    fake.faults.randomize(seed, rate=rng.choice([0.1, 0.2, 0.3]), max_consecutive=2)
    crash = CrashPlan.from_seed(seed, span=40)
    workers = ["A" + f"{rng.getrandbits(60):015X}" for _ in range(6)]
    bad = set(rng.sample(range(6), rng.choice([0, 1, 2])))
    worked: dict[str, str] = {}  # worker -> MTurk AssignmentId
    restarts = 0
    for _ in range(30):
        ledger = Ledger.for_study(study.root)
        try:
            p = open_platform(study, "mturk", ledger, endpoint_url=fake.url, checkpoint=crash,
                              client=mturk_client(fake, attempts=3, read_timeout=0.15), attempts=6)
            p.now = lambda moved=offset: datetime.now(UTC) + moved
            p.publish()
            hits = sorted(p.batch_hits(p._batch()["batch_id"]).items())
            for i, worker in enumerate(workers):  # workers act once, whatever we do
                if worker not in worked:
                    mturk_hit, hit_id = hits[i % len(hits)]
                    trials = hit_trials(ledger, hit_id)
                    fake.add_worker(worker)
                    worked[worker] = fake.worker_submits(
                        mturk_hit, worker, {"results": json.dumps(answers(trials, i not in bad))})
            got = p.collect()
            assert not got.problems, got.problems
            ids = {r["platform_assignment_id"]: r["assignment_id"] for r in ledger.query(
                "SELECT platform_assignment_id, assignment_id FROM assignments")}
            if len(ids) < len(workers):
                raise PlatformError("collect is missing work")
            reject = [ids[worked[workers[i]]] for i in sorted(bad)]
            keep = [ids[worked[w]] for i, w in enumerate(workers) if i not in bad]
            for summary in (p.approve(keep), p.reject(reject, LONG_MESSAGE),
                            p.bonus([Bonus(a, 25, "bonus for careful work")
                                     for a in keep])):
                if summary.failed:
                    raise PlatformError(str(summary.failed))
            return {"ledger": ledger, "keep": keep, "reject": reject, "worked": worked,
                    "crash": crash, "restarts": restarts, "unresolved": unresolved}
        except (Crash, PlatformError) as exc:
            restarts += 1
            ledger.close()
            if "unresolved" in str(exc) and pause:
                # the operator comes back later: the listing has caught up (lag), or a day
                # has passed and the token is forgotten (late)
                unresolved += 1
                offset += pause
                fake.advance(pause.total_seconds())
    raise AssertionError(f"seed {seed}: did not finish in 30 runs\n{fake.faults.describe()}")


@pytest.mark.parametrize(("mode", "seed"), MODES)
def test_mturk_fault_schedule(mode, seed, template, tmp_path):
    study = copy_study(template, tmp_path / "study")
    with FakeMTurk(seed=seed) as fake:
        out = run_schedule(seed, study, fake, mode)
        ledger = out["ledger"]
        why = f"{mode} seed {seed}, crashes {out['crash'].crashed}\n{fake.faults.describe()}"
        with fake.lock:
            duplicates = fake.duplicate_hits()
            doubles = fake.double_bonuses()
            hits = [h for h in fake.hits.values()]
            states = {a.id: a.status for a in fake.assignments.values()}
            bonuses = {}
            for b in fake.bonuses:
                bonuses.setdefault(b.assignment_id, []).append(b.amount)
            rewards = [p for p in fake.payments if p.kind == "reward"]
        rows = {r["platform_assignment_id"]: r for r in ledger.query(
            "SELECT a.*, (SELECT COUNT(*) FROM responses r WHERE r.assignment_id = a.assignment_id)"
            " AS n FROM assignments a")}
        lost = [a for a in out["worked"].values() if a not in rows or rows[a]["n"] == 0]
        TALLY.record(mode, sum(len(ids) - 1 for ids in duplicates.values()), len(lost),
                     sum(len(amounts) - 1 for amounts in doubles.values()))
        TALLY.faults.update(e.kind.value for e in fake.faults.events)
        TALLY.crashes.update(point for point, _ in out["crash"].crashed)
        TALLY.restarts += out["restarts"]
        TALLY.unresolved += out["unresolved"]
        assert duplicates == {} and len(hits) == 3, why
        assert doubles == {}, why
        assert lost == [], why
        for platform_id, row in rows.items():
            want = "approved" if row["assignment_id"] in out["keep"] else "rejected"
            assert row["state"] == want and states[platform_id] == want.capitalize(), why
            assert bonuses.get(platform_id, []) == (["0.25"] if want == "approved" else []), why
        paid = ledger.query("SELECT * FROM payments WHERE state = 'paid'")
        assert sum(p["kind"] == "reward" for p in paid) == len(rewards) == len(out["keep"]), why
        assert sum(p["kind"] == "bonus" for p in paid) == len(out["keep"]), why
        journaled = {json.loads(r["response"])["HITId"] for r in ledger.query(
            "SELECT response FROM actions WHERE kind = 'create_hit' AND state = 'done'")}
        assert journaled == {h.id for h in hits}, why
        assert ledger.open_actions() == [], why
        ledger.close()


def test_mturk_schedules_summary(capsys):
    with capsys.disabled():
        print("\n" + TALLY.line("mturk"))
    if TALLY.schedules:
        assert TALLY.faults[FaultKind.TIMEOUT_AFTER_APPLY.value] > 0
        assert TALLY.crashes["journaled"] > 0 and TALLY.crashes["sent"] > 0
    if TALLY.modes["lag"] + TALLY.modes["late"]:
        assert TALLY.unresolved > 0  # the new modes did reach the unresolved path
