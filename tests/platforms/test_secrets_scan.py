"""A full run's outputs, logs, files and ledger hold no credentials and no raw participant IDs.

Raw IDs have exactly one place: the ledger's `assignments.participant_key`
(payments and blocks need them). Everything else -- command output, log
records at INFO, journaled requests and answers, events, the raw-answer
archive, links, exports -- is searched for them.
"""

from __future__ import annotations

import json
import logging

from click.testing import CliRunner

from hitkit import platforms
from hitkit.cli.main import cli
from hitkit.platforms import Bonus
from hitkit.survey.hits import hit_trials
from hitkit.survey.ledger import Ledger
from tests.fakes.mturk import FakeMTurk
from tests.fakes.prolific import FakeProlific
from tests.platforms.helpers import answers, ledger_dump, platform_study, prolific_participant

SKIP = {("assignments", "participant_key")}


def scan(study, ledger, texts: list[str], needles: list[str]) -> list[str]:
    haystacks = {"output/logs": "\n".join(texts), "ledger": ledger_dump(ledger, SKIP)}
    for path in study.root.rglob("*"):
        if path.is_file() and not path.name.startswith("ledger.sqlite") and path.suffix != ".png":
            haystacks[str(path.relative_to(study.root))] = path.read_bytes().decode("latin-1")
    return [f"{needle!r} in {where}" for where, text in haystacks.items()
            for needle in needles if needle in text]


def run_cli(texts, *args, env=None):
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    texts.append(result.output)
    assert result.exit_code == 0, result.output
    return result


def test_prolific_run_leaks_nothing(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    token = "PROLIFIC-TOKEN-9f8e7d6c5b4a"
    study = platform_study(tmp_path / "study", {"kind": "prolific", "currency": "GBP", "prolific": {
        "public_url": "https://survey.example.org/"}}, places=1)
    pids = [f"5f{i:022x}" for i in range(3)]
    texts: list[str] = []
    with FakeProlific(token=token) as fake, Ledger.for_study(study.root) as ledger:
        fake.faults.stall_seconds = 0.3
        fake.faults.randomize("scan", rate=0.2)
        opts = {"api_url": fake.api_url, "token": token, "read_timeout": 0.15,
                "bonus_settle_seconds": 0}
        for _ in range(5):
            try:
                published = platforms.publish(study, "prolific", ledger=ledger, **opts)
                break
            except platforms.PlatformError as exc:
                texts.append(str(exc))
        code = fake.studies[published.external_id].fields["completion_codes"][0]["code"]
        for pid in pids:
            prolific_participant(fake, ledger, published.external_id, pid, code)
        texts.append(repr(platforms.collect(study, "prolific", ledger=ledger, **opts)))
        env = {"PROLIFIC_TOKEN": token}
        run_cli(texts, "review", "--study", str(study.root))
        fake.faults.clear()
        run_cli(texts, "pay", "--study", str(study.root), "--yes", "--endpoint-url", fake.api_url,
                "--bonus", "0.20", "--bonus-reason", "Thank you for careful work", env=env)
        run_cli(texts, "export", "--study", str(study.root))
        run_cli(texts, "status", "--study", str(study.root), "--endpoint-url", fake.api_url, env=env)
        texts += [r.getMessage() for r in caplog.records]
        assert fake.double_payments() == {} and len(fake.payments) == 6
        found = scan(study, ledger, texts, [token] + pids)
        assert found == []
        # the raw IDs are where payments need them, and nowhere else
        keys = {r[0] for r in ledger.query("SELECT participant_key FROM assignments")}
        assert keys == {f"prolific:{p}" for p in pids}


def test_mturk_run_leaks_nothing(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    key_id, secret = "AKIAHITKITSCANTEST01", "hitkit/scan/secret+key/0123456789abcdefghij"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    study = platform_study(tmp_path / "study", {"kind": "mturk", "currency": "USD"}, places=1)
    workers = ["A3SCANWORKERONE", "A3SCANWORKERTWO"]
    texts: list[str] = []
    with FakeMTurk() as fake, Ledger.for_study(study.root) as ledger:
        fake.faults.stall_seconds = 0.3
        fake.faults.randomize("scan", rate=0.2)
        import boto3
        from botocore.config import Config

        client = boto3.client("mturk", region_name="us-east-1", endpoint_url=fake.url,
                              config=Config(read_timeout=0.15, retries={"total_max_attempts": 3}))
        opts = {"endpoint_url": fake.url, "client": client}
        published = platforms.publish(study, "mturk", ledger=ledger, **opts)
        texts.append(repr(published))
        for worker, (mturk_hit, hit) in zip(workers, sorted(fake.hits.items()), strict=False):
            trials = hit_trials(ledger, hit.annotation.rsplit("hit=", 1)[1])
            fake.add_worker(worker)
            fake.worker_submits(mturk_hit, worker, {"results": json.dumps(answers(trials))})
        texts.append(repr(platforms.collect(study, "mturk", ledger=ledger, **opts)))
        run_cli(texts, "review", "--study", str(study.root))
        ids = [r[0] for r in ledger.query("SELECT assignment_id FROM assignments")]
        texts.append(repr(platforms.approve(study, ids, "mturk", ledger=ledger, **opts)))
        texts.append(repr(platforms.bonus(study, [Bonus(a, 10, "thanks") for a in ids],
                                          "mturk", ledger=ledger, **opts)))
        fake.faults.clear()
        run_cli(texts, "pay", "--study", str(study.root), "--platform", "mturk", "--yes",
                "--endpoint-url", fake.url)
        run_cli(texts, "export", "--study", str(study.root))
        texts += [r.getMessage() for r in caplog.records]
        assert fake.double_bonuses() == {} and len(fake.bonuses) == 2
        assert scan(study, ledger, texts, [key_id, secret] + workers) == []
