"""`hitkit pay`: its guards and its dry run (the full paid run is in test_secrets_scan)."""

from __future__ import annotations

from click.testing import CliRunner

from hitkit.cli.main import cli
from hitkit.survey.ledger import Ledger
from tests.fakes.prolific import FakeProlific
from tests.platforms.helpers import platform_study, prolific_participant


def test_pay_needs_a_review_then_shows_the_plan(tmp_path):
    study = platform_study(tmp_path / "study", {"kind": "prolific", "currency": "GBP", "prolific": {
        "public_url": "https://survey.example.org/"}}, places=1)
    runner = CliRunner()
    with FakeProlific() as fake, Ledger.for_study(study.root) as ledger:
        from hitkit.platforms import collect, publish

        opts = {"api_url": fake.api_url, "token": fake.token}
        study_id = publish(study, "prolific", ledger=ledger, **opts).external_id
        code = fake.studies[study_id].fields["completion_codes"][0]["code"]
        prolific_participant(fake, ledger, study_id, "e" * 24, code)
        collect(study, "prolific", ledger=ledger, **opts)
        result = runner.invoke(cli, ["pay", "--study", str(study.root), "--yes"])
        assert result.exit_code == 1 and "run `hitkit review` first" in result.output
        assert runner.invoke(cli, ["review", "--study", str(study.root)]).exit_code == 0
        result = runner.invoke(cli, ["pay", "--study", str(study.root), "--bonus", "0.5"])
        assert result.exit_code == 2 and "--bonus-reason" in result.output
        result = runner.invoke(cli, ["pay", "--study", str(study.root), "--dry-run", "--bonus",
                                     "0.5", "--bonus-reason", "thanks"])
        assert result.exit_code == 0, result.output
        assert "approve 1, reject 0, 1 bonus(es) totalling 0.50 GBP" in result.output
        assert fake.payments == []  # a dry run sends nothing
        result = runner.invoke(cli, ["pay", "--study", str(study.root)], input="n\n")
        assert "nothing sent" in result.output and fake.payments == []
