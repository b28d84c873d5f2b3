"""Quality rules on crafted assignments: exclusion and rejection are separate."""

import json
import sqlite3

import pytest

from hitkit.study import exclusions
from hitkit.study.config import QualitySection
from hitkit.survey import ledger as ledger_module
from hitkit.survey.ledger import Ledger, dumps, now_iso
from hitkit.survey.quality import Answered, assess, review

RULES = QualitySection(min_catch_accuracy=0.75, min_repeat_consistency=0.5, min_median_rt_ms=400,
                       fast_rt_ms=300, max_fast_share=0.3, max_side_bias=0.85,
                       reject_below_catch_accuracy=0.5)


def trial(i, kind="main", choice=0, answer=0, rt=800.0, repeat_of=None, options=("a", "b")):
    return Answered(f"t{i}", kind, repeat_of, tuple(options), (answer,), (choice,), rt)


def good_assignment():
    """8 main (sides alternating), 4 catch all right, 2 repeats consistent, slow enough."""
    trials = [trial(i, choice=i % 2, answer=i % 2) for i in range(8)]
    trials += [trial(10 + i, "catch", choice=i % 2, answer=i % 2) for i in range(4)]
    # repeats of t0 and t1 with options reversed: the same image is option 1 - choice
    trials += [trial(20, "repeat", choice=1, answer=1, repeat_of="t0", options=("b", "a")),
               trial(21, "repeat", choice=0, answer=0, repeat_of="t1", options=("b", "a"))]
    return trials


def test_a_good_assignment_is_kept_and_paid():
    q = assess("a1", good_assignment(), RULES)
    assert q.catch_accuracy == 1.0 and q.repeat_consistency == 1.0
    assert q.median_rt_ms == 800 and q.fast_share == 0 and q.side_bias == 0.5
    assert not q.excluded and q.exclusion_reason is None and not q.reject and q.message is None
    assert q.exclusion_rules == ()


def test_failed_catch_trials_exclude_and_only_the_fraud_rule_rejects():
    trials = good_assignment()
    wrong_one = [t if t.trial_id != "t10" else trial(10, "catch", choice=1, answer=0) for t in trials]
    q = assess("a1", wrong_one, RULES)  # 3 of 4 right: kept
    assert not q.excluded
    wrong_two = [t if t.trial_id not in ("t10", "t11") else
                 trial(int(t.trial_id[1:]), "catch", choice=1 - t.answer[0], answer=t.answer[0])
                 for t in trials]
    q = assess("a1", wrong_two, RULES)  # 2 of 4: excluded, not rejected (0.5 is not below 0.5)
    assert q.excluded and "catch accuracy 0.50 < 0.75" in q.exclusion_reason and not q.reject
    assert q.exclusion_rules == ("catch_accuracy",)
    all_wrong = [trial(int(t.trial_id[1:]), "catch", choice=1 - t.answer[0], answer=t.answer[0])
                 if t.kind == "catch" else t for t in trials]
    q = assess("a1", all_wrong, RULES)
    assert q.excluded and q.reject and q.message == RULES.rejection_message
    assert q.exclusion_rules == ("catch_accuracy",)


def test_inconsistent_repeats_exclude():
    trials = good_assignment()
    flipped = [trial(20, "repeat", choice=0, answer=1, repeat_of="t0", options=("b", "a")),
               trial(21, "repeat", choice=1, answer=0, repeat_of="t1", options=("b", "a"))]
    q = assess("a1", trials[:-2] + flipped, RULES)
    assert q.repeat_consistency == 0.0
    assert q.excluded and "repeat consistency 0.00 < 0.5" in q.exclusion_reason and not q.reject
    assert q.exclusion_rules == ("repeat_consistency",)


def test_fast_responses_and_low_median_rt_exclude():
    trials = [Answered(t.trial_id, t.kind, t.repeat_of, t.options, t.answer, t.choice, 150.0)
              for t in good_assignment()]
    q = assess("a1", trials, RULES)
    assert q.fast_share == 1.0 and q.median_rt_ms == 150
    assert "median RT 150 ms < 400 ms" in q.exclusion_reason
    assert "100% of responses under 300 ms > 30%" in q.exclusion_reason
    assert q.exclusion_rules == ("median_rt", "fast_responses")
    assert not q.reject


def test_side_bias_excludes():
    trials = [Answered(t.trial_id, t.kind, t.repeat_of, t.options, t.answer, (0,), t.rt_ms)
              for t in good_assignment()]
    q = assess("a1", trials, RULES)
    assert q.side_bias == 1.0 and "side bias 1.00 > 0.85" in q.exclusion_reason
    # always left also fails half the catch trials and every swapped repeat
    assert q.exclusion_rules == ("catch_accuracy", "repeat_consistency", "side_bias")


def test_matching_metrics_use_images_not_positions():
    options, swapped = ("x", "y", "z"), ("z", "y", "x")
    first = Answered("t0", "main", None, options, (0, 1, 2), (0, 1, 2), 900.0)
    again = Answered("t1", "repeat", "t0", swapped, (2, 1, 0), (2, 1, 0), 900.0)
    catch = Answered("t2", "catch", None, options, (1, 2, 0), (1, 2, 0), 900.0)
    q = assess("a1", [first, again, catch], RULES)
    assert q.repeat_consistency == 1.0 and q.catch_accuracy == 1.0
    assert q.side_bias == pytest.approx(1 / 3)  # one of three trials kept the display order
    in_order = [Answered(f"t{i}", "main", None, options, (1, 0, 2), (0, 1, 2), 900.0)
                for i in range(4)]
    q = assess("a1", in_order, RULES)
    assert q.side_bias == 1.0 and "side bias" in q.exclusion_reason
    assert q.exclusion_rules == ("side_bias",)


def test_no_catch_or_repeat_trials_means_no_such_rule():
    trials = [trial(i, choice=i % 2, answer=0) for i in range(6)]
    q = assess("a1", trials, RULES)
    assert q.catch_accuracy is None and q.repeat_consistency is None and not q.excluded
    assert q.exclusion_rules == ()


def test_every_rule_breaks_at_once_in_rule_order_with_one_reason_per_code():
    trials = [Answered(t.trial_id, t.kind, t.repeat_of, t.options, t.answer, (0,), 150.0)
              for t in good_assignment()]  # catch 2 of 4, repeats flipped, fast, all left
    q = assess("a1", trials, RULES)
    assert q.exclusion_rules == tuple(rule.code for rule in exclusions.RULES)
    assert q.exclusion_reason.split("; ") == [
        "catch accuracy 0.50 < 0.75", "repeat consistency 0.00 < 0.5",
        "median RT 150 ms < 400 ms", "100% of responses under 300 ms > 30%",
        "side bias 1.00 > 0.85"]


def test_codes_are_unique_and_labelled():
    codes = [rule.code for rule in exclusions.RULES]
    assert len(set(codes)) == len(codes) == 5
    assert exclusions.label("median_rt") == "median reaction time"
    assert exclusions.label("from_a_newer_hitkit") == "from_a_newer_hitkit"


def ledger_with(path, answered):
    """A ledger holding one submitted assignment `a1` with these answers."""
    ledger = Ledger(path)
    at = now_iso()
    with ledger.transaction() as con:
        con.execute("INSERT INTO designs VALUES ('d', '2afc', 0, 1, ?, '', ?)", (len(answered), at))
        con.execute("INSERT INTO hits VALUES ('h', 'd', 0, 1, 'open', '{}', ?)", (at,))
        con.execute("INSERT INTO assignments (assignment_id, hit_id, platform, participant_key,"
                    " state, started_at, submitted_at, completion_code)"
                    " VALUES ('a1', 'h', 'local', 'local:p', 'submitted', ?, ?, 'c')", (at, at))
        if ledger.schema_version >= 3:  # the link token admitted them (not modelled here)
            con.execute("UPDATE assignments SET confirmation = 'confirmed'")
        for position, a in enumerate(answered):
            con.execute("INSERT INTO trials VALUES (?, 'h', ?, '2afc', ?, ?, ?, ?, ?)",
                        (a.trial_id, position, a.kind, dumps(["q"]), dumps(list(a.options)),
                         dumps(list(a.answer)), a.repeat_of))
            con.execute("INSERT INTO responses VALUES (?, 'a1', ?, ?, ?, ?)",
                        (f"r{position}", a.trial_id, dumps(list(a.choice)), a.rt_ms, at))
    return ledger


def test_review_records_the_codes_once(tmp_path):
    fast = [Answered(t.trial_id, t.kind, t.repeat_of, t.options, t.answer, t.choice, 150.0)
            for t in good_assignment()]
    with ledger_with(tmp_path / "ledger.sqlite", fast) as ledger:
        [q] = review(ledger, RULES)
        review(ledger, RULES)  # the same verdict: no second row
        rows = ledger.query("SELECT exclusion_rules, exclusion_reason FROM reviews")
    assert len(rows) == 1
    assert json.loads(rows[0]["exclusion_rules"]) == ["median_rt", "fast_responses"]
    assert rows[0]["exclusion_reason"] == q.exclusion_reason


def test_a_ledger_from_before_the_codes_is_migrated(tmp_path, monkeypatch):
    path = tmp_path / "ledger.sqlite"
    with monkeypatch.context() as old:  # the hitkit that wrote schema version 1
        old.setattr(ledger_module, "MIGRATIONS", ledger_module.MIGRATIONS[:1])
        old.setattr(ledger_module, "SCHEMA_VERSION", 1)
        ledger_with(path, good_assignment()).close()
    con = sqlite3.connect(path)
    con.execute("INSERT INTO reviews (assignment_id, excluded, exclusion_reason, reject, metrics,"
                " created_at) VALUES ('a1', 1, 'catch accuracy 0.50 < 0.75', 0, '{}', 'then')")
    con.commit()
    con.close()
    with Ledger(path) as ledger:
        assert ledger.schema_version == ledger_module.SCHEMA_VERSION >= 2
        [before] = ledger.query("SELECT exclusion_rules FROM reviews")
        assert before["exclusion_rules"] is None  # not recorded then
        [q] = review(ledger, RULES)  # kept now: the verdict changed, a row with codes
        latest = ledger.query_one("SELECT * FROM reviews ORDER BY review_id DESC")
    assert not q.excluded and json.loads(latest["exclusion_rules"]) == []
