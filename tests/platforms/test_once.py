"""hitkit.platforms.once: an action whose outcome is unknown is reconciled, never re-sent blindly."""

from __future__ import annotations

import pytest

from hitkit.platforms.base import OutcomeUnknown, PlatformError, Unresolved
from hitkit.platforms.once import once
from hitkit.survey.ledger import Ledger


@pytest.fixture
def ledger(tmp_path):
    with Ledger(tmp_path / "ledger.sqlite") as ledger:
        yield ledger


def test_failed_action_is_reconciled_before_it_is_sent_again(ledger):
    sent, asked = [], []

    def refuse(action):
        sent.append(action.attempts)
        raise PlatformError("refused")

    with pytest.raises(PlatformError):
        once(ledger, "k", "mturk", "send_bonus", None, {}, refuse, reconcile=lambda a: None)
    assert ledger.query_one("SELECT state FROM actions")[0] == "failed"

    def found(action):
        asked.append(action.state)
        return {"reconciled": True}

    assert once(ledger, "k", "mturk", "send_bonus", None, {}, refuse, reconcile=found) == {
        "reconciled": True}
    assert sent == [1] and asked == ["failed"]


def test_outcome_unknown_leaves_the_action_sent_and_sends_nothing_more(ledger):
    sent = []

    def ambiguous(action):
        sent.append(action.attempts)
        raise Unresolved("a repeat was refused and the listing shows nothing", "hitkit pay")

    with pytest.raises(OutcomeUnknown, match="to settle it: hitkit pay"):
        once(ledger, "k", "mturk", "send_bonus", None, {}, ambiguous, reconcile=lambda a: None)
    assert ledger.query_one("SELECT state FROM actions")[0] == "sent" and sent == [1]

    def cannot_tell(action):
        raise Unresolved("past the token window", "hitkit pay --settle")

    with pytest.raises(Unresolved):
        once(ledger, "k", "mturk", "send_bonus", None, {}, ambiguous, reconcile=cannot_tell)
    assert sent == [1]  # reconcile could not settle it: not sent again
