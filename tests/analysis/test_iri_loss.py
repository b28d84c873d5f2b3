"""IRI losses are analysed one at a time: the default loss, --iri-loss and its folders."""

import dataclasses
import json

import pandas as pd
import pyarrow as pa
import pytest
from click.testing import CliRunner

from analysis.analyze import output_folder
from analysis.data import AnalysisDataError, load_responses
from analysis.synthetic import simulate, study_toml_data
from hitkit.cli.analysis import EXIT_GATE, EXIT_INPUT, analyze, figures, report
from hitkit.study.config import load_study, study_from_dict, study_to_toml
from hitkit.study.config_errors import ConfigError
from hitkit.study.tables import write_table

# "adv" first: the default must be the reg_free loss, not the first one; "tv" has no responses
LOSSES = [{"name": "adv", "kind": "adversarial"}, {"name": "reg_free", "kind": "reg_free"},
          {"name": "tv", "kind": "regularized", "tv": 0.1}]


def _two_losses(sim, adv_sim) -> pd.DataFrame:
    """The simulated responses (loss reg_free) plus the IRI rows of a second simulation of
    the same design at a much higher rate, as loss 'adv' (regularised and adversarial IRIs
    are judged far more often as matching their targets)."""
    df = sim.table.to_pandas()
    adv = adv_sim.table.to_pandas()
    adv = adv[adv["model"] != ""].assign(loss="adv")
    adv["response_id"] = "adv-" + adv["response_id"]
    adv["trial_id"] = "adv-" + adv["trial_id"]
    return pd.concat([df, adv], ignore_index=True)


@pytest.fixture(scope="module")
def loss_study(design, truth, tmp_path_factory):
    """A 2 x 2 study, one model per cell, with responses to IRIs of two losses."""
    small = design(models_per_cell=1, participants=30, trials_per_participant=50, images=20,
                   careless_share=0.0, matching_share=0.0)
    sim = simulate(small, dataclasses.replace(truth, intercept=-0.5), seed=4)
    adv_sim = simulate(small, dataclasses.replace(truth, intercept=2.5), seed=5)
    data = study_toml_data(sim.design, draws=20, tune=20, chains=2,
                           analysis={"lapse": "none"})
    data["generation"]["losses"] = LOSSES
    folder = tmp_path_factory.mktemp("losses") / "study"
    folder.mkdir()
    (folder / "study.toml").write_text(study_to_toml(study_from_dict(data)), encoding="utf-8")
    frame = _two_losses(sim, adv_sim)
    write_table(pa.Table.from_pandas(frame, schema=sim.table.schema, preserve_index=False),
                folder / "responses.parquet")
    return folder, frame, data


def _iri_rows(frame: pd.DataFrame, loss: str) -> pd.DataFrame:
    return frame[(frame["loss"] == loss) & frame["kind"].isin(["main", "repeat"])
                 & ~frame["excluded"]]


def test_default_is_the_reg_free_loss_and_only_its_rows_enter(loss_study):
    folder, frame, _ = loss_study
    study = load_study(folder)
    assert study.config.default_iri_loss == "reg_free"  # not the first loss, "adv"
    data = load_responses(study)
    assert data.loss == "reg_free"
    assert data.n == len(_iri_rows(frame, "reg_free"))
    assert data.other_loss_rows == {"adv": int((frame["loss"] == "adv").sum())}
    adv = load_responses(study, loss="adv")
    assert adv.n == len(_iri_rows(frame, "adv"))
    assert adv.y.mean() > data.y.mean() + 0.15  # the two losses are far apart: never pool them
    assert output_folder(study, False) == folder / "analysis"
    assert output_folder(study, False, "reg_free") == folder / "analysis"
    assert output_folder(study, True, "adv") == (folder / "analysis" / "loss-adv"
                                                  / "sensitivity-include-excluded")


def test_default_without_reg_free_is_the_first_loss(loss_study):
    _, _, data = loss_study
    data = json.loads(json.dumps(data))
    data["generation"]["losses"] = [LOSSES[2], LOSSES[0]]
    assert study_from_dict(data).default_iri_loss == "tv"
    data["analysis"]["iri_loss"] = "adv"
    assert study_from_dict(data).default_iri_loss == "adv"


def test_unknown_iri_loss_in_config_names_the_field(loss_study):
    _, _, data = loss_study
    data = json.loads(json.dumps(data))
    data["analysis"]["iri_loss"] = "reg-free"
    with pytest.raises(ConfigError) as info:
        study_from_dict(data, "study.toml")
    message = str(info.value)
    assert "study.toml: analysis.iri_loss: 'reg-free'" in message
    assert "allowed: adv, reg_free, tv" in message


def test_loss_without_responses_is_a_clear_error(loss_study):
    folder, _, _ = loss_study
    with pytest.raises(AnalysisDataError) as info:
        load_responses(load_study(folder), loss="tv")
    message = str(info.value)
    for part in ("responses.parquet", "column 'loss'", "'tv'", "losses present", "'adv'",
                 "'reg_free'"):
        assert part in message, message
    result = CliRunner().invoke(analyze, ["--study", str(folder), "--iri-loss", "tv", "--quiet"])
    assert result.exit_code == EXIT_INPUT and "column 'loss'" in result.output
    result = CliRunner().invoke(analyze, ["--study", str(folder), "--iri-loss", "nope"])
    assert result.exit_code == EXIT_INPUT
    assert "--iri-loss 'nope'" in result.output and "allowed: adv, reg_free, tv" in result.output
    assert not (folder / "analysis").exists()  # nothing written for a bad choice


def test_another_loss_has_its_own_folder(loss_study):
    """--iri-loss adv writes to analysis/loss-adv/, then its report and figures read it. The
    fit is a 20-draw run (a few seconds) that fails the gate on purpose: the folder, the
    summary and the loss-aware messages are the point here, not the effects."""
    folder, frame, _ = loss_study
    result = CliRunner().invoke(analyze, ["--study", str(folder), "--iri-loss", "adv",
                                          "--quiet"])
    assert result.exit_code == EXIT_GATE, result.output
    assert "IRI loss: adv (default: reg_free)" in result.output
    n_other = int((frame["loss"] == "reg_free").sum())
    assert (f"left out: responses to IRIs of other losses: reg_free ({n_other:,} rows)"
            in result.output)
    assert "--iri-loss reg_free" in result.output
    out = folder / "analysis" / "loss-adv"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["iri_loss"] == "adv" and not summary["iri_loss_default"]
    assert summary["rows"] == len(_iri_rows(frame, "adv"))
    assert summary["other_loss_rows"] == {"reg_free": n_other}
    assert "IRIs made with the loss `adv` only" in (out / "effects.md").read_text()
    assert (out / "diagnostics.csv").is_file()
    assert not (folder / "analysis" / "summary.json").exists()  # the default's place is kept

    result = CliRunner().invoke(report, ["--study", str(folder), "--iri-loss", "adv"])
    assert result.exit_code == 0, result.output
    html = (folder / "report-adv.html").read_text()
    assert "results for IRI loss <strong><code>adv</code>" in html
    assert not (folder / "report.html").exists()
    result = CliRunner().invoke(figures, ["--study", str(folder), "--iri-loss", "adv",
                                          "--only", "contrasts"])
    assert result.exit_code == EXIT_INPUT
    assert f"{out / 'effects.csv'} not found" in result.output
    assert f"`hitkit analyze --study {folder} --iri-loss adv` did not pass" in result.output
    # the default loss was never analysed: figures say what to run
    result = CliRunner().invoke(figures, ["--study", str(folder), "--only", "contrasts"])
    assert result.exit_code == EXIT_INPUT
    assert f"run `hitkit analyze --study {folder}` first" in result.output
    result = CliRunner().invoke(figures, ["--study", str(folder), "--iri-loss", "adv",
                                          "--only", "quality"])
    assert result.exit_code == 0, result.output
    assert (folder / "figures" / "loss-adv" / "quality.png").is_file()


def test_figure_titles_name_the_loss(figure_study):
    from analysis.figures import FigureOptions, StudyInputs, build_figures

    inputs = StudyInputs(figure_study)
    built = {b.spec.name: b.figure for b in build_figures(inputs, FigureOptions(),
                                                          ["alignment", "contrasts"])}
    assert built["alignment"].axes[0].get_title() == "IRI loss: reg_free"
    assert built["contrasts"]._suptitle.get_text() == "IRI loss: reg_free"
