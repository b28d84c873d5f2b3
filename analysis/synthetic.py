"""Synthetic studies drawn from the analysis model's own generative process.

Used by the tests (parameter recovery, gate, bad inputs), by `hitkit plan`
(precision by simulation) and by the recovery/SBC benchmark. A simulated study
is a responses table with the exact columns `hitkit export` writes, so it goes
through the same loading and validation as real data.

Generative model, per response row r of participant j, image i, model m:

    p_r = chance_r + (1 - chance_r - lapse) * logistic(eta_r)
    eta_r = intercept + sum_f effect_f[level_f(m)] + interaction terms
            + u_model[m] + u_participant[j] + u_image[i]

with u_* ~ Normal(0, sd_*). Careless participants answer at chance on every
trial (catch trials included), so the pre-registered catch-accuracy rule
excludes most of them, as it would in a real study.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from hitkit.study.exclusions import CATCH_ACCURACY
from hitkit.study.responses import RESPONSES
from hitkit.study.tables import write_table


@dataclass(frozen=True)
class Design:
    """What a study collects: factors, models, participants, trials, task mix."""

    factors: dict[str, list[str]]
    models_per_cell: int = 1
    participants: int = 40
    trials_per_participant: int = 60
    images: int = 40
    catch_per_participant: int = 4
    careless_share: float = 0.0
    matching_share: float = 0.0  # share of rows from a matching task with k options
    k: int = 3
    min_catch_accuracy: float = 0.8

    def __post_init__(self) -> None:
        for name, levels in self.factors.items():
            if len(levels) < 2 or len(set(levels)) != len(levels):
                raise ValueError(f"factor {name!r} needs two or more distinct levels, got {levels}")
        if self.models_per_cell < 1 or self.participants < 1 or self.trials_per_participant < 1:
            raise ValueError("models_per_cell, participants and trials_per_participant must be >= 1")
        if not 0 <= self.careless_share <= 1 or not 0 <= self.matching_share <= 1:
            raise ValueError("careless_share and matching_share must be in [0, 1]")

    @property
    def cells(self) -> list[dict[str, str]]:
        names = list(self.factors)
        return [dict(zip(names, combo, strict=True))
                for combo in itertools.product(*(self.factors[n] for n in names))]

    @property
    def model_count(self) -> int:
        return len(self.cells) * self.models_per_cell

    @property
    def responses(self) -> int:
        return self.participants * self.trials_per_participant


@dataclass(frozen=True)
class Truth:
    """The parameters a study is simulated from (logit scale)."""

    intercept: float = 0.5
    # factor -> level -> effect; each factor's effects are centred to sum to zero
    effects: dict[str, dict[str, float]] = field(default_factory=dict)
    # "f1:f2" -> {"l1:l2": value}; missing cells are 0; centred like a zero-sum interaction
    interactions: dict[str, dict[str, float]] = field(default_factory=dict)
    sd_participant: float = 0.5
    sd_image: float = 0.7
    sd_model: float = 0.2
    lapse: float = 0.03


@dataclass
class SimulatedStudy:
    table: pa.Table
    design: Design
    truth: Truth
    models: list[dict[str, str]]  # name and factor levels of every model
    model_effects: np.ndarray  # the u_model values drawn
    # The factor effects of *these* simulated models (the finite-population truth):
    # the stated effects plus the main-effect part of the drawn model deviations.
    realised_effects: dict[str, dict[str, float]]


def centred_effects(design: Design, truth: Truth) -> dict[str, dict[str, float]]:
    """The truth's factor effects, centred to sum to zero (missing levels are 0)."""
    out: dict[str, dict[str, float]] = {}
    for name, levels in design.factors.items():
        given = truth.effects.get(name, {})
        unknown = sorted(set(given) - set(levels))
        if unknown:
            raise ValueError(f"truth.effects[{name!r}] names unknown level(s) {unknown}")
        values = np.array([float(given.get(level, 0.0)) for level in levels])
        values -= values.mean()
        out[name] = dict(zip(levels, values.tolist(), strict=True))
    return out


def _interaction_value(truth: Truth, cell: dict[str, str], design: Design) -> float:
    total = 0.0
    for term, values in truth.interactions.items():
        names = term.split(":")
        grid = np.zeros([len(design.factors[n]) for n in names])
        for key, value in values.items():
            idx = tuple(design.factors[n].index(lv) for n, lv in zip(names, key.split(":"), strict=True))
            grid[idx] = value
        for axis in range(grid.ndim):  # zero-sum along every axis, as the model's prior
            grid = grid - grid.mean(axis=axis, keepdims=True)
        total += float(grid[tuple(design.factors[n].index(cell[n]) for n in names)])
    return total


@dataclass
class Draw:
    """The raw arrays of one simulated study (main rows, then catch rows)."""

    models: list[dict[str, str]]
    model_eta: np.ndarray  # per model: intercept + effects + interactions + u_model
    u_model: np.ndarray
    participant: np.ndarray  # main rows
    model: np.ndarray
    image: np.ndarray
    matching: np.ndarray
    chance: np.ndarray
    correct: np.ndarray
    catch_participant: np.ndarray
    catch_image: np.ndarray
    catch_correct: np.ndarray
    excluded_participant: np.ndarray  # per participant


def draw_responses(design: Design, truth: Truth, rng: np.random.Generator) -> Draw:
    """Draw responses as arrays (fast; `simulate` adds the responses table)."""
    effects = centred_effects(design, truth)
    factor_names = list(design.factors)

    models: list[dict[str, str]] = []
    cell_eta: list[float] = []
    for c, cell in enumerate(design.cells):
        eta = truth.intercept + sum(effects[f][cell[f]] for f in factor_names)
        eta += _interaction_value(truth, cell, design)
        for s in range(design.models_per_cell):
            models.append({"name": f"m{c:02d}-{s}", "cell": str(c), **cell})
            cell_eta.append(eta)
    n_models = len(models)
    u_model = rng.normal(0.0, truth.sd_model, n_models)
    model_eta = np.asarray(cell_eta) + u_model

    n_p, n_i = design.participants, design.images
    u_part = rng.normal(0.0, truth.sd_participant, n_p)
    u_img = rng.normal(0.0, truth.sd_image, n_i)
    careless = rng.random(n_p) < design.careless_share

    per = design.trials_per_participant
    n_main = n_p * per
    part = np.repeat(np.arange(n_p), per)
    mod = rng.integers(0, n_models, n_main)
    img = rng.integers(0, n_i, n_main)
    matching = rng.random(n_main) < design.matching_share
    chance = np.where(matching, 1.0 / design.k, 0.5)
    eta = model_eta[mod] + u_part[part] + u_img[img]
    p = chance + (1.0 - chance - truth.lapse) / (1.0 + np.exp(-eta))
    p = np.where(careless[part], chance, p)
    correct = rng.random(n_main) < p

    n_c = design.catch_per_participant
    c_part = np.repeat(np.arange(n_p), n_c)
    c_img = rng.integers(0, n_i, n_p * n_c)
    c_p = np.where(careless[c_part], 0.5, 1.0 - truth.lapse)  # p at eta -> inf
    c_correct = rng.random(n_p * n_c) < c_p
    if n_c:
        catch_acc = np.bincount(c_part, weights=c_correct, minlength=n_p) / n_c
    else:
        catch_acc = np.ones(n_p)
    excluded_p = catch_acc < design.min_catch_accuracy
    return Draw(models, model_eta, u_model, part, mod, img, matching, chance, correct,
                c_part, c_img, c_correct, excluded_p)


def simulate(design: Design, truth: Truth, seed: int = 0) -> SimulatedStudy:
    """Draw one synthetic study; the table has the responses.parquet columns."""
    rng = np.random.default_rng(seed)
    d = draw_responses(design, truth, rng)
    table = _to_table(design, d.models, rng, d.participant, d.model, d.image, d.matching,
                      d.chance, d.correct, d.catch_participant, d.catch_image, d.catch_correct,
                      d.excluded_participant)
    realised = _realised_effects(design, d.models, d.model_eta)
    return SimulatedStudy(table, design, truth, d.models, d.u_model, realised)


def _realised_effects(design: Design, models: list[dict[str, str]], model_eta: np.ndarray
                      ) -> dict[str, dict[str, float]]:
    """Level mean minus mean of level means of the models' eta (balanced designs)."""
    out: dict[str, dict[str, float]] = {}
    for name, levels in design.factors.items():
        means = np.array([np.mean([e for m, e in zip(models, model_eta, strict=True)
                                   if m[name] == level]) for level in levels])
        out[name] = dict(zip(levels, (means - means.mean()).tolist(), strict=True))
    return out


def _to_table(design, models, rng, part, mod, img, matching, chance, correct,
              c_part, c_img, c_correct, excluded_p) -> pa.Table:
    n_main, n_catch = len(part), len(c_part)
    n = n_main + n_catch
    all_part = np.concatenate([part, c_part])
    kind = np.array(["main"] * n_main + ["catch"] * n_catch)
    task = np.where(np.concatenate([matching, np.zeros(n_catch, bool)]), "matching", "2afc")
    chance_all = np.concatenate([chance, np.full(n_catch, 0.5)])
    correct_all = np.concatenate([correct, c_correct])
    target = np.concatenate([img, c_img])
    answer = rng.integers(0, 2, n)
    answer = np.where(task == "matching", rng.integers(0, design.k, n), answer)
    n_opts = np.where(task == "matching", design.k, 2)
    wrong = (answer + 1 + rng.integers(0, n_opts - 1)) % n_opts
    choice = np.where(correct_all, answer, wrong)
    model_name = [models[m]["name"] for m in mod] + [""] * n_catch
    excluded = excluded_p[all_part]
    when = datetime(2026, 11, 1, tzinfo=UTC)
    columns: dict[str, list] = {
        "response_id": [f"r{k:07d}" for k in range(n)],
        "trial_id": [f"t{k:07d}" for k in range(n)],
        "hit_id": [f"h{j:05d}" for j in all_part],
        "assignment_id": [f"a{j:05d}" for j in all_part],
        "participant": [f"p{j:05d}" for j in all_part],
        "task": task.tolist(),
        "kind": kind.tolist(),
        "position": np.concatenate([np.tile(np.arange(design.trials_per_participant),
                                            design.participants),
                                    np.tile(np.arange(design.catch_per_participant),
                                            design.participants)]).astype(np.int32).tolist(),
        "iri_id": [f"{name}-img{t:04d}" if name else f"img{t:04d}"
                   for name, t in zip(model_name, target, strict=True)],
        "model": model_name,
        "target_id": [f"img{t:04d}" for t in target],
        "seed_id": [f"seed{t:04d}" if k == "main" else "" for t, k in zip(target, kind, strict=True)],
        "loss": ["reg_free" if k == "main" else "" for k in kind],
        "layer": ["penultimate" if k == "main" else "" for k in kind],
        "choice": choice.astype(np.int32).tolist(),
        "answer": answer.astype(np.int32).tolist(),
        "correct": correct_all.tolist(),
        "rt_ms": np.round(rng.lognormal(math.log(1400), 0.4, n), 1).tolist(),
        "chance": chance_all.tolist(),
        "excluded": excluded.tolist(),
        "exclusion_reason": ["catch accuracy below min_catch_accuracy" if e else None
                             for e in excluded],
        "platform": ["local"] * n,
        "submitted_at": [when] * n,
        "exclusion_rules": [[CATCH_ACCURACY] if e else [] for e in excluded],
    }
    for name in design.factors:
        columns[name] = [models[m][name] for m in mod] + [""] * n_catch
    return RESPONSES.to_table(columns, list(design.factors))


def study_toml_data(design: Design, study_id: str = "simulated", *, draws: int = 1000,
                    tune: int = 1000, chains: int = 4, analysis: dict | None = None,
                    platform: str = "local") -> dict:
    """A study.toml (as data) describing a simulated design, for `hitkit analyze`/`plan`."""
    models = []
    for c, cell in enumerate(design.cells):
        for s in range(design.models_per_cell):
            models.append({
                "name": f"m{c:02d}-{s}",
                "arch": "tiny_convnet",
                "checkpoint": f"models/m{c:02d}-{s}.pt",
                "normalization": "none",
                "input_size": 32,
                "factors": dict(cell),
            })
    trials = design.trials_per_participant + design.catch_per_participant
    section = {"factors": list(design.factors), "draws": draws, "tune": tune, "chains": chains,
               "seed": 0}
    section.update(analysis or {})
    return {
        "study": {"id": study_id, "title": "A simulated study", "secret_file": "secret.key"},
        "models": models,
        "targets": {"source": "shapes", "count": design.images, "size": 32},
        "generation": {"steps": 10, "losses": [{"name": "reg_free", "kind": "reg_free"}]},
        "survey": {"task": "2afc", "trials_per_hit": trials,
                   "catch_per_hit": design.catch_per_participant, "repeat_share": 0.0,
                   "responses_per_iri": 1, "reward": 1.5, "time_estimate_minutes": 8},
        "platform": {"kind": platform},
        "quality": {"min_catch_accuracy": design.min_catch_accuracy},
        "analysis": section,
    }


def write_study(folder: str | Path, sim: SimulatedStudy, **toml_options) -> Path:
    """Write study.toml and responses.parquet for a simulated study; returns the folder."""
    from hitkit.study.config import study_from_dict, study_to_toml

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = study_from_dict(study_toml_data(sim.design, **toml_options))
    (folder / "study.toml").write_text(study_to_toml(config), encoding="utf-8")
    write_table(sim.table, folder / "responses.parquet")
    return folder
