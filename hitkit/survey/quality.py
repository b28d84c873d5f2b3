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

Only confirmed submissions are assessed (an arrival is a claim until its platform
confirms it; see hitkit.survey.assignments). Each review run records the [quality]
rules it applied (`review_runs`); export and analysis read the recorded verdicts and
refuse to go on when [quality] changed since (:func:`recorded_verdicts`), so editing
the rules after payment cannot silently change which rows the analysis sees. A new
review under changed rules needs a reason, which is recorded with the run.
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
    rt_ms: float | None  # None: unknown (an imported MTurk result without rt_<trial>)


@dataclass(frozen=True)
class Quality:
    assignment_id: str
    responses: int
    catch_accuracy: float | None
    repeat_consistency: float | None
    median_rt_ms: float | None  # None: no response time known
    fast_share: float | None
    side_bias: float
    excluded: bool
    exclusion_rules: tuple[str, ...]  # codes of hitkit.study.exclusions, in rule order
    exclusion_reason: str | None
    reject: bool
    message: str | None
    # rules that could not be applied, in words (response times unknown): never an exclusion
    not_assessed: tuple[str, ...] = ()

    def metrics(self) -> dict[str, float | int | None]:
        data = asdict(self)
        out = {k: data[k] for k in ("responses", "catch_accuracy", "repeat_consistency",
                                    "median_rt_ms", "fast_share", "side_bias")}
        if self.not_assessed:
            out["not_assessed"] = list(self.not_assessed)
        return out


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
    # an unknown response time is not a fast one: the RT rules use the known times only,
    # and with none known they are not assessable (said in not_assessed, never 0 ms)
    rts = [a.rt_ms for a in answered if a.rt_ms is not None]
    unknown = len(answered) - len(rts)
    median = statistics.median(rts) if rts else None
    fast = sum(rt < rules.fast_rt_ms for rt in rts) / len(rts) if rts else None
    not_assessed = []
    if answered and not rts:
        not_assessed.append(f"{exclusions.MEDIAN_RT} and {exclusions.FAST_RESPONSES} not "
                            f"assessable: no response time known ({unknown} of {len(answered)} "
                            "unknown)")
    elif unknown:
        not_assessed.append(f"{exclusions.MEDIAN_RT} and {exclusions.FAST_RESPONSES} use the "
                            f"{len(rts)} known response times ({unknown} unknown)")
    catch = catch_accuracy(answered)
    consistency = repeat_consistency(answered)
    bias = side_bias(answered)
    broken: list[tuple[str, float, float]] = []  # (code, measured, threshold)
    if catch is not None and catch < rules.min_catch_accuracy:
        broken.append((exclusions.CATCH_ACCURACY, catch, rules.min_catch_accuracy))
    if (rules.min_repeat_consistency is not None and consistency is not None
            and consistency < rules.min_repeat_consistency):
        broken.append((exclusions.REPEAT_CONSISTENCY, consistency, rules.min_repeat_consistency))
    if median is not None and median < rules.min_median_rt_ms:
        broken.append((exclusions.MEDIAN_RT, median, rules.min_median_rt_ms))
    if fast is not None and fast > rules.max_fast_share:
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
        not_assessed=tuple(not_assessed),
    )


def answered_by_assignment(ledger: Ledger) -> dict[str, list[Answered]]:
    """Responses of every confirmed submitted assignment joined with the answer key, in
    trial order."""
    rows = ledger.query(
        """SELECT r.assignment_id, t.trial_id, t.kind, t.repeat_of, t.options, t.answer,
                  r.choice, r.rt_ms
           FROM responses r JOIN trials t USING (trial_id)
           JOIN assignments a ON a.assignment_id = r.assignment_id
           WHERE a.state != 'started' AND a.confirmation = 'confirmed'
           ORDER BY r.assignment_id, t.position""")
    result: dict[str, list[Answered]] = {}
    for r in rows:
        result.setdefault(r["assignment_id"], []).append(Answered(
            r["trial_id"], r["kind"], r["repeat_of"], tuple(json.loads(r["options"])),
            tuple(json.loads(r["answer"])), tuple(json.loads(r["choice"])), r["rt_ms"]))
    return result


class ReviewError(RuntimeError):
    """The recorded review cannot be used (none yet, [quality] changed since, or
    submissions not reviewed), or a new review under changed rules gives no reason."""


def rules_record(rules: QualitySection) -> dict[str, object]:
    """The [quality] rules as the ledger records them with a review run."""
    return rules.model_dump(mode="json")


def changed_rules(recorded: dict[str, object], rules: QualitySection) -> list[str]:
    """The [quality] fields whose value differs from the recorded run's, by name."""
    now = rules_record(rules)
    return sorted(k for k in set(recorded) | set(now) if recorded.get(k) != now.get(k))


def last_review_run(ledger: Ledger):
    return ledger.query_one("SELECT * FROM review_runs ORDER BY run_id DESC LIMIT 1")


def recorded_verdicts(ledger: Ledger, rules: QualitySection) -> dict[str, object]:
    """assignment ID -> its latest review row, for every confirmed submitted assignment:
    what export and analysis use. A ReviewError names what is wrong: no review yet,
    [quality] fields changed since the last `hitkit review`, or submissions not reviewed."""
    run = last_review_run(ledger)
    if run is None:
        raise ReviewError("no review recorded in the ledger: run `hitkit review` first "
                          "(export uses the verdicts it records)")
    changed = changed_rules(json.loads(run["rules"]), rules)
    if changed:
        raise ReviewError(
            f"[quality] changed since `hitkit review` ({run['created_at']}): "
            f"{', '.join(changed)}; the recorded verdicts (which `hitkit pay` used) were made "
            "under the old rules. Restore them, or run `hitkit review --reason ...` to record "
            "new verdicts and why")
    latest = {r["assignment_id"]: r for r in ledger.query(
        "SELECT * FROM reviews WHERE review_id IN"
        " (SELECT MAX(review_id) FROM reviews GROUP BY assignment_id)")}
    missing = [r["assignment_id"] for r in ledger.query(
        "SELECT assignment_id FROM assignments WHERE state != 'started'"
        " AND confirmation = 'confirmed' ORDER BY assignment_id")
        if r["assignment_id"] not in latest]
    if missing:
        raise ReviewError(f"{len(missing)} confirmed submission(s) not reviewed yet (first: "
                          f"{missing[0]}): run `hitkit review`")
    return latest


def review(ledger: Ledger, rules: QualitySection, reason: str | None = None) -> list[Quality]:
    """Assess every confirmed submitted assignment; record the run with its rules, and a
    review row when an assignment's verdict changed. When [quality] changed since the
    last run, `reason` is required and recorded (a ReviewError otherwise)."""
    before_run = last_review_run(ledger)
    changed = changed_rules(json.loads(before_run["rules"]), rules) if before_run else []
    if changed and not (reason and reason.strip()):
        raise ReviewError(
            f"[quality] changed since the review of {before_run['created_at']}: "
            f"{', '.join(changed)}; say why with `hitkit review --reason TEXT` (it is recorded "
            "with the new verdicts)")
    verdicts = [assess(aid, answered, rules)
                for aid, answered in sorted(answered_by_assignment(ledger).items())]
    with ledger.transaction() as con:
        run_id = con.execute(
            "INSERT INTO review_runs (rules, changed, reason, assignments, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (dumps(rules_record(rules)), dumps(changed), reason.strip() if reason else None,
             len(verdicts), now_iso())).lastrowid
        if changed:
            ledger.add_event("quality_changed", str(run_id), fields=changed, reason=reason.strip())
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
                " reject, message, metrics, created_at, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (q.assignment_id, int(q.excluded), dumps(list(q.exclusion_rules)),
                 q.exclusion_reason, int(q.reject), q.message, dumps(q.metrics()), now_iso(),
                 run_id))
            ledger.add_event("reviewed", q.assignment_id, excluded=q.excluded, reject=q.reject)
    return verdicts
