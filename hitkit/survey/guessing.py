"""How often a participant who never looks at a picture passes the exclusion rules.

A guesser answers every trial at random. Catch trials and repeats look like main trials
on the wire (hitkit.survey.served_images, hitkit.survey.design), so a script that tries
to spot them first is a guesser too. Its chance to pass is that of the catch rule times
that of the repeat-consistency rule (they look at different trials); the timing and
side-bias rules are left out, because a script can always satisfy them. The result is
therefore an upper bound, and the number `docs/survey.md` asks to keep at or below 5 %.
"""

from __future__ import annotations

from math import comb, factorial

from hitkit.study.config import QualitySection, SurveySection

GUESSER_PASS_LIMIT = 0.05


def _at_least(n: int, p: float, share: float) -> float:
    """P(successes / n >= share) for n Bernoulli(p) trials (1 when n is 0: no rule)."""
    if n == 0:
        return 1.0
    return sum(comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(n + 1) if j / n >= share)


def _fixed_points(k: int) -> list[float]:
    """P(a uniformly random permutation of k has j fixed points), j = 0..k."""
    def derangements(n: int) -> int:
        return round(factorial(n) * sum((-1) ** i / factorial(i) for i in range(n + 1)))

    return [comb(k, j) * derangements(k - j) / factorial(k) for j in range(k + 1)]


def _consistency_pass(repeats: int, k: int, share: float) -> float:
    """P(repeat consistency >= share) for a guesser: each repeat of a k-option trial agrees
    with its original in as many places as a random permutation has fixed points (k = 2:
    one place, agreeing half the time)."""
    if repeats == 0:
        return 1.0
    if k == 2:
        return _at_least(repeats, 0.5, share)
    dist = [1.0]
    step = _fixed_points(k)
    for _ in range(repeats):
        new = [0.0] * (len(dist) + k)
        for a, pa in enumerate(dist):
            for b, pb in enumerate(step):
                new[a + b] += pa * pb
        dist = new
    total = repeats * k
    return sum(p for agree, p in enumerate(dist) if agree / total >= share)


def guesser_pass_rate(survey: SurveySection, quality: QualitySection) -> float:
    """The chance that random answers to a full HIT pass the catch and repeat rules."""
    k = 2 if survey.task == "2afc" else int(survey.k or 2)
    # a catch trial counts as right only when its whole answer is right
    p_catch = 1 / k if survey.task == "2afc" else 1 / factorial(k)
    catch = _at_least(survey.catch_per_hit, p_catch, quality.min_catch_accuracy)
    repeat = 1.0
    if quality.min_repeat_consistency is not None:
        repeat = _consistency_pass(survey.repeats_per_hit, k, quality.min_repeat_consistency)
    return catch * repeat
