"""Participant quality from responses.parquet: catch accuracy, reaction times, side bias.

The numbers are recomputed per participant from the response rows (catch rows for
catch accuracy, every row for reaction times, 2AFC rows for side bias); exclusion
is the `excluded` flag `hitkit review` set by the pre-registered [quality] rules, and
the rules that excluded are the codes of `exclusion_rules` (hitkit.study.exclusions).
A responses.parquet exported before that column existed reads with it empty: its
excluded participants are counted under "rule not recorded", not guessed from the
`exclusion_reason` text.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from analysis.figures.style import DOUBLE, OKABE_ITO, new_figure, paper_style
from hitkit.study import exclusions
from hitkit.study.config import QualitySection

INCLUDED, EXCLUDED = OKABE_ITO["blue"], OKABE_ITO["vermillion"]

NOT_RECORDED = "rule not recorded"  # excluded in an export without exclusion_rules
UNSTATED = "unstated rule"  # excluded, yet no code recorded


def rule_codes(cells) -> list[str] | None:
    """The codes in a participant's `exclusion_rules` cells, each once, in order; None
    when no cell recorded any (an older export: null, or no such column)."""
    codes: list[str] | None = None
    for cell in cells:
        if cell is None or (isinstance(cell, float) and np.isnan(cell)):
            continue
        codes = codes if codes is not None else []
        codes += [str(code) for code in cell if str(code) not in codes]
    return codes


def _side_bias(choices: pd.Series) -> float:
    if choices.empty:
        return float("nan")
    return float(choices.value_counts(normalize=True).max())


def participant_summary(responses: pd.DataFrame) -> pd.DataFrame:
    """One row per participant: trials, catch trials and accuracy, median RT, side bias
    (2AFC: the larger share of the two sides), excluded, and the codes of the rules that
    excluded (`exclusion_rules`; None when the export did not record them)."""
    rows = []
    for participant, part in responses.groupby("participant", sort=True):
        catch = part[part["kind"] == "catch"]
        twoafc = part[part["task"] == "2afc"]
        cells = part["exclusion_rules"] if "exclusion_rules" in part else ()
        reasons = part["exclusion_reason"].dropna()
        reasons = reasons[reasons.astype(str).str.len() > 0]
        reason = str(reasons.iloc[0]) if len(reasons) else ""
        rows.append({
            "participant": participant,
            "responses": len(part),
            "catch_trials": len(catch),
            "catch_accuracy": float(catch["correct"].mean()) if len(catch) else float("nan"),
            "median_rt_ms": float(part["rt_ms"].median()),
            "side_bias": _side_bias(twoafc["choice"]),
            "excluded": bool(part["excluded"].any()),
            "exclusion_reason": reason,
            "exclusion_rules": rule_codes(cells),
        })
    return pd.DataFrame(rows)


def exclusions_by_rule(summary: pd.DataFrame) -> dict[str, int]:
    """rule label -> participants it excluded (a participant can fail several rules)."""
    counts: dict[str, int] = {}
    for codes, excluded in zip(summary["exclusion_rules"], summary["excluded"], strict=True):
        if not isinstance(codes, list):
            labels = [NOT_RECORDED] if excluded else []
        else:
            labels = [exclusions.label(code) for code in codes] or (
                [UNSTATED] if excluded else [])
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
    return counts


def _stacked_hist(ax, values: pd.Series, excluded: pd.Series, bins: np.ndarray, gid: str):
    data = [values[~excluded].dropna().to_numpy(), values[excluded].dropna().to_numpy()]
    ax.hist(data, bins=bins, stacked=True, color=[INCLUDED, EXCLUDED], edgecolor="white",
            linewidth=0.4, gid=gid)


CATCH_PAD = 0.06  # catch-accuracy axis: 0 to 1 and this much either side
MAX_DISCRETE = 12  # at most this many distinct catch accuracies: one bar per value


def _catch_bars(ax, accuracy: pd.Series, excluded: pd.Series) -> None:
    """Catch accuracy per participant, included and excluded stacked: one narrow bar per
    observed value when there are few (2 catch trials per HIT give only 0, 0.5 and 1),
    else a histogram of 20 bins from 0 to 1."""
    known = accuracy.notna()
    values = accuracy[known].astype(float).round(6)
    excluded = excluded[known].astype(bool)
    distinct = np.unique(values)
    if len(distinct) > MAX_DISCRETE:
        _stacked_hist(ax, values, excluded, np.linspace(0.0, 1.0, 21), "catch")
        return
    gaps = np.diff(distinct)
    width = min(0.08, 0.6 * float(gaps.min())) if len(gaps) else 0.08
    kept = values[~excluded].value_counts().reindex(distinct, fill_value=0).to_numpy()
    dropped = values[excluded].value_counts().reindex(distinct, fill_value=0).to_numpy()
    ax.bar(distinct, kept, width=width, color=INCLUDED, edgecolor="white", linewidth=0.4,
           gid="catch")
    ax.bar(distinct, dropped, width=width, bottom=kept, color=EXCLUDED, edgecolor="white",
           linewidth=0.4, gid="catch")


def participant_quality(responses: pd.DataFrame, quality: QualitySection | None = None
                        ) -> Figure:
    """Three panels: catch accuracy per participant, reaction time per response (log scale)
    and side bias per participant, included and excluded participants stacked, with the
    [quality] thresholds as dashed lines."""
    rules = quality or QualitySection()
    summary = participant_summary(responses)
    excluded_p = summary.set_index("participant")["excluded"]
    row_excluded = responses["participant"].map(excluded_p).fillna(False).astype(bool)
    with paper_style():
        fig = new_figure(DOUBLE, 2.2)
        axes = fig.subplots(1, 3)
        ax = axes[0]
        accuracy = summary["catch_accuracy"]
        if accuracy.notna().any():
            _catch_bars(ax, accuracy, summary["excluded"])
        else:
            ax.text(0.5, 0.5, "no catch trials", ha="center", va="center", transform=ax.transAxes)
        ax.axvline(rules.min_catch_accuracy, color="black", ls="--", lw=0.8, gid="threshold")
        ax.set_xlim(-CATCH_PAD, 1 + CATCH_PAD)
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0], ["0", "0.25", "0.5", "0.75", "1"])
        ax.set_xlabel("Catch-trial accuracy")
        ax.set_ylabel("Participants")
        ax.set_title(f"Catch accuracy (exclude below {rules.min_catch_accuracy:g})")

        ax = axes[1]
        rt = responses["rt_ms"].astype(float)
        positive = rt[rt > 0]
        if len(positive):
            lo = max(positive.min(), 50.0)
            hi = max(positive.quantile(0.999), lo * 2)
            edges = np.geomspace(lo, hi, 36)
            clipped = rt.clip(lower=lo, upper=hi)
            _stacked_hist(ax, clipped, row_excluded, edges, "rt")
            ax.set_xscale("log")
            ax.set_xlim(min(lo, rules.fast_rt_ms) / 1.15, hi * 1.15)
            ticks = [t for t in (100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000)
                     if min(lo, rules.fast_rt_ms) / 1.15 <= t <= hi * 1.15]
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.axvline(rules.fast_rt_ms, color="black", ls="--", lw=0.8, gid="threshold")
        ax.set_xlabel("Reaction time (ms, log scale)")
        ax.set_ylabel("Responses")
        ax.set_title(f"Reaction times (fast: under {rules.fast_rt_ms:g} ms)")

        ax = axes[2]
        bias = summary["side_bias"]
        if bias.notna().any():
            _stacked_hist(ax, bias, summary["excluded"], np.linspace(0.5, 1.0, 11), "side")
        else:
            ax.text(0.5, 0.5, "no 2AFC trials", ha="center", va="center", transform=ax.transAxes)
        ax.axvline(rules.max_side_bias, color="black", ls="--", lw=0.8, gid="threshold")
        ax.set_xlim(0.48, 1.02)
        ax.set_xlabel("Share of the preferred side")
        ax.set_ylabel("Participants")
        ax.set_title(f"Side bias (exclude above {rules.max_side_bias:g})")

        n, n_ex = len(summary), int(summary["excluded"].sum())
        handles = [Patch(color=INCLUDED, label=f"included ({n - n_ex} participants)"),
                   Patch(color=EXCLUDED, label=f"excluded ({n_ex})"),
                   Line2D([], [], color="black", ls="--", lw=0.8,
                          label="pre-registered threshold")]
        fig.legend(handles=handles, loc="outside upper center", ncols=3)
    return fig
