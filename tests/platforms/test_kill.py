"""Real crashes: the client runs in a subprocess, parks at a checkpoint and is killed by PID (SIGKILL).

What a kill leaves (the ledger's committed transactions, the platform's state)
is then finished by a fresh client in this process: exactly once, whatever the point.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from hitkit.platforms import Bonus, open_platform
from hitkit.survey.hits import hit_trials
from hitkit.survey.ledger import Ledger
from tests.fakes.fixtures import mturk_client
from tests.fakes.mturk import FakeMTurk
from tests.fakes.prolific import FakeProlific
from tests.platforms.helpers import answers, platform_study, prolific_participant
from tests.survey.survey_helpers import ROOT


def run_until_parked(kind: str, study, url: str, point: str, prefix: str, step: str) -> str:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
           "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.platforms.crash_child", kind, str(study.root), url, point,
         prefix, step], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        line = child.stdout.readline()
        assert line.startswith("PARKED"), line + child.stderr.read()
    finally:
        os.kill(child.pid, signal.SIGKILL)  # our own child, by its PID
        child.wait(timeout=30)
    key = line.split()[2]
    with Ledger.for_study(study.root) as ledger:  # what the kill left behind
        left = {a.idempotency_key: a.state for a in ledger.open_actions()}
    assert left.get(key) == ("pending" if point == "journaled" else "sent"), left
    return key


@pytest.mark.parametrize(("point", "prefix"), [("journaled", "prolific:bonus-pay"),
                                                ("sent", "prolific:bonus-pay"),
                                                ("sent", "prolific:approve"),
                                                ("sent", "prolific:create-study")])
def test_prolific_killed(point, prefix, tmp_path):
    study = platform_study(tmp_path / "study", {"kind": "prolific", "currency": "GBP", "prolific": {
        "public_url": "https://survey.example.org/"}}, places=1)
    with FakeProlific() as fake:
        opts = {"api_url": fake.api_url, "token": fake.token, "bonus_settle_seconds": 0}
        if prefix.endswith("create-study"):
            run_until_parked("prolific", study, fake.api_url, point, prefix, "publish")
        with Ledger.for_study(study.root) as ledger:
            p = open_platform(study, "prolific", ledger, **opts)
            study_id = p.publish().external_id
            assert len(fake.studies) == 1
            code = fake.studies[study_id].fields["completion_codes"][0]["code"]
            for i in range(3):
                prolific_participant(fake, ledger, study_id, f"{i + 1:024x}", code)
            p.collect()
        if not prefix.endswith("create-study"):
            run_until_parked("prolific", study, fake.api_url, point, prefix, "review")
        with Ledger.for_study(study.root) as ledger:
            p = open_platform(study, "prolific", ledger, **opts)
            ids = [r[0] for r in ledger.query("SELECT assignment_id FROM assignments")]
            p.approve(ids)
            p.bonus([Bonus(a, 30, "kill-test bonus") for a in ids])
            assert ledger.open_actions() == []
            assert fake.double_payments() == {} and fake.duplicate_studies() == {}
            assert sorted(len(s.bonus_payments) for s in fake.submissions.values()) == [1, 1, 1]
            assert {s.status for s in fake.submissions.values()} == {"APPROVED"}


@pytest.mark.parametrize(("point", "prefix"), [("sent", "mturk:create-hit"),
                                                ("journaled", "mturk:create-hit"),
                                                ("sent", "mturk:bonus")])
def test_mturk_killed(point, prefix, tmp_path, monkeypatch):
    study = platform_study(tmp_path / "study", {"kind": "mturk", "currency": "USD"}, places=1)
    with FakeMTurk() as fake:
        opts = {"endpoint_url": fake.url, "client": mturk_client(fake)}
        if prefix.endswith("create-hit"):
            run_until_parked("mturk", study, fake.url, point, prefix, "publish")
        with Ledger.for_study(study.root) as ledger:
            p = open_platform(study, "mturk", ledger, **opts)
            p.publish()
            assert fake.duplicate_hits() == {} and len(fake.hits) == 3
            for n, (mturk_hit, hit) in enumerate(sorted(fake.hits.items())):
                trials = hit_trials(ledger, hit.annotation.rsplit("hit=", 1)[1])
                fake.add_worker(f"A{n}KILLWORKER")
                fake.worker_submits(mturk_hit, f"A{n}KILLWORKER",
                                    {"results": json.dumps(answers(trials))})
            p.collect()
        if not prefix.endswith("create-hit"):
            run_until_parked("mturk", study, fake.url, point, prefix, "review")
        with Ledger.for_study(study.root) as ledger:
            p = open_platform(study, "mturk", ledger, **opts)
            ids = [r[0] for r in ledger.query("SELECT assignment_id FROM assignments")]
            p.approve(ids)
            p.bonus([Bonus(a, 30, "kill-test bonus") for a in ids])
            assert ledger.open_actions() == []
            assert fake.double_bonuses() == {} and len(fake.bonuses) == 3
            assert {a.status for a in fake.assignments.values()} == {"Approved"}
