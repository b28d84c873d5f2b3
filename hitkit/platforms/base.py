"""The one platform interface: publish a batch, status, collect, approve, reject, bonus, expire.

Every backend (local, prolific, mturk) speaks in hitkit's own assignment IDs
(the ledger's `assignments.assignment_id`); only the backend knows how those
map to a platform's submissions or assignments. Raw participant IDs never
appear in these dataclasses, in events or in journaled requests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from hitkit.survey.progress import Progress


class PlatformError(RuntimeError):
    """A platform call that failed for good, or a setting that cannot work; the message says which."""


class OutcomeUnknown(PlatformError):
    """A call was sent but its outcome is not known yet; a later run reconciles it."""


class Unresolved(OutcomeUnknown):
    """A payment whose outcome the platform's own record cannot settle (a listing that has
    not caught up, an idempotency token past its window): nothing more is sent until the
    command in `settle_with` (or a later run that finds it listed) settles it."""

    def __init__(self, message: str, settle_with: str):
        super().__init__(f"{message}; to settle it: {settle_with}")
        self.settle_with = settle_with


#: Called at the points of an outward action where a crash leaves a distinct state:
#: ("journaled", key) before the request is sent, ("sent", key) after the platform
#: answered but before the answer is recorded. Tests raise from it to simulate a crash.
Checkpoint = Callable[[str, str], None]


def no_checkpoint(point: str, key: str) -> None:
    return None


@dataclass(frozen=True)
class PublishResult:
    platform: str
    batch_id: str
    external_id: str | None  # Prolific study ID, MTurk HIT type ID
    places: int
    created: bool  # False when the batch already existed (a re-run is a no-op)
    urls: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # local: the CSV of the participant links in `urls`, and how many participants each
    # admits (more than one: an open link); the crowd platforms hand out places themselves
    links_file: Path | None = None
    caps: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class BatchStatus:
    platform: str
    batch_id: str
    external_id: str | None
    state: str  # the platform's own word (ACTIVE, Assignable, open, ...)
    places: int
    submissions_by_state: dict[str, int]
    # True when the platform knows nothing the ledger does not (local): the ledger's own
    # counts already say everything
    ledger_only: bool = False
    # lines `hitkit status` prints under the counts (e.g. Prolific's 21-day auto-approval)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CollectResult:
    platform: str
    new: int  # submissions stored in the ledger by this run
    awaiting_review: list[str]  # hitkit assignment IDs ready for approve/reject
    approved: int
    rejected: int
    pending: int  # started or submitted here, not yet completed on the platform
    problems: list[str] = field(default_factory=list)  # e.g. completed there, no data here
    # local: the ledger is the platform, so collecting is reading its progress
    progress: Progress | None = None


@dataclass(frozen=True)
class Bonus:
    assignment_id: str
    amount_minor: int  # cents or pence (hitkit.study.fees.to_minor_units)
    reason: str


@dataclass(frozen=True)
class ActionSummary:
    done: list[str]  # assignment IDs (or payment IDs) settled by this call
    already: list[str]  # settled by an earlier run: nothing sent
    failed: dict[str, str] = field(default_factory=dict)  # ID -> why


class Platform(Protocol):
    kind: str

    def publish(self, *, new: bool = False) -> PublishResult: ...

    def status(self) -> BatchStatus: ...

    def collect(self) -> CollectResult: ...

    def approve(self, assignment_ids: list[str]) -> ActionSummary: ...

    def reject(self, assignment_ids: list[str], message: str) -> ActionSummary: ...

    def bonus(self, bonuses: list[Bonus]) -> ActionSummary: ...

    def expire(self) -> list[str]: ...
