"""Load responses.parquet for the model: checked, filtered, turned into index arrays.

Only main and repeat rows of IRIs enter the model (catch trials have no model), and
only those of one IRI loss (the `loss` column): losses are analysed one at a time,
never pooled. Rows excluded by a pre-registered [quality] rule are dropped unless
the caller asks for a sensitivity run. Every problem is an AnalysisDataError naming
the file, the column and the offending values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from hitkit.study.config import Study
from hitkit.study.responses import RESPONSES, RESPONSES_FILE
from hitkit.study.tables import TableError, read_table

MODEL_KINDS = ("main", "repeat")


class AnalysisDataError(ValueError):
    """Responses that cannot be analysed as they are; the message says why and where."""


LOSS_DIR_PREFIX = "loss-"


def resolve_iri_loss(study: Study, iri_loss: str | None = None) -> str:
    """The IRI loss to analyse: `iri_loss` (checked against [[generation.losses]]) or the
    study's default ([analysis].iri_loss, else the first reg_free loss, else the first)."""
    if iri_loss is None:
        return study.config.default_iri_loss
    names = [loss.name for loss in study.config.generation.losses]
    if iri_loss not in names:
        raise AnalysisDataError(f"--iri-loss {iri_loss!r} is not the name of a "
                                f"[[generation.losses]] entry in {study.path} "
                                f"(allowed: {', '.join(names)})")
    return iri_loss


def loss_folder(folder: Path, study: Study, iri_loss: str | None) -> Path:
    """`folder` for the default IRI loss, folder/loss-<name> for another one (analysis/,
    figures/): the default loss's results keep their place, another loss never
    overwrites them."""
    if iri_loss is None or iri_loss == study.config.default_iri_loss:
        return folder
    return folder / f"{LOSS_DIR_PREFIX}{iri_loss}"


@dataclass
class AnalysisData:
    """The rows the model sees, as integer codes and per-row chance."""

    source: str
    y: np.ndarray  # 0/1 per row
    chance: np.ndarray  # per-row guessing rate (1/2 for 2AFC, 1/k for matching)
    participant: np.ndarray  # row -> participant index
    image: np.ndarray  # row -> target-image index
    model: np.ndarray  # row -> model index
    participants: list[str]
    images: list[str]
    models: list[str]
    factor_levels: dict[str, list[str]]
    model_levels: dict[str, np.ndarray]  # factor -> level index of each model
    task: np.ndarray  # "2afc" / "matching" per row
    excluded_rows: int  # rows dropped as excluded
    included_excluded: bool
    loss: str | None = None  # the IRI loss analysed (None: every loss pooled)
    other_loss_rows: dict[str, int] = field(default_factory=dict)  # loss -> rows left out

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def factors(self) -> list[str]:
        return list(self.factor_levels)

    def trials_per(self, group: str) -> np.ndarray:
        codes = {"participant": self.participant, "image": self.image, "model": self.model}[group]
        size = {"participant": len(self.participants), "image": len(self.images),
                "model": len(self.models)}[group]
        return np.bincount(codes, minlength=size)

    @property
    def main_chance(self) -> float:
        """The most common chance rate: the scale alignment is reported on."""
        values, counts = np.unique(self.chance, return_counts=True)
        return float(values[np.argmax(counts)])

    def model_cells(self) -> np.ndarray:
        """Cell index (combination of factor levels) of each model."""
        keys = [tuple(int(self.model_levels[f][m]) for f in self.factors)
                for m in range(len(self.models))]
        uniq = sorted(set(keys))
        return np.array([uniq.index(k) for k in keys], dtype=np.int64)


def load_responses(study: Study, include_excluded: bool = False,
                   path: Path | None = None, loss: str | None = None) -> AnalysisData:
    """The study's responses.parquet, checked against the schema and the study's factors;
    the rows of IRI loss `loss` (default: the study's default_iri_loss)."""
    path = path or study.root / RESPONSES_FILE
    factors = study.config.analysis.factors
    try:
        table = read_table(path, RESPONSES, factors)
    except TableError as exc:
        raise AnalysisDataError(f"{exc} (factor columns come from [analysis].factors)") from None
    return prepare(table, factors, include_excluded=include_excluded, source=str(path),
                   level_order=study.config.factor_levels,
                   loss=loss or study.config.default_iri_loss)


def prepare(table: pa.Table | pd.DataFrame, factors: Sequence[str], *,
            include_excluded: bool = False, source: str = RESPONSES_FILE,
            level_order: dict[str, list[str]] | None = None,
            loss: str | None = None) -> AnalysisData:
    """Check a responses table and build the model's arrays (of IRI loss `loss` only,
    when given; None pools every loss)."""
    if isinstance(table, pa.Table):
        try:
            table = RESPONSES.check(table, factors, where=source)
        except TableError as exc:
            raise AnalysisDataError(str(exc)) from None
        df = table.to_pandas()
    else:
        missing = [c for c in RESPONSES.names + list(factors) if c not in table.columns]
        if missing:
            raise AnalysisDataError(f"{source}: missing column(s) {', '.join(missing)}")
        df = table
    rows = df[df["kind"].isin(MODEL_KINDS) & (df["model"] != "")]
    if rows.empty:
        raise AnalysisDataError(
            f"{source}: no main or repeat responses to IRIs (kind 'main'/'repeat' with a model); "
            f"{len(df)} row(s) in the file"
        )
    other_loss_rows: dict[str, int] = {}
    if loss is not None:
        counts = rows["loss"].value_counts()
        if loss not in counts.index:
            present = ", ".join(f"{name!r} ({n:,} rows)" for name, n in counts.items())
            raise AnalysisDataError(
                f"{source}: column 'loss' has no main/repeat responses to IRIs of loss {loss!r} "
                f"(losses present: {present}); choose one with --iri-loss or [analysis].iri_loss"
            )
        other_loss_rows = {str(name): int(n) for name, n in counts.items() if name != loss}
        rows = rows[rows["loss"] == loss]
    excluded = rows["excluded"].astype(bool)
    n_excluded = int(excluded.sum())
    if not include_excluded:
        rows = rows[~excluded]
        if rows.empty:
            raise AnalysisDataError(
                f"{source}: all {n_excluded} main/repeat response(s) are excluded by [quality] "
                "rules; there is nothing to analyse (use --include-excluded for a sensitivity run)"
            )
    _check_values(rows, source)

    level_order = level_order or {}
    factor_levels: dict[str, list[str]] = {}
    for f in factors:
        present = set(rows[f])
        order = [lv for lv in level_order.get(f, []) if lv in present]
        order += sorted(present - set(order))
        if "" in present:
            raise AnalysisDataError(f"{source}: column {f!r} is empty in rows with a model")
        if len(order) < 2:
            raise AnalysisDataError(
                f"{source}: factor {f!r} has one level ({order[0]!r}) in the analysed rows; "
                "an effect needs two or more levels (drop it from [analysis].factors)"
            )
        factor_levels[f] = order

    models = sorted(rows["model"].unique())
    per_model = rows.groupby("model")[list(factors)].nunique()
    mixed = per_model[(per_model > 1).any(axis=1)]
    if len(mixed):
        name = mixed.index[0]
        bad = [f for f in factors if mixed.loc[name, f] > 1]
        raise AnalysisDataError(
            f"{source}: model {name!r} has more than one level of {', '.join(bad)}; "
            "a model's factor levels must be fixed"
        )
    first = rows.drop_duplicates("model").set_index("model")
    model_levels = {f: np.array([factor_levels[f].index(first.loc[m, f]) for m in models])
                    for f in factors}
    participants = sorted(rows["participant"].unique())
    images = sorted(rows["target_id"].unique())
    code = lambda col, values: pd.Categorical(rows[col], categories=values).codes.astype(np.int64)  # noqa: E731
    return AnalysisData(
        source=source,
        y=rows["correct"].to_numpy(dtype=np.int8),
        chance=rows["chance"].to_numpy(dtype=float),
        participant=code("participant", participants),
        image=code("target_id", images),
        model=code("model", models),
        participants=participants,
        images=images,
        models=models,
        factor_levels=factor_levels,
        model_levels=model_levels,
        task=rows["task"].to_numpy(dtype=str),
        excluded_rows=n_excluded,
        included_excluded=include_excluded,
        loss=loss,
        other_loss_rows=other_loss_rows,
    )


def _check_values(rows: pd.DataFrame, source: str) -> None:
    # an unknown RT (null: an MTurk archive without rt_<trial> columns) is allowed, since the
    # model does not use RTs; an infinite or negative one is a broken file
    rt = rows["rt_ms"].to_numpy(dtype=float)
    bad_rt = np.isinf(rt) | (rt < 0)
    if bad_rt.any():
        ids = rows.loc[bad_rt, "response_id"].head(3).tolist()
        raise AnalysisDataError(
            f"{source}: column 'rt_ms' has {int(bad_rt.sum())} infinite or negative "
            f"value(s), e.g. response_id {', '.join(ids)}; re-export the responses "
            "(`hitkit export`) or drop those rows"
        )
    chance = rows["chance"].to_numpy(dtype=float)
    bad = ~np.isfinite(chance) | (chance <= 0) | (chance >= 1)
    if bad.any():
        raise AnalysisDataError(
            f"{source}: column 'chance' must be in (0, 1) (1/2 for 2afc, 1/k for matching); "
            f"got {sorted(set(chance[bad].tolist()))[:3]}"
        )
    two = (rows["task"] == "2afc").to_numpy()
    if two.any() and not np.allclose(chance[two], 0.5):
        raise AnalysisDataError(f"{source}: 2afc rows must have chance 0.5")
    unknown = sorted(set(rows["task"]) - {"2afc", "matching"})
    if unknown:
        raise AnalysisDataError(
            f"{source}: column 'task' has unknown value(s) {unknown} (allowed: 2afc, matching)"
        )
