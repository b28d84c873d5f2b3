"""The optimisation loop: convergence, batching, determinism, schedules and loss kinds."""

from __future__ import annotations

import pytest
import torch

from generation.archs import create_model
from generation.distances import perceptual_distance
from generation.loop import invert, quantize, step_size_at
from generation.network import IRINetwork
from generation.settings import LoopSettings, resolve_settings
from hitkit.study.generation_config import (
    AdversarialLoss,
    GenerationSection,
    RegFreeLoss,
    RegularizedLoss,
    TransformSpec,
)

REG_FREE = RegFreeLoss(name="reg_free", kind="reg_free")


def tiny_net(arch: str = "tiny_convnet", seed: int = 0) -> IRINetwork:
    torch.manual_seed(seed)
    return IRINetwork(create_model(arch, 6), "flatten", (0.5,) * 3, (0.25,) * 3)


def images(n: int, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    targets = torch.rand(n, 3, size, size, generator=g)
    seeds = quantize((0.5 + 0.25 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1))
    return quantize(targets), seeds


@pytest.mark.parametrize("arch", ["tiny_convnet", "tiny_resnet"])
def test_paper_step_lowers_the_error_below_a_threshold(arch):
    net = tiny_net(arch)
    targets, seeds = images(4, 32)
    with torch.no_grad():
        from generation.losses import rep_error

        start = rep_error(net(seeds), net(targets))
    result = invert(net, targets, seeds, REG_FREE,
                    LoopSettings(steps=200, step_size=0.5, schedule="halving"))
    assert (start > 0.1).all()
    assert (result.rep_error < 0.02).all(), result.rep_error
    assert result.images.shape == targets.shape and result.pixels.dtype == torch.uint8
    # the stored error belongs to the 8-bit image that is written
    assert torch.equal(result.pixels.permute(0, 3, 1, 2).float() / 255, result.images)
    with torch.no_grad():
        again = rep_error(net(result.images), net(targets)).double()
    assert torch.allclose(again, result.rep_error, atol=1e-6)


def test_adam_converges_too():
    net = tiny_net()
    targets, seeds = images(3)
    result = invert(net, targets, seeds, REG_FREE,
                    LoopSettings(steps=150, step_size=0.02, optimizer="adam", schedule="cosine"))
    assert (result.rep_error < 0.05).all(), result.rep_error


def test_best_iterate_is_kept_per_image():
    net = tiny_net()
    targets, seeds = images(2)
    # a huge constant step makes later iterates bounce around; the best one is kept
    result = invert(net, targets, seeds, REG_FREE, LoopSettings(steps=40, step_size=8.0))
    with torch.no_grad():
        from generation.losses import rep_error

        seed_error = rep_error(net(seeds), net(targets))
    assert (result.best_loss <= seed_error + 1e-6).all()


@pytest.mark.parametrize("loss", [
    REG_FREE,
    RegularizedLoss(name="tv+trans", kind="regularized", tv=0.0005, blur=0.0005, lp=0.00005,
                    transforms=TransformSpec(pad=2, jitter=4)),
    RegularizedLoss(name="fft", kind="regularized", rep_weight=1.0, fourier=True),
    AdversarialLoss(name="adv", kind="adversarial", metric="ssim", **{"lambda": "auto"}),
    AdversarialLoss(name="adv-seed", kind="adversarial", metric="ms-ssim", anchor="seed",
                    **{"lambda": 2.0}),
], ids=lambda loss: loss.name)
def test_batched_run_equals_per_image_runs(loss):
    net = tiny_net()
    targets, seeds = images(3)
    settings = LoopSettings(steps=25, step_size=0.5, seed=7)
    distance = None
    if isinstance(loss, AdversarialLoss):
        distance = perceptual_distance(loss.metric)[0]
    batched = invert(net, targets, seeds, loss, settings, distance)
    for i in range(3):
        single = invert(net, targets[i:i + 1], seeds[i:i + 1], loss, settings, distance)
        # equal up to float rounding of batched vs single convolutions (<= one 8-bit level)
        diff = (single.pixels[0].int() - batched.pixels[i].int()).abs()
        assert diff.max() <= 1 and diff.float().mean() < 0.01, (loss.name, i)
        assert single.rep_error[0].item() == pytest.approx(batched.rep_error[i].item(),
                                                           rel=1e-3, abs=1e-5)


def test_deterministic_on_cpu():
    net = tiny_net("tiny_resnet")
    targets, seeds = images(2)
    loss = RegularizedLoss(name="t", kind="regularized", transforms=TransformSpec())
    settings = LoopSettings(steps=20, step_size=0.5, seed=3)
    a = invert(net, targets, seeds, loss, settings)
    b = invert(net, targets, seeds, loss, settings)
    assert torch.equal(a.pixels, b.pixels) and torch.equal(a.rep_error, b.rep_error)


def test_schedules():
    s = LoopSettings(steps=80, step_size=1.0, schedule="halving")
    assert [step_size_at(i, s) for i in (0, 9, 10, 79)] == [1.0, 1.0, 0.5, 1 / 128]
    c = LoopSettings(steps=100, step_size=2.0, schedule="cosine")
    assert step_size_at(0, c) == 2.0 and step_size_at(50, c) == pytest.approx(1.0)
    assert step_size_at(7, LoopSettings(step_size=0.3)) == 0.3


def test_settings_resolve_per_device():
    gen = GenerationSection(steps=1000, losses=[REG_FREE])
    cpu = resolve_settings(gen, torch.device("cpu"))
    assert (cpu.precision, cpu.compile, cpu.finish_steps) == ("fp32", False, 0)
    assert cpu.optimizer == "normalized-gd" and cpu.step_size == 1.0
    forced = resolve_settings(GenerationSection(steps=1000, precision="bf16", losses=[REG_FREE]),
                              torch.device("cpu"))
    assert forced.precision == "bf16" and forced.finish_steps == 100


def test_bf16_then_fp32_finish_path_runs_on_cpu():
    net = tiny_net()
    targets, seeds = images(2)
    result = invert(net, targets, seeds, REG_FREE,
                    LoopSettings(steps=30, step_size=0.5, precision="bf16", finish_steps=10))
    assert result.rep_error.dtype == torch.float64 and (result.rep_error < 0.5).all()


def test_shape_mismatch_and_missing_distance_are_errors():
    net = tiny_net()
    targets, seeds = images(2)
    with pytest.raises(ValueError, match="differ"):
        invert(net, targets, seeds[:1], REG_FREE, LoopSettings(steps=1))
    with pytest.raises(ValueError, match="needs a perceptual distance"):
        invert(net, targets, seeds, AdversarialLoss(name="a", kind="adversarial"),
               LoopSettings(steps=1))


@pytest.mark.slow
def test_compiled_network_path_matches_eager_on_cpu():
    """The torch.compile code path used on CUDA, run here by inductor's CPU backend."""
    net = tiny_net()
    targets, seeds = images(2)
    eager = invert(net, targets, seeds, REG_FREE, LoopSettings(steps=8, step_size=0.5))
    compiled = invert(net, targets, seeds, REG_FREE,
                      LoopSettings(steps=8, step_size=0.5, compile=True))
    assert (compiled.pixels.int() - eager.pixels.int()).abs().max() <= 1
    assert torch.allclose(compiled.rep_error, eager.rep_error, rtol=1e-3, atol=1e-5)
    assert "_hitkit_compiled" in net.__dict__  # compiled once, reused by later batches
