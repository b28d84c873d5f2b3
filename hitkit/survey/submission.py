"""Validating a participant's submission before anything is stored.

A submission is JSON::

    {"responses": [{"trial_id": "...", "choice": 1, "rt_ms": 812.5}, ...],
     "comment": "optional free text", "client": {"width": 1280, ...}}

`choice` is the chosen option's index (2AFC) or, for matching, a list giving
for each query image the index of the option assigned to it (a permutation);
the task type says which (hitkit.survey.design.TaskType.single_choice).
Anything else is a :class:`SubmissionError` naming the field and what is wrong;
the server answers it with a 4xx and logs the attempt.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from hitkit.survey.design import TASKS, Trial

MAX_BODY_BYTES = 256 * 1024
MAX_RT_MS = 6 * 3600 * 1000.0  # six hours: longer is a broken clock, not a slow participant
MAX_COMMENT_CHARS = 2000
MAX_CLIENT_KEYS = 20
MAX_ID_SHOWN = 40
MAX_DEPTH = 16  # a submission is 3 levels deep; deeper JSON is refused before it is read
MAX_CLIENT_INT = 2**53  # beyond this a JSON number is not exact in a browser


class SubmissionError(ValueError):
    def __init__(self, field: str, message: str, status: int = 422):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Response:
    trial_id: str
    choice: tuple[int, ...]
    rt_ms: float


@dataclass(frozen=True)
class Submission:
    responses: tuple[Response, ...]
    comment: str
    client: dict[str, Any]

    @property
    def sha256(self) -> str:
        """Fingerprint of the content (key order and whitespace do not matter)."""
        canonical = {
            "responses": sorted([r.trial_id, list(r.choice), r.rt_ms] for r in self.responses),
            "comment": self.comment,
        }
        return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def shown(value: Any) -> str:
    """A participant-supplied value, shortened for an error message."""
    text = repr(value)
    return text if len(text) <= MAX_ID_SHOWN else text[: MAX_ID_SHOWN - 3] + "..."


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def decode_body(body: bytes) -> Any:
    if len(body) > MAX_BODY_BYTES:
        raise SubmissionError("body", f"{len(body)} bytes exceeds the limit of {MAX_BODY_BYTES}",
                              status=413)
    if not body:
        raise SubmissionError("body", "empty; send the responses as JSON", status=400)
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise SubmissionError("body", "not UTF-8 text", status=400) from None
    except RecursionError:
        raise SubmissionError("body", "JSON nested too deeply", status=400) from None
    except ValueError as exc:
        # includes integers longer than Python's 4300-digit conversion limit
        raise SubmissionError("body", f"not valid JSON ({shown(str(exc))})", status=400) from None
    _check_tree(data)
    return data


def _check_tree(data: Any) -> None:
    """Refuse what JSON allows but no store can keep: nesting deeper than MAX_DEPTH, and
    strings (keys included) with lone surrogates ("\\ud800"), which are not Unicode text
    and which SQLite cannot encode. Walks without recursion."""
    stack = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise SubmissionError("body", f"JSON nested deeper than {MAX_DEPTH} levels", status=400)
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key)
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            _check_text(value)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise SubmissionError("body", "a string holds a lone surrogate (not Unicode text)",
                              status=400) from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_submission(data: Any, trials: list[Trial]) -> Submission:
    """Check a decoded submission against the HIT's trials."""
    if not isinstance(data, dict):
        raise SubmissionError("body", f"must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - {"responses", "comment", "client"})
    if unknown:
        raise SubmissionError(unknown[0] if len(unknown) == 1 else "body",
                              f"unknown field(s) {', '.join(shown(u) for u in unknown[:5])} "
                              "(allowed: responses, comment, client)")
    items = data.get("responses")
    if not isinstance(items, list):
        raise SubmissionError("responses", "missing or not a list")
    by_id = {t.trial_id: t for t in trials}
    seen: set[str] = set()
    responses: list[Response] = []
    for i, item in enumerate(items):
        where = f"responses[{i}]"
        if not isinstance(item, dict):
            raise SubmissionError(where, "must be an object with trial_id, choice and rt_ms")
        extra = sorted(set(item) - {"trial_id", "choice", "rt_ms"})
        if extra:
            raise SubmissionError(where, f"unknown field(s) {', '.join(shown(e) for e in extra[:5])}"
                                  " (allowed: trial_id, choice, rt_ms)")
        trial_id = item.get("trial_id")
        if not isinstance(trial_id, str):
            raise SubmissionError(f"{where}.trial_id", "missing or not a string")
        trial = by_id.get(trial_id)
        if trial is None:
            raise SubmissionError(f"{where}.trial_id", f"{shown(trial_id)} is not a trial of this HIT")
        if trial_id in seen:
            raise SubmissionError(f"{where}.trial_id", f"{shown(trial_id)} is answered twice")
        seen.add(trial_id)
        choice = _parse_choice(item.get("choice"), trial, f"{where}.choice")
        rt = item.get("rt_ms")
        if not (_is_int(rt) or isinstance(rt, float)):
            raise SubmissionError(f"{where}.rt_ms", "missing or not a number")
        # an integer is compared before any float conversion (10**400 overflows a float)
        if (_is_int(rt) and not 0 <= rt <= MAX_RT_MS) or not math.isfinite(rt) or not 0 <= rt <= MAX_RT_MS:
            raise SubmissionError(f"{where}.rt_ms", f"{shown(rt)} is not a time in 0..{MAX_RT_MS:.0f} ms")
        responses.append(Response(trial_id, choice, float(rt)))
    missing = [t.trial_id for t in trials if t.trial_id not in seen]
    if missing:
        raise SubmissionError("responses", f"{len(missing)} trial(s) unanswered, first {missing[0]}")
    comment = data.get("comment", "")
    if comment is None:
        comment = ""
    if not isinstance(comment, str):
        raise SubmissionError("comment", "must be a string")
    if len(comment) > MAX_COMMENT_CHARS:
        raise SubmissionError("comment", f"{len(comment)} characters exceeds {MAX_COMMENT_CHARS}")
    if "\x00" in comment:
        raise SubmissionError("comment", "contains a NUL character")
    client = data.get("client", {})
    if client is None:
        client = {}
    if not isinstance(client, dict) or len(client) > MAX_CLIENT_KEYS:
        raise SubmissionError("client", f"must be an object of at most {MAX_CLIENT_KEYS} entries")
    for key, value in client.items():
        ok = value is None or isinstance(value, bool | str) or (
            _is_int(value) and abs(value) <= MAX_CLIENT_INT) or (
            isinstance(value, float) and math.isfinite(value))
        if len(key) > 40 or not ok or (isinstance(value, str) and len(value) > 300):
            raise SubmissionError(f"client.{shown(key)}", "must be a short string, number or boolean")
    return Submission(tuple(responses), comment, dict(client))


def _parse_choice(value: Any, trial: Trial, where: str) -> tuple[int, ...]:
    n = len(trial.options)
    if TASKS[trial.task].single_choice:
        if not _is_int(value):
            raise SubmissionError(where, f"must be an integer option index 0..{n - 1}")
        if not 0 <= value < n:
            raise SubmissionError(where, f"{shown(value)} is out of range 0..{n - 1}")
        return (value,)
    if not isinstance(value, list) or len(value) != len(trial.query):
        raise SubmissionError(where, f"must be a list of {len(trial.query)} option indices")
    if not all(_is_int(v) and 0 <= v < n for v in value):
        raise SubmissionError(where, f"every entry must be an integer in 0..{n - 1}")
    if len(set(value)) != len(value):
        raise SubmissionError(where, "assigns one option twice; each option goes to one image")
    return tuple(value)
