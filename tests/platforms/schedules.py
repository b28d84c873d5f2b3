"""Randomized, seeded fault schedules over publish -> participants -> collect -> approve -> bonus.

One schedule = one seed. The seed fixes the fake's random faults (500/503,
throttling, timeouts and dropped connections before or after the request is
applied) and one or two crashes of the client: a `Crash` raised from the
client's checkpoint hook at the n-th ("journaled", key) or ("sent", key)
point. Raising there leaves exactly what a killed process leaves: every
ledger transaction committed before that point, nothing after it, and the
platform's state as the request left it. After a crash (or a command that
gave up) the driver starts over with a fresh ledger connection and client,
as an operator re-running the commands would. A failing schedule replays
from its seed.

Modes (what the platform does besides faults): ``plain``; ``lag``: the platform's
listings lag behind its writes (a paid bonus is listed only later), and the
driver lets the platform's clock run on between runs that stopped on an
unresolved payment; ``late``: every such stop is followed by a day's pause, so
idempotency tokens (MTurk: 24 h) have expired when the operator re-runs; and
``async`` (Prolific): payments settle some time after the call that made them.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field


class Crash(BaseException):
    """A simulated process kill (BaseException: nothing may catch it as an error)."""


@dataclass
class CrashPlan:
    """Crash at the n-th visit of a point; `hits` counts visits across restarts."""

    targets: list[tuple[str, int]]
    visits: Counter = field(default_factory=Counter)
    crashed: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def from_seed(cls, seed: int, span: int = 30) -> CrashPlan:
        rng = random.Random(f"crash|{seed}")
        targets = [(rng.choice(["journaled", "sent"]), rng.randrange(1, span))
                   for _ in range(rng.choice([1, 1, 2]))]
        return cls(targets)

    def __call__(self, point: str, key: str) -> None:
        self.visits[point] += 1
        if (point, self.visits[point]) in self.targets:
            self.crashed.append((point, key))
            raise Crash(f"killed at {point} of {key}")


@dataclass
class Tally:
    schedules: int = 0
    faults: Counter = field(default_factory=Counter)
    crashes: Counter = field(default_factory=Counter)
    restarts: int = 0
    duplicates: int = 0  # extra platform objects (HITs, studies) for one hitkit object
    lost: int = 0  # submissions done on the platform and missing from the ledger
    double_payments: int = 0  # payments made more than once for one (assignment, reason)
    modes: Counter = field(default_factory=Counter)  # schedules per mode (plain, lag, late, ...)
    unresolved: int = 0  # runs that stopped on a payment the platform's record could not settle

    def record(self, mode: str, duplicates: int, lost: int, double_payments: int) -> None:
        """Count one schedule's outcome; called before its assertions, so a failing
        schedule still shows in the tally."""
        self.schedules += 1
        self.modes[mode] += 1
        self.duplicates += duplicates
        self.lost += lost
        self.double_payments += double_payments

    def line(self, name: str) -> str:
        return (f"{name}: {self.schedules} schedules {dict(sorted(self.modes.items()))}, "
                f"faults {dict(sorted(self.faults.items()))}, "
                f"crashes {dict(sorted(self.crashes.items()))}, restarts {self.restarts}, "
                f"unresolved stops {self.unresolved}, duplicates {self.duplicates}, "
                f"lost {self.lost}, double payments {self.double_payments}")
