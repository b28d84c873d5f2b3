"""`hitkit plan`: precision by simulation, the between-model floor, costs, errors."""

import numpy as np
import pytest
from click.testing import CliRunner

from analysis.planning import (
    Contrast,
    PlanError,
    base_design,
    between_model_floor,
    contrast_width,
    parse_contrast,
    plan_precision,
)
from analysis.synthetic import draw_responses
from hitkit.cli.analysis import EXIT_INPUT, plan


@pytest.fixture
def study(small_sim, make_study):
    return make_study(small_sim, platform="prolific")


def test_parse_contrast():
    levels = {"training": ["standard", "adversarial"]}
    assert parse_contrast("training=adversarial:standard", levels) == Contrast(
        "training", "adversarial", "standard")
    with pytest.raises(PlanError, match="write FACTOR=LEVEL_A:LEVEL_B"):
        parse_contrast("training", levels)
    with pytest.raises(PlanError, match="unknown factor 'loss'"):
        parse_contrast("loss=a:b", levels)
    with pytest.raises(PlanError, match="has no level 'robust'.*standard, adversarial"):
        parse_contrast("training=robust:standard", levels)


def test_base_design_follows_the_study(study):
    d = base_design(study)
    assert d.models_per_cell == 3
    assert d.factors == {"architecture": ["cnn", "vit"], "training": ["standard", "adversarial"]}
    assert d.trials_per_participant == 100 and d.catch_per_participant == 4


def test_screen_width_shrinks_with_participants_for_these_models(design, truth):
    c = Contrast("training", "adversarial", "standard")
    widths = []
    for participants in (20, 80, 320):
        d = design(participants=participants)
        rng = np.random.default_rng(0)
        widths.append(np.median([contrast_width(draw_responses(d, truth, rng), d, truth, c,
                                                "these-models") for _ in range(10)]))
    assert widths[0] > widths[1] > widths[2]
    assert widths[2] < 0.5 * widths[0]  # about 1/sqrt(n): 4x participants, half the width


def test_population_width_has_a_between_model_floor(design, truth):
    c = Contrast("training", "adversarial", "standard")
    d = design(participants=2000, models_per_cell=1)
    t = truth.__class__(**{**truth.__dict__, "sd_model": 0.4})
    floor = between_model_floor(d, t, c)
    # 2 models per level: 2 * 1.88 * 0.4 * sqrt(2 / 2)
    assert floor == pytest.approx(2 * 1.8808 * 0.4, rel=1e-3)
    rng = np.random.default_rng(1)
    widths = [contrast_width(draw_responses(d, t, rng), d, t, c, "model-population")
              for _ in range(20)]
    these = [contrast_width(draw_responses(d, t, rng), d, t, c, "these-models")
             for _ in range(20)]
    assert np.median(these) < 0.5 * floor  # many participants: trial noise is small
    # the population width does not shrink with participants; it estimates the floor
    assert np.median(widths) > 0.5 * floor


def test_plan_recommends_more_models_when_participants_cannot_help(study):
    report = plan_precision(study, "training=adversarial:standard", 0.5, reps=8,
                            target="model-population", participant_factors=(1, 4),
                            model_factors=(1, 4))
    assert len(report.results) == 4
    text = " ".join(report.notes)
    assert report.recommended is None or report.recommended.design.models_per_cell == 12
    assert "between-model" in text or "more models per cell" in text


def test_cli_plan_prints_designs_and_costs(study):
    result = CliRunner().invoke(plan, ["--study", str(study.root), "--contrast",
                                       "training=adversarial:standard", "--width", "0.8",
                                       "--simulations", "5"])
    assert result.exit_code == 0, result.output
    assert "Precision plan for training=adversarial:standard" in result.output
    assert "median width" in result.output and "assurance" in result.output
    assert "recommended:" in result.output
    assert "service fee" in result.output  # the study's platform (Prolific) and its fees
    assert "default assumptions (no analysis/posterior.nc yet)" in result.output


def test_cli_plan_bad_contrast(study):
    result = CliRunner().invoke(plan, ["--study", str(study.root), "--contrast", "training=x:y",
                                       "--width", "0.5"])
    assert result.exit_code == EXIT_INPUT
    assert "has no level 'x'" in result.output


def test_cli_plan_reads_the_sds_of_the_named_iri_loss(study):
    losses = [loss.name for loss in study.config.generation.losses]
    result = CliRunner().invoke(plan, ["--study", str(study.root), "--contrast",
                                       "training=adversarial:standard", "--width", "0.8",
                                       "--simulations", "5", "--iri-loss", "no-such-loss"])
    assert result.exit_code == EXIT_INPUT
    assert "'no-such-loss' is not the name of a [[generation.losses]] entry" in result.output
    assert all(name in result.output for name in losses)
