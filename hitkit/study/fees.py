"""What a study costs on each platform: rewards plus the platform's fees.

Money is computed in Decimal and rounded to cents per assignment, the way the
platforms charge it, so the estimate matches what a budget cap is checked against.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")

# MTurk's published rules (mturk.com/pricing, as of its closure on 2026-09-30).
MTURK_COMMISSION = Decimal("0.20")
MTURK_LARGE_BATCH_SURCHARGE = Decimal("0.20")  # HITs with 10 or more assignments
MTURK_LARGE_BATCH_ASSIGNMENTS = 10
MTURK_MASTERS_SURCHARGE = Decimal("0.05")
MTURK_MIN_FEE = Decimal("0.01")


def to_cents(value: float | str | Decimal) -> Decimal:
    return Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class CostEstimate:
    platform: str
    currency: str
    assignments: int
    reward_per_assignment: Decimal
    fee_per_assignment: Decimal
    rate_note: str

    @property
    def rewards(self) -> Decimal:
        return self.reward_per_assignment * self.assignments

    @property
    def fees(self) -> Decimal:
        return self.fee_per_assignment * self.assignments

    @property
    def total(self) -> Decimal:
        return self.rewards + self.fees


def mturk_fee(reward: Decimal, assignments_per_hit: int, masters: bool = False) -> Decimal:
    """MTurk's fee for one assignment (also the rule for a bonus, with assignments_per_hit=1)."""
    rate = MTURK_COMMISSION
    if assignments_per_hit >= MTURK_LARGE_BATCH_ASSIGNMENTS:
        rate += MTURK_LARGE_BATCH_SURCHARGE
    if masters:
        rate += MTURK_MASTERS_SURCHARGE
    return max(to_cents(reward * rate), MTURK_MIN_FEE)


def mturk_cost(
    reward: float, assignments_per_hit: int, hits: int, masters: bool = False
) -> CostEstimate:
    reward_d = to_cents(reward)
    rate = "20 %"
    if assignments_per_hit >= MTURK_LARGE_BATCH_ASSIGNMENTS:
        rate += " + 20 % (10 or more assignments per HIT)"
    if masters:
        rate += " + 5 % (Masters)"
    return CostEstimate(
        platform="mturk",
        currency="USD",
        assignments=hits * assignments_per_hit,
        reward_per_assignment=reward_d,
        fee_per_assignment=mturk_fee(reward_d, assignments_per_hit, masters),
        rate_note=f"commission {rate}, at least $0.01 per assignment",
    )


def prolific_cost(
    reward: float, places: int, service_fee: float, vat: float, currency: str
) -> CostEstimate:
    reward_d = to_cents(reward)
    fee = to_cents(reward_d * Decimal(str(service_fee)) * (1 + Decimal(str(vat))))
    vat_note = f" plus {vat:.0%} VAT on the fee" if vat else ""
    return CostEstimate(
        platform="prolific",
        currency=currency,
        assignments=places,
        reward_per_assignment=reward_d,
        fee_per_assignment=fee,
        rate_note=f"service fee {service_fee:.1%} of rewards{vat_note} (check your workspace)",
    )


def local_cost(reward: float, participants: int, currency: str) -> CostEstimate:
    return CostEstimate(
        platform="local",
        currency=currency,
        assignments=participants,
        reward_per_assignment=to_cents(reward),
        fee_per_assignment=Decimal("0.00"),
        rate_note="no platform fee; rewards are paid by the lab outside hitkit",
    )


def hourly_rate(reward: float, minutes: float) -> float:
    return float(reward) * 60.0 / float(minutes)
