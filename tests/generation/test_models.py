"""Architectures, checkpoint formats, truncation and the frozen wrapper."""

from __future__ import annotations

import argparse
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch

from generation.archs import UnknownArchError, create_model
from generation.checkpoints import CheckpointError, load_weights
from generation.network import IRINetwork, LayerError, build_network, graph_nodes, penultimate_node
from hitkit.study.generation_config import ModelSpec


def spec(arch: str = "tiny_resnet", **extra) -> ModelSpec:
    data = {"name": "m", "arch": arch, "checkpoint": "x.pt", "normalization": "cifar10",
            "input_size": 32, "num_classes": 6}
    data.update(extra)
    return ModelSpec(**data)


@pytest.mark.parametrize("arch,dim", [("tiny_resnet", 64), ("tiny_convnet", 64),
                                      ("cifar_resnet18", 512), ("cifar_vgg16", 512),
                                      ("cifar_densenet121", 1024), ("cifar_inception_v3", 2048)])
def test_cifar_and_tiny_archs_penultimate_features(arch, dim):
    model = create_model(arch, 6)
    assert model(torch.rand(1, 3, 32, 32)).shape == (1, 6)
    net = IRINetwork(model, penultimate_node(model), (0.5,) * 3, (0.25,) * 3)
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, dim)


def test_torchvision_archs_are_built_untrained_and_truncated():
    model = create_model("resnet18", 10)
    assert penultimate_node(model) == "flatten"
    net = IRINetwork(model, "layer3", (0.0,) * 3, (1.0,) * 3)
    assert net(torch.rand(1, 3, 64, 64)).shape == (1, 256 * 4 * 4)
    for arch, node in [("resnet50", "flatten"), ("densenet121", "flatten"),
                       ("inception_v3", "flatten"), ("vgg16_bn", "classifier.5")]:
        assert penultimate_node(create_model(arch)) == node, arch


def test_unknown_arch_is_a_clear_error():
    with pytest.raises(UnknownArchError, match=r"unknown arch 'resnet19'.*did you mean"):
        create_model("resnet19")


def test_layer_not_in_model_lists_candidates():
    model = create_model("tiny_resnet", 6)
    with pytest.raises(LayerError, match=r"layer 'layer9' is not a node.*did you mean"):
        IRINetwork(model, "layer9", (0,) * 3, (1,) * 3) if False else build_network(
            spec(layer="layer9"), None)
    assert "layer2.relu_1" in graph_nodes(model)[1]


def test_wrapper_normalises_inside_and_is_frozen():
    model = create_model("tiny_convnet", 6)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)
    net = IRINetwork(model, "flatten", mean, std)
    x = torch.rand(2, 3, 32, 32)
    normalised = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    from torchvision.models.feature_extraction import create_feature_extractor

    plain = create_feature_extractor(model, ["flatten"])(normalised)["flatten"]
    assert torch.allclose(net(x), plain, atol=1e-6)
    net.train()
    assert not net.training and not any(m.training for m in net.modules())
    assert not any(p.requires_grad for p in net.parameters())


# ------------------------------------------------------------- checkpoints


@pytest.fixture
def reference(tmp_path):
    torch.manual_seed(0)
    model = create_model("tiny_resnet", 6)
    # non-trivial BatchNorm statistics, so a lost buffer would change outputs
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    x = torch.rand(3, 3, 32, 32)
    return model, x


def _outputs(path: Path, fmt: str = "auto") -> torch.Tensor:
    model = create_model("tiny_resnet", 6)
    load_weights(model, path, fmt, "tiny_resnet")
    with torch.no_grad():
        return model(torch.manual_seed(1) and torch.rand(3, 3, 32, 32))


def _write(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def test_every_checkpoint_format_loads_to_identical_outputs(reference, tmp_path):
    model, _ = reference
    sd = model.state_dict()
    with torch.no_grad():
        expected = model(torch.manual_seed(1) and torch.rand(3, 3, 32, 32))
    args = argparse.Namespace(arch="tiny_resnet", eps=1.0)  # robustness pickles its args
    files = {
        "plain": _write(tmp_path / "plain.pt", sd),
        "ddp": _write(tmp_path / "ddp.pt", {f"module.{k}": v for k, v in sd.items()}),
        "lightning": _write(tmp_path / "pl.ckpt", {
            "epoch": 3, "global_step": 10,
            "state_dict": {**{f"model.{k}": v for k, v in sd.items()},
                           "projection.weight": torch.zeros(2, 2)},  # a head Lightning keeps
        }),
        "robustness": _write(tmp_path / "rob.pt", {
            "epoch": 150, "args": args,
            "model": {
                **{f"module.model.{k}": v for k, v in sd.items()},
                **{f"module.attacker.model.{k}": v for k, v in sd.items()},
                "module.normalizer.new_mean": torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1),
                "module.normalizer.new_std": torch.tensor([0.2023, 0.1994, 0.2010]).view(3, 1, 1),
                "module.attacker.normalize.new_mean": torch.zeros(3, 1, 1),
            },
        }),
    }
    for name, path in files.items():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # every known format loads safely, without a warning
            out = _outputs(path)
        assert torch.equal(out, expected), name
    assert torch.equal(_outputs(files["lightning"], "lightning"), expected)


def test_robustness_normalizer_is_read_and_checked(reference, tmp_path):
    model, _ = reference
    sd = model.state_dict()
    path = _write(tmp_path / "rob.pt", {"model": {
        **{f"module.model.{k}": v for k, v in sd.items()},
        "module.normalizer.new_mean": torch.tensor([0.5, 0.5, 0.5]).view(3, 1, 1),
        "module.normalizer.new_std": torch.tensor([0.5, 0.5, 0.5]).view(3, 1, 1),
    }})
    loaded = load_weights(create_model("tiny_resnet", 6), path)
    assert loaded.format == "robustness"
    assert loaded.normalizer == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    with pytest.raises(CheckpointError, match="normalizer .* differs from models.normalization"):
        build_network(spec(), path)
    ok = build_network(spec(normalization={"mean": [0.5] * 3, "std": [0.5] * 3}), path)
    assert ok.checkpoint_format == "robustness" and ok.layer == "flatten"


def test_checkpoint_of_another_architecture_lists_keys(tmp_path):
    path = _write(tmp_path / "other.pt", create_model("tiny_convnet", 6).state_dict())
    with pytest.raises(CheckpointError) as info:
        load_weights(create_model("tiny_resnet", 6), path, arch="tiny_resnet")
    message = str(info.value)
    assert "does not fit arch 'tiny_resnet'" in message
    assert "missing key(s), first: conv1.weight" not in message  # conv1.weight exists in both
    assert "missing key(s), first: layer1.conv1.weight" in message
    assert "unexpected key(s), first: conv2.weight" in message


def test_wrong_num_classes_is_a_shape_mismatch(reference, tmp_path):
    model, _ = reference
    path = _write(tmp_path / "m.pt", model.state_dict())
    with pytest.raises(CheckpointError, match=r"shape mismatch.*fc.weight"):
        load_weights(create_model("tiny_resnet", 10), path)


def test_unreadable_and_missing_checkpoints(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_weights(create_model("tiny_resnet", 6), bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_weights(create_model("tiny_resnet", 6), tmp_path / "nope.pt")
    weird = _write(tmp_path / "weird.pt", {"epoch": 1})
    with pytest.raises(CheckpointError, match="no state dict found"):
        load_weights(create_model("tiny_resnet", 6), weird)


# ------------------------------------------------------------------ safe loading


class _Payload:
    """Unpickling this calls `marker.write_text` (any callable would do): code in a checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "code ran"))


def test_a_checkpoint_that_pickles_a_callable_is_refused_and_never_runs(reference, tmp_path):
    model, _ = reference
    marker = tmp_path / "ran.txt"
    path = _write(tmp_path / "evil.pt", {"state_dict": model.state_dict(), "hook": _Payload(marker)})
    with pytest.raises(CheckpointError) as info:
        load_weights(create_model("tiny_resnet", 6), path)
    message = str(info.value)
    assert str(path) in message and "trust = true" in message and "--trust-checkpoints" in message
    assert "Unsupported global: GLOBAL getattr" in message  # names what it refused
    assert not marker.exists()
    with pytest.raises(CheckpointError):  # through the model builder as well, still without running
        build_network(spec(checkpoint=str(path)), path)
    assert not marker.exists()
    # the opt-in loads it in full (which is exactly why it is an opt-in)
    loaded = build_network(spec(checkpoint=str(path), trust=True), path)
    assert loaded.checkpoint_format == "lightning" and marker.read_text() == "code ran"


class AttributeDict(dict):
    """Pickled under Lightning's name below, as a Lightning checkpoint stores hyper-parameters."""


AttributeDict.__module__ = "lightning.fabric.utilities.data"


def test_known_formats_extras_load_safely(reference, tmp_path, monkeypatch):
    """timm / torchvision `args`, Lightning's AttributeDict hyper-parameters, numpy scalars, paths."""
    import numpy as np

    model, _ = reference
    expected = _outputs(_write(tmp_path / "plain.pt", model.state_dict()))
    module = types.ModuleType("lightning.fabric.utilities.data")
    module.AttributeDict = AttributeDict
    for name in ("lightning", "lightning.fabric", "lightning.fabric.utilities", module.__name__):
        monkeypatch.setitem(sys.modules, name, sys.modules.get(name) or types.ModuleType(name))
    monkeypatch.setitem(sys.modules, module.__name__, module)
    hparams = AttributeDict(lr=0.1, root=Path("/data"), best=np.float64(0.93))
    path = _write(tmp_path / "extras.ckpt", {
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "hyper_parameters": hparams, "args": argparse.Namespace(model="resnet18", lr=0.1),
        "metric": np.float32(0.5), "counts": np.arange(3),
    })
    monkeypatch.delitem(sys.modules, module.__name__)  # Lightning need not be importable
    assert torch.equal(_outputs(path), expected)


def test_madrylab_cifar_inception_key_layout_loads(tmp_path):
    """A robustness file with the reference InceptionV3's exact keys and shapes loads strictly."""
    listed = Path(__file__).with_name("data") / "madry_cifar_inception_v3_keys.txt"
    shapes = {}
    for line in listed.read_text().splitlines():
        if line and not line.startswith("#"):
            key, *dims = line.split()
            shapes[key] = tuple(int(d) for d in dims)
    model = create_model("cifar_inception_v3", 10)
    assert set(model.state_dict()) == set(shapes)
    g = torch.Generator().manual_seed(0)
    state = {k: (torch.randint(0, 5, s, generator=g) if k.endswith("num_batches_tracked")
                 else torch.rand(s, generator=g) + 0.5) for k, s in shapes.items()}
    path = _write(tmp_path / "inception.pt", {"epoch": 1, "model": {
        **{f"module.model.{k}": v for k, v in state.items()},
        **{f"module.attacker.model.{k}": v for k, v in state.items()},
        "module.normalizer.new_mean": torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1),
        "module.normalizer.new_std": torch.tensor([0.2023, 0.1994, 0.2010]).view(3, 1, 1),
    }})
    built = build_network(spec("cifar_inception_v3", num_classes=10), path)
    assert built.checkpoint_format == "robustness" and built.layer == "flatten"
    assert built.net(torch.rand(2, 3, 32, 32)).shape == (2, 2048)
    key = "Mixed_7c.branch_pool.1.conv.weight"
    assert torch.equal(built.net.body.get_parameter(key), state[key])


@pytest.mark.parametrize("arch", ["cifar_resnet18", "cifar_densenet121"])
def test_fake_relu_keeps_the_forward_and_passes_gradients(arch):
    torch.manual_seed(0)
    plain = build_network(spec(arch, checkpoint=None, train={}), None)
    torch.manual_seed(0)
    faked = build_network(spec(arch, checkpoint=None, train={}), None, fake_relu=True)
    assert faked.fake_relu and not plain.fake_relu
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    y = x.detach().clone().requires_grad_(True)
    out_plain, out_fake = plain.net(x), faked.net(y)
    assert torch.equal(out_plain, out_fake)  # ReLU in the forward pass, bit for bit
    assert (out_plain == 0).any()  # some units are off, so their gradient differs
    (gx,) = torch.autograd.grad(out_plain.sum(), x)
    (gy,) = torch.autograd.grad(out_fake.sum(), y)
    assert not torch.allclose(gx, gy)  # the identity backward reaches the input


def test_fake_relu_is_not_applied_where_the_reference_does_not_use_it():
    for arch in ("cifar_vgg16", "cifar_inception_v3", "tiny_resnet"):
        assert not build_network(spec(arch, checkpoint=None, train={}), None,
                                 fake_relu=True).fake_relu
