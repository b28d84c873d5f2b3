"""study.toml: the one schema and the one loader for a whole study.

Every stage reads its settings through :func:`load_study`. The schema is strict:
unknown keys, wrong types and inconsistent sections are errors that name the
file, the field and what is allowed, so a typo never silently falls back to a
default in the middle of a paid study.

This module holds the sections of the study, survey, platform, quality and
analysis stages and assembles the whole file; the generation sections are in
hitkit.study.generation_config, the shared building blocks in hitkit.study.fields,
and the wording of errors in hitkit.study.config_errors.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hitkit.study.config_errors import ConfigError, describe_error
from hitkit.study.fields import Name, Strict
from hitkit.study.generation_config import (
    GenerationSection,
    ModelSpec,
    SeedsSection,
    TargetsSection,
)

STUDY_FILE = "study.toml"


def reserved_column_names() -> frozenset[str]:
    """Fixed column names of the manifest, trials and responses tables."""
    from hitkit.study.manifest import MANIFEST
    from hitkit.study.responses import RESPONSES
    from hitkit.study.trials import TRIALS

    return frozenset(MANIFEST.names + TRIALS.names + RESPONSES.names)






# --------------------------------------------------------------------- [study]


class StudySection(Strict):
    id: Name
    title: str = Field(min_length=1)
    description: str = ""
    # The HMAC key for participant pseudonyms. It must live outside the study's
    # exported files; it is created on first use when missing.
    secret_file: str = "~/.config/hitkit/{id}.secret"
    # Where IRIs are stored: a folder (relative to the study) or s3://bucket/prefix.
    store: str = "iris"
    # How the survey links to IRIs stored on S3: presigned URLs (private bucket) living
    # store_url_hours (SigV4 allows at most 168), or plain public URLs.
    store_urls: Literal["presigned", "public"] = "presigned"
    store_url_hours: float = Field(default=168.0, gt=0, le=168)
    seed: int = Field(default=0, ge=0)

    @field_validator("secret_file")
    @classmethod
    def _secret_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must name a file")
        return value


# -------------------------------------------------------------------- [survey]


class SurveySection(Strict):
    task: Literal["2afc", "matching"] = "2afc"
    k: int | None = Field(default=None, ge=2, le=8)
    foil: Literal["other-target", "seed"] = "other-target"
    trials_per_hit: int = Field(default=40, ge=1, le=1000)
    # 8 catch trials with min_catch_accuracy 0.8 (7 of 8 right) let a guesser pass 3.5 % of
    # the time (4 let 6.3 % pass); an attentive participant with a 2 % slip rate fails 1 %
    # (hitkit.survey.guessing, docs/survey.md "Threat model")
    catch_per_hit: int = Field(default=8, ge=0)
    repeat_share: float = Field(default=0.1, ge=0, le=0.5)
    responses_per_iri: int = Field(default=5, ge=1)
    practice: bool = True
    desktop_only: bool = True
    title: str = "Which image does it look more like?"
    instructions: str = (
        "You will see an image at the top and two images below it. "
        "Choose the one that the top image looks more like."
    )
    consent: str = (
        "This is a research study about visual perception. Participation is voluntary; "
        "you may stop at any time. No personal information is collected."
    )
    reward: float = Field(gt=0)
    time_estimate_minutes: float = Field(gt=0)
    seed: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _task_shape(self) -> SurveySection:
        if self.task == "matching" and self.k is None:
            raise ValueError("k: task 'matching' needs k (the number of targets per trial)")
        if self.task == "2afc" and self.k is not None:
            raise ValueError("k: k is only for task 'matching'; 2afc always shows two options")
        if self.catch_per_hit >= self.trials_per_hit:
            raise ValueError(
                f"catch_per_hit: catch_per_hit ({self.catch_per_hit}) must be below trials_per_hit "
                f"({self.trials_per_hit}) so that a HIT has main trials"
            )
        if self.main_trials_per_hit < 1:
            raise ValueError(
                f"trials_per_hit: {self.trials_per_hit} trials leave no main trial after "
                f"{self.catch_per_hit} catch trials and repeat_share {self.repeat_share}"
            )
        return self

    @property
    def main_trials_per_hit(self) -> int:
        """Main trials in a full HIT: the rest are catch trials and repeats of main ones."""
        free = self.trials_per_hit - self.catch_per_hit
        return int(free // (1 + self.repeat_share))

    @property
    def repeats_per_hit(self) -> int:
        return self.trials_per_hit - self.catch_per_hit - self.main_trials_per_hit

    def main_trials_capacity(self, targets: int) -> int:
        """Main trials a HIT can hold without showing a target twice."""
        per_trial = 1 if self.task == "2afc" else int(self.k or 2)
        return min(self.main_trials_per_hit, targets // per_trial)

    def repeats_for(self, main: int) -> int:
        """Repeats in a HIT of `main` main trials: the configured share, pro rata when short."""
        full = self.main_trials_per_hit
        repeats = self.repeats_per_hit if main >= full else round(self.repeats_per_hit * main / full)
        return min(repeats, main)

    @property
    def chance(self) -> float:
        return 0.5 if self.task == "2afc" else 1.0 / float(self.k or 2)


# ------------------------------------------------------------------ [platform]


class LocalSettings(Strict):
    base_url: str = "http://127.0.0.1:8000"
    open_link_cap: int | None = Field(default=None, ge=1)


class ProlificSettings(Strict):
    token_env: str = "PROLIFIC_TOKEN"
    token_file: str | None = None
    public_url: str | None = None
    # Prolific's service fee on rewards and bonuses; check your workspace's rate.
    service_fee: float = Field(default=0.333, ge=0, le=1)
    vat: float = Field(default=0.0, ge=0, le=1)
    minimum_hourly: float = Field(default=8.0, gt=0)
    filters: list[dict[str, Any]] = Field(default_factory=list)
    allow_list: list[str] = Field(default_factory=list)
    block_list: list[str] = Field(default_factory=list)
    block_studies: list[str] = Field(default_factory=list)
    # the workspace studies and participant groups are created in; None: the account's only
    # workspace (GET /api/v1/workspaces/), an error naming this setting when it has several
    workspace_id: str | None = None


class MTurkQualifications(Strict):
    min_approval_rate: int | None = Field(default=98, ge=0, le=100)
    min_approved: int | None = Field(default=1000, ge=0)
    locales: list[str] = Field(default_factory=lambda: ["US"])
    exclude_past_participants: bool = True


class MTurkSettings(Strict):
    production: bool = False
    endpoint_url: str | None = None
    question: Literal["html", "external"] = "html"
    external_url: str | None = None
    keywords: str = "image, perception, similarity, research"
    assignment_duration_minutes: int = Field(default=60, ge=1)
    lifetime_days: float = Field(default=7, gt=0, le=365)
    auto_approval_days: float = Field(default=3, ge=0, le=30)
    masters: bool = False
    qualifications: MTurkQualifications = Field(default_factory=MTurkQualifications)

    @model_validator(mode="after")
    def _external_needs_https(self) -> MTurkSettings:
        if self.question == "external":
            if not self.external_url:
                raise ValueError("external_url: question 'external' needs external_url")
            if not self.external_url.startswith("https://"):
                raise ValueError("external_url: must be an https:// URL (MTurk requires HTTPS)")
        return self


class PlatformSection(Strict):
    kind: Literal["local", "prolific", "mturk"] = "local"
    currency: Literal["USD", "GBP", "EUR"] = "USD"
    budget_cap: float | None = Field(default=None, gt=0)
    local: LocalSettings = Field(default_factory=LocalSettings)
    prolific: ProlificSettings = Field(default_factory=ProlificSettings)
    mturk: MTurkSettings = Field(default_factory=MTurkSettings)

    @model_validator(mode="after")
    def _mturk_is_usd(self) -> PlatformSection:
        if self.kind == "mturk" and self.currency != "USD":
            raise ValueError("currency: MTurk pays in USD; set currency = \"USD\"")
        return self


# ------------------------------------------------------------------- [quality]


PROLIFIC_MIN_REJECTION_MESSAGE = 100  # Prolific's API refuses shorter ones


class QualitySection(Strict):
    """Exclusion rules, fixed before collection (pre-registration)."""

    min_catch_accuracy: float = Field(default=0.8, ge=0, le=1)
    min_repeat_consistency: float | None = Field(default=None, ge=0, le=1)
    min_median_rt_ms: float = Field(default=400.0, ge=0)
    fast_rt_ms: float = Field(default=300.0, ge=0)
    max_fast_share: float = Field(default=0.3, ge=0, le=1)
    max_side_bias: float = Field(default=0.85, ge=0.5, le=1)
    # Payment is rejected only under this rule-defined fraud threshold; None = never.
    reject_below_catch_accuracy: float | None = Field(default=None, ge=0, le=1)
    rejection_message: str = (
        "Your submission failed most of the attention-check trials, whose answers are obvious "
        "(in those trials the query image was itself one of the choices)."
    )

    @model_validator(mode="after")
    def _reject_stricter_than_exclude(self) -> QualitySection:
        if (
            self.reject_below_catch_accuracy is not None
            and self.reject_below_catch_accuracy > self.min_catch_accuracy
        ):
            raise ValueError(
                "reject_below_catch_accuracy: must not exceed min_catch_accuracy: "
                "rejecting payment is for clear fraud, excluding data is the milder act"
            )
        return self


# ------------------------------------------------------------------ [analysis]


class PriorsSection(Strict):
    """Logit-scale prior scales."""

    intercept_mu: float = 0.0
    intercept_sigma: float = Field(default=1.5, gt=0)
    effect_sigma: float = Field(default=1.0, gt=0)
    interaction_sigma: float = Field(default=0.5, gt=0)
    participant_sd: float = Field(default=1.0, gt=0)
    image_sd: float = Field(default=1.0, gt=0)
    model_sd: float = Field(default=0.5, gt=0)
    lapse_alpha: float = Field(default=1.0, gt=0)
    lapse_beta: float = Field(default=20.0, gt=0)


class AnalysisSection(Strict):
    factors: list[str] = Field(min_length=1)
    interactions: list[list[str]] = Field(default_factory=list)
    lapse: Literal["global", "participant", "none"] = "global"
    target: Literal["these-models", "model-population"] = "these-models"
    priors: PriorsSection = Field(default_factory=PriorsSection)
    sampler: Literal["nutpie", "pymc", "numpyro"] = "nutpie"
    draws: int = Field(default=1000, ge=10)
    tune: int = Field(default=1000, ge=10)
    chains: int = Field(default=4, ge=1)
    seed: int = Field(default=0, ge=0)
    target_accept: float = Field(default=0.9, gt=0, lt=1)
    # Participant, image and model effects are centred when their levels have at least
    # this many trials (median), non-centred otherwise (see docs/analysis.md).
    centred_min_trials: int = Field(default=100, ge=1)
    # The [[generation.losses]] entry whose IRIs are analysed; losses are analysed one at a
    # time (see StudyConfig.default_iri_loss for the default).
    iri_loss: str | None = None

    @field_validator("factors")
    @classmethod
    def _unique_factors(cls, value: list[str]) -> list[str]:
        duplicated = sorted({f for f in value if value.count(f) > 1})
        if duplicated:
            raise ValueError(f"duplicate factors: {', '.join(duplicated)}")
        reserved = reserved_column_names()
        for factor in value:
            if not factor.isidentifier():
                raise ValueError(f"factor name {factor!r} must be a plain identifier")
            if factor in reserved:
                raise ValueError(
                    f"factor name {factor!r} is a fixed column of the study's tables; "
                    "choose another name (e.g. 'architecture', 'training', 'augmentation')"
                )
        return value

    @model_validator(mode="after")
    def _interactions_of_known_factors(self) -> AnalysisSection:
        for i, term in enumerate(self.interactions):
            if len(term) < 2 or len(set(term)) != len(term):
                raise ValueError(f"interactions[{i}]: name two or more distinct factors")
            unknown = [f for f in term if f not in self.factors]
            if unknown:
                raise ValueError(
                    f"interactions[{i}]: names {', '.join(map(repr, unknown))}, "
                    f"not in factors ({', '.join(self.factors)})"
                )
        return self


# --------------------------------------------------------------------- study


class StudyConfig(Strict):
    study: StudySection
    models: list[ModelSpec] = Field(min_length=1)
    targets: TargetsSection
    seeds: SeedsSection = Field(default_factory=SeedsSection)
    generation: GenerationSection
    survey: SurveySection
    platform: PlatformSection = Field(default_factory=PlatformSection)
    quality: QualitySection = Field(default_factory=QualitySection)
    analysis: AnalysisSection

    @model_validator(mode="after")
    def _cross_section_rules(self) -> StudyConfig:
        problems: list[str] = []
        names = [m.name for m in self.models]
        for name in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"models: duplicate model name {name!r}")
        for i, model in enumerate(self.models):
            for factor in self.analysis.factors:
                if factor not in model.factors:
                    problems.append(
                        f"models[{i}].factors: missing {factor!r} "
                        "(required by [analysis].factors)"
                    )
        if not problems:
            for factor in self.analysis.factors:
                levels = {m.factors[factor] for m in self.models}
                if len(levels) < 2:
                    problems.append(
                        f"analysis.factors: {factor!r} has one level ({next(iter(levels))!r}) "
                        "across [[models]]; an effect needs two or more levels"
                    )
        if self.survey.task == "matching" and (self.survey.k or 0) > self.targets.count:
            problems.append(
                f"survey.k: {self.survey.k} exceeds targets.count ({self.targets.count})"
            )
        if self.survey.foil == "other-target" and self.targets.count < 2:
            problems.append("survey.foil: 'other-target' needs targets.count >= 2")
        loss_names = [loss.name for loss in self.generation.losses]
        if self.analysis.iri_loss is not None and self.analysis.iri_loss not in loss_names:
            problems.append(
                f"analysis.iri_loss: {self.analysis.iri_loss!r} is not the name of a "
                f"[[generation.losses]] entry (allowed: {', '.join(loss_names)})"
            )
        if (self.platform.kind == "prolific"
                and len(self.quality.rejection_message) < PROLIFIC_MIN_REJECTION_MESSAGE):
            problems.append(
                f"quality.rejection_message: {len(self.quality.rejection_message)} characters; "
                f"Prolific refuses rejection messages under {PROLIFIC_MIN_REJECTION_MESSAGE}")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def default_iri_loss(self) -> str:
        """The IRI loss `hitkit analyze` analyses by default: [analysis].iri_loss, else the
        first regulariser-free loss (it compares models fairly), else the first loss."""
        if self.analysis.iri_loss is not None:
            return self.analysis.iri_loss
        losses = self.generation.losses
        return next((loss.name for loss in losses if loss.kind == "reg_free"), losses[0].name)

    @property
    def factor_levels(self) -> dict[str, list[str]]:
        """Levels of each analysis factor, in order of first appearance in [[models]]."""
        levels: dict[str, list[str]] = {}
        for factor in self.analysis.factors:
            seen: list[str] = []
            for model in self.models:
                if model.factors[factor] not in seen:
                    seen.append(model.factors[factor])
            levels[factor] = seen
        return levels


@dataclass(frozen=True)
class Study:
    """A validated study.toml together with the folder it lives in."""

    config: StudyConfig
    path: Path  # the study.toml file

    @property
    def root(self) -> Path:
        return self.path.parent

    def resolve(self, value: str) -> Path:
        """A path from the config: `~` expanded, relative paths taken from the study folder."""
        expanded = Path(value.replace("{id}", self.config.study.id)).expanduser()
        return expanded if expanded.is_absolute() else self.root / expanded

    @property
    def secret_path(self) -> Path:
        return self.resolve(self.config.study.secret_file)


# ------------------------------------------------------------------ loading


def parse_study(text: str, filename: str = STUDY_FILE) -> StudyConfig:
    """Validate study.toml text; raise ConfigError naming the file and fields."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{filename}: TOML syntax error: {exc}") from None
    return study_from_dict(data, filename)


def study_from_dict(data: dict[str, Any], filename: str = STUDY_FILE) -> StudyConfig:
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as exc:
        messages: list[str] = []
        for error in exc.errors(include_url=False):
            line = describe_error(dict(error), data, filename, StudyConfig)
            if line not in messages:
                messages.append(line)
        raise ConfigError("\n".join(messages)) from None


def find_study_file(target: str | Path | None) -> Path:
    """A study folder or a .toml file -> the study.toml path."""
    path = Path(target) if target is not None else Path.cwd()
    if path.is_dir():
        path = path / STUDY_FILE
    return path


def load_study(target: str | Path | None = None) -> Study:
    """Read and validate a study from a folder (its study.toml) or a .toml file."""
    path = find_study_file(target)
    if not path.exists():
        raise ConfigError(f"{path}: no such file (a study folder holds a {STUDY_FILE})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return Study(config=parse_study(text, str(path)), path=path.resolve())


def dump_study(config: StudyConfig) -> dict[str, Any]:
    """The config as TOML-ready data (aliases used, None dropped), for round trips."""
    return config.model_dump(mode="json", by_alias=True, exclude_none=True)


def study_to_toml(config: StudyConfig) -> str:
    """study.toml text that parses back to an equal config."""
    import tomli_w

    return tomli_w.dumps(dump_study(config))
