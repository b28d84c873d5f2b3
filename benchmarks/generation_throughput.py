"""IRI generation throughput: the original implementation's loop shape vs our engine.

Side by side in one process, with the same model, inputs, steps and device:

  (a) reference: the loop shape of Nanda et al.'s code (robustness-style attacker):
      fp32, batch 32, per-step `loss.item()` and `torch.cuda.empty_cache()`, the
      per-image L2-normalised step, best iterate kept by a masked copy every step;
  (b) ours: `generation.loop.invert` (on CUDA: bf16 autocast + channels_last +
      torch.compile for the bulk of the steps, then an fp32 finish).

Prints image-steps/s of both, the ratio, the final fp32 representation error of
both (on the 8-bit images), and on CUDA the fraction of the bf16 matmul rate our
loop reaches (FLOPs per image-step from torch's flop counter / a measured bf16
matmul rate). On CPU it runs small cases; on a GPU the issue's two cases.

    python benchmarks/generation_throughput.py                 # cases for this device
    python benchmarks/generation_throughput.py --case cifar_resnet18:32:5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from generation.archs import create_model  # noqa: E402
from generation.loop import invert, quantize  # noqa: E402
from generation.losses import rep_error  # noqa: E402
from generation.network import IRINetwork, penultimate_node  # noqa: E402
from generation.settings import LoopSettings  # noqa: E402
from hitkit.study.generation_config import RegFreeLoss

LOSS = RegFreeLoss(name="reg_free", kind="reg_free")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reference_loop(net, targets, seeds, steps: int, step_size: float) -> torch.Tensor:
    """The original loop shape (host sync and cache flush every step, masked best copy)."""
    cuda = targets.device.type == "cuda"
    with torch.no_grad():
        target_features = net(targets)
    x = seeds.clone()
    best_x = x.clone()
    best_loss = torch.full((len(x),), float("inf"), device=x.device)
    log = []
    for _ in range(steps):
        x = x.clone().detach().requires_grad_(True)
        losses = rep_error(net(x), target_features)
        log.append(losses.mean().item())  # per-step logging: a host sync
        if cuda:
            torch.cuda.empty_cache()  # as in the original loss function
        (grad,) = torch.autograd.grad(losses.mean(), x)
        with torch.no_grad():
            mask = losses < best_loss
            best_loss[mask] = losses[mask]
            best_x[mask] = x[mask].clone()
            norm = grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-10
            x = (x - step_size * grad / norm).clamp(0, 1)
    with torch.no_grad():
        losses = rep_error(net(x), target_features)
        mask = losses < best_loss
        best_x[mask] = x[mask]
    return best_x.detach()


def final_error(net, images, targets) -> float:
    with torch.no_grad(), torch.autocast(images.device.type, enabled=False):
        return float(rep_error(net(quantize(images.float())), net(targets)).median())


def bf16_matmul_rate(device: torch.device) -> float:
    """Measured dense bf16 matmul FLOP/s (the practical ceiling)."""
    n = 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    reps = 20
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def flops_per_image_step(net, x: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    x = x[:1].clone().requires_grad_(True)
    with FlopCounterMode(display=False) as counter:
        net(x).float().square().sum().backward()  # forward + backward to the input
    return float(counter.get_total_flops())


def run_case(arch: str, size: int, steps: int, batch: int, device: torch.device,
             repeats: int) -> dict:
    torch.manual_seed(0)
    model = create_model(arch, 10 if arch.startswith(("cifar_", "tiny_")) else 1000)
    net = IRINetwork(model, penultimate_node(model), (0.485, 0.456, 0.406),
                     (0.229, 0.224, 0.225)).to(device)
    g = torch.Generator().manual_seed(1)
    targets = quantize(torch.rand(batch, 3, size, size, generator=g)).to(device)
    seeds = quantize((0.5 + 0.25 * torch.randn(batch, 3, size, size, generator=g)).clamp(0, 1))
    seeds = seeds.to(device)
    cuda = device.type == "cuda"
    settings = LoopSettings(steps=steps, step_size=1.0, precision="bf16" if cuda else "fp32",
                            compile=cuda, finish_steps=max(1, steps // 10) if cuda else 0)

    # warm-up (cuDNN autotuning, torch.compile) outside the timed runs
    reference_loop(net, targets, seeds, 2, 1.0)
    invert(net, targets, seeds, LOSS, LoopSettings(**{**settings.__dict__, "steps": 4,
                                                      "finish_steps": 2 if cuda else 0}))
    ref_times, our_times = [], []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        ref_images = reference_loop(net, targets, seeds, steps, 1.0)
        sync(device)
        ref_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        ours = invert(net, targets, seeds, LOSS, settings)
        sync(device)
        our_times.append(time.perf_counter() - start)
    ref_rate = batch * steps / statistics.median(ref_times)
    our_rate = batch * steps / statistics.median(our_times)
    out = {
        "case": f"{arch}@{size}px", "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "batch": batch, "steps": steps, "ref_rate": ref_rate, "our_rate": our_rate,
        "ratio": our_rate / ref_rate,
        "ref_error": final_error(net, ref_images, targets),
        "our_error": float(ours.rep_error.median()),
        "flop_fraction": None,
    }
    if cuda:
        flops = flops_per_image_step(net, targets)
        out["flop_fraction"] = flops * our_rate / bf16_matmul_rate(device)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", action="append",
                        help="arch:size:steps (repeatable); default depends on the device")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    cases = args.case or (["resnet50:224:200", "cifar_resnet18:32:500"] if cuda
                          else ["tiny_resnet:32:60", "cifar_resnet18:32:4"])
    repeats = args.repeats or (3 if cuda else 1)
    print(f"torch {torch.__version__}, device {device}, batch {args.batch}, "
          f"threads {torch.get_num_threads()}")
    header = (f"{'case':<22} {'steps':>5} {'reference img·steps/s':>22} {'ours':>10} {'ratio':>6} "
              f"{'ref error':>10} {'our error':>10} {'error ratio':>11} {'bf16 FLOP frac':>14}")
    print(header)
    for case in cases:
        arch, size, steps = case.split(":")
        r = run_case(arch, int(size), int(steps), args.batch, device, repeats)
        frac = f"{r['flop_fraction']:.3f}" if r["flop_fraction"] is not None else "n/a (CPU)"
        print(f"{r['case']:<22} {r['steps']:>5} {r['ref_rate']:>22.1f} {r['our_rate']:>10.1f} "
              f"{r['ratio']:>6.2f} {r['ref_error']:>10.4f} {r['our_error']:>10.4f} "
              f"{r['our_error'] / max(r['ref_error'], 1e-12):>11.3f} {frac:>14}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
