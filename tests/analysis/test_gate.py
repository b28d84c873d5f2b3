"""The convergence gate fails a deliberately non-identified model, naming what failed."""

import numpy as np
import pyarrow as pa
from click.testing import CliRunner

from analysis.data import prepare
from analysis.fit import SampleSettings, check_gate, sample
from analysis.model import build_model
from analysis.synthetic import simulate, study_toml_data
from hitkit.cli.analysis import EXIT_GATE, analyze
from hitkit.study.config import AnalysisSection, load_study, study_from_dict, study_to_toml
from hitkit.study.tables import write_table

# training follows architecture on every model: their effects are not separately identified
CONFOUND = {"cnn": "standard", "vit": "adversarial"}


def _confounded_table(table: pa.Table) -> pa.Table:
    arch = table.column("architecture").to_pylist()
    training = [CONFOUND[a] if a else "" for a in arch]
    i = table.schema.get_field_index("training")
    return table.set_column(i, table.schema.field("training"), pa.array(training, pa.string()))


def test_gate_fails_on_a_non_identified_model(design, truth):
    sim = simulate(design(participants=30, trials_per_participant=60), truth, seed=4)
    data = prepare(_confounded_table(sim.table), ["architecture", "training"])
    assert np.array_equal(data.model_levels["architecture"] == 0,
                          data.model_levels["training"] == data.factor_levels["training"].index("standard"))
    model, choices = build_model(data, AnalysisSection(factors=data.factors, lapse="none"))
    settings = SampleSettings(draws=60, tune=60, chains=2, seed=1, progress=False)
    gate = check_gate(sample(model, settings), choices, data.factors, settings)
    assert not gate.passed
    text = gate.report()
    assert "FAILED" in text
    assert any(p.startswith(("b_architecture:", "b_training:")) for p in gate.problems)
    assert "--draws 120 --tune 120" in text  # what to try: run longer, with numbers
    assert "barely moved from the prior" in text and "confounded" in text


def test_cli_exits_non_zero_when_the_gate_fails(design, truth, tmp_path):
    sim = simulate(design(participants=30, trials_per_participant=60), truth, seed=4)
    config = study_toml_data(sim.design, draws=40, tune=40, chains=2,
                             analysis={"lapse": "none"})
    for model in config["models"]:
        model["factors"]["training"] = CONFOUND[model["factors"]["architecture"]]
    folder = tmp_path / "confounded"
    folder.mkdir()
    (folder / "study.toml").write_text(study_to_toml(study_from_dict(config)))
    write_table(_confounded_table(sim.table), folder / "responses.parquet")
    load_study(folder)

    result = CliRunner().invoke(analyze, ["--study", str(folder), "--quiet"])
    assert result.exit_code == EXIT_GATE, result.output
    assert "convergence gate: FAILED" in result.output
    assert "b_architecture" in result.output or "b_training" in result.output
    assert "what to try" in result.output
    out = folder / "analysis"
    assert (out / "posterior.nc").is_file() and (out / "diagnostics.csv").is_file()
    assert not (out / "effects.csv").exists()
    assert "gate FAILED" in (out / "effects.md").read_text()
