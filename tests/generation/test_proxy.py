"""The machine 2AFC proxy: alignment share, target-cluster bootstrap, paper direction."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from generation.proxy import bootstrap_interval, factor_means, paper_direction, proxy_alignment


def manifest(rows: list[tuple[str, str, str, float, float]]) -> pa.Table:
    return pa.table({
        "model": [r[0] for r in rows], "loss": ["reg_free"] * len(rows),
        "target_id": [r[2] for r in rows], "dist_target": [r[3] for r in rows],
        "dist_seed": [r[4] for r in rows], "distance_metric": ["ssim"] * len(rows),
        "rep_error": [0.01] * len(rows), "training": [r[1] for r in rows],
    })


def test_alignment_share_interval_and_direction():
    rows = []
    for t in range(10):
        rows.append(("std", "standard", f"t{t}", 0.9, 0.2))  # closer to the seed
        rows.append(("adv", "adversarial", f"t{t}", 0.3 if t < 7 else 0.9, 0.5))
    result = proxy_alignment(manifest(rows), ["training"], resamples=500, seed=1)
    by_model = {r.model: r for r in result}
    assert by_model["std"].alignment == 0.0 and by_model["std"].ci_high == 0.0
    adv = by_model["adv"]
    assert adv.alignment == pytest.approx(0.7) and adv.n_targets == 10
    assert 0.3 < adv.ci_low < 0.7 < adv.ci_high <= 1.0
    assert adv.mean_margin == pytest.approx((7 * 0.2 + 3 * -0.4) / 10)
    means = factor_means(result, ["training"])
    assert means == {"training": {"standard": 0.0, "adversarial": pytest.approx(0.7)}}
    assert paper_direction(means).startswith("paper's direction in alignment")
    assert ": yes" in paper_direction(means)


def test_bootstrap_resamples_whole_targets():
    aligned = np.array([1, 1, 1, 1, 0, 0])
    groups = np.array(["a", "a", "a", "a", "b", "b"])  # two targets: shares 1 and 0
    low, high = bootstrap_interval(aligned, groups, 2000, 0.95, np.random.default_rng(0))
    # resampling targets gives only {a,a}=1, {b,b}=0 and {a,b}=4/6
    assert low == 0.0 and high == 1.0
    same = bootstrap_interval(np.ones(5), np.arange(5), 200, 0.9, np.random.default_rng(0))
    assert same == (1.0, 1.0)
