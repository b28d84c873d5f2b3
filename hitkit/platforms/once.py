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

An action that is ``sent`` or ``failed`` is never re-sent before `reconcile` has
answered: a ``failed`` row may be a refusal that was read wrongly (a duplicate-token
refusal after a lost answer is a refusal of the *second* request, not of the
payment). `reconcile` returns None only when re-sending is safe (the platform shows
the action did not happen, or a live idempotency token makes a repeat harmless); it
raises `OutcomeUnknown` when the platform's record cannot settle it (a listing that
lags, a token past its window). `send` may raise `OutcomeUnknown` too (an answer
that does not say whether the earlier request went through). Either way the action
stays ``sent`` and nothing more is sent: the error says which command settles it.

`retrying` is the platforms' one retry helper (tenacity underneath): reads,
idempotent calls and each attempt of `once` go through it. boto3 calls are
retried by botocore's own standard mode as well (see hitkit.platforms.mturk).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from hitkit.platforms.base import Checkpoint, OutcomeUnknown, PlatformError, no_checkpoint
from hitkit.survey.ledger import Action, Ledger


class Transient(PlatformError):
    """A request whose outcome is unknown (timeout, dropped connection, 5xx, throttled)."""

    def __init__(self, message: str, retry_after: float = 0.0):
        super().__init__(message)
        self.retry_after = retry_after  # seconds a throttling server asked for (Retry-After)


Send = Callable[[Action], dict[str, Any]]
# returns the recorded answer when the platform shows the action happened, None when it did not;
# raises OutcomeUnknown when the platform cannot tell yet
Reconcile = Callable[[Action], dict[str, Any] | None]


def retrying(call: Callable[[], Any], attempts: int = 4, backoff: float = 0.05,
             before_retry: Callable[[], None] | None = None) -> Any:
    """call(), tried up to `attempts` times while it raises Transient; the last Transient is
    raised. Waits backoff·2^(n-1) before the n-th retry, plus any Retry-After the server sent.

    Only for calls that are safe to repeat: reads, idempotent requests, or an attempt
    that asks the platform first (once). `before_retry` runs after the wait, before each
    retry: a bulk call settles there what went through before sending the rest again.
    """
    exponential = wait_exponential(multiplier=backoff)

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        return exponential(state) + getattr(error, "retry_after", 0.0)

    def before(state: RetryCallState) -> None:
        if before_retry is not None and state.attempt_number > 1:
            before_retry()

    return Retrying(stop=stop_after_attempt(attempts), wait=wait, before=before,
                    retry=retry_if_exception_type(Transient), reraise=True)(call)


def once(ledger: Ledger, key: str, platform: str, kind: str, subject: str | None,
         request: dict[str, Any], send: Send, *, reconcile: Reconcile | None = None,
         checkpoint: Checkpoint = no_checkpoint, attempts: int = 4,
         backoff: float = 0.05) -> dict[str, Any]:
    """Do the action `key` at most once on the platform; its recorded answer."""
    action = ledger.journal(key, platform, kind, subject, request)
    if action.state == "done":
        return action.response or {}

    def attempt() -> dict[str, Any]:
        nonlocal action
        # sent before (this run or an earlier one) with no answer, or refused in a way that
        # may hide an earlier success: ask before sending again
        if action.state in ("sent", "failed") and reconcile is not None:
            found = reconcile(action)  # OutcomeUnknown propagates: nothing is sent
            if found is not None:
                ledger.settle(key, "done", found)
                return found
        checkpoint("journaled", key)
        action = ledger.settle(key, "sent")
        try:
            answer = send(action)
        except (Transient, OutcomeUnknown):
            raise  # PlatformErrors too, but of unknown outcome: never settled 'failed'
        except PlatformError as exc:
            ledger.settle(key, "failed", {"error": str(exc)})
            raise
        checkpoint("sent", key)
        return ledger.settle(key, "done", answer).response or {}

    try:
        return retrying(attempt, attempts, backoff)
    except Transient as last:
        raise OutcomeUnknown(f"{kind} ({key}): no definite answer after {attempts} attempts "
                             f"({last}); run the command again to reconcile") from None
