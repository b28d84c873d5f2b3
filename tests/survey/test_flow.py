"""The survey commands end to end: design, publish, simulate, status, collect, review, export."""

import json
import os
import stat

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from survey_helpers import make_study

from hitkit.cli.main import cli
from hitkit.study.responses import RESPONSES
from hitkit.study.tables import read_table
from hitkit.survey.ledger import Ledger
from hitkit.survey.pseudonym import SecretError, load_or_create_secret, pseudonym


def hitkit(*args):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A 2AFC study taken by 36 simulated participants through the local platform."""
    study = make_study(tmp_path_factory.mktemp("flow") / "study", responses_per_iri=4)
    root = str(study.root)
    hitkit("design", "--study", root)
    published = hitkit("publish", "--study", root, "--platform", "local")
    out = hitkit("simulate", "--study", root, "--participants", "36",
                 "--mix", "attentive=0.5,random=0.3,fast=0.2", "--seed", "3")
    return study, published, out


def test_publish_writes_one_link_per_place(finished):
    study, published, _ = finished
    batch_id = published.split()[1]  # "batch <id> created: ..."
    csv_files = [study.root / f"links-{batch_id}.csv"]
    hits = pq.read_table(study.root / "trials.parquet").column("hit_id").unique()
    places = study.config.survey.responses_per_iri * len(hits)
    lines = csv_files[0].read_text().splitlines()
    assert lines[0] == "link,token,cap,batch_id" and len(lines) == places + 1
    assert published.count("http://127.0.0.1:8000/?token=") == places


def test_simulated_participants_are_stored_and_reported(finished):
    study, _, out = finished
    assert "36 of 36 simulated participants submitted" in out
    status = hitkit("status", "--study", str(study.root), "--hits")
    assert "assignments: 36 submitted" in status
    collect = hitkit("collect", "--study", str(study.root))
    assert collect.startswith("36 of 40 places submitted")


def test_review_and_export(finished):
    study, _, _ = finished
    review = hitkit("review", "--study", str(study.root))
    assert "Recommendation:" in review and "Approve payment for every submitted" in review
    exported = hitkit("export", "--study", str(study.root))
    assert "wrote" in exported
    factors = study.config.analysis.factors
    table = read_table(study.root / "responses.parquet", RESPONSES, factors)
    rows = table.to_pylist()
    with Ledger.for_study(study.root) as ledger:
        stored = ledger.query_one("SELECT COUNT(*) FROM responses")[0]
        behaviour = {r["assignment_id"]: json.loads(r["client"])["simulated"]
                     for r in ledger.query("SELECT assignment_id, client FROM assignments")}
        keys = [r["participant_key"] for r in ledger.query("SELECT participant_key FROM assignments")]
    assert len(rows) == stored  # 2AFC: one row per trial response
    assert len({r["response_id"] for r in rows}) == len(rows)
    for r in rows:
        assert r["correct"] == (r["choice"] == r["answer"])
        if r["kind"] == "catch":
            assert r["model"] == "" and r["iri_id"] == r["target_id"] and r["architecture"] == ""
        else:
            assert r["model"].startswith("m") and r["architecture"] in ("tiny-resnet", "tiny-convnet")

    def accuracy(kind):
        main = [r["correct"] for r in rows if r["kind"] == "main" and behaviour[r["assignment_id"]] == kind]
        return sum(main) / len(main)

    assert accuracy("attentive") > 0.8
    assert accuracy("attentive") > accuracy("random") + 0.15
    excluded = {r["assignment_id"]: r["excluded"] for r in rows}
    assert all(excluded[a] for a, b in behaviour.items() if b == "fast")
    assert not any(excluded[a] for a, b in behaviour.items() if b == "attentive")
    # pseudonyms: stable, keyed, and no raw platform ID anywhere in the file
    secret = load_or_create_secret(study.secret_path)
    assert {r["participant"] for r in rows} <= {pseudonym(secret, k) for k in keys}
    raw = (study.root / "responses.parquet").read_bytes()
    for key in keys:
        assert key.encode() not in raw and key.split(":")[1].encode() not in raw
    again = hitkit("export", "--study", str(study.root), "--out", str(study.root / "again.parquet"))
    assert "wrote" in again
    assert pq.read_table(study.root / "again.parquet").column("participant").to_pylist() == [
        r["participant"] for r in rows]


def test_secret_is_private_and_pseudonyms_need_it(tmp_path):
    path = tmp_path / "config" / "s.secret"
    secret = load_or_create_secret(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_or_create_secret(path) == secret
    a = pseudonym(secret, "prolific:5f0c0ffee")
    assert a == pseudonym(secret, "prolific:5f0c0ffee") and len(a) == 64
    assert a != pseudonym(secret, "prolific:5f0c0ffef")
    other = load_or_create_secret(tmp_path / "other.secret")
    assert pseudonym(other, "prolific:5f0c0ffee") != a  # without the secret, no link back
    os.chmod(path, 0o644)
    with pytest.raises(SecretError, match="chmod 600"):
        load_or_create_secret(path)


def test_matching_study_end_to_end(tmp_path):
    study = make_study(tmp_path / "m", task="matching", k=3, targets=6, trials_per_hit=5,
                       catch_per_hit=1, repeat_share=0.25, responses_per_iri=2)
    root = str(study.root)
    hitkit("design", "--study", root)
    out = hitkit("simulate", "--study", root, "--participants", "6", "--mix", "attentive=1")
    assert "6 of 6 simulated participants submitted" in out
    hitkit("review", "--study", root)  # export reads the verdicts review records
    hitkit("export", "--study", root)
    rows = pq.read_table(study.root / "responses.parquet").to_pylist()
    with Ledger.for_study(study.root) as ledger:
        stored = ledger.query_one("SELECT COUNT(*) FROM responses")[0]
    assert len(rows) == 3 * stored  # one row per query IRI of each matching trial
    assert all(r["chance"] == pytest.approx(1 / 3) for r in rows)
    main = [r["correct"] for r in rows if r["kind"] == "main"]
    assert sum(main) / len(main) > 0.6


def test_design_errors_name_the_problem(tmp_path):
    study = make_study(tmp_path / "e")
    (study.root / "manifest.parquet").unlink()
    result = CliRunner().invoke(cli, ["design", "--study", str(study.root)])
    assert result.exit_code != 0 and "manifest.parquet: no such file" in result.output
    result = CliRunner().invoke(cli, ["simulate", "--study", str(study.root), "--participants", "2",
                                      "--mix", "sleepy=1"])
    assert result.exit_code == 2 and "sleepy=1" in result.output


def test_design_refuses_missing_image_files(tmp_path):
    study = make_study(tmp_path / "gone")
    next((study.root / "iris" / "targets").glob("*.png")).unlink()
    result = CliRunner().invoke(cli, ["design", "--study", str(study.root)])
    assert result.exit_code == 1 and "image file(s) the design shows are missing" in result.output
    assert not (study.root / "trials.parquet").exists()
