"""Forest plot of factor contrasts from effects.csv, on the chance-corrected scale."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis.figures.inputs import FigureSkipped
from analysis.figures.style import (
    DOUBLE,
    GREY,
    OKABE_ITO,
    SINGLE,
    new_figure,
    paper_style,
    shorten,
    text_width,
    wrap_label,
)

KINDS = {"pairwise": ["pairwise"], "level": ["level vs mean of levels"],
         "all": ["level vs mean of levels", "pairwise"]}
MIN_DATA = 1.6  # inches the axes keep for the data, however long the row labels
P_COLUMN = 0.35  # inches: the P(>0) column right of the axes
MARGIN = 0.2  # inches of padding besides the labels, the data and the P(>0) column
X_LABEL = "Difference in human alignment\n(chance-corrected, 94 % HDI)"


def contrast_rows(effects: pd.DataFrame, contrasts: str = "pairwise",
                  factors: list[str] | None = None) -> pd.DataFrame:
    """The rows the forest plot shows, in factor order (interactions have no alignment scale)."""
    if contrasts not in KINDS:
        raise ValueError(f"contrasts must be one of {', '.join(KINDS)}, got {contrasts!r}")
    rows = effects[effects["kind"].isin(KINDS[contrasts])]
    rows = rows[rows["alignment_mean"].notna()]
    if factors:
        rows = rows[rows["factor"].isin(factors)]
        order = {f: i for i, f in enumerate(factors)}
        kind_order = {k: i for i, k in enumerate(KINDS[contrasts])}
        rows = rows.assign(_f=rows["factor"].map(order), _k=rows["kind"].map(kind_order),
                           _i=np.arange(len(rows)))
        rows = rows.sort_values(["_f", "_k", "_i"]).drop(columns=["_f", "_k", "_i"])
    if rows.empty:
        raise FigureSkipped("effects.csv has no contrasts on the alignment scale")
    return rows.reset_index(drop=True)


def _fit_labels(labels: list[str], headings: list[tuple[float, str]], width: float
                ) -> tuple[list[str], list[tuple[float, str]], float]:
    """(labels, headings, figure width): the figure widened (up to the double column) so
    that the row labels leave the data MIN_DATA inches; when even that is too narrow, the
    labels wrapped onto two lines and they and the headings shortened to the room left."""
    fixed = MIN_DATA + P_COLUMN + MARGIN
    label_w = max(text_width(labels), text_width([h for _, h in headings], weight="bold"))
    if label_w + fixed <= max(width, DOUBLE):
        return labels, headings, max(width, label_w + fixed)
    width = max(width, DOUBLE)
    room = width - fixed
    titles = [(ypos, shorten(h, room * 0.9)) for ypos, h in headings]  # bold: wider
    return [wrap_label(label, room) for label in labels], titles, width


def contrast_forest(effects: pd.DataFrame, contrasts: str = "pairwise",
                    factors: list[str] | None = None, width: float = SINGLE,
                    title: str | None = None) -> Figure:
    """One row per contrast: posterior mean (point) and 94 % HDI (line) of the difference in
    chance-corrected alignment, grouped by factor, with a zero line; blue where the HDI
    excludes zero, grey where it does not; P(> 0) at the right; `title` (e.g. the IRI
    loss) above. The figure is `width` wide, wider (up to the double column) when the
    row labels would leave the data less than MIN_DATA."""
    rows = contrast_rows(effects, contrasts, factors)
    # y positions top-down, with a gap and a heading between factors
    y, labels, headings = [], [], []
    pos = 0.0
    for factor, part in rows.groupby("factor", sort=False):
        headings.append((pos, str(factor)))
        pos += 1.0
        for _, r in part.iterrows():
            y.append(pos)
            text = str(r["contrast"])
            if r["kind"] == "level vs mean of levels":
                text = text.replace(" − mean", " vs mean")
            labels.append(text)
            pos += 1.0
        pos += 0.4
    y = np.array(y)
    with paper_style():
        titles = [(ypos, factor.replace("_", " ").capitalize()) for ypos, factor in headings]
        labels, titles, width = _fit_labels(labels, titles, width)
        lines = max(label.count("\n") + 1 for label in labels)
        fig = new_figure(width, 0.55 + (0.17 if lines == 1 else 0.28) * pos)
        ax = fig.add_subplot()
        mean = rows["alignment_mean"].to_numpy(float)
        low = rows["alignment_hdi_low"].to_numpy(float)
        high = rows["alignment_hdi_high"].to_numpy(float)
        clear = (low > 0) | (high < 0)
        for i in range(len(rows)):
            colour = OKABE_ITO["blue"] if clear[i] else GREY
            ax.errorbar(mean[i], y[i], xerr=[[mean[i] - low[i]], [high[i] - mean[i]]],
                        fmt="o", color=colour, ms=3.5, elinewidth=1.1, gid=f"contrast:{i}")
        ax.axvline(0.0, color="black", lw=0.7, ls="--", zorder=0, gid="zero")
        ax.set_yticks(y, labels)
        ax.tick_params(axis="y", length=0)
        for ypos, heading in titles:
            ax.text(0.0, ypos, heading, transform=ax.get_yaxis_transform(),
                    ha="right", va="center", fontweight="bold", fontsize=7,
                    clip_on=False, gid="heading")
        ax.set_ylim(pos - 0.2, -0.8)
        span = max(np.max(np.abs(np.concatenate([low, high]))), 0.05)
        ax.set_xlim(-1.12 * span if low.min() < 0 else -0.1 * span,
                    1.12 * span if high.max() > 0 else 0.1 * span)
        ax.set_xlabel(X_LABEL)
        ax.spines["left"].set_visible(False)
        # P(> 0) as a column at the right edge
        ax.text(1.0, -0.8, "P(>0)", transform=ax.get_yaxis_transform(), ha="left", va="bottom",
                fontsize=6.5, color=GREY)
        for i, p in enumerate(rows["alignment_p_gt_0"].to_numpy(float)):
            ax.text(1.02, y[i], f"{p:.2f}", transform=ax.get_yaxis_transform(), ha="left",
                    va="center", fontsize=6.5, color=GREY, gid="p_gt_0")
        legend = [Line2D([], [], color=OKABE_ITO["blue"], marker="o", ms=3, label="HDI excludes 0"),
                  Line2D([], [], color=GREY, marker="o", ms=3, label="HDI includes 0")]
        fig.legend(handles=legend, loc="outside lower center", ncols=2)
        if title:
            fig.suptitle(title, fontsize=7)
    return fig
