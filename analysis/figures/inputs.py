"""The files figures and the report read, loaded once and named in every error.

A study's figures come from the stored outputs of `hitkit analyze` (analysis/),
responses.parquet, manifest.parquet with its image store, and proxy.csv. Files the
analysis writes are required: a missing one is a `FigureInputError` that names it
and the command that writes it. The manifest and proxy.csv are optional: a figure
that needs them is skipped with a message (`FigureSkipped`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from hitkit.config import Study, load_study

ANALYSIS_DIR = "analysis"
FIGURES_DIR = "figures"
RESPONSES_FILE = "responses.parquet"
MANIFEST_FILE = "manifest.parquet"
PROXY_FILE = "proxy.csv"

ARCH_WORDS = ("arch", "backbone", "network", "family")
TRAINING_WORDS = ("train", "loss", "objective", "robust", "adversar", "method", "regime")
ORDERED_WORDS = ("epoch", "checkpoint", "ckpt", "step", "iter", "stage")


class FigureInputError(FileNotFoundError):
    """A required input is missing or unreadable; the message names it and what writes it."""

    def __str__(self) -> str:  # FileNotFoundError would prefix an errno
        return str(self.args[0]) if self.args else ""


class FigureSkipped(Exception):
    """This study cannot have this figure (no ordered factor, no proxy.csv, ...)."""


@dataclass
class FigureOptions:
    """Choices a study.toml cannot make for a figure; every one has a sensible default."""

    x_factor: str | None = None  # architecture-like factor of the main scatter
    group_factor: str | None = None  # training-like factor (colours)
    ordered_factor: str | None = None  # epochs / checkpoints
    order: list[str] | None = None  # levels of the ordered factor, in order
    reference: float | None = None  # horizontal reference line of the ordered plot
    reference_label: str | None = None
    contrasts: str = "pairwise"  # "pairwise", "level" or "all"
    gallery_models: list[str] | None = None
    gallery_target: str | None = None
    max_gallery_models: int = 12


def numeric_key(level: str) -> tuple[int, float, str]:
    """Sort key: numbers by value (with units such as '100ep'), then the rest by name."""
    match = re.search(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", str(level))
    if match:
        return (0, float(match.group()), str(level))
    return (1, 0.0, str(level))


def _matches(name: str, words: tuple[str, ...]) -> bool:
    name = name.lower()
    return any(w in name for w in words)


def factor_roles(factors: list[str], options: FigureOptions) -> tuple[str, str | None]:
    """(x factor, group factor) of the main scatter: the options, else an architecture-like
    and a training-like factor by name, else the first two factors (an ordered factor such
    as epochs comes last)."""
    for name in (options.x_factor, options.group_factor):
        if name is not None and name not in factors:
            raise FigureSkipped(f"factor {name!r} is not in [analysis].factors "
                                f"({', '.join(factors)})")
    ordered = options.ordered_factor or detect_ordered(factors)
    candidates = [f for f in factors if f != ordered] + [f for f in factors if f == ordered]
    x = (options.x_factor
         or next((f for f in candidates if _matches(f, ARCH_WORDS)), None)
         or candidates[0])
    others = [f for f in candidates if f != x]
    group = (options.group_factor
             or next((f for f in others if _matches(f, TRAINING_WORDS)), None)
             or (others[0] if others else None))
    return x, group


def detect_ordered(factors: list[str]) -> str | None:
    """A factor named like an ordered one (epochs, checkpoint, steps), else None."""
    return next((f for f in factors if _matches(f, ORDERED_WORDS)), None)


@dataclass
class StudyInputs:
    """Lazily loaded inputs of one study folder."""

    root: Path
    study: Study | None = None
    _frames: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if self.study is None:
            self.study = load_study(self.root)

    @property
    def analysis_dir(self) -> Path:
        return self.root / ANALYSIS_DIR

    @property
    def figures_dir(self) -> Path:
        return self.root / FIGURES_DIR

    @property
    def factors(self) -> list[str]:
        return list(self.study.config.analysis.factors)

    @property
    def factor_levels(self) -> dict[str, list[str]]:
        return self.study.config.factor_levels

    # ------------------------------------------------------------- analysis files

    def _missing(self, path: Path) -> FigureInputError:
        summary = self.analysis_dir / "summary.json"
        if summary.is_file():
            try:
                passed = json.loads(summary.read_text(encoding="utf-8")).get("gate_passed", True)
            except (OSError, ValueError):
                passed = True
            if not passed:
                return FigureInputError(
                    f"{path} not found: the last `hitkit analyze --study {self.root}` did not "
                    "pass the convergence gate, so no effects were written (see "
                    f"{self.analysis_dir / 'diagnostics.csv'} and {self.analysis_dir / 'effects.md'})")
        return FigureInputError(f"{path} not found: run `hitkit analyze --study {self.root}` first")

    def analysis_csv(self, name: str, required: bool = True) -> pd.DataFrame | None:
        if name in self._frames:
            return self._frames[name]
        path = self.analysis_dir / name
        if not path.is_file():
            if required:
                raise self._missing(path)
            return None
        try:
            frame = pd.read_csv(path, keep_default_na=True, dtype={f: str for f in self.factors})
        except (OSError, ValueError) as exc:
            raise FigureInputError(f"{path}: cannot read: {exc}") from None
        self._frames[name] = frame
        return frame

    @cached_property
    def alignment(self) -> pd.DataFrame:
        return self.analysis_csv("alignment.csv")

    @cached_property
    def effects(self) -> pd.DataFrame:
        return self.analysis_csv("effects.csv")

    @cached_property
    def ppc(self) -> pd.DataFrame:
        return self.analysis_csv("ppc.csv")

    @cached_property
    def summary(self) -> dict:
        path = self.analysis_dir / "summary.json"
        if not path.is_file():
            raise self._missing(path)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise FigureInputError(f"{path}: cannot read: {exc}") from None

    # ------------------------------------------------------------------ tables

    @cached_property
    def responses(self) -> pd.DataFrame:
        from hitkit.responses_schema import RESPONSES
        from hitkit.tables import TableError, read_table

        path = self.root / RESPONSES_FILE
        if not path.is_file():
            raise FigureInputError(f"{path} not found: run `hitkit export --study {self.root}` "
                                   "first")
        try:
            return read_table(path, RESPONSES, self.factors).to_pandas()
        except TableError as exc:
            raise FigureInputError(str(exc)) from None

    @cached_property
    def manifest(self) -> pd.DataFrame:
        """The manifest; FigureSkipped when the study has none."""
        from generation.manifest_schema import MANIFEST
        from hitkit.tables import TableError, read_table

        path = self.root / MANIFEST_FILE
        if not path.is_file():
            raise FigureSkipped(f"{path} not found (run `hitkit generate --study {self.root}` "
                                "to make the IRIs)")
        try:
            return read_table(path, MANIFEST).to_pandas()
        except TableError as exc:
            raise FigureInputError(str(exc)) from None

    @cached_property
    def proxy(self) -> pd.DataFrame:
        """proxy.csv as written by `hitkit proxy`; FigureSkipped when absent."""
        path = self.root / PROXY_FILE
        if not path.is_file():
            raise FigureSkipped(f"{path} not found (run `hitkit proxy --study {self.root}` to "
                                "score the IRIs with the machine proxy)")
        try:
            frame = pd.read_csv(path, dtype={"model": str, "loss": str})
        except (OSError, ValueError) as exc:
            raise FigureInputError(f"{path}: cannot read: {exc}") from None
        missing = {"model", "alignment", "n_iris"} - set(frame.columns)
        if missing:
            raise FigureInputError(f"{path}: needs columns {', '.join(sorted(missing))} "
                                   "(written by `hitkit proxy`)")
        return frame

    @cached_property
    def proxy_summary(self) -> pd.DataFrame | None:
        return self.analysis_csv("proxy_calibration_summary.csv", required=False)
