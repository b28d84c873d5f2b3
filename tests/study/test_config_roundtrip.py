"""Valid configs survive study.toml text unchanged, and their plan adds up."""

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from hitkit.study.config import StudyConfig, parse_study, study_from_dict, study_to_toml
from hitkit.study.size import study_size

names = st.from_regex(r"[a-z][a-z0-9_-]{0,11}", fullmatch=True)
levels = st.from_regex(r"[a-z][a-z0-9-]{0,7}", fullmatch=True)
small_float = st.floats(min_value=0.01, max_value=50, allow_nan=False).map(lambda x: round(x, 3))


@st.composite
def losses(draw):
    kinds = draw(st.lists(st.sampled_from(["reg_free", "regularized", "adversarial"]), min_size=1, max_size=3))
    out = []
    for i, kind in enumerate(kinds):
        loss = {"name": f"loss{i}", "kind": kind}
        if kind == "regularized":
            loss.update(tv=draw(small_float), fourier=draw(st.booleans()))
            if draw(st.booleans()):
                loss["transforms"] = {"jitter": draw(st.integers(0, 8)), "scale": [0.9, 1.1]}
        if kind == "adversarial":
            loss.update(
                metric=draw(st.sampled_from(["lpips-alex", "lpips-vgg", "ssim", "ms-ssim"])),
                anchor=draw(st.sampled_from(["target", "seed"])),
            )
            loss["lambda"] = draw(st.one_of(st.just("auto"), small_float))
        out.append(loss)
    return out


@st.composite
def seed_kinds(draw):
    kind = draw(st.sampled_from(["gaussian", "uniform", "constant", "image"]))
    if kind == "gaussian":
        return {"kind": kind, "mean": draw(st.floats(0, 1)), "scale": draw(small_float)}
    if kind == "uniform":
        low = draw(st.floats(0, 0.5))
        return {"kind": kind, "low": low, "high": draw(st.floats(low + 0.01, 1))}
    if kind == "constant":
        return {"kind": kind, "value": draw(st.floats(0, 1))}
    return {"kind": kind, "path": "other-target"}


@st.composite
def studies(draw):
    factor_names = draw(st.lists(st.sampled_from(["architecture", "training", "augmentation", "epochs"]),
                                 min_size=1, max_size=3, unique=True))
    n_models = draw(st.integers(2, 6))
    model_names = draw(st.lists(names, min_size=n_models, max_size=n_models, unique=True))
    models = []
    for i, name in enumerate(model_names):
        # level i % 2 guarantees at least two levels per factor across the models
        factors = {f: f"{draw(levels)}" if i > 1 else f"level{i}" for f in factor_names}
        model = {"name": name, "arch": draw(st.sampled_from(["resnet18", "tiny_resnet", "vgg16_bn"])),
                 "factors": factors, "input_size": draw(st.sampled_from([32, 64, 224]))}
        if draw(st.booleans()):
            model["checkpoint"] = f"ckpt/{name}.pt"
        else:
            model["train"] = {"adversarial": draw(st.booleans())}
        models.append(model)
    task = draw(st.sampled_from(["2afc", "matching"]))
    target_count = draw(st.integers(3, 200))
    trials = draw(st.integers(5, 120))
    survey = {
        "task": task,
        "trials_per_hit": trials,
        "catch_per_hit": draw(st.integers(0, max(0, trials // 4))),
        "repeat_share": draw(st.sampled_from([0.0, 0.1, 0.2])),
        "responses_per_iri": draw(st.integers(1, 12)),
        "reward": draw(st.floats(0.1, 20).map(lambda x: round(x, 2))),
        "time_estimate_minutes": draw(st.integers(1, 60)),
        "foil": draw(st.sampled_from(["other-target", "seed"])),
    }
    if task == "matching":
        survey["k"] = draw(st.integers(2, 3))
    loss_list = draw(losses())
    analysis = {"factors": factor_names}
    if draw(st.booleans()):
        analysis["iri_loss"] = draw(st.sampled_from([loss["name"] for loss in loss_list]))
    return {
        "study": {"id": draw(names), "title": "A study"},
        "models": models,
        "targets": {"source": "shapes", "count": target_count, "size": 32},
        "seeds": {"count": draw(st.integers(1, 3)), "kinds": draw(st.lists(seed_kinds(), min_size=1, max_size=2))},
        "generation": {"steps": draw(st.integers(1, 5000)), "losses": loss_list},
        "survey": survey,
        "platform": {"kind": draw(st.sampled_from(["local", "prolific", "mturk"]))},
        "analysis": analysis,
    }


@settings(max_examples=60, deadline=None)
@given(studies())
def test_valid_config_round_trips_through_toml(data):
    config = study_from_dict(data)
    text = study_to_toml(config)
    again = parse_study(text)
    assert again == config
    assert study_to_toml(again) == text


@settings(max_examples=60, deadline=None)
@given(studies())
def test_plan_adds_up(data):
    config: StudyConfig = study_from_dict(data)
    plan = study_size(config)
    survey = config.survey
    assert plan.main_per_hit + plan.catch_per_hit + plan.repeats_per_hit == plan.trials_per_hit
    assert plan.trials_per_hit <= survey.trials_per_hit
    # a HIT never needs a target twice, and is only shortened when it would
    per_trial = 1 if survey.task == "2afc" else survey.k
    assert plan.main_per_hit * per_trial <= config.targets.count
    assert (plan.trials_per_hit == survey.trials_per_hit) == (plan.main_per_hit == survey.main_trials_per_hit)
    assert plan.repeats_per_hit <= math.ceil(survey.repeat_share * plan.main_per_hit) + 1
    assert plan.iris == plan.models * plan.targets * plan.seeds * plan.losses
    assert plan.image_steps == plan.iris * config.generation.steps
    # every main trial fits in the HITs, and one HIT fewer would not hold them
    assert plan.hits * plan.main_per_hit >= plan.main_trials > (plan.hits - 1) * plan.main_per_hit
    assert plan.participants == plan.hits * survey.responses_per_iri
    assert plan.cost.total_minor >= plan.cost.rewards_minor > 0
