"""Posterior predictive check per model (or participant, image, task) from ppc.csv."""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from analysis.figures.inputs import FigureSkipped
from analysis.figures.style import (
    DOUBLE,
    GREY,
    LIGHT_GREY,
    OKABE_ITO,
    SINGLE,
    new_figure,
    paper_style,
    text_width,
    wrap_label,
)

FLAG = OKABE_ITO["vermillion"]
MIN_DATA = 1.6  # inches the axes keep for the data, however long the row labels
MARGIN = 0.25  # inches of padding and ticks besides the labels and the data


def row_labels(names: list[str], width: float, max_width: float = DOUBLE
               ) -> tuple[list[str], float]:
    """(labels, figure width): the labels on one line each and the figure widened (up to
    `max_width`) so that the axes keep MIN_DATA inches; when even that is too narrow, each
    label wrapped onto two lines ('name' / '(levels)') and shortened to the room left."""
    need = text_width(names) + MIN_DATA + MARGIN
    if need <= max(width, max_width):
        return names, max(width, need)
    room = max(width, max_width) - MIN_DATA - MARGIN
    return [wrap_label(n.replace(" (", "\n("), room) for n in names], max(width, max_width)


def ppc_plot(ppc: pd.DataFrame, group: str = "model", labels: dict[str, str] | None = None,
             width: float = SINGLE) -> Figure:
    """One row per level of `group`: the replicated 94 % interval of the correct rate (bar),
    the replicated mean (tick) and the observed rate (dot; a vermillion diamond when the
    posterior predictive p-value flags a misfit). The figure is `width` wide, wider (up to
    the double column) when the row labels would leave the data less than MIN_DATA."""
    rows = ppc[ppc["group"] == group].reset_index(drop=True)
    if rows.empty:
        raise FigureSkipped(f"ppc.csv has no rows for group {group!r}")
    n = len(rows)
    flagged = rows["flagged"].astype(str).str.lower().isin(["true", "1"])
    with paper_style():
        names = [str(v) for v in rows["level"]]
        texts, width = row_labels([(labels or {}).get(v, v) for v in names], width)
        lines = max(t.count("\n") + 1 for t in texts)
        fig = new_figure(width, 0.75 + (0.15 if lines == 1 else 0.25) * n)
        ax = fig.add_subplot()
        y = range(n)
        ax.hlines(y, rows["replicated_low"], rows["replicated_high"], color=LIGHT_GREY, lw=4.0,
                  gid="replicated")
        ax.plot(rows["replicated_mean"], y, "|", color=GREY, ms=6, mew=1.0, gid="replicated_mean")
        ok = ~flagged
        ax.plot(rows["observed_rate"][ok], [i for i in y if ok[i]], "o", color="black", ms=3,
                gid="observed")
        ax.plot(rows["observed_rate"][flagged], [i for i in y if flagged[i]], "D", color=FLAG,
                ms=4, gid="flagged")
        ax.set_yticks(list(y), texts)
        for tick, bad in zip(ax.get_yticklabels(), flagged, strict=True):
            if bad:
                tick.set_color(FLAG)
        ax.set_ylim(n - 0.4, -0.6)
        ax.tick_params(axis="y", length=0)
        ax.set_xlabel("Correct rate")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]))
        n_flag = int(flagged.sum())
        fig.suptitle(f"Posterior predictive check per {group}: {n_flag} of {n} flagged",
                     x=0.02, ha="left")
        handles = [Line2D([], [], color=LIGHT_GREY, lw=4, label="replicated 94 % interval"),
                   Line2D([], [], color=GREY, marker="|", ls="", ms=6, label="replicated mean"),
                   Line2D([], [], color="black", marker="o", ls="", ms=3, label="observed"),
                   Line2D([], [], color=FLAG, marker="D", ls="", ms=4,
                          label="observed, flagged (p < 0.01)")]
        fig.legend(handles=handles, loc="outside lower center", ncols=2)
    return fig
