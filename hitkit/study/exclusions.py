"""The pre-registered exclusion rules of [quality]: a code per rule, its label, its reason.

The code is what is stored and read by machines: the ledger's `reviews.exclusion_rules`
and the `exclusion_rules` column of responses.parquet, which the analysis counts. The
label (tables, the report) and the reason sentence (`exclusion_reason`, `hitkit review`)
are for people and may be reworded; a code, once in a file, is never renamed or given
to another rule, so old exports keep meaning what they meant.

`hitkit.survey.quality` decides which rules an assignment breaks; this module only names
them, so the survey and the analysis share the names without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

CATCH_ACCURACY = "catch_accuracy"
REPEAT_CONSISTENCY = "repeat_consistency"
MEDIAN_RT = "median_rt"
FAST_RESPONSES = "fast_responses"
SIDE_BIAS = "side_bias"


@dataclass(frozen=True)
class ExclusionRule:
    code: str
    label: str
    # str.format template: `value` measured, `limit` the [quality] threshold it broke,
    # `fast_rt_ms` for the fast-response rule, whose threshold is a share of responses
    reason: str


RULES: tuple[ExclusionRule, ...] = (
    ExclusionRule(CATCH_ACCURACY, "catch accuracy", "catch accuracy {value:.2f} < {limit:g}"),
    ExclusionRule(REPEAT_CONSISTENCY, "repeat consistency",
                  "repeat consistency {value:.2f} < {limit:g}"),
    ExclusionRule(MEDIAN_RT, "median reaction time", "median RT {value:.0f} ms < {limit:g} ms"),
    ExclusionRule(FAST_RESPONSES, "fast responses",
                  "{value:.0%} of responses under {fast_rt_ms:g} ms > {limit:.0%}"),
    ExclusionRule(SIDE_BIAS, "side bias", "side bias {value:.2f} > {limit:g}"),
)
BY_CODE: dict[str, ExclusionRule] = {rule.code: rule for rule in RULES}


def label(code: str) -> str:
    """The rule's label; a code this version does not know (a newer hitkit wrote it) as is."""
    rule = BY_CODE.get(code)
    return rule.label if rule is not None else code


def reason(code: str, value: float, limit: float, **context: float) -> str:
    """The sentence for one broken rule, e.g. 'catch accuracy 0.50 < 0.75'."""
    return BY_CODE[code].reason.format(value=value, limit=limit, **context)
