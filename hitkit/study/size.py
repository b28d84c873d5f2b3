"""The study's size: how many IRIs, trials, HITs and participants, and what they cost.

(Not to be confused with `hitkit plan`, the precision planning in analysis.planning.)

`hitkit validate` prints it before anything is generated or paid for, so a
researcher sees the size of the study (and its bill) while it is still a file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from hitkit.study.config import Study, StudyConfig
from hitkit.study.fees import (
    CostEstimate,
    hourly_rate,
    local_cost,
    mturk_cost,
    prolific_cost,
    to_major_units,
    to_minor_units,
)
from hitkit.study.generation_config import NEEDS_PATH, ImageSeed


@dataclass(frozen=True)
class StudySize:
    models: int
    targets: int
    seeds: int
    losses: int
    iris: int
    image_steps: int
    main_trials: int  # distinct main trials (an IRI in 2AFC, a group of k IRIs in matching)
    hits: int
    trials_per_hit: int
    main_per_hit: int
    catch_per_hit: int
    repeats_per_hit: int
    participants: int
    responses: int  # trial responses collected in all
    cost: CostEstimate
    hourly: float
    notes: list[str] = field(default_factory=list)


def count_main_trials(config: StudyConfig, iris_per_model_loss: int) -> int:
    """2AFC: one trial per IRI. Matching: groups of k IRIs of one model and loss."""
    if config.survey.task == "2afc":
        per_model_loss = iris_per_model_loss
    else:
        per_model_loss = iris_per_model_loss // int(config.survey.k or 2)
    return per_model_loss * len(config.models) * len(config.generation.losses)


def estimate_cost(config: StudyConfig, hits: int, participants: int) -> CostEstimate:
    platform, survey = config.platform, config.survey
    if platform.kind == "mturk":
        return mturk_cost(survey.reward, survey.responses_per_iri, hits, platform.mturk.masters)
    if platform.kind == "prolific":
        p = platform.prolific
        return prolific_cost(survey.reward, participants, p.service_fee, p.vat, platform.currency)
    return local_cost(survey.reward, participants, platform.currency)


def study_size(config: StudyConfig) -> StudySize:
    survey = config.survey
    seeds = config.seeds.count * len(config.seeds.kinds)
    iris_per_model_loss = config.targets.count * seeds
    iris = iris_per_model_loss * len(config.models) * len(config.generation.losses)
    main_trials = count_main_trials(config, iris_per_model_loss)
    main_per_hit = survey.main_trials_capacity(config.targets.count)
    repeats_per_hit = survey.repeats_for(main_per_hit)
    hits = math.ceil(main_trials / main_per_hit) if main_trials and main_per_hit else 0
    participants = hits * survey.responses_per_iri
    cost = estimate_cost(config, hits, participants)
    notes: list[str] = []
    if main_per_hit < survey.main_trials_per_hit:
        notes.append(
            f"{survey.main_trials_per_hit} main trials per HIT would show a target twice "
            f"({config.targets.count} targets): HITs hold {main_per_hit} main + "
            f"{survey.catch_per_hit} catch + {repeats_per_hit} repeats = "
            f"{main_per_hit + survey.catch_per_hit + repeats_per_hit} trials; lower "
            "trials_per_hit or add targets"
        )
    if survey.task == "matching" and iris_per_model_loss % int(survey.k or 2):
        left = iris_per_model_loss % int(survey.k or 2)
        notes.append(
            f"matching groups k={survey.k} IRIs per model and loss: {left} IRI(s) per "
            "model and loss are left out; make targets × seeds a multiple of k"
        )
    hourly = hourly_rate(survey.reward, survey.time_estimate_minutes)
    if config.platform.kind == "prolific" and hourly < config.platform.prolific.minimum_hourly:
        notes.append(
            f"reward {survey.reward:.2f} for {survey.time_estimate_minutes:g} min is "
            f"{hourly:.2f}/h, below Prolific's minimum {config.platform.prolific.minimum_hourly:.2f}/h: "
            "publish will refuse it unless --force"
        )
    cap = config.platform.budget_cap
    if cap is not None and cost.total_minor > to_minor_units(cap):
        notes.append(
            f"estimated cost {to_major_units(cost.total_minor):.2f} {cost.currency} exceeds "
            f"budget_cap {cap:.2f}: "
            "publish will refuse it"
        )
    if config.platform.kind == "mturk":
        notes.append(
            "Amazon closed Mechanical Turk on 2026-09-30: the mturk platform works against "
            "MTurk-compatible endpoints (platform.mturk.endpoint_url) and for importing archives"
        )
    return StudySize(
        models=len(config.models),
        targets=config.targets.count,
        seeds=seeds,
        losses=len(config.generation.losses),
        iris=iris,
        image_steps=iris * config.generation.steps,
        main_trials=main_trials,
        hits=hits,
        trials_per_hit=main_per_hit + survey.catch_per_hit + repeats_per_hit,
        main_per_hit=main_per_hit,
        catch_per_hit=survey.catch_per_hit,
        repeats_per_hit=repeats_per_hit,
        participants=participants,
        responses=participants * (main_per_hit + survey.catch_per_hit + repeats_per_hit),
        cost=cost,
        hourly=hourly,
        notes=notes,
    )


def check_paths(study: Study) -> tuple[list[str], list[str]]:
    """(errors, notes) about the files and folders the study names."""
    config, errors, notes = study.config, [], []
    to_train: list[str] = []
    for i, model in enumerate(config.models):
        path = study.resolve(model.checkpoint) if model.checkpoint else None
        if path is not None and path.is_file():
            continue
        if model.train is not None:
            to_train.append(model.name)
        elif path is None:
            continue  # unreachable: the schema requires a checkpoint or a train table
        elif path.exists():
            errors.append(f"models[{i}].checkpoint: {path} is not a file")
        else:
            errors.append(f"models[{i}].checkpoint: {path} does not exist")
    if config.targets.source in NEEDS_PATH and config.targets.path:
        folder = study.resolve(config.targets.path)
        if not folder.is_dir():
            errors.append(f"targets.path: {folder} is not a folder")
        elif not any(folder.iterdir()):
            errors.append(f"targets.path: {folder} is empty")
    for i, kind in enumerate(config.seeds.kinds):
        if isinstance(kind, ImageSeed) and kind.path != "other-target":
            if not study.resolve(kind.path).is_file():
                errors.append(f"seeds.kinds[{i}].path: {study.resolve(kind.path)} does not exist")
    if to_train:
        notes.append(
            f"{len(to_train)} model(s) without a checkpoint yet will be trained by "
            f"`hitkit generate`: {', '.join(to_train)}"
        )
    secret = study.secret_path
    if _inside(secret, study.root):
        notes.append(
            f"study.secret_file {secret} is inside the study folder: keep it out of "
            "anything you share or version"
        )
    elif not secret.exists():
        notes.append(f"study.secret_file {secret} will be created on first export")
    return errors, notes


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _count(n: int) -> str:
    return f"{n:,}"


def format_size(study: Study, size: StudySize, path_notes: list[str]) -> str:
    config = study.config
    survey, cost = config.survey, size.cost
    lines = [
        f"Study {config.study.id!r}: {config.study.title}",
        f"  file: {study.path}",
        "",
        "Models",
    ]
    name_width = max(len(m.name) for m in config.models)
    arch_width = max(len(m.arch) for m in config.models)
    for model in config.models:
        factors = ", ".join(f"{k}={v}" for k, v in model.factors.items())
        lines.append(
            f"  {model.name:<{name_width}}  {model.arch:<{arch_width}}  "
            f"layer={model.layer}  {factors}"
        )
    lines.append("  factors: " + "; ".join(
        f"{name} ({len(levels)} levels: {', '.join(levels)})"
        for name, levels in config.factor_levels.items()
    ))
    seed_kinds = ", ".join(k.kind for k in config.seeds.kinds)
    losses = ", ".join(f"{loss.name} ({loss.kind})" for loss in config.generation.losses)
    chance = f"chance {survey.chance:.3g}"
    lines += [
        "",
        "Generation",
        f"  models            {size.models}",
        f"  targets           {size.targets} ({config.targets.source})",
        f"  seeds per target  {size.seeds} ({config.seeds.count} × [{seed_kinds}])",
        f"  losses            {size.losses} ({losses})",
        f"  IRIs              {_count(size.iris)} = models × targets × seeds × losses",
        f"  work              {_count(size.image_steps)} image-steps "
        f"({config.generation.steps:,} steps, {config.generation.optimizer}, "
        f"batch {config.generation.batch_size})",
        "",
        "Survey",
        f"  task              {survey.task}"
        + (f" (k={survey.k})" if survey.task == "matching" else "")
        + f", {chance}, foil: {survey.foil}",
        f"  main trials       {_count(size.main_trials)}",
        f"  per HIT           {size.trials_per_hit} trials = {size.main_per_hit} main + "
        f"{size.catch_per_hit} catch + {size.repeats_per_hit} repeats",
        f"  HITs              {_count(size.hits)}",
        f"  participants      {_count(size.participants)} "
        f"({survey.responses_per_iri} per HIT, one HIT each)",
        f"  responses         {_count(size.responses)}",
        "",
        f"Cost on {config.platform.kind}",
        f"  rewards           {to_major_units(cost.rewards_minor):,.2f} {cost.currency} "
        f"({size.participants} × {to_major_units(cost.reward_per_assignment_minor)} for "
        f"~{survey.time_estimate_minutes:g} min = {size.hourly:.2f} {cost.currency}/h)",
        f"  fees              {to_major_units(cost.fees_minor):,.2f} {cost.currency} "
        f"({cost.rate_note})",
        f"  total             {to_major_units(cost.total_minor):,.2f} {cost.currency}"
        + (
            f" (budget cap {config.platform.budget_cap:,.2f})"
            if config.platform.budget_cap is not None
            else ""
        ),
        "",
        "Analysis",
        f"  factors           {', '.join(config.analysis.factors)}"
        + (
            "; interactions " + ", ".join(":".join(t) for t in config.analysis.interactions)
            if config.analysis.interactions
            else ""
        ),
        f"  sampler           {config.analysis.sampler}, {config.analysis.chains} chains × "
        f"{config.analysis.draws} draws ({config.analysis.tune} tune)",
    ]
    notes = size.notes + path_notes
    if notes:
        lines += ["", "Notes"] + [f"  - {note}" for note in notes]
    return "\n".join(lines)
