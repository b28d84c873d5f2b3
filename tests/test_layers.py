"""The import contract of docs/architecture.md: imports only go down the layers.

Every import statement counts, including those inside functions (a lazy import is
still a dependency). A new module gets its layer from the longest rule prefix that
names it, so a module placed in the wrong folder fails here, not in review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hitkit", "generation", "analysis")

# layer -> the layers its modules may import besides their own. A module's layer is the
# longest name here that it starts with. Every layer may import `hitkit` itself (the
# package root holds the version and nothing else).
BELOW: dict[str, tuple[str, ...]] = {
    "hitkit": (),
    "hitkit.study": (),
    "generation": ("hitkit.study",),
    "hitkit.survey": ("hitkit.study",),
    "hitkit.survey.web": ("hitkit.study", "hitkit.survey"),
    "hitkit.platforms": ("hitkit.study", "hitkit.survey"),  # never survey.web: callbacks go in
    "analysis": ("hitkit.study",),
    "hitkit.cli": ("hitkit.study", "generation", "hitkit.survey", "hitkit.survey.web",
                   "hitkit.platforms", "analysis", "hitkit.demo"),
    "hitkit.demo": ("hitkit.study", "generation", "hitkit.survey", "hitkit.survey.web",
                    "hitkit.platforms", "analysis", "hitkit.cli"),
}
# heavy libraries the survey side must not load: a server or a platform command
# starts without torch or PyMC
HEAVY = ("torch", "torchvision", "pymc", "pytensor", "arviz", "nutpie")
LIGHT_LAYERS = ("hitkit", "hitkit.study", "hitkit.survey", "hitkit.survey.web", "hitkit.platforms")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    matches = [layer for layer in BELOW if module == layer or module.startswith(layer + ".")]
    return max(matches, key=len)


def imports_of(path: Path, module: str) -> set[str]:
    """Absolute names of every module the file imports (relative imports resolved)."""
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # `from hitkit.survey import web` imports the module hitkit.survey.web
            names.update(f"{stem}.{alias.name}" for alias in node.names)
    return names


def project_modules() -> list[tuple[Path, str]]:
    return [(path, module_name(path)) for package in PACKAGES
            for path in sorted((ROOT / package).rglob("*.py"))]


def violations() -> list[str]:
    found = []
    for path, module in project_modules():
        layer = layer_of(module)
        for name in sorted(imports_of(path, module)):
            top = name.split(".")[0]
            if top in HEAVY and layer in LIGHT_LAYERS:
                found.append(f"{module} imports {name}: a heavy library on the survey side")
            elif top in PACKAGES and layer_of(name) not in (layer, "hitkit", *BELOW[layer]):
                found.append(f"{module} (layer {layer}) imports {name} (layer {layer_of(name)})")
    return found


def test_every_module_has_a_layer():
    """Only the package root lives loose in hitkit/; every other module sits in a layer."""
    loose = [m for _, m in project_modules() if layer_of(m) == "hitkit" and m != "hitkit"]
    assert loose == []


def test_imports_only_go_down():
    assert violations() == []


@pytest.mark.parametrize("bad_import, module, expected", [
    ("from hitkit.survey.ledger import Ledger", "hitkit.study.config", "hitkit.survey.ledger"),
    ("from generation.run import run", "analysis.data", "generation.run"),
    ("import torch", "hitkit.survey.design", "heavy library"),
    ("from pymc import Model", "hitkit.study.size", "heavy library"),
    ("from hitkit.survey.web.app import create_app", "hitkit.platforms.local", "layer hitkit.survey.web"),
    ("from hitkit.cli.options import open_study", "generation.run", "layer hitkit.cli"),
    ("from hitkit.platforms import records", "hitkit.survey.web.app", "hitkit.platforms"),
])
def test_contract_catches_an_upward_import(tmp_path, monkeypatch, bad_import, module, expected):
    """The checker itself: a planted upward import is reported, and only that one."""
    path = tmp_path / Path(*module.split(".")).with_suffix(".py")
    path.parent.mkdir(parents=True)
    path.write_text(bad_import + "\n")
    for package in PACKAGES:
        (tmp_path / package).mkdir(exist_ok=True)
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    found = violations()
    assert len(found) == 1 and expected in found[0], found


def test_architecture_doc_names_every_module():
    """docs/architecture.md moves with the code: each module is named there, by its file
    name or by its package folder."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [str(path.relative_to(ROOT)) for path, _ in project_modules()
               if path.name != "__init__.py" and f"`{path.name}`" not in text
               and f"`{path.parent.name}/`" not in text]
    assert missing == [], f"docs/architecture.md does not name {missing}"
