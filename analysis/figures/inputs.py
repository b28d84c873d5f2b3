"""The files figures and the report read, loaded once and named in every error.

A study's figures come from the stored outputs of `hitkit analyze` (analysis/, or
analysis/loss-<name>/ for an IRI loss other than the study's default),
responses.parquet, manifest.parquet with its image store, and proxy.csv (the rows
of the analysed loss). Files the analysis writes are required: a missing one is a `FigureInputError` that names it
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

from analysis.data import loss_folder, resolve_iri_loss
from analysis.proxy_calibration import ProxyError, read_proxy
from hitkit.study.config import Study, load_study
from hitkit.study.manifest import MANIFEST_FILE
from hitkit.study.proxy import PROXY_FILE
from hitkit.study.responses import RESPONSES_FILE

ANALYSIS_DIR = "analysis"
FIGURES_DIR = "figures"

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
    iri_loss: str | None = None  # whose analysis to read; None: the study's default loss
    notes: list[str] = field(default_factory=list)  # said once, after the figure
    _frames: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if self.study is None:
            self.study = load_study(self.root)
        self.iri_loss = resolve_iri_loss(self.study, self.iri_loss)  # ValueError if unknown

    @property
    def analysis_dir(self) -> Path:
        """analysis/, or analysis/loss-<name>/ for a loss other than the default."""
        return loss_folder(self.root / ANALYSIS_DIR, self.study, self.iri_loss)

    @property
    def figures_dir(self) -> Path:
        """figures/, or figures/loss-<name>/ for a loss other than the default."""
        return loss_folder(self.root / FIGURES_DIR, self.study, self.iri_loss)

    @property
    def is_default_loss(self) -> bool:
        return self.iri_loss == self.study.config.default_iri_loss

    @property
    def analysed_loss(self) -> str | None:
        """The IRI loss the stored analysis is for (summary.json), None when it does not
        say (an analysis from before losses were analysed one at a time: pooled)."""
        try:
            return self.summary.get("iri_loss")
        except FigureInputError:
            return None

    def loss_title(self) -> str | None:
        """'IRI loss: reg_free' for a figure's title, None when not recorded."""
        loss = self.analysed_loss
        return f"IRI loss: {loss}" if loss else None

    def required(self, relative: str) -> Path:
        """A required input's path: 'analysis/x' lies in analysis_dir."""
        if relative.startswith(f"{ANALYSIS_DIR}/"):
            return self.analysis_dir / relative.removeprefix(f"{ANALYSIS_DIR}/")
        return self.root / relative

    @property
    def analyze_command(self) -> str:
        """The `hitkit analyze` call that writes analysis_dir."""
        return (f"hitkit analyze --study {self.root}"
                + ("" if self.is_default_loss else f" --iri-loss {self.iri_loss}"))

    @property
    def factors(self) -> list[str]:
        return list(self.study.config.analysis.factors)

    @property
    def factor_levels(self) -> dict[str, list[str]]:
        return self.study.config.factor_levels

    # ------------------------------------------------------------- analysis files

    def missing(self, path: Path) -> FigureInputError:
        """The error for a missing analysis output: what to run (or why the gate stopped it)."""
        if (self.analysis_dir / "summary.json").is_file():
            try:
                passed = self.summary.get("gate_passed", True)
            except FigureInputError:  # unreadable: say what to run
                passed = True
            if not passed:
                return FigureInputError(
                    f"{path} not found: the last `{self.analyze_command}` did not "
                    "pass the convergence gate, so no effects were written (see "
                    f"{self.analysis_dir / 'diagnostics.csv'} and {self.analysis_dir / 'effects.md'})")
        return FigureInputError(f"{path} not found: run `{self.analyze_command}` first")

    def analysis_csv(self, name: str, required: bool = True) -> pd.DataFrame | None:
        if name in self._frames:
            return self._frames[name]
        path = self.analysis_dir / name
        if not path.is_file():
            if required:
                raise self.missing(path)
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
            raise self.missing(path)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise FigureInputError(f"{path}: cannot read: {exc}") from None

    # ------------------------------------------------------------------ tables

    @cached_property
    def responses(self) -> pd.DataFrame:
        from hitkit.study.responses import RESPONSES
        from hitkit.study.tables import TableError, read_table

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
        from hitkit.study.manifest import MANIFEST
        from hitkit.study.tables import TableError, read_table

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
        """Per-model machine proxy of the analysed IRI loss (analysis.proxy_calibration's
        reading of proxy.csv); FigureSkipped when there is none."""
        path = self.root / PROXY_FILE
        if not path.is_file():
            raise FigureSkipped(f"{path} not found (run `hitkit proxy --study {self.root}` to "
                                "score the IRIs with the machine proxy)")
        try:
            return read_proxy(path, loss=self.analysed_loss or None)
        except ProxyError as exc:
            raise FigureSkipped(str(exc)) from None
        except (OSError, ValueError) as exc:
            raise FigureInputError(f"{path}: cannot read: {exc}") from None

    @cached_property
    def proxy_summary(self) -> pd.DataFrame | None:
        return self.analysis_csv("proxy_calibration_summary.csv", required=False)
