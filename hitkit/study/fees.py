"""What a study costs on each platform: rewards plus the platform's fees.

Money is carried as integer minor units (cents, pence), rounded half up per
assignment the way the platforms charge it, so the estimate matches what a budget
cap is checked against. Amounts people write and read (study.toml, the command
line, printed totals, the ledger's payments.amount text) are in major units
(1.50) and converted where they cross into code: `to_minor_units` in,
`to_major_units` out. Every currency hitkit pays in has two decimal places.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

# MTurk's published rules (mturk.com/pricing, as of its closure on 2026-09-30).
MTURK_COMMISSION = Decimal("0.20")
MTURK_LARGE_BATCH_SURCHARGE = Decimal("0.20")  # HITs with 10 or more assignments
MTURK_LARGE_BATCH_ASSIGNMENTS = 10
MTURK_MASTERS_SURCHARGE = Decimal("0.05")
MTURK_MIN_FEE_MINOR = 1


def to_minor_units(amount: float | str | Decimal) -> int:
    """An amount in major units as integer minor units: 1.5 -> 150, "1.005" -> 101 (half up)."""
    return _round_half_up(Decimal(str(amount)) * 100)


def to_major_units(minor: int) -> Decimal:
    """Minor units as major units with two places (150 -> Decimal("1.50")), for text."""
    return Decimal(minor).scaleb(-2)


def _round_half_up(minor: Decimal) -> int:
    return int(minor.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class CostEstimate:
    platform: str
    currency: str
    assignments: int
    reward_per_assignment_minor: int
    fee_per_assignment_minor: int
    rate_note: str

    @property
    def rewards_minor(self) -> int:
        return self.reward_per_assignment_minor * self.assignments

    @property
    def fees_minor(self) -> int:
        return self.fee_per_assignment_minor * self.assignments

    @property
    def total_minor(self) -> int:
        return self.rewards_minor + self.fees_minor


def mturk_fee_minor(reward_minor: int, assignments_per_hit: int, masters: bool = False) -> int:
    """MTurk's fee for one assignment (also the rule for a bonus, with assignments_per_hit=1)."""
    rate = MTURK_COMMISSION
    if assignments_per_hit >= MTURK_LARGE_BATCH_ASSIGNMENTS:
        rate += MTURK_LARGE_BATCH_SURCHARGE
    if masters:
        rate += MTURK_MASTERS_SURCHARGE
    return max(_round_half_up(reward_minor * rate), MTURK_MIN_FEE_MINOR)


def mturk_cost(
    reward: float, assignments_per_hit: int, hits: int, masters: bool = False
) -> CostEstimate:
    reward_minor = to_minor_units(reward)
    rate = "20 %"
    if assignments_per_hit >= MTURK_LARGE_BATCH_ASSIGNMENTS:
        rate += " + 20 % (10 or more assignments per HIT)"
    if masters:
        rate += " + 5 % (Masters)"
    return CostEstimate(
        platform="mturk",
        currency="USD",
        assignments=hits * assignments_per_hit,
        reward_per_assignment_minor=reward_minor,
        fee_per_assignment_minor=mturk_fee_minor(reward_minor, assignments_per_hit, masters),
        rate_note=f"commission {rate}, at least $0.01 per assignment",
    )


def prolific_cost(
    reward: float, places: int, service_fee: float, vat: float, currency: str
) -> CostEstimate:
    reward_minor = to_minor_units(reward)
    fee_minor = _round_half_up(reward_minor * Decimal(str(service_fee)) * (1 + Decimal(str(vat))))
    vat_note = f" plus {vat:.0%} VAT on the fee" if vat else ""
    return CostEstimate(
        platform="prolific",
        currency=currency,
        assignments=places,
        reward_per_assignment_minor=reward_minor,
        fee_per_assignment_minor=fee_minor,
        rate_note=f"service fee {service_fee:.1%} of rewards{vat_note} (check your workspace)",
    )


def local_cost(reward: float, participants: int, currency: str) -> CostEstimate:
    return CostEstimate(
        platform="local",
        currency=currency,
        assignments=participants,
        reward_per_assignment_minor=to_minor_units(reward),
        fee_per_assignment_minor=0,
        rate_note="no platform fee; rewards are paid by the lab outside hitkit",
    )


def hourly_rate(reward: float, minutes: float) -> float:
    return float(reward) * 60.0 / float(minutes)
