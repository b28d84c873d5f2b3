"""Target sources, the shapes set, seeds and image I/O."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from generation.image_tensors import fit
from generation.seeds import other_target_index, seed_image, seed_specs
from generation.shapes import SHAPE_CLASSES, shape_image, shapes_batch
from generation.targets import TargetError, load_targets
from hitkit.study.generation_config import SeedsSection, TargetsSection
from hitkit.study.image_io import ImageError, png_bytes, read_image


def section(source: str, count: int = 3, path: str | None = None, **extra) -> TargetsSection:
    return TargetsSection(source=source, count=count, path=path, **extra)


def test_shapes_are_deterministic_any_size_and_many_classes():
    a, label_a = shape_image(5, 24, seed=1)
    b, label_b = shape_image(5, 24, seed=1)
    assert np.array_equal(a, b) and label_a == label_b
    big, label_big = shape_image(5, 96, seed=1)
    assert big.shape == (96, 96, 3) and label_big == label_a
    assert np.array_equal(np.round(a * 255) / 255, a)  # on the 8-bit grid
    x, y = shapes_batch(range(200), 16, seed=0, num_classes=6)
    assert x.shape == (200, 3, 16, 16) and 0 <= x.min() and x.max() <= 1
    assert set(y.tolist()) == set(range(6))
    assert len(SHAPE_CLASSES) >= 6
    # backgrounds are textured, not flat
    assert float(x.std(dim=(2, 3)).mean()) > 0.05


def test_shapes_and_sample_photo_targets():
    shapes = load_targets(section("shapes", count=4, seed=2), 20)
    assert [t.id for t in shapes] == [f"shapes-2-{i:05d}" for i in range(4)]
    assert all(t.image.shape == (3, 20, 20) and t.label in SHAPE_CLASSES for t in shapes)
    photos = load_targets(section("sample-photos", count=3), 32)
    assert len({t.id for t in photos}) == 3 and all(t.id.startswith("photo-") for t in photos)
    assert all(t.image.shape == (3, 32, 32) for t in photos)
    with pytest.raises(TargetError, match="only 14 image"):
        load_targets(section("sample-photos", count=99), 32)


def _png(path: Path, colour: tuple[int, int, int], size=(40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def test_image_folder_targets(tmp_path):
    for i in range(5):
        _png(tmp_path / "imgs" / f"sub{i % 2}" / f"{i}.png", (i * 40, 10, 200))
    targets = load_targets(section("folder", 3, "x", seed=1), 16, tmp_path / "imgs")
    assert len(targets) == 3 and all(t.id.startswith("file-sub") for t in targets)
    assert all(t.image.shape == (3, 16, 16) for t in targets)
    again = load_targets(section("folder", 3, "x", seed=1), 16, tmp_path / "imgs")
    assert [t.id for t in again] == [t.id for t in targets]


def test_empty_folder_and_corrupt_image_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(TargetError, match=r"empty holds no image files"):
        load_targets(section("folder", 1, "x"), 16, tmp_path / "empty")
    with pytest.raises(TargetError, match="is not a folder"):
        load_targets(section("folder", 1, "x"), 16, tmp_path / "missing")
    bad = tmp_path / "bad" / "broken.jpg"
    bad.parent.mkdir()
    bad.write_bytes(b"\xff\xd8\xff garbage, not a jpeg")
    with pytest.raises(TargetError, match=r"broken.jpg: not a readable image"):
        load_targets(section("folder", 1, "x"), 16, tmp_path / "bad")
    with pytest.raises(ImageError, match="not a readable image"):
        read_image(bad)


def test_imagenet_layout(tmp_path):
    for cls in ("n01440764", "n01443537"):
        for i in range(3):
            _png(tmp_path / "inet" / "val" / cls / f"{cls}_{i}.JPEG", (i * 50, 100, 30))
    targets = load_targets(section("imagenet", 4, "x", split="val"), 24, tmp_path / "inet")
    assert len(targets) == 4 and {t.label for t in targets} <= {"n01440764", "n01443537"}
    (tmp_path / "flat").mkdir()
    _png(tmp_path / "flat" / "loose.png", (1, 2, 3))
    with pytest.raises(TargetError, match="no class folders"):
        load_targets(section("imagenet", 1, "x"), 24, tmp_path / "flat")


def _cifar_root(root: Path, hundred: bool = False) -> Path:
    rng = np.random.default_rng(0)
    if hundred:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        for name, n in (("train", 20), ("test", 10)):
            data = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                    b"fine_labels": list(rng.integers(0, 100, n))}
            (folder / name).write_bytes(pickle.dumps(data))
        (folder / "meta").write_bytes(pickle.dumps(
            {b"fine_label_names": [f"c{i}".encode() for i in range(100)]}))
        return root
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                b"labels": list(rng.integers(0, 10, 4))}
        (folder / name).write_bytes(pickle.dumps(data))
    (folder / "batches.meta").write_bytes(pickle.dumps(
        {b"label_names": [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer",
                                               "dog", "frog", "horse", "ship", "truck")]}))
    return root


def test_cifar_from_a_local_root_never_downloads(tmp_path):
    root = _cifar_root(tmp_path / "c10")
    train = load_targets(section("cifar10", 5, "x"), 32, root)
    assert len(train) == 5 and all(t.id.startswith("cifar10-train-") for t in train)
    raw = pickle.loads((root / "cifar-10-batches-py" / "data_batch_1").read_bytes())[b"data"]
    first = [t for t in train if t.id == "cifar10-train-00000"]
    if first:  # exact pixels at the native size
        expected = torch.from_numpy(raw[0].reshape(3, 32, 32).astype(np.float32) / 255)
        assert torch.equal(first[0].image, expected)
    test = load_targets(section("cifar10", 4, "x", split="test"), 32, root)
    assert all(t.id.startswith("cifar10-test-") for t in test)
    c100 = load_targets(section("cifar100", 3, "x"), 16, _cifar_root(tmp_path / "c100", True))
    assert all(t.label.startswith("c") for t in c100)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(TargetError, match="cifar-10-batches-py/batches.meta is missing"):
        load_targets(section("cifar10", 1, "x"), 32, tmp_path / "nothing")
    with pytest.raises(TargetError, match="only 20 image"):
        load_targets(section("cifar10", 21, "x"), 32, root)


def test_seed_kinds():
    sec = SeedsSection(count=2, seed=4, kinds=[
        {"kind": "gaussian", "mean": 0.0, "scale": 1.0}, {"kind": "uniform"},
        {"kind": "constant", "value": 0.25}, {"kind": "image", "path": "other-target"}])
    specs = seed_specs(sec)
    assert [s.id for s in specs] == ["gaussian0-0", "gaussian0-1", "uniform1-0", "uniform1-1",
                                     "constant2-0", "constant2-1", "other-target3-0",
                                     "other-target3-1"]
    g0, g1 = seed_image(specs[0], sec, 8), seed_image(specs[1], sec, 8)
    assert not torch.equal(g0, g1) and torch.equal(g0, seed_image(specs[0], sec, 8))
    assert g0.min() >= 0 and g0.max() <= 1 and (g0 == 0).any()  # super-noise is clamped
    assert torch.equal(torch.round(g0 * 255) / 255, g0)
    assert torch.allclose(seed_image(specs[4], sec, 8), torch.full((3, 8, 8), 64 / 255))
    assert specs[6].per_target and other_target_index(specs[6], 3, 4) == 0
    assert other_target_index(specs[7], 0, 4) == 2


def test_image_seed_from_a_file(tmp_path):
    _png(tmp_path / "seed.png", (255, 0, 0), (20, 20))
    sec = SeedsSection(kinds=[{"kind": "image", "path": "seed.png"}])
    img = seed_image(seed_specs(sec)[0], sec, 10, lambda p: tmp_path / p)
    assert torch.allclose(img[0], torch.ones(10, 10)) and img[1:].abs().max() == 0


def test_png_is_exact_and_lossless():
    pixels = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    data = png_bytes(pixels)
    from io import BytesIO

    assert np.array_equal(np.asarray(Image.open(BytesIO(data))), pixels)
    assert png_bytes(pixels) == data
    grey = fit(np.full((10, 20), 128, dtype=np.uint8), 8)
    assert grey.shape == (3, 8, 8) and torch.allclose(grey, torch.full_like(grey, 128 / 255))
