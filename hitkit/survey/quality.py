"""Quality control per assignment, by the pre-registered rules of [quality].

Metrics: catch-trial accuracy, repeat consistency (the same image chosen again
when a trial comes back with its sides swapped), median reaction time, the share
of responses faster than `fast_rt_ms`, and side bias (2AFC: the larger share of
left or right; matching: the share of trials answered in display order).

Two separate outcomes:
- `excluded` (with `exclusion_rules`, the codes of hitkit.study.exclusions, and
  `exclusion_reason`, the same in words with the measured values): the data stay
  out of the analysis. Any rule can exclude; excluding says nothing about payment.
- `reject`: payment is refused. Only the rule-defined fraud threshold
  (`reject_below_catch_accuracy`) can reject, and a rejection always carries
  `rejection_message`.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import asdict, dataclass

from hitkit.study import exclusions
from hitkit.study.config import QualitySection
from hitkit.survey.ledger import Ledger, dumps, now_iso


@dataclass(frozen=True)
class Answered:
    trial_id: str
    kind: str
    repeat_of: str | None
    options: tuple[str, ...]
    answer: tuple[int, ...]
    choice: tuple[int, ...]
    rt_ms: float


@dataclass(frozen=True)
class Quality:
    assignment_id: str
    responses: int
    catch_accuracy: float | None
    repeat_consistency: float | None
    median_rt_ms: float
    fast_share: float
    side_bias: float
    excluded: bool
    exclusion_rules: tuple[str, ...]  # codes of hitkit.study.exclusions, in rule order
    exclusion_reason: str | None
    reject: bool
    message: str | None

    def metrics(self) -> dict[str, float | int | None]:
        data = asdict(self)
        return {k: data[k] for k in ("responses", "catch_accuracy", "repeat_consistency",
                                     "median_rt_ms", "fast_share", "side_bias")}


def catch_accuracy(answered: list[Answered]) -> float | None:
    catches = [a for a in answered if a.kind == "catch"]
    if not catches:
        return None
    return sum(a.choice == a.answer for a in catches) / len(catches)


def repeat_consistency(answered: list[Answered]) -> float | None:
    """Share of repeated query images for which the same option *image* was chosen again."""
    by_id = {a.trial_id: a for a in answered}
    agree, total = 0, 0
    for repeat in answered:
        original = by_id.get(repeat.repeat_of or "")
        if repeat.kind != "repeat" or original is None:
            continue
        for first, second in zip(original.choice, repeat.choice, strict=True):
            agree += original.options[first] == repeat.options[second]
            total += 1
    return agree / total if total else None


def side_bias(answered: list[Answered]) -> float:
    """2AFC: the larger share of left or right choices (0.5 is unbiased).

    Matching: the share of trials answered by keeping the display order (each
    top image given the option below it), which chance does with 1/k!.
    """
    if answered and all(len(a.choice) > 1 for a in answered):
        kept = sum(a.choice == tuple(range(len(a.choice))) for a in answered)
        return kept / len(answered)
    positions = Counter(c for a in answered for c in a.choice)
    total = sum(positions.values())
    return max(positions.values()) / total if total else 0.0


def assess(assignment_id: str, answered: list[Answered], rules: QualitySection) -> Quality:
    rts = [a.rt_ms for a in answered]
    median = statistics.median(rts) if rts else 0.0
    fast = sum(rt < rules.fast_rt_ms for rt in rts) / len(rts) if rts else 0.0
    catch = catch_accuracy(answered)
    consistency = repeat_consistency(answered)
    bias = side_bias(answered)
    broken: list[tuple[str, float, float]] = []  # (code, measured, threshold)
    if catch is not None and catch < rules.min_catch_accuracy:
        broken.append((exclusions.CATCH_ACCURACY, catch, rules.min_catch_accuracy))
    if (rules.min_repeat_consistency is not None and consistency is not None
            and consistency < rules.min_repeat_consistency):
        broken.append((exclusions.REPEAT_CONSISTENCY, consistency, rules.min_repeat_consistency))
    if median < rules.min_median_rt_ms:
        broken.append((exclusions.MEDIAN_RT, median, rules.min_median_rt_ms))
    if fast > rules.max_fast_share:
        broken.append((exclusions.FAST_RESPONSES, fast, rules.max_fast_share))
    if bias > rules.max_side_bias:
        broken.append((exclusions.SIDE_BIAS, bias, rules.max_side_bias))
    reasons = [exclusions.reason(code, value, limit, fast_rt_ms=rules.fast_rt_ms)
               for code, value, limit in broken]
    reject = (rules.reject_below_catch_accuracy is not None and catch is not None
              and catch < rules.reject_below_catch_accuracy)
    return Quality(
        assignment_id=assignment_id, responses=len(answered), catch_accuracy=catch,
        repeat_consistency=consistency, median_rt_ms=median, fast_share=fast, side_bias=bias,
        excluded=bool(broken), exclusion_rules=tuple(code for code, _, _ in broken),
        exclusion_reason="; ".join(reasons) or None,
        reject=reject, message=rules.rejection_message if reject else None,
    )


def answered_by_assignment(ledger: Ledger) -> dict[str, list[Answered]]:
    """Responses of every submitted assignment joined with the answer key, in trial order."""
    rows = ledger.query(
        """SELECT r.assignment_id, t.trial_id, t.kind, t.repeat_of, t.options, t.answer,
                  r.choice, r.rt_ms
           FROM responses r JOIN trials t USING (trial_id)
           JOIN assignments a ON a.assignment_id = r.assignment_id
           WHERE a.state != 'started'
           ORDER BY r.assignment_id, t.position""")
    result: dict[str, list[Answered]] = {}
    for r in rows:
        result.setdefault(r["assignment_id"], []).append(Answered(
            r["trial_id"], r["kind"], r["repeat_of"], tuple(json.loads(r["options"])),
            tuple(json.loads(r["answer"])), tuple(json.loads(r["choice"])), r["rt_ms"]))
    return result


def review(ledger: Ledger, rules: QualitySection) -> list[Quality]:
    """Assess every submitted assignment; record a review row when the verdict changed."""
    verdicts = [assess(aid, answered, rules)
                for aid, answered in sorted(answered_by_assignment(ledger).items())]
    with ledger.transaction() as con:
        latest = {r["assignment_id"]: r for r in con.execute(
            "SELECT * FROM reviews WHERE review_id IN"
            " (SELECT MAX(review_id) FROM reviews GROUP BY assignment_id)")}
        for q in verdicts:
            before = latest.get(q.assignment_id)
            # the reason is written from the codes and values, so an equal reason means
            # equal codes; a row reviewed before the ledger stored codes is not re-added
            if (before is not None and bool(before["excluded"]) == q.excluded
                    and before["exclusion_reason"] == q.exclusion_reason
                    and bool(before["reject"]) == q.reject):
                continue
            con.execute(
                "INSERT INTO reviews (assignment_id, excluded, exclusion_rules, exclusion_reason,"
                " reject, message, metrics, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (q.assignment_id, int(q.excluded), dumps(list(q.exclusion_rules)),
                 q.exclusion_reason, int(q.reject), q.message, dumps(q.metrics()), now_iso()))
            ledger.add_event("reviewed", q.assignment_id, excluded=q.excluded, reject=q.reject)
    return verdicts
