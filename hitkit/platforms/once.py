"""Exactly-once outward actions on top of the ledger's journal.

The recipe for every call that changes something on a platform:

1. ``ledger.journal(key, ...)`` records the action under a deterministic key
   (state ``pending``) before anything is sent; a key already ``done`` returns
   its recorded answer and nothing is sent again.
2. ``settle(key, "sent")`` just before the request: from here on the outcome
   is uncertain until it is recorded.
3. The request; then ``settle(key, "done", answer)``.

A crash between 1 and 2 leaves ``pending``: nothing was sent, so sending is
safe. A crash (or a timeout, a dropped connection, a 5xx) after 2 leaves
``sent``: the platform may or may not have applied it, so the next attempt
first asks the platform (`reconcile`) and sends again only when the platform
shows the action did not happen. Only a definite refusal (a 4xx that is not
throttling) settles ``failed``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from hitkit.platforms.base import Checkpoint, OutcomeUnknown, PlatformError, no_checkpoint
from hitkit.survey.ledger import Action, Ledger


class Transient(PlatformError):
    """A request whose outcome is unknown (timeout, dropped connection, 5xx, throttled)."""


Send = Callable[[Action], dict[str, Any]]
# returns the recorded answer when the platform shows the action happened, None when it did not;
# raises OutcomeUnknown when the platform cannot tell yet
Reconcile = Callable[[Action], dict[str, Any] | None]


def once(ledger: Ledger, key: str, platform: str, kind: str, subject: str | None,
         request: dict[str, Any], send: Send, *, reconcile: Reconcile | None = None,
         checkpoint: Checkpoint = no_checkpoint, attempts: int = 4,
         backoff: float = 0.05) -> dict[str, Any]:
    """Do the action `key` at most once on the platform; its recorded answer."""
    action = ledger.journal(key, platform, kind, subject, request)
    if action.state == "done":
        return action.response or {}
    last: Exception | None = None
    for attempt in range(attempts):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        if action.state == "sent" and reconcile is not None:
            try:
                found = reconcile(action)
            except Transient as exc:
                last = exc
                continue
            if found is not None:
                ledger.settle(key, "done", found)
                return found
        checkpoint("journaled", key)
        action = ledger.settle(key, "sent")
        try:
            answer = send(action)
        except Transient as exc:
            last = exc
            continue
        except PlatformError as exc:
            ledger.settle(key, "failed", {"error": str(exc)})
            raise
        checkpoint("sent", key)
        return ledger.settle(key, "done", answer).response or {}
    raise OutcomeUnknown(f"{kind} ({key}): no definite answer after {attempts} attempts "
                         f"({last}); run the command again to reconcile")


def retrying(call: Callable[[], Any], attempts: int = 4, backoff: float = 0.05) -> Any:
    """A read-only call, retried on transient errors (reads change nothing, so any retry is safe)."""
    for attempt in range(attempts):
        try:
            return call()
        except Transient:
            if attempt == attempts - 1:
                raise
            time.sleep(backoff * 2 ** attempt)
    raise AssertionError("unreachable")
