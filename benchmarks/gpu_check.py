"""The real generation path on a GPU, end to end, checked against its targets in one table.

For each case (random weights, penultimate layer; nothing is downloaded) it runs, in
one process on one device:

  reference  the released code's loop shape (fp32, batch 32, `loss.item()` and
             `torch.cuda.empty_cache()` every step, masked best copy), timed;
  hitkit     `generation.loop.invert` with the settings a study resolves to on this
             device (CUDA: bf16 autocast + channels_last + torch.compile, fp32 finish),
             at a large batch, timed after a warm-up that compiles;
  fp32 eager the same inversion without bf16 or compile, for the error ratio.

Columns: image-steps/s of both and the speed-up (targets: >= 10x, >= 50x on CIFAR
ResNet-18), host syncs per step inside the loop (target 0: counted with
torch.cuda.set_sync_debug_mode as the difference between a long and a short run, so
set-up and the final copy to the host cancel out), and the final fp32 error of the
bf16+compile IRIs over the fp32 eager ones (target <= 1.05). One extra row runs a
small batch with the progress bar on, which takes the CUDA-graph ("reduce-overhead")
path and the event-based progress read-out, and counts its syncs too.

    python benchmarks/gpu_check.py          # CUDA: the four cases, < 8 min on one GPU
    python benchmarks/gpu_check.py --cpu    # tiny sizes, no compile: keeps the script alive
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.generation_throughput import reference_loop  # noqa: E402
from generation.archs import create_model  # noqa: E402
from generation.loop import invert, quantize  # noqa: E402
from generation.network import IRINetwork, penultimate_node  # noqa: E402
from generation.settings import LoopSettings, resolve_settings  # noqa: E402
from hitkit.study.generation_config import GenerationSection, RegFreeLoss  # noqa: E402

LOSS = RegFreeLoss(name="reg_free", kind="reg_free")
# H100 figures from ../shared/research/gpu-anchors.md: (reference, quick fast loop) img·steps/s
ANCHORS = {"resnet50@224": (1760, 8100), "cifar_resnet18@32": (5600, 371000),
           "vgg16@224": (1580, 4760), "densenet121@224": (760, 4840)}


@dataclass(frozen=True)
class Case:
    arch: str
    size: int
    batch: int  # hitkit's batch; the reference always runs 32 (its own default)
    target: float  # speed-up the project promises


GPU_CASES = [Case("resnet50", 224, 128, 10), Case("cifar_resnet18", 32, 1024, 50),
             Case("vgg16", 224, 64, 10), Case("densenet121", 224, 128, 10)]
CPU_CASES = [Case("resnet50", 32, 2, 10), Case("cifar_resnet18", 16, 2, 50),
             Case("vgg16", 32, 2, 10), Case("densenet121", 32, 2, 10)]


@dataclass(frozen=True)
class Plan:
    ref_batch: int
    ref_steps: int
    steps: int  # timed hitkit steps (and the error comparison's)
    warmup_steps: int
    sync_steps: tuple[int, int]


GPU_PLAN = Plan(ref_batch=32, ref_steps=20, steps=100, warmup_steps=6, sync_steps=(10, 30))
CPU_PLAN = Plan(ref_batch=2, ref_steps=2, steps=4, warmup_steps=2, sync_steps=(2, 4))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def network(arch: str, device: torch.device) -> IRINetwork:
    torch.manual_seed(0)
    model = create_model(arch, 10 if arch.startswith("cifar_") else 1000)
    return IRINetwork(model, penultimate_node(model), (0.485, 0.456, 0.406),
                      (0.229, 0.224, 0.225)).to(device)


def batch_of(n: int, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    targets = quantize(torch.rand(n, 3, size, size, generator=g))
    seeds = quantize((0.5 + 0.25 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1))
    return targets.to(device), seeds.to(device)


def timed(fn, device: torch.device) -> tuple[float, object]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def syncs_per_step(net, targets, seeds, settings: LoopSettings, steps: tuple[int, int],
                   device: torch.device) -> float | None:
    """Host syncs per loop step: (syncs of a long run - a short run) / extra steps."""
    if device.type != "cuda":
        return None
    counts = []
    for n in steps:
        run = replace(settings, steps=n, finish_steps=min(settings.finish_steps, n // 2))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                invert(net, targets, seeds, LOSS, run)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        counts.append(sum("synchronizing" in str(w.message) for w in caught))
    return (counts[1] - counts[0]) / (steps[1] - steps[0])


def project_settings(device: torch.device, steps: int, cpu: bool) -> LoopSettings:
    """What a study with default [generation] resolves to here (CPU mode: bf16 forced, so the
    mixed-precision path runs; no compile, which would take minutes on a CPU)."""
    gen = GenerationSection(steps=steps, precision="bf16" if cpu else "auto",
                            compile="off" if cpu else "auto", losses=[LOSS])
    return resolve_settings(gen, device)


def run_case(case: Case, plan: Plan, device: torch.device, cpu: bool) -> dict:
    net = network(case.arch, device)
    targets, seeds = batch_of(case.batch, case.size, device)
    ref_targets, ref_seeds = targets[:plan.ref_batch], seeds[:plan.ref_batch]
    settings = project_settings(device, plan.steps, cpu)
    reference_loop(net, ref_targets, ref_seeds, 2, 1.0)  # warm-up: cuDNN autotuning
    ref_s, _ = timed(lambda: reference_loop(net, ref_targets, ref_seeds, plan.ref_steps, 1.0),
                     device)
    warm = replace(settings, steps=plan.warmup_steps,
                   finish_steps=min(settings.finish_steps, plan.warmup_steps // 2))
    compile_s, _ = timed(lambda: invert(net, targets, seeds, LOSS, warm), device)
    ours_s, ours = timed(lambda: invert(net, targets, seeds, LOSS, settings), device)
    eager = LoopSettings(steps=plan.steps, step_size=settings.step_size)
    fp32 = invert(net, targets, seeds, LOSS, eager)
    syncs = syncs_per_step(net, targets, seeds, settings, plan.sync_steps, device)
    ref_rate = plan.ref_batch * plan.ref_steps / ref_s
    our_rate = case.batch * plan.steps / ours_s
    return {"case": f"{case.arch}@{case.size}", "batch": case.batch, "ref": ref_rate,
            "ours": our_rate, "speedup": our_rate / ref_rate, "target": case.target,
            "syncs": syncs, "precision": settings.precision, "compiled": settings.compile,
            "error_ratio": float(ours.rep_error.median() / fp32.rep_error.median()),
            "warmup_s": compile_s}


def progress_row(plan: Plan, device: torch.device, cpu: bool) -> dict:
    """A small batch with the progress bar on: CUDA graphs and the event-based read-out."""
    net = network("cifar_resnet18", device)
    targets, seeds = batch_of(8, 16 if cpu else 32, device)
    settings = replace(project_settings(device, plan.steps, cpu), progress=True,
                       progress_every=2, description="progress check")
    invert(net, targets, seeds, LOSS, replace(settings, steps=plan.warmup_steps,
                                              finish_steps=plan.warmup_steps // 2))
    return {"case": "cifar_resnet18 n=8 +bar", "syncs": syncs_per_step(
        net, targets, seeds, settings, plan.sync_steps, device)}


def fmt_syncs(value: float | None) -> str:
    return "n/a (CPU)" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", action="store_true", help="tiny sizes on the CPU (no GPU needed)")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="skip the remaining cases after this many seconds (default 420)")
    parser.add_argument("--case", action="append", choices=[c.arch for c in GPU_CASES],
                        help="run only these architectures (repeatable)")
    parser.add_argument("--no-progress-row", action="store_true",
                        help="skip the small-batch progress-bar / CUDA-graph row")
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run with --cpu for the tiny CPU mode")
        return 2
    device = torch.device("cpu" if args.cpu else "cuda")
    plan, cases = (CPU_PLAN, CPU_CASES) if args.cpu else (GPU_PLAN, GPU_CASES)
    cases = [c for c in cases if not args.case or c.arch in args.case]
    if not args.cpu:
        torch.backends.cudnn.benchmark = True
    label = "cpu" if args.cpu else torch.cuda.get_device_name(device)
    print(f"gpu_check: torch {torch.__version__}, {label}, reference batch {plan.ref_batch} × "
          f"{plan.ref_steps} steps, hitkit {plan.steps} steps")
    print(f"{'case':<24} {'batch':>5} {'prec':>5} {'comp':>4} {'ref img·st/s':>12} "
          f"{'hitkit':>10} {'speed-up':>8} {'target':>6} {'syncs/step':>10} {'err ratio':>9} "
          f"{'warm-up s':>9}  verdict")
    started, missed, longest = time.perf_counter(), 0, 0.0
    for case in cases:
        elapsed = time.perf_counter() - started
        if elapsed + longest > args.budget_s:  # the next case would likely end past the budget
            print(f"{case.arch}@{case.size:<14} skipped: {elapsed:.0f} s spent, the "
                  f"{args.budget_s:.0f} s budget would be exceeded (run it with --case)")
            missed += 1
            continue
        case_start = time.perf_counter()
        r = run_case(case, plan, device, args.cpu)
        longest = max(longest, time.perf_counter() - case_start)
        ok = (r["speedup"] >= r["target"] and r["error_ratio"] <= 1.05
              and (r["syncs"] is None or r["syncs"] == 0))
        missed += not ok and not args.cpu
        verdict = "n/a (CPU)" if args.cpu else ("ok" if ok else "MISSED")
        print(f"{r['case']:<24} {r['batch']:>5} {r['precision']:>5} {'yes' if r['compiled'] else 'no':>4} "
              f"{r['ref']:>12.1f} {r['ours']:>10.1f} {r['speedup']:>7.1f}x {r['target']:>5.0f}x "
              f"{fmt_syncs(r['syncs']):>10} {r['error_ratio']:>9.3f} {r['warmup_s']:>9.1f}  {verdict}",
              flush=True)
    if not args.no_progress_row and time.perf_counter() - started + 60 <= args.budget_s + 30:
        row = progress_row(plan, device, args.cpu)
        print(f"{row['case']:<24} {'':>5} {'':>5} {'':>4} {'':>12} {'':>10} {'':>8} {'':>6} "
              f"{fmt_syncs(row['syncs']):>10}")
        missed += 0 if args.cpu or row["syncs"] == 0 else 1
    anchors = ", ".join(f"{k} {a / 1000:g}k/{b / 1000:g}k" for k, (a, b) in ANCHORS.items())
    print(f"H100 anchors (reference/quick fast loop img·steps/s): {anchors}")
    print(f"total {time.perf_counter() - started:.0f} s; median of one timed run per case"
          + ("" if args.cpu else f"; {missed} target(s) missed"))
    return 1 if missed and not args.cpu else 0


if __name__ == "__main__":
    sys.exit(main())
