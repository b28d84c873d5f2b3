"""Calibrate the machine proxy (generation's proxy.csv) against the human estimate.

The proxy scores each model by the share of its IRIs that are perceptually at
least as close to their target as to their seed (or, where that share is the same
for every model, by the mean margin dist_seed - dist_target; `measure` says which).
Here, for every posterior draw of
the models' chance-corrected human alignment, we compute the Pearson and Spearman
correlations across models and the least-squares line human = a + b · proxy; their
posterior means and 94 % HDIs say how well the proxy tracks people and how to map
it onto the human scale. The uncertainty is the posterior's (human side); the
proxy's own bootstrap intervals are reported alongside, not propagated. Only the
proxy.csv rows of the analysed IRI loss are used, as only its responses are in the fit.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from analysis.data import AnalysisData


class ProxyError(ValueError):
    """A proxy.csv that cannot be related to the analysed models."""


@dataclass
class ProxyCalibration:
    per_model: pd.DataFrame
    summary: pd.DataFrame  # statistic, mean, hdi_low, hdi_high

    def lines(self) -> list[str]:
        s = self.summary.set_index("statistic")
        measure = str(self.per_model["measure"].iloc[0])
        out = [f"proxy calibration over {len(self.per_model)} models (proxy: {MEASURES[measure]}): "
               + "; ".join(f"{name} {s.loc[name, 'mean']:.2f} [{s.loc[name, 'hdi_low']:.2f}, "
                           f"{s.loc[name, 'hdi_high']:.2f}]"
                           for name in ("pearson_r", "spearman_rho", "slope", "intercept"))]
        return out


# The proxy's measures, in order of preference: the paper's share of aligned IRIs, and
# when that share is the same for every model (all 0 on the demo's noisy seeds) the
# graded mean margin, which still ranks the models.
MEASURES = {
    "alignment": "share of IRIs nearer their target than their seed",
    "mean_margin": "mean margin: distance to seed minus distance to target",
}


def read_proxy(path: Path, loss: str | None = None) -> pd.DataFrame:
    """Per-model machine proxy of IRI loss `loss` (None: n_iris-weighted over losses).

    Columns: proxy, proxy_iris, measure (a key of MEASURES, the same on every row)."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    needed = {"model", "alignment", "n_iris"}
    if not rows or not needed <= set(rows[0]):
        raise ProxyError(f"{path}: needs columns {', '.join(sorted(needed))} "
                         "(written by `hitkit proxy`)")
    df = pd.DataFrame(rows)
    if loss is not None:
        if "loss" not in df.columns:
            raise ProxyError(f"{path}: needs a 'loss' column to use the rows of IRI loss "
                             f"{loss!r} (written by `hitkit proxy`)")
        if not (df["loss"] == loss).any():
            raise ProxyError(f"{path}: no rows of IRI loss {loss!r} (losses present: "
                             f"{', '.join(sorted(set(df['loss'])))})")
        df = df[df["loss"] == loss].copy()
    df["n_iris"] = df["n_iris"].astype(float)
    per_model = {name: _weighted_by_model(df, name) for name in MEASURES if name in df.columns}
    measure = "alignment"
    if np.ptp(per_model["alignment"].to_numpy()) == 0 and "mean_margin" in per_model:
        measure = "mean_margin"
    counts = df.groupby("model")["n_iris"].sum()
    return pd.DataFrame({"proxy": per_model[measure], "proxy_iris": counts.astype(int),
                         "measure": measure})


def _weighted_by_model(df: pd.DataFrame, column: str) -> pd.Series:
    weighted = df[column].astype(float) * df["n_iris"]
    return weighted.groupby(df["model"]).sum() / df.groupby("model")["n_iris"].sum()


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks along the last axis, ties given their average rank (as Spearman's rho needs)."""
    return rankdata(x, axis=-1)


def pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Correlation of x (models) with each row of y (draws x models)."""
    xc = x - x.mean()
    yc = y - y.mean(axis=1, keepdims=True)
    return (yc @ xc) / np.sqrt((xc ** 2).sum() * (yc ** 2).sum(axis=1))


def calibrate(model_alignment: np.ndarray, data: AnalysisData, proxy: pd.DataFrame
              ) -> ProxyCalibration:
    """model_alignment: (draws, models) posterior chance-corrected alignment."""
    from analysis.effects import summarise  # here: the figures read proxy.csv without PyMC
    common = [m for m in data.models if m in proxy.index]
    if len(common) < 3:
        raise ProxyError(f"proxy.csv and the responses share {len(common)} model(s); "
                         "calibration needs at least 3")
    idx = [data.models.index(m) for m in common]
    x = proxy.loc[common, "proxy"].to_numpy(dtype=float)
    measure = str(proxy["measure"].iloc[0])
    human = model_alignment[:, idx]
    if np.ptp(x) == 0:
        raise ProxyError("the proxy gives every model the same value; nothing to calibrate")
    r = pearson(x, human)
    rho = pearson(ranks(x), ranks(human))
    xc = x - x.mean()
    slope = ((human - human.mean(axis=1, keepdims=True)) @ xc) / (xc ** 2).sum()
    intercept = human.mean(axis=1) - slope * x.mean()
    rows = []
    for name, values in (("pearson_r", r), ("spearman_rho", rho), ("slope", slope),
                         ("intercept", intercept)):
        mean, low, high, _ = summarise(values)
        rows.append({"statistic": name, "mean": mean, "hdi_low": low, "hdi_high": high,
                     "measure": measure})
    per_model = []
    for j, m in enumerate(common):
        mean, low, high, _ = summarise(human[:, j])
        predicted = intercept + slope * x[j]
        per_model.append({"model": m, "measure": measure, "proxy": x[j],
                          "proxy_iris": int(proxy.loc[m, "proxy_iris"]),
                          "human_mean": mean, "human_hdi_low": low, "human_hdi_high": high,
                          "calibrated_proxy": float(predicted.mean())})
    return ProxyCalibration(pd.DataFrame(per_model), pd.DataFrame(rows))
