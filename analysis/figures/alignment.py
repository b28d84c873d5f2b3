"""Human alignment per model: by architecture and training (the paper's main scatter),
and along an ordered factor such as training epochs (the paper's SimCLR-epoch plot).

Both read alignment.csv: one row per model (`kind == "model"`) and per factor level
(`kind == "level"`), with the posterior mean and 94 % HDI of the chance-corrected
alignment (0 = chance, 1 = every answer right).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis.figures.inputs import FigureSkipped, numeric_key
from analysis.figures.style import (
    DOUBLE,
    GREY,
    OKABE_ITO,
    SINGLE,
    colour_map,
    fit_legend,
    grid_legend,
    marker_map,
    new_figure,
    paper_style,
    text_width,
    wrap_label,
)

Y_LABEL = "Human alignment\n(chance-corrected, 94 % HDI)"


def level_order_of(frame: pd.DataFrame, factor: str, order: list[str] | None) -> list[str]:
    present = list(dict.fromkeys(frame[factor].astype(str)))
    if order is None:
        return present
    return [lv for lv in order if lv in present] + [lv for lv in present if lv not in order]


def _models(alignment: pd.DataFrame, *factors: str | None) -> pd.DataFrame:
    models = alignment[alignment["kind"] == "model"].copy()
    if models.empty:
        raise FigureSkipped("alignment.csv has no per-model rows")
    for f in factors:
        if f is not None:
            if f not in models.columns:
                raise FigureSkipped(f"alignment.csv has no column {f!r}")
            models[f] = models[f].astype(str)
    return models


def _y_limits(ax, low: np.ndarray, high: np.ndarray, extra: list[float] = ()) -> None:
    """Always show chance (0); stop at the data, not at an arbitrary 1."""
    values = np.concatenate([np.asarray(low, float), np.asarray(high, float),
                             np.asarray(extra, float)])
    lo = min(0.0, float(np.nanmin(values)))
    hi = max(float(np.nanmax(values)), 0.1)
    pad = 0.05 * (hi - lo)
    ax.set_ylim(lo - (pad if lo < 0 else 0.0), min(hi + pad, 1.0 + pad))
    ax.axhline(0.0, color=GREY, lw=0.6, ls=":", zorder=0)


def alignment_by_factor(alignment: pd.DataFrame, x_factor: str, group_factor: str | None = None,
                        marker_factor: str | None = None, *, x_order: list[str] | None = None,
                        group_order: list[str] | None = None,
                        marker_order: list[str] | None = None,
                        width: float | None = None, title: str | None = None) -> Figure:
    """Per model: posterior mean and 94 % HDI of alignment, one column of points per level
    of `x_factor` (architecture), dodged and coloured by `group_factor` (training), marker
    shape by `marker_factor` (a third factor, e.g. augmentation); `title` (e.g. the IRI
    loss) above."""
    models = _models(alignment, x_factor, group_factor, marker_factor)
    xs = level_order_of(models, x_factor, x_order)
    groups = level_order_of(models, group_factor, group_order) if group_factor else [None]
    marks = level_order_of(models, marker_factor, marker_order) if marker_factor else [None]
    colours = colour_map(groups) if group_factor else {None: OKABE_ITO["blue"]}
    shapes = marker_map(marks)

    with paper_style():
        n_points = len(models)
        fig = new_figure(width or (SINGLE if len(xs) * len(groups) <= 8 and n_points <= 24
                                   else DOUBLE), 2.5)
        ax = fig.add_subplot()
        band = 0.8  # share of a column the dodged groups use
        slot = band / len(groups)
        for xi, xlevel in enumerate(xs):
            for gi, glevel in enumerate(groups):
                cell = models[models[x_factor] == xlevel]
                if group_factor:
                    cell = cell[cell[group_factor] == glevel]
                if cell.empty:
                    continue
                if marker_factor:
                    cell = cell.assign(_m=cell[marker_factor].map(marks.index)).sort_values(
                        ["_m", "name"])
                centre = xi - band / 2 + slot * (gi + 0.5)
                spread = slot * 0.7
                offsets = (np.linspace(-spread / 2, spread / 2, len(cell)) if len(cell) > 1
                           else np.zeros(1))
                for off, row in zip(offsets, cell.itertuples(index=False), strict=True):
                    mean = row.alignment_mean
                    err = [[mean - row.alignment_hdi_low], [row.alignment_hdi_high - mean]]
                    marker = shapes[getattr(row, marker_factor)] if marker_factor else "o"
                    ax.errorbar(centre + off, mean, yerr=err, fmt=marker,
                                color=colours[glevel], ms=3.5, mew=0.6, elinewidth=0.8,
                                mfc=colours[glevel], mec="white" if marker != "o" else "white",
                                label="_nolegend_", gid=f"model:{row.name}")
        ax.set_xlim(-0.5, len(xs) - 0.5)
        _tick_labels(ax, xs, (fig.get_figwidth() - 0.7) / len(xs))  # 0.7 in: the y labels
        ax.set_xlabel(x_factor.replace("_", " ").capitalize())
        ax.set_ylabel(Y_LABEL)
        _y_limits(ax, models["alignment_hdi_low"], models["alignment_hdi_high"])
        for xi in range(1, len(xs)):
            ax.axvline(xi - 0.5, color="#EEEEEE", lw=0.6, zorder=0)

        rows = []
        if group_factor:
            rows.append((_heading(group_factor),
                         [(Line2D([], [], color=colours[g], marker="o", ls="", ms=4), g)
                          for g in groups]))
        if marker_factor:
            rows.append((_heading(marker_factor),
                         [(Line2D([], [], color=GREY, marker=shapes[m], ls="", ms=4), m)
                          for m in marks]))
        if rows:
            grid_legend(fig, rows, loc="outside upper center", handlelength=0.8,
                        columnspacing=0.8)
        if title:  # on the axes: a figure title would overlap the legend above them
            ax.set_title(title, fontsize=7)
    return fig


def _heading(factor: str) -> str:
    """A legend heading that names a factor."""
    return factor.replace("_", " ") + ":"


def _tick_labels(ax, levels: list[str], room: float) -> None:
    """Level names under the columns, `room` inches each: on one line, else wrapped onto
    two lines when that fits, else slanted (wrapped at 1.2 in, on three lines at most when
    two would shorten different names to the same text) as steeply as neighbours need."""
    if text_width(levels) <= room * 0.92:
        ax.set_xticks(range(len(levels)), levels)
        return
    wrapped = [wrap_label(lv, room * 0.92) for lv in levels]
    if not any("…" in w and "…" not in lv for w, lv in zip(wrapped, levels, strict=True)):
        ax.set_xticks(range(len(levels)), wrapped)
        return
    slanted = [wrap_label(lv, 1.2) for lv in levels]
    if len(set(slanted)) < len(set(levels)):
        slanted = [wrap_label(lv, 1.2, max_lines=3) for lv in levels]
    ax.set_xticks(range(len(levels)), slanted)
    lines = max(lv.count("\n") + 1 for lv in slanted)
    need = 0.12 * lines + 0.03  # inches across the slant: the lines of a label and a gap
    angle = next((a for a in (30, 45, 60) if room * np.sin(np.radians(a)) >= need), 90)
    for label in ax.get_xticklabels():
        label.set(rotation=angle, ha="right", rotation_mode="anchor")


def ordered_levels(levels: list[str], order: list[str] | None = None) -> list[str]:
    """The given order (unknown levels last), else numeric order ('10', '50', '100')."""
    if order:
        unknown = [lv for lv in order if lv not in levels]
        if unknown:
            raise FigureSkipped(f"--order names level(s) {', '.join(unknown)} that the study "
                                f"does not have (levels: {', '.join(levels)})")
        return list(order) + [lv for lv in levels if lv not in order]
    return sorted(levels, key=numeric_key)


def alignment_along(alignment: pd.DataFrame, factor: str, *, order: list[str] | None = None,
                    reference: float | None = None, reference_label: str | None = None,
                    colour_factor: str | None = None, width: float = SINGLE) -> Figure:
    """Alignment of each level of an ordered factor (epochs, checkpoints): the level's
    posterior mean and 94 % HDI joined by a line, the models at each level behind it,
    and an optional horizontal reference line (e.g. a supervised baseline)."""
    models = _models(alignment, factor, colour_factor)
    levels = ordered_levels(list(dict.fromkeys(models[factor])), order)
    level_rows = alignment[(alignment["kind"] == "level")
                           & (alignment["name"].astype(str).str.startswith(f"{factor}="))]
    by_level = {str(r["name"]).split("=", 1)[1]: r for _, r in level_rows.iterrows()}
    colour_levels = level_order_of(models, colour_factor, None) if colour_factor else []
    colours = colour_map(colour_levels)

    with paper_style():
        fig = new_figure(width, 2.4)
        ax = fig.add_subplot()
        for xi, level in enumerate(levels):
            members = models[models[factor] == level]
            if colour_factor:  # models of one colour side by side
                members = members.assign(_c=members[colour_factor].map(colour_levels.index))
                members = members.sort_values(["_c", "name"])
            offsets = (np.linspace(-0.12, 0.12, len(members)) if len(members) > 1
                       else np.zeros(len(members)))
            for off, row in zip(offsets, members.itertuples(index=False), strict=True):
                colour = colours[getattr(row, colour_factor)] if colour_factor else GREY
                ax.errorbar(xi + off, row.alignment_mean,
                            yerr=[[row.alignment_mean - row.alignment_hdi_low],
                                  [row.alignment_hdi_high - row.alignment_mean]],
                            fmt="o", ms=2.2, color=colour, alpha=0.45, elinewidth=0.5,
                            zorder=1, gid=f"model:{row.name}")
        have = [lv for lv in levels if lv in by_level]
        if have:
            mean = np.array([by_level[lv]["alignment_mean"] for lv in have])
            low = np.array([by_level[lv]["alignment_hdi_low"] for lv in have])
            high = np.array([by_level[lv]["alignment_hdi_high"] for lv in have])
            xl = np.array([levels.index(lv) for lv in have])
            ax.fill_between(xl, low, high, color="black", alpha=0.08, lw=0, zorder=2)
            ax.errorbar(xl, mean, yerr=[mean - low, high - mean], fmt="-o", color="black",
                        ms=4, lw=1.2, elinewidth=1.2, zorder=3, gid="levels",
                        label="level mean over models (94 % HDI)")
        extra = []
        if reference is not None:
            ax.axhline(reference, color=OKABE_ITO["vermillion"], ls="--", lw=1.0, zorder=2,
                       gid="reference", label=reference_label or f"reference ({reference:g})")
            extra.append(reference)
        ax.set_xlim(-0.4, len(levels) - 0.6)
        _tick_labels(ax, levels, (fig.get_figwidth() - 0.7) / len(levels))
        ax.set_xlabel(factor.replace("_", " ").capitalize())
        ax.set_ylabel(Y_LABEL)
        _y_limits(ax, models["alignment_hdi_low"], models["alignment_hdi_high"], extra)
        handles, labels = ax.get_legend_handles_labels()
        if colour_factor:
            handles += [Line2D([], [], color=colours[c], marker="o", ls="", ms=3, alpha=0.6)
                        for c in colour_levels]
            labels += [f"{colour_factor.replace('_', ' ')}: {c}" for c in colour_levels]
        fit_legend(fig, handles, labels, [2, 1] if len(labels) > 2 else [1],
                   loc="outside upper center")
    return fig
