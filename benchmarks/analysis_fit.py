"""Benchmark: our analysis fit against bambi's default GLMM on a simulated study.

Design (issue 6): 100,000 2AFC responses, 24 models = 4 architectures x 3 training
x 2 augmentation (one model per cell), 300 participants, 1,000 target images.

  ours:  analysis.model (chance floor + lapse, zero-sum factor effects, centred or
         non-centred participant/image effects chosen by trials per level, model
         effect in the interaction subspace), nutpie
  bambi: correct ~ architecture + training + augmentation + (1|participant)
         + (1|image) + (1|model), Bernoulli, its default sampler

Reported side by side: wall time (compilation included), minimum bulk ESS over the
factor effects and the group SDs, ESS/s, and for ours the convergence gate.
Goal: ours >= 5x bambi's ESS/s with the gate passing. Ours is run twice: the default
model (global lapse; its lapse rate and intercept are the slowest directions, hence
more draws) and the same model without lapse, which has bambi's likelihood.

bambi is a benchmark-only dependency; without it the bambi row is skipped with
the command that installs it. Usage:

    python benchmarks/analysis_fit.py                     # full size (several minutes)
    python benchmarks/analysis_fit.py --participants 60 --draws 300 --plain-draws 300 \
        --bambi-draws 300 --tune 300                      # quick
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import arviz as az  # noqa: E402
import numpy as np  # noqa: E402

from analysis.data import prepare  # noqa: E402
from analysis.fit import SampleSettings, check_gate, sample  # noqa: E402
from analysis.model import build_model  # noqa: E402
from analysis.synthetic import Design, Truth, simulate  # noqa: E402
from hitkit.study.config import AnalysisSection  # noqa: E402

FACTORS = {
    "architecture": ["resnet", "vgg", "vit", "convnext"],
    "training": ["standard", "adversarial", "contrastive"],
    "augmentation": ["none", "crop-flip"],
}
TRUTH = Truth(
    intercept=0.4,
    effects={"architecture": {"resnet": 0.4, "vgg": -0.2, "vit": 0.1, "convnext": -0.3},
             "training": {"standard": -0.5, "adversarial": 0.6, "contrastive": -0.1},
             "augmentation": {"none": -0.15, "crop-flip": 0.15}},
    sd_participant=0.6,
    sd_image=0.8,
    sd_model=0.3,
    lapse=0.03,
)


def min_ess(dt, names: list[str]) -> tuple[float, str]:
    ess = az.ess(dt, var_names=names, method="bulk")
    worst, where = math.inf, ""
    for name in names:
        value = float(np.min(ess[name].values))
        if value < worst:
            worst, where = value, name
    return worst, where


def run_ours(data, args, lapse: str, draws: int) -> dict:
    analysis = AnalysisSection(factors=list(FACTORS), lapse=lapse)
    model, choices = build_model(data, analysis)
    settings = SampleSettings(draws=draws, tune=args.tune, chains=args.chains, seed=1,
                              progress=not args.quiet)
    start = time.perf_counter()
    dt = sample(model, settings)
    wall = time.perf_counter() - start
    names = [f"b_{f}" for f in FACTORS] + choices.sd_names
    ess, where = min_ess(dt, names)
    gate = check_gate(dt, choices, data.factors, settings)
    print(gate.report(), flush=True)
    return {"fit": f"ours, lapse {lapse} (nutpie, {args.chains} x {draws} draws)", "wall_s": wall, "min_bulk_ess": ess, "worst": where,
            "ess_per_s": ess / wall, "gate": "passed" if gate.passed else "FAILED",
            "parameterisation": choices.parameterisation,
            "effects": {f: dt["posterior"][f"b_{f}"].mean(("chain", "draw")).values.round(3)
                        .tolist() for f in FACTORS}}


def run_bambi(sim, args) -> dict | None:
    if importlib.util.find_spec("bambi") is None:
        print("bambi is not installed (benchmark-only dependency): `pip install bambi` "
              "to add the comparison row", flush=True)
        return None
    import bambi as bmb

    df = sim.table.to_pandas()
    df = df[(df["kind"] == "main") & ~df["excluded"]].copy()
    df = df.rename(columns={"target_id": "image"})
    df["correct"] = df["correct"].astype(int)
    formula = ("correct ~ architecture + training + augmentation + (1|participant) "
               "+ (1|image) + (1|model)")
    start = time.perf_counter()
    model = bmb.Model(formula, df[["correct", *FACTORS, "participant", "image", "model"]],
                      family="bernoulli")
    dt = model.fit(draws=args.bambi_draws, tune=args.tune, chains=args.chains, random_seed=1,
                   progressbar=not args.quiet)
    wall = time.perf_counter() - start
    names = [*FACTORS, "1|participant_sigma", "1|image_sigma", "1|model_sigma"]
    names = [n for n in names if n in dt["posterior"].data_vars]
    ess, where = min_ess(dt, names)
    return {"fit": f"bambi default ({args.chains} x {args.bambi_draws} draws)", "wall_s": wall, "min_bulk_ess": ess, "worst": where,
            "ess_per_s": ess / wall, "gate": "-"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, default=300)
    parser.add_argument("--trials", type=int, default=334, help="trials per participant")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=2500,
                        help="draws per chain for our default model (global lapse)")
    parser.add_argument("--plain-draws", type=int, default=1000,
                        help="draws per chain for our model without lapse (bambi's likelihood)")
    parser.add_argument("--bambi-draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--skip-bambi", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    design = Design(factors=FACTORS, models_per_cell=1, participants=args.participants,
                    trials_per_participant=args.trials, images=args.images,
                    catch_per_participant=0)
    sim = simulate(design, TRUTH, seed=0)
    data = prepare(sim.table, list(FACTORS))
    print(f"simulated {data.n:,} responses, {len(data.models)} models, "
          f"{len(data.participants)} participants, {len(data.images)} images; "
          f"{os.cpu_count()} CPU cores; {args.chains} chains x {args.draws} draws "
          f"({args.tune} tune)", flush=True)
    def done(row: dict) -> dict:  # each row as soon as it is measured
        print(f"{row['fit']}: {row['wall_s']:.0f} s, min bulk ESS {row['min_bulk_ess']:.0f} "
              f"({row['worst']}), {row['ess_per_s']:.2f} ESS/s, gate {row['gate']}", flush=True)
        return row

    rows = [done(run_ours(data, args, "global", args.draws))]
    if args.plain_draws:
        rows.append(done(run_ours(data, args, "none", args.plain_draws)))
    if not args.skip_bambi:
        bambi_row = run_bambi(sim, args)
        if bambi_row:
            rows.append(done(bambi_row))
    print("\n| fit | wall s | min bulk ESS over factor effects and SDs (worst) | ESS/s | gate |")
    print("|---|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['fit']} | {r['wall_s']:.0f} | {r['min_bulk_ess']:.0f} ({r['worst']}) | "
              f"{r['ess_per_s']:.2f} | {r['gate']} |")
    bambi = [r for r in rows if r["fit"].startswith("bambi")]
    for r in rows:
        if bambi and r is not bambi[0]:
            print(f"\n{r['fit']} / bambi ESS/s: {r['ess_per_s'] / bambi[0]['ess_per_s']:.1f}x "
                  "(goal >= 5x)")
    print(f"true effects: {json.dumps(TRUTH.effects)}\nours: {json.dumps(rows[0]['effects'])}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
