"""The optimisation loop: convergence, batching, determinism, schedules and loss kinds."""

from __future__ import annotations

import pytest
import torch

from generation.archs import create_model
from generation.distances import perceptual_distance
from generation.loop import invert, quantize, step_size_at
from generation.losses import rep_error
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


# ------------------------------------------------- the kept iterate and its loss


def _unwarped_value(net, loss, result, targets, seeds, bf16: bool = False) -> torch.Tensor:
    """The objective's value of the returned iterate, scored as the loop scores candidates."""
    from generation.objective import Problem, build_objective

    with torch.no_grad():
        target_features = net(targets).float()
        objective = build_objective(loss, Problem(net, targets, seeds, target_features))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            features = net(result.iterate)
        return objective.value(rep_error(features.float(), target_features), result.iterate)


TRANSFORMED = RegularizedLoss(name="trans", kind="regularized", rep_weight=1.0,
                              transforms=TransformSpec(pad=2, jitter=6, rotate_degrees=15))


@pytest.mark.parametrize("loss", [REG_FREE, TRANSFORMED], ids=lambda loss: loss.name)
def test_the_reported_loss_is_the_returned_iterates_per_image(loss):
    net = tiny_net()
    targets, seeds = images(4)
    # a large constant step: iterates bounce, so each image has its own best step
    result = invert(net, targets, seeds, loss, LoopSettings(steps=30, step_size=4.0, seed=1))
    assert len(set(result.best_step.tolist())) >= 2, result.best_step
    value = _unwarped_value(net, loss, result, targets, seeds)
    assert torch.allclose(value, result.best_loss, rtol=1e-5, atol=1e-6), (value, result.best_loss)
    # and the stored 8-bit image is that iterate, rounded
    assert torch.equal(result.images, quantize(result.iterate))


def test_bf16_never_compares_losses_of_two_precisions():
    net = tiny_net()
    targets, seeds = images(3)
    # finish_steps = 0: every candidate, the last included, is scored in bf16
    only_bf16 = invert(net, targets, seeds, REG_FREE,
                       LoopSettings(steps=20, step_size=4.0, precision="bf16", finish_steps=0))
    assert torch.allclose(_unwarped_value(net, REG_FREE, only_bf16, targets, seeds, bf16=True),
                          only_bf16.best_loss, rtol=1e-5, atol=1e-6)
    # with an fp32 finish the kept iterate comes from the fp32 steps and its loss is fp32
    finished = invert(net, targets, seeds, REG_FREE,
                      LoopSettings(steps=20, step_size=4.0, precision="bf16", finish_steps=6))
    assert (finished.best_step >= 14).all(), finished.best_step
    assert torch.allclose(_unwarped_value(net, REG_FREE, finished, targets, seeds),
                          finished.best_loss, rtol=1e-5, atol=1e-6)


def test_transform_draws_are_made_up_front_on_the_device():
    from generation import transforms as T

    spec = TransformSpec(pad=2, jitter=6)
    up_front = T.matrices(spec, torch.Generator().manual_seed(5), 7, 16, 16, torch.device("cpu"))
    g = torch.Generator().manual_seed(5)
    one_by_one = torch.stack([T.matrix(T.draw(spec, g), 20, 20) for _ in range(7)])
    assert up_front.shape == (7, 2, 3) and torch.equal(up_front, one_by_one)


def test_no_draw_or_host_copy_happens_inside_the_loop(monkeypatch):
    from generation import transforms as T

    net = tiny_net()
    targets, seeds = images(2)
    calls = {"draw": 0, "warp": 0}
    real_draw, real_apply = T.draw, T.apply_matrix

    def counting_draw(*a):
        assert calls["warp"] == 0, "a draw after the loop started"
        calls["draw"] += 1
        return real_draw(*a)

    def counting_apply(x, pad, theta):
        assert theta.device == x.device
        calls["warp"] += 1
        return real_apply(x, pad, theta)

    monkeypatch.setattr(T, "draw", counting_draw)
    monkeypatch.setattr(T, "apply_matrix", counting_apply)
    invert(net, targets, seeds, TRANSFORMED, LoopSettings(steps=12, step_size=0.5))
    assert calls == {"draw": 12, "warp": 12}


# ------------------------------------------------------------------- paper mode


def test_paper_transforms_translate_with_black_and_rescale():
    from generation import transforms as T

    x = torch.rand(1, 3, 16, 16)
    spec = TransformSpec(pad=0, jitter=8, scale=(1.0, 1.0), rotate_degrees=0)
    identity = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    shifted = T.apply_paper(x, spec, (T.PaperDraw((2, 3), 1.0, (0, 0)), identity))
    assert torch.allclose(shifted[..., 3:, 2:], x[..., :13, :14], atol=1e-5)
    assert shifted[..., :3, :].abs().max() < 1e-5 and shifted[..., :, :2].abs().max() < 1e-5
    grown = T.apply_paper(x, spec, (T.PaperDraw((0, 0), 1.1, (0, 0)), identity))
    shrunk = T.apply_paper(x, spec, (T.PaperDraw((0, 0), 0.9, (0, 0)), identity))
    assert grown.shape[-1] == 18 and shrunk.shape[-1] == 15 + 2 * 1  # ceil(14.4)=15, padded black
    assert shrunk[..., 0, :].abs().max() < 1e-5
    warps = T.PaperWarps(TransformSpec(), torch.Generator().manual_seed(0), 50, torch.device("cpu"))
    assert warps.rotations.shape == (50, 2, 3)
    assert all(0 <= d.shift1[0] < 8 and 0 <= d.shift2[1] < 4 for d in warps.draws)


def test_paper_lp_is_the_uncentred_norm_and_l1_is_centred():
    from generation.losses import lp_penalty, paper_lp

    x = torch.rand(2, 3, 4, 4)
    assert torch.allclose(paper_lp(x, 6.0), x.flatten(1).pow(6).sum(1).pow(1 / 6))
    assert torch.equal(paper_lp(x, 1.0), lp_penalty(x, 1.0))
    assert not torch.allclose(paper_lp(x, 6.0), lp_penalty(x, 6.0))


def test_paper_mode_fourier_clamps_the_spectrum_and_starts_where_told():
    from generation.fourier import to_image

    net = tiny_net()
    targets, seeds = images(2)
    loss = RegularizedLoss(name="fft", kind="regularized", rep_weight=1.0, fourier=True)
    spectrum = torch.randn(2, 3, 16, 9, 2, generator=torch.Generator().manual_seed(0))
    result = invert(net, targets, quantize(to_image(spectrum, 16, 16)), loss,
                    LoopSettings(steps=5, step_size=0.5), start=spectrum, paper=True)
    assert result.rep_error.shape == (2,)
    zero = invert(net, targets, seeds, loss, LoopSettings(steps=0 + 1, step_size=0.0),
                  start=spectrum, paper=True)
    # step size 0: the kept iterate is the start itself or its clamp, never the pixel seed
    assert not torch.allclose(zero.iterate, seeds, atol=0.05)
