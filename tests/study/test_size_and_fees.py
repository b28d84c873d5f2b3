"""The plan's counts and the platforms' fee rules, against hand-computed figures."""

import pytest

from hitkit.study.config import study_from_dict
from hitkit.study.fees import mturk_cost, mturk_fee_minor, prolific_cost, to_minor_units
from hitkit.study.size import study_size


def test_demo_plan_counts(demo_data):
    plan = study_size(study_from_dict(demo_data))
    # 8 models × 12 targets × 1 seed × 2 losses
    assert plan.iris == 192
    assert plan.image_steps == 192 * 300
    # 20 trials = 8 catch + 10 main + 2 repeats (10 × 1.1 = 11 <= 12 free slots); 8 catch
    # trials so that a guesser passes the demo's rules 3.5 % of the time
    assert (plan.main_per_hit, plan.catch_per_hit, plan.repeats_per_hit) == (10, 8, 2)
    assert plan.hits == 20  # 192 / 10, rounded up
    assert plan.participants == 320  # 16 per HIT
    assert plan.cost.total_minor == 32000


def test_main_trials_are_capped_so_no_target_shows_twice(demo_data):
    demo_data["survey"].update(trials_per_hit=24, catch_per_hit=3)
    plan = study_size(study_from_dict(demo_data))
    # 19 main trials would fit 24 slots, but there are only 12 targets
    assert plan.main_per_hit == 12
    assert plan.repeats_per_hit == 1  # round(2 × 12 / 19), pro rata
    assert plan.trials_per_hit == 16
    assert plan.hits == 16
    assert any("HITs hold 12 main + 3 catch + 1 repeats = 16 trials" in n for n in plan.notes)


def test_matching_groups_k_iris_per_trial(demo_data):
    demo_data["survey"].update(task="matching", k=3)
    plan = study_size(study_from_dict(demo_data))
    # 12 targets per model and loss -> 4 groups of 3; 8 models × 2 losses
    assert plan.main_trials == 4 * 16


def test_matching_leftover_is_noted(demo_data):
    demo_data["survey"].update(task="matching", k=5)
    plan = study_size(study_from_dict(demo_data))
    assert plan.main_trials == 2 * 16
    assert any("2 IRI(s) per model and loss are left out" in n for n in plan.notes)


@pytest.mark.parametrize(
    "reward, assignments, masters, fee",
    [
        ("1.00", 9, False, "0.20"),  # 20 % commission
        ("1.00", 10, False, "0.40"),  # +20 % at 10 or more assignments
        ("1.00", 9, True, "0.25"),  # +5 % Masters
        ("0.04", 3, False, "0.01"),  # minimum fee of one cent
        ("0.55", 1, False, "0.11"),
        ("0.33", 20, True, "0.15"),  # 45 % of 0.33 = 0.1485 -> 0.15
    ],
)
def test_mturk_fee_rules(reward, assignments, masters, fee):
    assert mturk_fee_minor(to_minor_units(reward), assignments, masters) == to_minor_units(fee)


def test_mturk_cost_totals():
    cost = mturk_cost(2.0, assignments_per_hit=10, hits=7, masters=False)
    assert cost.assignments == 70
    assert cost.total_minor == 70 * (200 + 80)


def test_prolific_fee_and_vat():
    cost = prolific_cost(2.0, places=100, service_fee=0.333, vat=0.2, currency="GBP")
    # 2.00 × 0.333 × 1.2 = 0.7992 -> 0.80 per place
    assert cost.fee_per_assignment_minor == 80
    assert cost.total_minor == 28000


def test_prolific_underpay_and_budget_cap_are_noted(demo_data):
    demo_data["platform"] = {"kind": "prolific", "budget_cap": 10.0}
    demo_data["survey"].update(reward=0.5, time_estimate_minutes=10)
    notes = study_size(study_from_dict(demo_data)).notes
    assert any("3.00/h, below Prolific's minimum 8.00/h" in n for n in notes)
    assert any("exceeds budget_cap 10.00" in n for n in notes)


def test_mturk_plan_mentions_the_closure(demo_data):
    demo_data["platform"] = {"kind": "mturk"}
    notes = study_size(study_from_dict(demo_data)).notes
    assert any("closed Mechanical Turk on 2026-09-30" in n for n in notes)
