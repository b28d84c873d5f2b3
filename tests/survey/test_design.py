"""Design invariants, fuzzed over study shapes with hypothesis."""

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from survey_helpers import make_config, make_manifest

from hitkit.study.trials import TRIALS
from hitkit.survey.design import make_design
from hitkit.survey.hits import hit_trials, store_design
from hitkit.survey.ledger import Ledger


@st.composite
def shapes(draw):
    task = draw(st.sampled_from(["2afc", "matching"]))
    k = draw(st.integers(2, 3)) if task == "matching" else None
    targets = draw(st.integers(max(2, k or 2), 8))
    trials = draw(st.integers(3, 14))
    catch = draw(st.integers(0, min(3, trials - 2)))
    share = draw(st.sampled_from([0.0, 0.1, 0.2, 0.5]))
    if int((trials - catch) // (1 + share)) < 1:
        share = 0.0
    return dict(
        task=task, k=k, targets=targets, models=draw(st.sampled_from([2, 3, 4])),
        losses=draw(st.integers(1, 2)), trials_per_hit=trials, catch_per_hit=catch,
        repeat_share=share, foil="other-target" if task == "matching" else draw(
            st.sampled_from(["other-target", "seed"])),
    )


def check_invariants(config, manifest, design):
    survey = config.survey
    iris = {r["iri_id"]: r for r in manifest.to_pylist()}
    targets_of = {r["iri_id"]: r["target_id"] for r in iris.values()}
    seen_iris = Counter()
    slack = config.targets.count >= survey.main_trials_per_hit + 2
    for hit in design.hits:
        trials = hit.trials
        assert [t.position for t in trials] == list(range(len(trials)))
        mains = [t for t in trials if t.kind == "main"]
        catches = [t for t in trials if t.kind == "catch"]
        repeats = [t for t in trials if t.kind == "repeat"]
        # catch trials: the configured count, never first, the query among the options
        assert len(catches) == survey.catch_per_hit
        assert all(t.position > 0 for t in catches)
        for t in catches:
            assert [t.options[a] for a in t.answer] == list(t.query)
        # main trials: the correct option is each query IRI's target
        for t in mains:
            assert [t.options[a] for a in t.answer] == [targets_of[q] for q in t.query]
            assert len(set(t.options)) == len(t.options)
            seen_iris.update(t.query)
            if survey.task == "2afc" and survey.foil == "seed":
                assert set(t.options) == {targets_of[t.query[0]], iris[t.query[0]]["seed_id"]}
        # no target twice among the HIT's main trials
        hit_targets = [targets_of[q] for t in mains for q in t.query]
        assert len(hit_targets) == len(set(hit_targets))
        # 2AFC: correct side balanced within the HIT
        if survey.task == "2afc":
            sides = Counter(t.answer[0] for t in mains)
            assert abs(sides[0] - sides[1]) <= 1
        # 2AFC HITs always mix models, and models and losses are balanced (counts within
        # one of each other); matching groups of k distinct targets may leave no choice
        if survey.task == "2afc" and len(mains) >= 2:
            assert len({t.model for t in mains}) >= 2
            for levels, attribute in (([m.name for m in config.models], "model"),
                                      ([loss.name for loss in config.generation.losses], "loss")):
                counts = Counter(getattr(t, attribute) for t in mains)
                shown = [counts.get(level, 0) for level in levels]
                # exact, but for the last HITs (the leftovers decide) and for designs so tight
                # that every HIT must show every target (a Latin square the greedy deal may miss)
                tolerance = 1 if hit.ordinal < len(design.hits) - 2 and slack else len(mains)
                assert max(shown) - min(shown) <= tolerance, (attribute, counts)
        # repeats: later than their original, sides swapped, same correct image
        by_id = {t.trial_id: t for t in trials}
        expected = (survey.repeats_per_hit if len(mains) >= survey.main_trials_per_hit
                    else round(survey.repeats_per_hit * len(mains) / survey.main_trials_per_hit))
        assert len(repeats) == min(expected, len(mains))
        for r in repeats:
            original = by_id[r.repeat_of]
            assert original.kind == "main" and original.position < r.position
            assert r.options == tuple(reversed(original.options))
            assert r.query == original.query
            assert [r.options[a] for a in r.answer] == [original.options[a] for a in original.answer]
    # every IRI in at most one main trial (2AFC: exactly one)
    assert all(n == 1 for n in seen_iris.values())
    if survey.task == "2afc":
        assert set(seen_iris) == set(iris)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shapes())
def test_design_invariants(shape):
    config = make_config(**shape)
    manifest = make_manifest(config)
    design = make_design(manifest, config)
    check_invariants(config, manifest, design)
    # deterministic: the same inputs give the same design, IDs included
    again = make_design(manifest, config)
    assert again.design_id == design.design_id
    assert [t.row() for t in again.trials] == [t.row() for t in design.trials]
    # the trials table matches its schema
    TRIALS.check(design.table())


def test_design_does_not_depend_on_manifest_row_order():
    config = make_config()
    manifest = make_manifest(config)
    shuffled = manifest.take(list(reversed(range(manifest.num_rows))))
    assert make_design(manifest, config).trials_sha256 == make_design(shuffled, config).trials_sha256


def test_a_different_seed_gives_a_different_design():
    a = make_config()
    data_b = make_config().model_dump(by_alias=True)
    data_b["survey"]["seed"] = 7
    from hitkit.study.config import StudyConfig
    b = StudyConfig.model_validate(data_b)
    assert make_design(make_manifest(a), a).trials_sha256 != make_design(make_manifest(b), b).trials_sha256


def test_full_hits_have_the_configured_size():
    config = make_config(targets=8, trials_per_hit=10, catch_per_hit=2, repeat_share=0.25)
    design = make_design(make_manifest(config), config)
    sizes = Counter(len(h.trials) for h in design.hits)
    assert max(sizes) == config.survey.trials_per_hit


def test_stored_design_round_trips_and_is_stored_once(tmp_path):
    config = make_config()
    design = make_design(make_manifest(config), config)
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        assert store_design(ledger, design, 3).created
        assert not store_design(ledger, design, 3).created
        hit = design.hits[0]
        stored = hit_trials(ledger, hit.hit_id)
        assert [(t.trial_id, t.kind, t.query, t.options, t.answer, t.repeat_of) for t in stored] == [
            (t.trial_id, t.kind, t.query, t.options, t.answer, t.repeat_of) for t in hit.trials]
        assert ledger.query_one("SELECT COUNT(*) FROM trials")[0] == len(design.trials)
