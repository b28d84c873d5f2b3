"""Bad study.toml files: each error names the file, the field, and what is allowed."""

import copy
from pathlib import Path

import pytest

from hitkit.study.config import load_study, parse_study, study_from_dict
from hitkit.study.config_errors import ConfigError


def _set(path: str, value):
    """A mutation that sets data[a][b][0][c] = value for path 'a.b.0.c'."""

    def mutate(data):
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value

    return mutate


def _delete(path: str):
    def mutate(data):
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        del node[int(last) if last.isdigit() else last]

    return mutate


def _all_models(key: str, value):
    def mutate(data):
        for model in data["models"]:
            model["factors"][key] = value

    return mutate


def _duplicate_model_name(data):
    data["models"][1]["name"] = data["models"][0]["name"]


def _duplicate_loss(data):
    data["generation"]["losses"].append(copy.deepcopy(data["generation"]["losses"][0]))


def _no_weights(data):
    del data["models"][0]["checkpoint"]
    del data["models"][0]["train"]


# (case id, mutation, substrings the message must contain)
CASES = [
    ("missing-section", _delete("study"), ["study.toml: study: required field is missing"]),
    ("missing-title", _delete("study.title"), ["study.toml: study.title: required field is missing"]),
    ("unknown-section", _set("surveys", {"task": "2afc"}), ["study.toml: surveys: unknown key", "allowed: study, models"]),
    ("unknown-key-typo", _set("survey.trails_per_hit", 10), ["survey.trails_per_hit: unknown key", "trials_per_hit"]),
    ("unknown-key-in-model", _set("models.3.colour", "red"), ["models[3].colour: unknown key", "checkpoint"]),
    ("unknown-key-in-loss", _set("generation.losses.1.tvv", 0.1), ["generation.losses[1].tvv: unknown key", "tv"]),
    ("wrong-type-int", _set("survey.trials_per_hit", "forty"), ["survey.trials_per_hit", "integer", "'forty'"]),
    ("wrong-type-list", _set("analysis.factors", "architecture"), ["analysis.factors", "list"]),
    ("negative-reward", _set("survey.reward", -1.0), ["survey.reward", "greater than 0", "-1.0"]),
    ("zero-time-estimate", _set("survey.time_estimate_minutes", 0), ["survey.time_estimate_minutes"]),
    ("duplicate-model-names", _duplicate_model_name, ["models: duplicate model name 'tiny_resnet-standard-none'"]),
    ("factor-level-missing", _delete("models.2.factors.training"),
     ["study.toml: models[2].factors: missing 'training' (required by [analysis].factors)"]),
    ("factor-one-level", _all_models("augmentation", "none"), ["analysis.factors: 'augmentation' has one level ('none')"]),
    ("factor-name-reserved", _set("analysis.factors", ["architecture", "model"]), ["analysis.factors", "'model' is a fixed column"]),
    ("interaction-unknown-factor", _set("analysis.interactions", [["architecture", "optimizer"]]),
     ["analysis.interactions[0]: names 'optimizer', not in factors"]),
    ("catch-exceeds-trials", _set("survey.catch_per_hit", 20), ["survey.catch_per_hit: catch_per_hit (20) must be below trials_per_hit (20)"]),
    ("unknown-loss-kind", _set("generation.losses.0.kind", "perceptual"),
     ["generation.losses[0]: unknown kind 'perceptual'", "reg_free", "adversarial"]),
    ("loss-kind-missing", _delete("generation.losses.0.kind"), ["generation.losses[0]: missing 'kind'"]),
    ("no-losses", _set("generation.losses", []), ["generation.losses", "at least one"]),
    ("duplicate-loss-names", _duplicate_loss, ["generation.losses", "duplicate loss names: reg_free"]),
    ("unknown-metric", _set("generation.losses.1", {"name": "adv", "kind": "adversarial", "metric": "dists"}),
     ["generation.losses[1].metric: 'dists' is not allowed", "lpips-alex"]),
    ("bad-lambda", _set("generation.losses.1", {"name": "adv", "kind": "adversarial", "lambda": -3.0}),
     ["generation.losses[1].lambda"]),
    ("unknown-seed-kind", _set("seeds.kinds", [{"kind": "perlin"}]), ["seeds.kinds[0]: unknown kind 'perlin'", "gaussian"]),
    ("negative-seed-scale", _set("seeds.kinds.0.scale", -0.5), ["seeds.kinds[0].scale", "greater than 0"]),
    ("uniform-seed-order", _set("seeds.kinds", [{"kind": "uniform", "low": 0.8, "high": 0.2}]), ["seeds.kinds[0].high: low must be below high"]),
    ("folder-without-path", _set("targets.source", "folder"), ["targets.path: source 'folder' needs a path"]),
    ("zero-targets", _set("targets.count", 0), ["targets.count", "greater than or equal to 1"]),
    ("unknown-target-source", _set("targets.source", "mnist"), ["targets.source: 'mnist' is not allowed", "shapes"]),
    ("matching-without-k", _set("survey.task", "matching"), ["survey.k: task 'matching' needs k"]),
    ("2afc-with-k", _set("survey.k", 3), ["survey.k: k is only for task 'matching'"]),
    ("unknown-platform", _set("platform.kind", "crowdflower"), ["platform.kind: 'crowdflower' is not allowed", "prolific", "mturk"]),
    ("mturk-external-http", _set("platform.mturk", {"question": "external", "external_url": "http://example.org/s"}),
     ["platform.mturk.external_url: must be an https:// URL"]),
    ("prolific-short-rejection", lambda d: (d["platform"].update(kind="prolific"), d.setdefault("quality", {}).update(rejection_message="Failed checks.")),
     ["quality.rejection_message: 14 characters; Prolific refuses rejection messages under 100"]),
    ("mturk-not-usd", lambda d: d["platform"].update(kind="mturk", currency="GBP"), ["platform.currency: MTurk pays in USD"]),
    ("model-without-weights", _no_weights, ["models[0].checkpoint: give a checkpoint path"]),
    ("bad-study-id", _set("study.id", "my study!"), ["study.id: 'my study!' must be 1-80 letters"]),
    ("unknown-sampler", _set("analysis.sampler", "blackjax"), ["analysis.sampler: 'blackjax' is not allowed", "nutpie"]),
    ("unknown-iri-loss", _set("analysis.iri_loss", "regfree"),
     ["study.toml: analysis.iri_loss: 'regfree' is not the name of a [[generation.losses]] entry",
      "allowed: reg_free"]),
    ("reject-stricter-than-exclude", _set("quality.reject_below_catch_accuracy", 0.9),
     ["quality.reject_below_catch_accuracy: must not exceed min_catch_accuracy"]),
    ("bad-normalization", _set("models.0.normalization", "mnist"), ["models[0].normalization"]),
    ("finish-exceeds-steps", _set("generation.finish_steps", 301), ["generation.finish_steps: 301 exceeds steps (300)"]),
    ("repeat-share-too-high", _set("survey.repeat_share", 0.9), ["survey.repeat_share", "less than or equal to 0.5"]),
]


@pytest.mark.parametrize("mutate, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_config_names_the_field(demo_data, mutate, expected):
    mutate(demo_data)
    with pytest.raises(ConfigError) as info:
        study_from_dict(demo_data, "study.toml")
    message = str(info.value)
    for part in expected:
        assert part in message, f"{part!r} not in:\n{message}"
    assert message.startswith("study.toml: ")


def test_at_least_twenty_cases():
    assert len(CASES) >= 20


def test_several_problems_are_reported_together(demo_data):
    demo_data["survey"]["reward"] = -1
    demo_data["targets"]["count"] = 0
    with pytest.raises(ConfigError) as info:
        study_from_dict(demo_data)
    message = str(info.value)
    assert "survey.reward" in message and "targets.count" in message


def test_toml_syntax_error_gives_the_line():
    text = '[study]\nid = "x"\ntitle = "unterminated\n'
    with pytest.raises(ConfigError) as info:
        parse_study(text, "broken.toml")
    message = str(info.value)
    assert message.startswith("broken.toml: TOML syntax error")
    assert "line 3" in message


def test_missing_file_is_named(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        load_study(tmp_path / "nope.toml")
    assert "nope.toml: no such file" in str(info.value)


def test_study_folder_without_study_toml(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        load_study(tmp_path)
    assert f"{tmp_path / 'study.toml'}: no such file" in str(info.value)


def test_unreadable_file_is_named(tmp_path: Path):
    path = tmp_path / "study.toml"
    path.write_bytes(b"[study]\nid = \"\xff\xfe\"\n")  # not UTF-8
    with pytest.raises(ConfigError) as info:
        load_study(tmp_path)
    assert str(path) in str(info.value) and "cannot read" in str(info.value)


def test_study_toml_that_is_a_folder_is_named(tmp_path: Path):
    path = tmp_path / "study.toml"
    path.mkdir()
    with pytest.raises(ConfigError) as info:
        load_study(tmp_path)
    assert str(path) in str(info.value) and "cannot read" in str(info.value)
