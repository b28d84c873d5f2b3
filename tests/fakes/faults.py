"""Programmable, replayable fault injection for the fake platform servers.

A fake asks `Faults.decide(operation)` once per API request; the answer is
`None` (serve normally) or a `FaultKind`. Two sources feed the answer, in
this order:

1. scripted faults, `faults.inject(kind, operation=..., times=..., skip=...)`:
   "the next N matching requests get this fault";
2. a seeded random schedule, `faults.randomize(seed, rate=...)`.

The random decision for the k-th request of operation `op` depends only on
`(seed, op, k)`, not on the order in which requests of *different*
operations arrive, so a failing schedule replays exactly from its seed even
when a client interleaves calls. `faults.events` lists every fault injected;
`faults.describe()` renders the schedule and events for an assertion message.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum


class FaultKind(StrEnum):
    """What the server does instead of (or after) serving a request."""

    HTTP_500 = "http_500"  # error response, nothing applied
    HTTP_503 = "http_503"  # error response, nothing applied
    THROTTLE = "throttle"  # MTurk: 400 ThrottlingException; Prolific: 429 + Retry-After
    TIMEOUT_BEFORE_APPLY = "timeout_before_apply"  # stall, then close; nothing applied
    TIMEOUT_AFTER_APPLY = "timeout_after_apply"  # apply, then stall past the client's timeout
    DROP_BEFORE_APPLY = "drop_before_apply"  # close the socket without a response
    DROP_AFTER_APPLY = "drop_after_apply"  # apply, then close without a response
    HTTP_500_AFTER_APPLY = "http_500_after_apply"  # apply, then answer 500 anyway


#: The kinds after which the request's change is already in the fake's state.
APPLIED_KINDS = frozenset(
    {FaultKind.TIMEOUT_AFTER_APPLY, FaultKind.DROP_AFTER_APPLY, FaultKind.HTTP_500_AFTER_APPLY}
)
ALL_KINDS = tuple(FaultKind)


@dataclass(frozen=True)
class FaultEvent:
    """One injected fault: the seq-th API request overall, the call-th of its operation."""

    seq: int
    operation: str
    call: int
    kind: FaultKind
    source: str  # "script" or "random"

    @property
    def applied(self) -> bool:
        return self.kind in APPLIED_KINDS


@dataclass
class _Script:
    kind: FaultKind
    operation: str | None
    times: int
    skip: int


@dataclass
class _RandomSchedule:
    seed: int | str
    rate: float
    kinds: tuple[FaultKind, ...]
    operations: frozenset[str] | None
    max_consecutive: int
    limit: int | None


@dataclass
class Faults:
    """The fault plan of one fake server. Thread-safe; mutate it from the test at any time."""

    #: How long a TIMEOUT_* fault holds the connection before closing it. Keep it
    #: longer than the client's read timeout (the tests here use 1-2 s).
    stall_seconds: float = 5.0
    events: list[FaultEvent] = field(default_factory=list)
    _scripts: list[_Script] = field(default_factory=list)
    _random: _RandomSchedule | None = None
    _calls: Counter = field(default_factory=Counter)
    _consecutive: Counter = field(default_factory=Counter)
    _seq: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def inject(
        self,
        kind: FaultKind | str,
        *,
        operation: str | None = None,
        times: int = 1,
        skip: int = 0,
    ) -> None:
        """Fault the next `times` requests of `operation` (any operation when None),
        after letting `skip` matching requests through."""
        with self._lock:
            self._scripts.append(_Script(FaultKind(kind), operation, times, skip))

    def randomize(
        self,
        seed: int | str,
        *,
        rate: float = 0.2,
        kinds: tuple[FaultKind | str, ...] = ALL_KINDS,
        operations: set[str] | frozenset[str] | None = None,
        max_consecutive: int = 2,
        limit: int | None = None,
    ) -> None:
        """Fault each request with probability `rate`, the kind drawn from `kinds`.

        `max_consecutive` bounds back-to-back faults on one operation, so a
        client with that many retries always gets through eventually;
        `limit` bounds the total number of random faults.
        """
        with self._lock:
            self._random = _RandomSchedule(
                seed=seed,
                rate=rate,
                kinds=tuple(FaultKind(k) for k in kinds),
                operations=frozenset(operations) if operations is not None else None,
                max_consecutive=max_consecutive,
                limit=limit,
            )

    def clear(self) -> None:
        """Drop scripted faults and the random schedule (events are kept)."""
        with self._lock:
            self._scripts.clear()
            self._random = None

    def decide(self, operation: str) -> FaultKind | None:
        """Called by the server once per API request."""
        with self._lock:
            self._seq += 1
            self._calls[operation] += 1
            call = self._calls[operation]
            kind, source = self._from_scripts(operation), "script"
            if kind is None:
                kind, source = self._from_random(operation, call), "random"
            if kind is None:
                self._consecutive[operation] = 0
                return None
            self._consecutive[operation] += 1
            self.events.append(FaultEvent(self._seq, operation, call, kind, source))
            return kind

    def _from_scripts(self, operation: str) -> FaultKind | None:
        for script in self._scripts:
            if script.operation not in (None, operation) or script.times <= 0:
                continue
            if script.skip > 0:
                script.skip -= 1
                continue
            script.times -= 1
            return script.kind
        return None

    def _from_random(self, operation: str, call: int) -> FaultKind | None:
        schedule = self._random
        if schedule is None:
            return None
        if schedule.operations is not None and operation not in schedule.operations:
            return None
        if self._consecutive[operation] >= schedule.max_consecutive:
            return None
        if schedule.limit is not None:
            injected = sum(1 for e in self.events if e.source == "random")
            if injected >= schedule.limit:
                return None
        # A string seed goes through SHA-512 in random.seed: stable across runs and platforms.
        rng = random.Random(f"{schedule.seed}|{operation}|{call}")
        if rng.random() >= schedule.rate:
            return None
        return rng.choice(schedule.kinds)

    def count(self, kind: FaultKind | str | None = None, operation: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for e in self.events
                if (kind is None or e.kind == FaultKind(kind))
                and (operation is None or e.operation == operation)
            )

    def describe(self) -> str:
        """The schedule and what was injected, for assertion messages and replay."""
        with self._lock:
            lines = []
            if self._random is not None:
                r = self._random
                lines.append(
                    f"randomize(seed={r.seed!r}, rate={r.rate}, kinds={[k.value for k in r.kinds]}, "
                    f"operations={sorted(r.operations) if r.operations else None}, "
                    f"max_consecutive={r.max_consecutive}, limit={r.limit})"
                )
            lines += [
                f"#{e.seq} {e.operation} call {e.call}: {e.kind.value} ({e.source})"
                for e in self.events
            ]
            return "\n".join(lines) or "no faults"
