"""Target images from [targets]: image folders, CIFAR-10/100, ImageNet-style folders,
the procedural `shapes` set and scikit-image's bundled `sample-photos`.

Nothing is ever downloaded: CIFAR is read from a local torchvision root (the
folder holding `cifar-10-batches-py` or `cifar-100-python`). A subset of `count`
images is drawn with [targets].seed, in index order.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from generation.image_tensors import fit
from generation.shapes import SHAPE_CLASSES, shape_image
from hitkit.study.generation_config import TargetsSection
from hitkit.study.image_io import IMAGE_SUFFIXES, ImageError, image_files, read_image

# scikit-image's photos that ship inside its wheel (no pooch download)
SAMPLE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry",
                 "hubble_deep_field", "retina", "colorwheel", "camera", "brick", "grass",
                 "gravel", "moon", "coins")


class TargetError(ValueError):
    """Targets that cannot be loaded; names the path or the setting."""


@dataclass(frozen=True)
class Target:
    id: str  # stable across runs: source, split and index or relative path
    image: torch.Tensor  # (3, size, size) in [0, 1], on the 8-bit grid
    label: str  # class name, or "" when the source has none


def choose(available: int, count: int, seed: int, what: str) -> list[int]:
    if available == 0:
        raise TargetError(f"{what}: no images found")
    if count > available:
        raise TargetError(f"{what}: targets.count is {count} but only {available} image(s) exist")
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(available, size=count, replace=False))


def _shapes(section: TargetsSection, size: int, root: Path | None) -> list[Target]:
    out = []
    for i in range(section.count):
        image, label = shape_image(i, size, section.seed)
        out.append(Target(f"shapes-{section.seed}-{i:05d}", fit(image, size), SHAPE_CLASSES[label]))
    return out


def _sample_photos(section: TargetsSection, size: int, root: Path | None) -> list[Target]:
    import skimage.data

    picks = choose(len(SAMPLE_PHOTOS), section.count, section.seed, "sample-photos")
    return [Target(f"photo-{SAMPLE_PHOTOS[i]}", fit(getattr(skimage.data, SAMPLE_PHOTOS[i])(), size),
                   SAMPLE_PHOTOS[i]) for i in picks]


def _files(files: list[Path], base: Path, section: TargetsSection, size: int,
           label_of: Callable[[Path], str], what: str) -> list[Target]:
    picks = choose(len(files), section.count, section.seed, what)
    out = []
    for i in picks:
        rel = files[i].relative_to(base).as_posix()
        out.append(Target(f"file-{rel}", fit(read_image(files[i]), size), label_of(files[i])))
    return out


def _folder(section: TargetsSection, size: int, root: Path | None) -> list[Target]:
    folder = _existing_folder(root)
    files = image_files(folder)
    if not files:
        raise TargetError(f"targets.path: {folder} holds no image files "
                          f"(looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return _files(files, folder, section, size,
                  lambda p: "" if p.parent == folder else p.parent.name, f"targets.path {folder}")


def _imagenet(section: TargetsSection, size: int, root: Path | None) -> list[Target]:
    base = _existing_folder(root)
    split_dir = base / section.split
    folder = split_dir if split_dir.is_dir() else base
    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise TargetError(f"targets.path: {folder} has no class folders (ImageNet layout: "
                          f"{base}/{section.split}/<class>/<image>)")
    files = [f for c in classes for f in image_files(c)]
    if not files:
        raise TargetError(f"targets.path: the class folders under {folder} hold no images")
    return _files(files, folder, section, size, lambda p: p.parent.name, f"targets.path {folder}")


def _existing_folder(root: Path | None) -> Path:
    if root is None or not root.is_dir():
        raise TargetError(f"targets.path: {root} is not a folder")
    return root


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise TargetError(f"targets.path: {path} is missing (a torchvision CIFAR root; "
                          "nothing is downloaded: place the extracted archive there)")
    with path.open("rb") as handle:
        try:
            return pickle.load(handle, encoding="bytes")
        except Exception as exc:  # noqa: BLE001
            raise TargetError(f"{path}: not a CIFAR batch file ({exc})") from None


def _cifar(section: TargetsSection, size: int, root: Path | None) -> list[Target]:
    base = _existing_folder(root)
    ten = section.source == "cifar10"
    folder_name = "cifar-10-batches-py" if ten else "cifar-100-python"
    folder = base if base.name == folder_name else base / folder_name
    train = section.split == "train"
    if ten:
        names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
        meta, label_key, names_key = _unpickle(folder / "batches.meta"), b"labels", b"label_names"
    else:
        names = ["train"] if train else ["test"]
        meta, label_key, names_key = _unpickle(folder / "meta"), b"fine_labels", b"fine_label_names"
    batches = [_unpickle(folder / n) for n in names]
    data = np.concatenate([np.asarray(b[b"data"], dtype=np.uint8) for b in batches])
    labels = [int(v) for b in batches for v in b[label_key]]
    classes = [c.decode() for c in meta[names_key]]
    picks = choose(len(data), section.count, section.seed, f"{section.source} {folder}")
    split = "train" if train else "test"
    out = []
    for i in picks:
        pixels = data[i].reshape(3, 32, 32).transpose(1, 2, 0)
        out.append(Target(f"{section.source}-{split}-{i:05d}", fit(pixels, size), classes[labels[i]]))
    return out


LOADERS: dict[str, Callable[[TargetsSection, int, Path | None], list[Target]]] = {
    "shapes": _shapes,
    "sample-photos": _sample_photos,
    "folder": _folder,
    "imagenet": _imagenet,
    "cifar10": _cifar,
    "cifar100": _cifar,
}


def load_targets(section: TargetsSection, size: int, root: Path | None = None) -> list[Target]:
    """The study's targets at `size` px; `root` is the resolved targets.path."""
    try:
        return LOADERS[section.source](section, size, root)
    except ImageError as exc:
        raise TargetError(str(exc)) from None
