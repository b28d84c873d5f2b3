"""Calibrate the machine proxy (generation's proxy.csv) against the human estimate.

The proxy scores each model by the share of its IRIs that are perceptually at
least as close to their target as to their seed. Here, for every posterior draw of
the models' chance-corrected human alignment, we compute the Pearson and Spearman
correlations across models and the least-squares line human = a + b · proxy; their
posterior means and 94 % HDIs say how well the proxy tracks people and how to map
it onto the human scale. The uncertainty is the posterior's (human side); the
proxy's own bootstrap intervals are reported alongside, not propagated.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.data import AnalysisData
from analysis.effects import summarise

PROXY_FILE = "proxy.csv"  # written by `hitkit proxy` (generation.proxy.PROXY_FILE)


class ProxyError(ValueError):
    """A proxy.csv that cannot be related to the analysed models."""


@dataclass
class ProxyCalibration:
    per_model: pd.DataFrame
    summary: pd.DataFrame  # statistic, mean, hdi_low, hdi_high

    def lines(self) -> list[str]:
        s = self.summary.set_index("statistic")
        out = [f"proxy calibration over {len(self.per_model)} models: "
               + "; ".join(f"{name} {s.loc[name, 'mean']:.2f} [{s.loc[name, 'hdi_low']:.2f}, "
                           f"{s.loc[name, 'hdi_high']:.2f}]"
                           for name in ("pearson_r", "spearman_rho", "slope", "intercept"))]
        return out


def read_proxy(path: Path) -> pd.DataFrame:
    """Per-model proxy alignment: the n_iris-weighted mean over losses."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    needed = {"model", "alignment", "n_iris"}
    if not rows or not needed <= set(rows[0]):
        raise ProxyError(f"{path}: needs columns {', '.join(sorted(needed))} "
                         "(written by `hitkit proxy`)")
    df = pd.DataFrame(rows)
    df["alignment"] = df["alignment"].astype(float)
    df["n_iris"] = df["n_iris"].astype(float)
    df["weighted"] = df["alignment"] * df["n_iris"]
    grouped = df.groupby("model").agg(weighted=("weighted", "sum"), n_iris=("n_iris", "sum"))
    return pd.DataFrame({"proxy": grouped["weighted"] / grouped["n_iris"],
                         "proxy_iris": grouped["n_iris"].astype(int)})


def _rank(x: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(x, axis=-1), axis=-1).astype(float)


def _pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Correlation of x (models) with each row of y (draws x models)."""
    xc = x - x.mean()
    yc = y - y.mean(axis=1, keepdims=True)
    return (yc @ xc) / np.sqrt((xc ** 2).sum() * (yc ** 2).sum(axis=1))


def calibrate(model_alignment: np.ndarray, data: AnalysisData, proxy: pd.DataFrame
              ) -> ProxyCalibration:
    """model_alignment: (draws, models) posterior chance-corrected alignment."""
    common = [m for m in data.models if m in proxy.index]
    if len(common) < 3:
        raise ProxyError(f"proxy.csv and the responses share {len(common)} model(s); "
                         "calibration needs at least 3")
    idx = [data.models.index(m) for m in common]
    x = proxy.loc[common, "proxy"].to_numpy(dtype=float)
    human = model_alignment[:, idx]
    if np.ptp(x) == 0:
        raise ProxyError("the proxy gives every model the same alignment; nothing to calibrate")
    r = _pearson(x, human)
    rho = _pearson(_rank(x), _rank(human))
    xc = x - x.mean()
    slope = ((human - human.mean(axis=1, keepdims=True)) @ xc) / (xc ** 2).sum()
    intercept = human.mean(axis=1) - slope * x.mean()
    rows = []
    for name, values in (("pearson_r", r), ("spearman_rho", rho), ("slope", slope),
                         ("intercept", intercept)):
        mean, low, high, _ = summarise(values)
        rows.append({"statistic": name, "mean": mean, "hdi_low": low, "hdi_high": high})
    per_model = []
    for j, m in enumerate(common):
        mean, low, high, _ = summarise(human[:, j])
        predicted = intercept + slope * x[j]
        per_model.append({"model": m, "proxy": x[j],
                          "proxy_iris": int(proxy.loc[m, "proxy_iris"]),
                          "human_mean": mean, "human_hdi_low": low, "human_hdi_high": high,
                          "calibrated_proxy": float(predicted.mean())})
    return ProxyCalibration(pd.DataFrame(per_model), pd.DataFrame(rows))
