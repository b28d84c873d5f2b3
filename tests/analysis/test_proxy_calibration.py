"""The proxy calibration's arithmetic on hand-made draws."""

import numpy as np
import pandas as pd
import pytest

from analysis.data import prepare
from analysis.proxy_calibration import ProxyError, calibrate, read_proxy


def test_exact_line_and_weighted_proxy(small_sim, tmp_path):
    data = prepare(small_sim.table, ["architecture", "training"])
    m = len(data.models)
    path = tmp_path / "proxy.csv"
    rows = ["model,loss,metric,n_iris,n_targets,alignment,ci_low,ci_high,median_rep_error"]
    x = np.linspace(0.2, 0.8, m)
    for name, value in zip(data.models, x, strict=True):
        rows.append(f"{name},a,ssim,30,30,{value - 0.1},0,1,0.1")
        rows.append(f"{name},b,ssim,10,10,{value + 0.3},0,1,0.1")  # weighted mean = value
    path.write_text("\n".join(rows) + "\n")
    proxy = read_proxy(path)
    assert np.allclose(proxy.loc[data.models, "proxy"], x)
    # the analysed IRI loss's rows only
    assert np.allclose(read_proxy(path, loss="a").loc[data.models, "proxy"], x - 0.1)
    assert np.allclose(read_proxy(path, loss="b").loc[data.models, "proxy"], x + 0.3)
    with pytest.raises(ProxyError, match=r"no rows of IRI loss 'c' \(losses present: a, b\)"):
        read_proxy(path, loss="c")
    human = np.tile(0.1 + 0.5 * x, (50, 1))  # human = 0.1 + 0.5 proxy in every draw
    result = calibrate(human, data, proxy)
    s = result.summary.set_index("statistic")
    assert s.loc["slope", "mean"] == pytest.approx(0.5)
    assert s.loc["intercept", "mean"] == pytest.approx(0.1)
    assert s.loc["pearson_r", "mean"] == pytest.approx(1.0)
    assert s.loc["spearman_rho", "mean"] == pytest.approx(1.0)
    assert np.allclose(result.per_model["calibrated_proxy"], 0.1 + 0.5 * x)


def test_too_few_shared_models(small_sim):
    data = prepare(small_sim.table, ["architecture", "training"])
    proxy = pd.DataFrame({"proxy": [0.1, 0.2], "proxy_iris": [1, 1], "measure": "alignment"},
                         index=["x", data.models[0]])
    with pytest.raises(ProxyError, match="share 1 model"):
        calibrate(np.zeros((5, len(data.models))), data, proxy)


def test_constant_share_falls_back_to_the_margin(small_sim, tmp_path):
    data = prepare(small_sim.table, ["architecture", "training"])
    path = tmp_path / "proxy.csv"
    rows = ["model,loss,metric,n_iris,n_targets,alignment,ci_low,ci_high,mean_margin,median_rep_error"]
    margins = np.linspace(-0.8, -0.4, len(data.models))
    for name, margin in zip(data.models, margins, strict=True):
        rows.append(f"{name},a,ssim,12,12,0.0,0,0,{margin},0.1")
    path.write_text("\n".join(rows) + "\n")
    proxy = read_proxy(path, loss="a")
    assert set(proxy["measure"]) == {"mean_margin"}
    assert np.allclose(proxy.loc[data.models, "proxy"], margins)
    result = calibrate(np.tile(margins + 1.0, (20, 1)), data, proxy)
    assert set(result.summary["measure"]) == {"mean_margin"}
    assert "mean margin" in result.lines()[0]
    # a share that varies is kept, margin or not
    path.write_text(path.read_text().replace(",0.0,0,0,", ",0.5,0,0,", 1))
    assert set(read_proxy(path, loss="a")["measure"]) == {"alignment"}
