"""Loss terms, the loss-kind registry, perceptual distances, transforms and the Fourier parameterisation."""

from __future__ import annotations

import math
import typing

import pytest
import torch

from generation import fourier
from generation import losses as L
from generation import transforms as T
from generation.distances import MissingWeightsError, ms_ssim, perceptual_distance, ssim
from generation.objective import LOSS_KINDS, loss_distance
from hitkit.study.generation_config import AdversarialLoss, LossSpec, RegFreeLoss, TransformSpec


def test_rep_error_is_relative_l2_per_image():
    f = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    t = torch.tensor([[0.0, 2.0], [3.0, 4.0]])
    out = L.rep_error(f, t)
    assert out.shape == (2,)
    assert out[0].item() == pytest.approx(math.sqrt(5) / 2)
    assert out[1].item() == 0.0


def test_rep_error_flattens_spatial_features():
    f = torch.ones(1, 2, 2, 2)
    t = torch.full((1, 2, 2, 2), 2.0)
    assert L.rep_error(f, t).item() == pytest.approx(math.sqrt(8) / math.sqrt(32))


def test_total_variation_by_hand():
    x = torch.tensor([[0.0, 1.0], [0.5, 0.25]]).view(1, 1, 2, 2)
    # vertical: (0.5-0)^2 + (0.25-1)^2; horizontal: (1-0)^2 + (0.25-0.5)^2
    expected = 0.25 + 0.5625 + 1.0 + 0.0625
    assert L.total_variation(x, 2.0).item() == pytest.approx(expected)
    expected_b1 = 0.5 + 0.75 + 1.0 + 0.25
    assert L.total_variation(x, 1.0).item() == pytest.approx(expected_b1)


def test_blur_penalty_by_hand():
    assert L.blur_penalty(torch.full((1, 3, 5, 5), 0.3)).item() == pytest.approx(0.0, abs=1e-10)
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 1, 1] = 1.0
    blurred = L.blur3x3(x)
    # centre: 1*1 / (1 + 8*0.5); a corner sees the centre with weight 0.5 over 1 + 3*0.5
    assert blurred[0, 0, 1, 1].item() == pytest.approx(1 / 5)
    assert blurred[0, 0, 0, 0].item() == pytest.approx(0.5 / 2.5)
    assert blurred[0, 0, 0, 1].item() == pytest.approx(0.5 / 3.5)
    diff = x - blurred
    assert L.blur_penalty(x).item() == pytest.approx(0.5 * diff.square().sum().item())


def test_blur_penalty_gradient_treats_blur_as_constant():
    x = torch.rand(1, 3, 4, 4, requires_grad=True)
    L.blur_penalty(x).sum().backward()
    assert torch.allclose(x.grad, (x - L.blur3x3(x)).detach())


def test_lp_penalty_and_regularized_sum():
    x = torch.tensor([0.0, 1.0, 0.75]).view(1, 1, 1, 3)
    assert L.lp_penalty(x, 1.0).item() == pytest.approx(0.5 + 0.5 + 0.25)
    assert L.lp_penalty(x, 2.0).item() == pytest.approx(0.25 + 0.25 + 0.0625)
    rep = torch.tensor([0.2])
    total = L.regularized(rep, x, rep_weight=10.0, tv=2.0, lp=3.0, lp_p=1.0)
    expected = 10 * 0.2 + 2.0 * L.total_variation(x).item() + 3.0 * 1.25
    assert total.item() == pytest.approx(expected)


def test_adversarial_signs_and_auto_lambda():
    rep, dist = torch.tensor([0.4, 1.0]), torch.tensor([0.2, 0.5])
    assert L.adversarial(rep, dist, 10.0, "target").tolist() == pytest.approx([-1.6, -4.0])
    assert L.adversarial(rep, dist, 10.0, "seed").tolist() == pytest.approx([2.4, 6.0])
    lam = L.auto_lambda(rep, dist)
    assert lam.tolist() == pytest.approx([2.0, 2.0])
    # balanced at step 0: the two terms cancel for every image
    assert L.adversarial(rep, dist, lam, "target").tolist() == pytest.approx([0.0, 0.0])
    with pytest.raises(ValueError, match="anchor"):
        L.adversarial(rep, dist, 1.0, "elsewhere")


def test_every_configured_loss_kind_has_one_registry_entry():
    """A config class added to LossSpec without an entry in LOSS_KINDS (or the reverse) fails here."""
    classes = typing.get_args(typing.get_args(LossSpec)[0])
    configured = {typing.get_args(c.model_fields["kind"].annotation)[0]: c for c in classes}
    assert {kind: entry.spec for kind, entry in LOSS_KINDS.items()} == configured


def test_only_losses_with_a_metric_get_a_distance():
    assert loss_distance(RegFreeLoss(name="r", kind="reg_free")) is None
    distance = loss_distance(AdversarialLoss(name="a", kind="adversarial", metric="ssim"))
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(distance(x, x), torch.zeros(2), atol=1e-6)


def test_ssim_and_ms_ssim_distances():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    assert ssim(x, x).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    assert ms_ssim(x, x).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    noisy = (x + 0.3 * torch.randn_like(x)).clamp(0, 1)
    other = torch.rand(2, 3, 32, 32)
    d_ssim, name = perceptual_distance("ssim")
    assert name == "ssim"
    assert (d_ssim(x, noisy) < d_ssim(x, other)).all()
    d_ms, _ = perceptual_distance("ms-ssim")
    assert (d_ms(x, noisy) > 0).all() and (d_ms(x, noisy) < d_ms(x, other)).all()
    assert ms_ssim(torch.rand(1, 3, 256, 256), torch.rand(1, 3, 256, 256)).shape == (1,)


def test_lpips_without_cached_weights_names_the_file(fake_torch_home):
    with pytest.raises(MissingWeightsError) as info:
        perceptual_distance("lpips-alex")
    message = str(info.value)
    assert "alexnet-owt-7be5be79.pth" in message
    assert str(fake_torch_home / "hub" / "checkpoints") in message
    with pytest.raises(MissingWeightsError, match="vgg16-397923af.pth"):
        perceptual_distance("lpips-vgg")


def test_lpips_falls_back_and_says_so(fake_torch_home):
    with pytest.warns(UserWarning, match="using ms-ssim instead"):
        fn, name = perceptual_distance("lpips-alex", fallback="ms-ssim")
    assert name == "ms-ssim"
    x = torch.rand(1, 3, 32, 32)
    assert fn(x, x).item() == pytest.approx(0.0, abs=1e-5)


def test_lpips_uses_weights_placed_in_the_cache(fake_torch_home):
    import torchvision

    # any AlexNet state dict under the canonical name is picked up without a download
    torch.save(torchvision.models.alexnet(weights=None).state_dict(),
               fake_torch_home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth")
    fn, name = perceptual_distance("lpips-alex")
    assert name == "lpips-alex"
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    assert fn(x, x).tolist() == pytest.approx([0.0, 0.0], abs=1e-6)
    assert (fn(x, y) > 0).all()


def test_fourier_parameterisation_round_trips():
    x = torch.rand(2, 3, 24, 31) * 0.98 + 0.01
    spectrum = fourier.from_image(x)
    assert spectrum.shape == (2, 3, 24, 31 // 2 + 1, 2)
    assert torch.allclose(fourier.to_image(spectrum, 24, 31), x, atol=1e-5)
    random = fourier.to_image(torch.randn(1, 3, 16, 9, 2), 16, 16)
    assert random.min() > 0 and random.max() < 1


def test_transforms_keep_size_are_seeded_and_identity_is_exact():
    x = torch.rand(2, 3, 20, 20)
    spec = TransformSpec(pad=4, jitter=8, scale=(0.9, 1.1), rotate_degrees=10)
    a = [T.draw(spec, torch.Generator().manual_seed(3)) for _ in range(2)]
    assert a[0] == a[1]
    out = T.apply(x, spec, a[0])
    assert out.shape == x.shape
    identity = T.Draw((0, 0), 1.0, 0.0, (0, 0))
    assert torch.allclose(T.apply(x, TransformSpec(pad=0), identity), x, atol=1e-6)
    # a whole-pixel shift moves content by that many pixels; what enters is mid-grey
    shifted = T.apply(x, TransformSpec(pad=0), T.Draw((2, 0), 1.0, 0.0, (0, 0)))
    assert torch.allclose(shifted[..., 2:], x[..., :-2], atol=1e-5)
    assert torch.allclose(shifted[..., :2], torch.full_like(shifted[..., :2], 0.5), atol=1e-6)


def test_uncalibrated_lpips_is_the_papers_adv_alex_imagenet_variant(fake_torch_home):
    import torchvision

    with pytest.raises(MissingWeightsError, match="alexnet-owt-7be5be79.pth"):
        perceptual_distance("lpips-alex-uncalibrated")
    torch.save(torchvision.models.alexnet(weights=None).state_dict(),
               fake_torch_home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth")
    calibrated, _ = perceptual_distance("lpips-alex")
    uncalibrated, name = perceptual_distance("lpips-alex-uncalibrated")
    assert name == "lpips-alex-uncalibrated"
    x, y = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    assert not torch.allclose(calibrated(x, y), uncalibrated(x, y))
    # its random lin layers are drawn from a fixed seed, whatever the global RNG did
    from generation.distances import _lpips_model

    _lpips_model.cache_clear()
    torch.manual_seed(123)
    again, _ = perceptual_distance("lpips-alex-uncalibrated")
    assert torch.equal(again(x, y), uncalibrated(x, y))
