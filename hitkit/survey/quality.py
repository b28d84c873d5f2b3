"""Quality control per assignment, by the pre-registered rules of [quality].

Metrics: catch-trial accuracy, repeat consistency (the same image chosen again
when a trial comes back with its sides swapped), median reaction time, the share
of responses faster than `fast_rt_ms`, and side bias (2AFC: the larger share of
left or right; matching: the share of trials answered in display order).

Two separate outcomes:
- `excluded` (with `exclusion_reason`): the data stay out of the analysis.
  Any rule can exclude; excluding says nothing about payment.
- `reject`: payment is refused. Only the rule-defined fraud threshold
  (`reject_below_catch_accuracy`) can reject, and a rejection always carries
  `rejection_message`.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import asdict, dataclass

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
    reasons: list[str] = []
    if catch is not None and catch < rules.min_catch_accuracy:
        reasons.append(f"catch accuracy {catch:.2f} < {rules.min_catch_accuracy:g}")
    if (rules.min_repeat_consistency is not None and consistency is not None
            and consistency < rules.min_repeat_consistency):
        reasons.append(f"repeat consistency {consistency:.2f} < {rules.min_repeat_consistency:g}")
    if median < rules.min_median_rt_ms:
        reasons.append(f"median RT {median:.0f} ms < {rules.min_median_rt_ms:g} ms")
    if fast > rules.max_fast_share:
        reasons.append(f"{fast:.0%} of responses under {rules.fast_rt_ms:g} ms > "
                       f"{rules.max_fast_share:.0%}")
    if bias > rules.max_side_bias:
        reasons.append(f"side bias {bias:.2f} > {rules.max_side_bias:g}")
    reject = (rules.reject_below_catch_accuracy is not None and catch is not None
              and catch < rules.reject_below_catch_accuracy)
    return Quality(
        assignment_id=assignment_id, responses=len(answered), catch_accuracy=catch,
        repeat_consistency=consistency, median_rt_ms=median, fast_share=fast, side_bias=bias,
        excluded=bool(reasons), exclusion_reason="; ".join(reasons) or None,
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
            if (before is not None and bool(before["excluded"]) == q.excluded
                    and before["exclusion_reason"] == q.exclusion_reason
                    and bool(before["reject"]) == q.reject):
                continue
            con.execute(
                "INSERT INTO reviews (assignment_id, excluded, exclusion_reason, reject, message,"
                " metrics, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (q.assignment_id, int(q.excluded), q.exclusion_reason, int(q.reject), q.message,
                 dumps(q.metrics()), now_iso()))
            ledger.add_event("reviewed", q.assignment_id, excluded=q.excluded, reject=q.reject)
    return verdicts
