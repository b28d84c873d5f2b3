"""Loading responses for the model: what enters, and clear errors for bad inputs."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from click.testing import CliRunner

from analysis.data import AnalysisDataError, load_responses, prepare
from hitkit.cli.analysis import EXIT_INPUT, analyze
from hitkit.study.tables import write_table


def _set(table: pa.Table, name: str, values) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, table.schema.field(name), pa.array(values, table.schema.field(name).type))


def test_rows_that_enter_the_model(small_sim):
    table = small_sim.table
    data = prepare(table, ["architecture", "training"])
    kinds = table.column("kind").to_pylist()
    excluded = table.column("excluded").to_pylist()
    expected = sum(1 for k, e in zip(kinds, excluded, strict=False) if k == "main" and not e)
    assert data.n == expected  # catch trials and excluded rows are out
    assert data.excluded_rows == sum(1 for k, e in zip(kinds, excluded, strict=False) if k == "main" and e)
    assert data.factor_levels == {"architecture": ["cnn", "vit"],
                                  "training": ["adversarial", "standard"]}
    assert len(data.models) == 12
    # mixed 2AFC and matching rows keep their own chance rate
    assert set(np.round(data.chance, 4)) == {0.5, round(1 / 3, 4)}
    assert set(data.task) == {"2afc", "matching"}
    assert np.all(data.chance[data.task == "matching"] == pytest.approx(1 / 3))
    assert data.main_chance == 0.5


def test_include_excluded_keeps_rows(small_sim):
    kept = prepare(small_sim.table, ["architecture", "training"], include_excluded=True)
    dropped = prepare(small_sim.table, ["architecture", "training"])
    assert kept.n == dropped.n + dropped.excluded_rows


def test_level_order_follows_the_config(small_sim, make_study):
    study = make_study(small_sim)
    data = load_responses(study)
    assert data.factor_levels["training"] == ["standard", "adversarial"]


def test_missing_column_is_named(small_sim, make_study, tmp_path):
    study = make_study(small_sim)
    write_table(small_sim.table.drop_columns(["rt_ms"]), study.root / "responses.parquet")
    with pytest.raises(AnalysisDataError, match=r"responses.parquet: missing column\(s\) rt_ms"):
        load_responses(study)


def test_missing_factor_column_is_named(small_sim, make_study):
    study = make_study(small_sim)
    write_table(small_sim.table.drop_columns(["training"]), study.root / "responses.parquet")
    with pytest.raises(AnalysisDataError, match=r"missing column\(s\) training.*\[analysis\].factors"):
        load_responses(study)


def test_factor_with_one_level(small_sim):
    table = small_sim.table
    keep = pc.or_(pc.equal(table.column("architecture"), "cnn"),
                  pc.equal(table.column("kind"), "catch"))
    with pytest.raises(AnalysisDataError, match=r"factor 'architecture' has one level \('cnn'\)"):
        prepare(table.filter(keep), ["architecture", "training"])


def test_no_rows_left_after_exclusions(small_sim):
    table = _set(small_sim.table, "excluded", [True] * small_sim.table.num_rows)
    with pytest.raises(AnalysisDataError, match="all .* excluded.*--include-excluded"):
        prepare(table, ["architecture", "training"])
    assert prepare(table, ["architecture", "training"], include_excluded=True).n > 0


def test_no_main_rows(small_sim):
    table = small_sim.table.filter(pc.equal(small_sim.table.column("kind"), "catch"))
    with pytest.raises(AnalysisDataError, match="no main or repeat responses"):
        prepare(table, ["architecture", "training"])


def test_unknown_reaction_times_are_allowed_broken_ones_are_not(small_sim):
    # an MTurk archive without rt_<trial> columns gives null RTs: the model does not use RTs
    rt = small_sim.table.column("rt_ms").to_pylist()
    rt[5] = rt[9] = None
    assert prepare(_set(small_sim.table, "rt_ms", rt), ["architecture", "training"]).n > 0
    broken = small_sim.table.column("rt_ms").to_numpy().copy()
    broken[5], broken[9] = np.inf, -3.0
    with pytest.raises(AnalysisDataError, match=r"'rt_ms' has 2 infinite or negative.*r0000005, r0000009"):
        prepare(_set(small_sim.table, "rt_ms", broken), ["architecture", "training"])


def test_bad_chance_and_task(small_sim):
    chance = small_sim.table.column("chance").to_numpy().copy()
    chance[0] = 1.0
    with pytest.raises(AnalysisDataError, match=r"'chance' must be in \(0, 1\)"):
        prepare(_set(small_sim.table, "chance", chance), ["architecture", "training"])
    task = small_sim.table.column("task").to_pylist()
    task[0] = "triad"
    with pytest.raises(AnalysisDataError, match=r"unknown value\(s\) \['triad'\]"):
        prepare(_set(small_sim.table, "task", task), ["architecture", "training"])


def test_model_with_two_levels_of_a_factor(small_sim):
    table = small_sim.table
    arch = table.column("architecture").to_pylist()
    models = table.column("model").to_pylist()
    first = next(i for i, m in enumerate(models) if m == "m00-0")
    arch[first] = "vit" if arch[first] == "cnn" else "cnn"
    with pytest.raises(AnalysisDataError, match="model 'm00-0' has more than one level of architecture"):
        prepare(_set(table, "architecture", arch), ["architecture", "training"])


def test_cli_reports_bad_input_before_sampling(small_sim, make_study):
    study = make_study(small_sim)
    write_table(small_sim.table.drop_columns(["correct"]), study.root / "responses.parquet")
    result = CliRunner().invoke(analyze, ["--study", str(study.root)])
    assert result.exit_code == EXIT_INPUT
    assert "missing column(s) correct" in result.output
    assert not (study.root / "analysis" / "posterior.nc").exists()


def test_cli_missing_responses_file(small_sim, make_study):
    study = make_study(small_sim)
    (study.root / "responses.parquet").unlink()
    result = CliRunner().invoke(analyze, ["--study", str(study.root)])
    assert result.exit_code == EXIT_INPUT
    assert "responses.parquet: no such file" in result.output


def test_numpyro_missing_is_a_clear_error(small_sim, make_study, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("numpyro", "jax") else real(name, *a))
    study = make_study(small_sim)
    result = CliRunner().invoke(analyze, ["--study", str(study.root), "--sampler", "numpyro"])
    assert result.exit_code == EXIT_INPUT
    assert "pip install numpyro jax" in result.output
