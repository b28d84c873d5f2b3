"""Machine proxy against human alignment, per model, with the correlation."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis.figures.alignment import level_order_of
from analysis.figures.inputs import FigureSkipped
from analysis.figures.style import GREY, OKABE_ITO, SINGLE, colour_map, new_figure, paper_style
from analysis.proxy_calibration import pearson, ranks

X_LABELS = {
    "alignment": "Machine proxy\n(share of IRIs nearer their target than their seed)",
    "mean_margin": "Machine proxy: mean margin\n(distance to seed − distance to target)",
}
Y_LABEL = "Human alignment\n(chance-corrected, 94 % HDI)"


def correlations(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Pearson r and Spearman rho (average ranks) of two vectors."""
    return float(pearson(x, y[None])[0]), float(pearson(ranks(x), ranks(y)[None])[0])


def correlation_text(x: np.ndarray, y: np.ndarray, summary: pd.DataFrame | None = None) -> str:
    """'Pearson r = … · Spearman ρ = …': the calibration's posterior means and 94 % HDIs
    when analysis/proxy_calibration_summary.csv is given, else the correlation of the
    posterior means."""
    if summary is not None and {"pearson_r", "spearman_rho"} <= set(summary["statistic"]):
        s = summary.set_index("statistic")

        def fmt(name):
            return (f"{s.loc[name, 'mean']:.2f} [{s.loc[name, 'hdi_low']:.2f}, "
                    f"{s.loc[name, 'hdi_high']:.2f}]")
        return (f"Pearson r = {fmt('pearson_r')}\nSpearman ρ = {fmt('spearman_rho')}"
                "\n(posterior mean [94 % HDI])")
    r, rho = correlations(x, y)
    return f"Pearson r = {r:.2f}\nSpearman ρ = {rho:.2f} (of posterior means)"


def proxy_vs_human(alignment: pd.DataFrame, proxy: pd.DataFrame,
                   calibration: pd.DataFrame | None = None, colour_factor: str | None = None,
                   width: float = SINGLE, level_order: list[str] | None = None) -> Figure:
    """x: the per-model machine proxy (`proxy`: analysis.proxy_calibration.read_proxy's
    frame, indexed by model); y: the posterior mean and 94 % HDI of
    human alignment (alignment.csv); the least-squares calibration line; Pearson and
    Spearman correlations in the title (with HDIs from the posterior when `calibration`,
    analysis/proxy_calibration_summary.csv, is given)."""
    per_model = proxy["proxy"]
    measure = str(proxy["measure"].iloc[0])
    models = alignment[alignment["kind"] == "model"].copy()
    models["name"] = models["name"].astype(str)
    models = models[models["name"].isin(per_model.index)]
    if len(models) < 3:
        raise FigureSkipped(f"proxy.csv and alignment.csv share {len(models)} model(s); the "
                            "comparison needs at least 3")
    x = per_model.loc[models["name"]].to_numpy(float)
    y = models["alignment_mean"].to_numpy(float)
    if np.ptp(x) == 0:
        raise FigureSkipped("the proxy gives every model the same value; nothing to compare")
    # the study's level order, so a level keeps its colour across figures
    levels = (level_order_of(models, colour_factor, level_order)
              if colour_factor and colour_factor in models.columns else [])
    colours = colour_map(levels)
    with paper_style():
        fig = new_figure(width, 2.7)
        ax = fig.add_subplot()
        for i, row in enumerate(models.itertuples(index=False)):
            colour = colours[str(getattr(row, colour_factor))] if levels else OKABE_ITO["blue"]
            ax.errorbar(x[i], y[i], yerr=[[y[i] - row.alignment_hdi_low],
                                          [row.alignment_hdi_high - y[i]]],
                        fmt="o", color=colour, ms=3.5, elinewidth=0.8, mec="white", mew=0.4,
                        gid=f"model:{row.name}")
        if calibration is not None and {"slope", "intercept"} <= set(calibration["statistic"]):
            s = calibration.set_index("statistic")["mean"]
            slope, intercept = float(s["slope"]), float(s["intercept"])
        else:
            slope, intercept = np.polyfit(x, y, 1)
        grid = np.linspace(x.min(), x.max(), 50)
        ax.plot(grid, intercept + slope * grid, color=GREY, lw=0.9, ls="--", zorder=0,
                gid="calibration", label="least-squares line")
        ax.set_xlabel(X_LABELS[measure])
        ax.set_ylabel(Y_LABEL)
        pad = 0.06 * (x.max() - x.min())
        ax.set_xlim(x.min() - pad, x.max() + pad)
        ax.set_title(correlation_text(x, y, calibration), fontsize=7, loc="left")
        handles = [Line2D([], [], color=colours[lv], marker="o", ls="", ms=3.5, label=lv)
                   for lv in levels]
        handles.append(Line2D([], [], color=GREY, ls="--", lw=0.9, label="calibration line"))
        ax.legend(handles=handles, loc="best", title=colour_factor.replace("_", " ")
                  if levels else None)
    return fig
