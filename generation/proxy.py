"""The machine 2AFC proxy (Nanda et al.'s LPIPS stand-in for the survey).

An IRI counts as aligned when it is perceptually at least as close to its target
as to its seed: dist_target <= dist_seed (the manifest's columns, measured with
[generation].distance_metric). Alignment per model and loss is the share of
aligned IRIs, with a percentile bootstrap interval that resamples targets (all
IRIs of a target move together, since they share its content).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from hitkit.study.files import atomic_write
from hitkit.study.proxy import COLUMNS


@dataclass(frozen=True)
class ProxyRow:
    model: str
    loss: str
    metric: str
    n_iris: int
    n_targets: int
    alignment: float
    ci_low: float
    ci_high: float
    # mean of dist_seed - dist_target: > 0 leans to the target; graded where `alignment` is 0 or 1
    mean_margin: float
    median_rep_error: float
    factors: dict[str, str]


def bootstrap_interval(aligned: np.ndarray, groups: np.ndarray, resamples: int, level: float,
                       rng: np.random.Generator) -> tuple[float, float]:
    """Percentile interval of the aligned share, resampling whole groups (targets)."""
    labels, inverse = np.unique(groups, return_inverse=True)
    sums = np.bincount(inverse, weights=aligned.astype(float), minlength=len(labels))
    counts = np.bincount(inverse, minlength=len(labels)).astype(float)
    picks = rng.integers(0, len(labels), size=(resamples, len(labels)))
    shares = sums[picks].sum(1) / counts[picks].sum(1)
    tail = (1 - level) / 2
    low, high = np.quantile(shares, [tail, 1 - tail])
    return float(low), float(high)


def proxy_alignment(manifest: pa.Table, factors: list[str], resamples: int = 2000,
                    level: float = 0.95, seed: int = 0) -> list[ProxyRow]:
    frame = manifest.to_pandas()
    rng = np.random.default_rng(seed)
    rows = []
    for (model, loss), group in frame.groupby(["model", "loss"], sort=False):
        aligned = (group["dist_target"] <= group["dist_seed"]).to_numpy()
        low, high = bootstrap_interval(aligned, group["target_id"].to_numpy(), resamples, level,
                                       rng)
        rows.append(ProxyRow(
            model=str(model), loss=str(loss),
            metric=",".join(sorted(set(group["distance_metric"]))),
            n_iris=len(group), n_targets=int(group["target_id"].nunique()),
            alignment=float(aligned.mean()), ci_low=low, ci_high=high,
            mean_margin=float((group["dist_seed"] - group["dist_target"]).mean()),
            median_rep_error=float(group["rep_error"].median()),
            factors={f: str(group[f].iloc[0]) for f in factors},
        ))
    return rows


def write_proxy(rows: list[ProxyRow], path: Path, factors: list[str]) -> Path:
    """One CSV row per model and loss, written atomically."""

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([*COLUMNS, *factors])
            for r in rows:
                writer.writerow([r.model, r.loss, r.metric, r.n_iris, r.n_targets,
                                 f"{r.alignment:.6f}", f"{r.ci_low:.6f}", f"{r.ci_high:.6f}",
                                 f"{r.mean_margin:.6f}",
                                 f"{r.median_rep_error:.6g}", *(r.factors[f] for f in factors)])

    return atomic_write(path, write)


def factor_means(rows: list[ProxyRow], factors: list[str],
                 value: str = "alignment") -> dict[str, dict[str, float]]:
    """Mean alignment (or another ProxyRow field) per level of each factor."""
    out: dict[str, dict[str, float]] = {}
    for f in factors:
        levels: dict[str, list[float]] = {}
        for r in rows:
            levels.setdefault(r.factors[f], []).append(getattr(r, value))
        out[f] = {level: float(np.mean(v)) for level, v in levels.items()}
    return out


def paper_direction(means: dict[str, dict[str, float]], what: str = "alignment") -> str | None:
    """Do adversarially trained models align more than standard ones (the paper's finding)?"""
    for factor, levels in means.items():
        adv = [v for k, v in levels.items() if k.lower().startswith(("adv", "robust", "at"))]
        std = [v for k, v in levels.items() if k.lower().startswith(("standard", "std", "nonrob"))]
        if adv and std:
            a, s = float(np.mean(adv)), float(np.mean(std))
            verdict = "yes" if a > s else "no"
            return (f"paper's direction in {what} (adversarial above standard, factor "
                    f"{factor!r}): {verdict} — adversarial {a:.3f} vs standard {s:.3f}")
    return None
