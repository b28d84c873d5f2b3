"""Places, links and designs in the ledger: who gets which HIT, and what a new design does."""

import pytest
from click.testing import CliRunner
from survey_helpers import make_config, make_manifest, make_study, published_platform_batches

from hitkit.cli.main import cli
from hitkit.platforms.local import publish_local
from hitkit.survey.assignments import Arrival, AssignmentError, start_assignment
from hitkit.survey.design import make_design
from hitkit.survey.hits import store_design
from hitkit.survey.ledger import Ledger


@pytest.fixture
def ledger(tmp_path):
    config = make_config()
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        store_design(ledger, make_design(make_manifest(config), config), 1)
        published_platform_batches(ledger, "s1")
        yield ledger


def arrive(ledger, who, hold=60.0, **extra):
    """A Prolific arrival for the published study s1 (admitted as the web app admits it)."""
    from hitkit.platforms import admission

    arrival = Arrival("prolific", f"prolific:{who}", platform_assignment_id="s1",
                      platform_session_id=f"session-{who}", **extra)
    return start_assignment(ledger, admission(ledger)["prolific"](arrival) or arrival, hold)


def test_places_fill_evenly_and_then_the_study_is_full(ledger):
    hits = ledger.query_one("SELECT COUNT(*) FROM hits")[0]
    given = [arrive(ledger, f"p{i}").hit_id for i in range(hits)]
    assert len(set(given)) == hits  # one place per HIT: every HIT once
    with pytest.raises(AssignmentError, match="all places") as caught:
        arrive(ledger, "late")
    assert caught.value.status == 409


def test_an_abandoned_assignment_frees_its_place_after_the_hold(ledger):
    hits = ledger.query_one("SELECT COUNT(*) FROM hits")[0]
    for i in range(hits):
        arrive(ledger, f"p{i}")
    late = arrive(ledger, "late", hold=0.0)  # every started one is past a zero hold
    assert late.state == "started"
    # the one who left can still come back to their own assignment
    assert arrive(ledger, "p0").resumed


def test_links_single_use_and_capped(tmp_path):
    study = make_study(tmp_path / "s")
    config = study.config
    with Ledger.for_study(study.root) as ledger:
        store_design(ledger, make_design(make_manifest(config), config), 5)
        single = publish_local(study, ledger, cap=1).links[0].token
        shared = publish_local(study, ledger, open_link=True, cap=2, new=True).links[0].token

        def local(token, participant):
            return start_assignment(ledger, Arrival("local", f"local:{token}", link_token=token,
                                                    link_participant=participant), 60)

        first = local(single, "x")
        assert local(single, "y").assignment_id == first.assignment_id  # the link is the person
        a, b = local(shared, "one"), local(shared, "two")
        assert a.assignment_id != b.assignment_id
        assert local(shared, "one").resumed
        with pytest.raises(AssignmentError, match="used up"):
            local(shared, "three")
        with pytest.raises(AssignmentError, match="not valid"):
            local("unknown-token", "z")


def test_a_new_design_needs_replace_once_people_have_started(tmp_path):
    study = make_study(tmp_path / "s")
    runner = CliRunner()
    assert runner.invoke(cli, ["design", "--study", str(study.root)]).exit_code == 0
    again = runner.invoke(cli, ["design", "--study", str(study.root)])
    assert again.exit_code == 0 and "already stored (unchanged)" in again.output
    with Ledger.for_study(study.root) as ledger:
        token = publish_local(study, ledger, cap=1).links[0].token
        start_assignment(ledger, Arrival("local", f"local:{token}", link_token=token), 60)
    text = (study.root / "study.toml").read_text().replace("seed = 0\n", "seed = 5\n", 1)
    (study.root / "study.toml").write_text(text)
    refused = runner.invoke(cli, ["design", "--study", str(study.root)])
    assert refused.exit_code == 1 and "--replace" in refused.output
    replaced = runner.invoke(cli, ["design", "--study", str(study.root), "--replace"])
    assert replaced.exit_code == 0 and "retired" in replaced.output
    with Ledger.for_study(study.root) as ledger:
        states = {r["state"] for r in ledger.query("SELECT DISTINCT state FROM hits")}
        assert states == {"open", "retired"}
        assert ledger.query_one("SELECT COUNT(*) FROM assignments")[0] == 1  # nothing deleted
        assert len(ledger.events("design_retired")) == 1
