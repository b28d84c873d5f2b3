"""`hitkit analyze` end to end on a small simulated study: gate passed, outputs, --compare."""

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from click.testing import CliRunner

from analysis.synthetic import simulate
from hitkit.cli.analysis import analyze


@pytest.fixture(scope="module")
def analysed(design, truth, tmp_path_factory):
    from analysis.synthetic import write_study
    from hitkit.study.config import load_study

    sim = simulate(design(), truth, seed=21)
    folder = write_study(tmp_path_factory.mktemp("study"), sim, draws=1000, tune=1000, chains=2,
                         analysis={"lapse": "none"})
    load_study(folder)
    _write_proxy(sim, folder / "proxy.csv")
    result = CliRunner().invoke(analyze, ["--study", str(folder), "--compare", "--quiet"])
    return folder, result


def _write_proxy(sim, path):
    """A machine proxy that tracks each model's observed rate, as `hitkit proxy` writes it."""
    t = sim.table.to_pandas()
    rates = t[t["kind"] == "main"].groupby("model")["correct"].mean()
    rng = np.random.default_rng(0)
    lines = ["model,loss,metric,n_iris,n_targets,alignment,ci_low,ci_high,median_rep_error"]
    for model, rate in rates.items():
        for loss, shift in (("reg_free", -0.05), ("tv", 0.05)):
            value = rate + shift + rng.normal(0, 0.01)
            lines.append(f"{model},{loss},ssim,40,40,{value:.4f},{value - 0.1:.4f},"
                         f"{value + 0.1:.4f},0.01")
    path.write_text("\n".join(lines) + "\n")


def test_exit_status_and_messages(analysed):
    folder, result = analysed
    assert result.exit_code == 0, result.output
    assert "convergence gate: PASSED" in result.output
    assert "participant effects: centred" in result.output
    assert "describe the 12 trained models in this study" in result.output
    assert "prior predictive" in result.output
    assert "cross-check (statsmodels GLM" in result.output


def test_output_files(analysed):
    folder, _ = analysed
    out = folder / "analysis"
    for name in ("posterior.nc", "effects.csv", "effects.md", "alignment.csv", "sds.csv",
                 "ppc.csv", "crosscheck.csv", "diagnostics.csv", "summary.json", "compare.csv"):
        assert (out / name).is_file(), name
    tree = xr.open_datatree(out / "posterior.nc")
    assert {"b0", "b_architecture", "b_training", "s_participant", "u_model"} <= set(
        tree["posterior"].data_vars)
    assert tree["posterior"].sizes["draw"] == 1000
    tree.close()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["gate_passed"] and summary["target"] == "these-models"


def test_effects_tables(analysed):
    folder, _ = analysed
    effects = pd.read_csv(folder / "analysis" / "effects.csv")
    # per factor: 2 level-vs-mean rows and 1 pairwise row
    assert len(effects) == 6
    assert set(effects["kind"]) == {"level vs mean of levels", "pairwise"}
    for column in ("logit_mean", "logit_hdi_low", "logit_hdi_high", "logit_p_gt_0",
                   "alignment_mean", "alignment_hdi_low", "alignment_hdi_high",
                   "alignment_p_gt_0"):
        assert effects[column].notna().all(), column
    pair = effects[(effects.factor == "training") & (effects.kind == "pairwise")].iloc[0]
    assert pair.contrast == "adversarial − standard"  # the first level is the reference
    assert pair.logit_hdi_low > 0 and pair.logit_p_gt_0 > 0.95
    md = (folder / "analysis" / "effects.md").read_text()
    assert "**Target.**" in md and "94 % HDI" in md and "| training | adversarial − standard |" in md
    sds = pd.read_csv(folder / "analysis" / "sds.csv")
    assert set(sds.parameter) == {"s_participant", "s_image", "s_cell", "s_model"}
    alignment = pd.read_csv(folder / "analysis" / "alignment.csv")
    assert set(alignment.kind) == {"model", "level"}
    ppc = pd.read_csv(folder / "analysis" / "ppc.csv")
    assert {"group", "level", "observed_rate", "replicated_low", "replicated_high", "ppp",
            "flagged"} <= set(ppc.columns)


def test_compare_ranks_the_variants(analysed):
    folder, result = analysed
    table = pd.read_csv(folder / "analysis" / "compare.csv", index_col="variant")
    assert set(table.index) == {"as configured", "lapse global", "lapse participant"}
    assert {"elpd", "elpd_diff", "weight"} <= set(table.columns)
    assert "LOO comparison" in result.output


def test_proxy_calibration(analysed):
    folder, result = analysed
    assert "proxy calibration over 12 models" in result.output
    per_model = pd.read_csv(folder / "analysis" / "proxy_calibration.csv")
    assert len(per_model) == 12
    # only the proxy.csv rows of the analysed IRI loss (reg_free), not the mean over losses
    proxy = pd.read_csv(folder / "proxy.csv")
    reg_free = proxy[proxy["loss"] == "reg_free"].set_index("model")["alignment"]
    assert np.allclose(per_model["proxy"], reg_free.loc[per_model["model"]])
    summary = pd.read_csv(folder / "analysis" / "proxy_calibration_summary.csv",
                          index_col="statistic")
    assert summary.loc["pearson_r", "hdi_low"] > 0.3
    assert summary.loc["slope", "mean"] > 0


def test_plan_uses_the_posterior(analysed):
    from hitkit.cli.analysis import plan

    folder, _ = analysed
    result = CliRunner().invoke(plan, ["--study", str(folder), "--contrast",
                                       "architecture=vit:cnn", "--width", "0.6",
                                       "--simulations", "5", "--target", "model-population"])
    assert result.exit_code == 0, result.output
    assert f"posterior means from {folder / 'analysis' / 'posterior.nc'}" in result.output
    assert "target 'model-population'" in result.output


def test_sensitivity_runs_have_their_own_folder(analysed):
    from analysis.analyze import output_folder
    from hitkit.study.config import load_study

    folder, _ = analysed
    study = load_study(folder)
    assert output_folder(study, False) == folder / "analysis"
    assert output_folder(study, True) == folder / "analysis" / "sensitivity-include-excluded"
