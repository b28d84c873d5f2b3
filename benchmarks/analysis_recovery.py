"""Parameter recovery over many simulated studies, and simulation-based calibration.

Recovery: draw R studies from analysis.synthetic at a fixed truth, fit each with the
analysis model, and record for every factor contrast (level vs mean of levels) whether
the realised truth of the simulated models lies in the 50 / 89 / 94 % HDIs, whether the
sign is right, and the bias of the SD estimates. Coverage near the nominal rates says
the intervals are honest.

SBC (Talts et al.): draw parameters from the prior, simulate responses from them, fit,
and compute the rank of each true parameter among the posterior draws; ranks must be
uniform. Uses simuk (arviz-devs) when installed; otherwise the same procedure is run
here directly (prior draw with pm.sample_prior_predictive, refit with pm.set_data).

    python benchmarks/analysis_recovery.py                          # 20 recoveries, 40 SBC fits
    python benchmarks/analysis_recovery.py --replicates 5 --sbc 10  # quick look
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import arviz as az  # noqa: E402
import numpy as np  # noqa: E402
import pymc as pm  # noqa: E402

from analysis.data import prepare  # noqa: E402
from analysis.fit import SampleSettings, check_gate, sample  # noqa: E402
from analysis.model import build_model  # noqa: E402
from analysis.planning import Contrast, contrast_width  # noqa: E402
from analysis.synthetic import Design, Truth, draw_responses, simulate  # noqa: E402
from hitkit.study.config import AnalysisSection  # noqa: E402

FACTORS = {"architecture": ["cnn", "vit", "mlp"], "training": ["standard", "adversarial"]}
TRUTH = Truth(
    intercept=0.5,
    effects={"architecture": {"cnn": 0.3, "vit": 0.1, "mlp": -0.4},
             "training": {"standard": -0.4, "adversarial": 0.4}},
    sd_participant=0.5, sd_image=0.7, sd_model=0.2, lapse=0.03,
)
PROBS = (0.5, 0.89, 0.94)


def design(participants: int) -> Design:
    return Design(factors=FACTORS, models_per_cell=2, participants=participants,
                  trials_per_participant=120, images=60, careless_share=0.05,
                  matching_share=0.2)


def recovery(replicates: int, participants: int, settings: SampleSettings) -> dict:
    hits = {p: 0 for p in PROBS}
    signs = total = gate_passes = 0
    sd_err = {"s_participant": [], "s_image": []}
    widths_mcmc, widths_screen = [], []
    contrast = Contrast("training", "adversarial", "standard")
    start = time.perf_counter()
    for r in range(replicates):
        sim = simulate(design(participants), TRUTH, seed=1000 + r)
        data = prepare(sim.table, list(FACTORS))
        model, choices = build_model(data, AnalysisSection(factors=list(FACTORS)))
        dt = sample(model, settings)
        gate_passes += check_gate(dt, choices, data.factors, settings).passed
        post = dt["posterior"]
        for f, levels in data.factor_levels.items():
            draws = post[f"b_{f}"].stack(s=("chain", "draw")).transpose(f, "s").values
            for i, level in enumerate(levels):
                true = sim.realised_effects[f][level]
                for p in PROBS:
                    low, high = np.asarray(az.hdi(draws[i], prob=p))
                    hits[p] += low <= true <= high
                signs += np.sign(draws[i].mean()) == np.sign(true)
                total += 1
        # the planning screen's width for the same simulated study, against the fit's HDI
        t = post["b_training"].sel(training="adversarial") - post["b_training"].sel(
            training="standard")
        low, high = np.asarray(az.hdi(t.values.ravel(), prob=0.94))
        widths_mcmc.append(float(high - low))
        same = draw_responses(sim.design, TRUTH, np.random.default_rng(1000 + r))
        widths_screen.append(contrast_width(same, sim.design, TRUTH, contrast, "these-models"))
        sd_err["s_participant"].append(float(post["s_participant"].mean()) - TRUTH.sd_participant)
        sd_err["s_image"].append(float(post["s_image"].mean()) - TRUTH.sd_image)
        print(f"  recovery {r + 1}/{replicates}: {data.n:,} rows, "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    return {
        "replicates": replicates, "contrasts": total,
        "coverage": {f"{int(p * 100)}%": hits[p] / total for p in PROBS},
        "sign_right": signs / total, "gate_passed": gate_passes / replicates,
        "sd_bias": {k: float(np.mean(v)) for k, v in sd_err.items()},
        "training_contrast_width": {"mcmc_hdi_mean": float(np.mean(widths_mcmc)),
                                    "planning_screen_mean": float(np.mean(widths_screen)),
                                    "screen_over_mcmc": float(np.mean(widths_screen)
                                                              / np.mean(widths_mcmc))},
    }


def sbc(simulations: int, participants: int, settings: SampleSettings, thin: int) -> dict:
    """Prior SBC; ranks of b0, every factor level, s_participant, s_image."""
    sim = simulate(design(participants), TRUTH, seed=7)  # fixes the design's index structure
    data = prepare(sim.table, list(FACTORS))
    model, _ = build_model(data, AnalysisSection(factors=list(FACTORS)))
    names = ["b0", *(f"b_{f}" for f in FACTORS), "s_participant", "s_image"]
    if importlib.util.find_spec("simuk") is not None:
        import simuk

        runner = simuk.SBC(model, num_simulations=simulations,
                           sample_kwargs={"draws": settings.draws, "tune": settings.tune,
                                          "chains": settings.chains, "progressbar": False})
        runner.run_simulations()
        # simuk keeps, per parameter, the fraction of posterior draws below the truth
        tree = runner.simulations
        group = tree["prior_sbc"] if "prior_sbc" in getattr(tree, "children", {}) else tree
        result = {}
        for name in names:
            values = np.asarray(group[name].values).reshape(simulations, -1)
            for j in range(values.shape[1]):
                counts = np.histogram(values[:, j], bins=5, range=(0, 1))[0]
                expected = simulations / 5
                result[f"{name}[{j}]"] = {
                    "counts": counts.tolist(),
                    "chi2": round(float(((counts - expected) ** 2 / expected).sum()), 2)}
        return {"tool": "simuk", "simulations": simulations, "chi2_df": 4, "chi2_95": 9.49,
                "ranks": result}
    prior = pm.sample_prior_predictive(draws=simulations, model=model, random_seed=3)
    ranks: dict[str, list[int]] = {}
    n_post = settings.draws * settings.chains // thin
    for s in range(simulations):
        y = prior["prior_predictive"]["y"].isel(chain=0, draw=s).values
        with model:
            pm.set_data({"y_obs": y.astype(np.int64)})
        dt = sample(model, SampleSettings(**{**settings.__dict__, "seed": s}))
        post = dt["posterior"]
        for name in names:
            true = prior["prior"][name].isel(chain=0, draw=s).values.ravel()
            draws = post[name].values.reshape(settings.chains * settings.draws, -1)[::thin]
            for j, t in enumerate(true):
                ranks.setdefault(f"{name}[{j}]" if true.size > 1 else name, []).append(
                    int((draws[:, j] < t).sum()))
        print(f"  SBC {s + 1}/{simulations}", flush=True)
    # uniformity: chi-square over 5 bins per parameter (expected simulations / 5 each)
    bins = 5
    result = {}
    for key, values in ranks.items():
        counts = np.histogram(values, bins=bins, range=(0, n_post + 1))[0]
        expected = len(values) / bins
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        result[key] = {"counts": counts.tolist(), "chi2": round(chi2, 2)}
    return {"tool": "built-in (simuk not installed: `pip install simuk`)",
            "simulations": simulations, "posterior_draws_per_rank": n_post,
            "chi2_df": bins - 1, "chi2_95": 9.49, "ranks": result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replicates", type=int, default=20)
    parser.add_argument("--sbc", type=int, default=40, help="SBC simulations (0: skip)")
    parser.add_argument("--participants", type=int, default=60)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    settings = SampleSettings(draws=args.draws, tune=args.tune, chains=args.chains,
                              progress=False)
    out = {}
    if args.replicates:
        out["recovery"] = recovery(args.replicates, args.participants, settings)
        print(json.dumps(out["recovery"], indent=2), flush=True)
    if args.sbc:
        out["sbc"] = sbc(args.sbc, args.participants // 2, settings, thin=10)
        worst = max((v["chi2"] for v in out["sbc"]["ranks"].values()), default=0) \
            if isinstance(out["sbc"]["ranks"], dict) else None
        print(json.dumps(out["sbc"], indent=2), flush=True)
        if worst is not None:
            print(f"largest chi-square {worst:.2f} (df 4; 95 % point 9.49, expect about "
                  f"{0.05 * len(out['sbc']['ranks']):.1f} of {len(out['sbc']['ranks'])} "
                  "parameters above it by chance)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
