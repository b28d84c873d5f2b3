"""A fake Prolific API (https://api.prolific.com/api/v1) for httpx clients.

Built from Prolific's public API reference and guides, read on 2026-11-23
(docs.prolific.com and its beta-docs mirror of the OpenAPI pages):

- Authentication: `Authorization: Token <token>` on every call
  (every API reference page, "Authentication"). Wrong or missing -> 401.
- GET  /users/me/ -- "Your first data collection" guide (researcher id).
- POST /studies/ -- "Create a draft study" (api-reference/studies/create-study):
  a draft (status UNPUBLISHED) with name, description, external_study_url,
  prolific_id_option, completion_codes [{code, code_type, actions:[{action}]}],
  total_available_places, reward (cents/pence), estimated_completion_time
  (minutes), maximum_allowed_time, device_compatibility, filters. The study
  object page (api-reference/studies/the-study-object) for the statuses
  UNPUBLISHED, ACTIVE, PAUSED, AWAITING REVIEW, COMPLETED, the
  {{%PROLIFIC_PID%}} / {{%STUDY_ID%}} / {{%SESSION_ID%}} URL placeholders and
  "reward in cents"; "Update a study" for "each code must be unique" and
  "AutomaticallyApprove and ManuallyReview can't be used together".
- GET /studies/, GET|PATCH|DELETE /studies/{id}/ -- the Studies index
  ("List all studies", "Retrieve a study", "Update a study", "Delete a study").
- POST /studies/{id}/transition/ {"action": "PUBLISH"} -- "Reviewing
  submissions and rewards" guide (publish step); PAUSE / START / STOP are the
  other study transitions. Publishing twice is refused (400), so a client
  that retries a timed-out publish must look at the study's status.
- GET /studies/{id}/submissions/ -- "List study submissions" (SubmissionShort:
  id, participant_id, status, started_at, completed_at, has_siblings,
  study_code, return_requested); GET /submissions/?study=&status= -- "List
  submissions" (page and page_size, default page_size 20); GET
  /submissions/{id}/ -- "Retrieve a submission" (bonus_payments in cents).
  Submission statuses RESERVED, ACTIVE, TIMED-OUT, AWAITING REVIEW, APPROVED,
  RETURNED, REJECTED, SCREENED OUT.
- POST /submissions/{id}/transition/ {"action": "APPROVE" | "REJECT",
  "message", "rejection_category"} -- "Approve or reject a submission": REJECT
  needs a message of at least 100 characters and a rejection_category; the
  status cannot be restored once changed; "this endpoint is idempotent" (the
  same request twice: the second is ignored). The rejection_category values
  accepted here are those the API has listed (TOO_QUICKLY, TOO_SLOWLY,
  FAILED_INSTRUCTIONS, INCOMP_LONGITUDINAL, FAILED_CHECK, LOW_EFFORT,
  MALINGERING, NO_CODE, BAD_CODE, NO_DATA, UNSUPP_DEVICE, OTHER); the enum
  itself was not in the excerpts read, so treat that list as the fake's.
- POST /submissions/bulk-approve/ {"submission_ids": [...]} or {"study_id",
  "participant_ids"} -- "Bulk approve submissions"; answers a JSON string.
- POST /submissions/bonus-payments/ {"study_id", "csv_bonuses":
  "<participant_or_submission_id>,<amount>\\n..."} -- "Set up bonuses": amount
  is a decimal in the study currency; IDs that did not take part -> 400 naming
  them; the answer has id, study, amount, fees, total_amount (cents).
- POST /bulk-bonus-payments/{id}/pay/ -- "Pay bonuses": 202, paid
  asynchronously, and **not idempotent**: every call pays again. The fake
  records each payment in `payments`, which is the hazard a client must
  guard against.
- Participant groups -- api-reference/participant-groups: GET|POST
  /participant-groups/ (name, workspace_id or organisation_id, description,
  participant_ids), GET /participant-groups/{id}/, GET|POST|DELETE
  /participant-groups/{id}/participants/ (adding a member twice is ignored).
  Study filters `participant_group_allowlist` / `participant_group_blocklist`
  (selected_values: group ids) and `custom_allowlist` / `custom_blocklist`
  (selected_values: participant ids) are enforced when a simulated
  participant starts; other filters are stored, not evaluated.
- Errors: JSON `{"error": {"status", "title", "detail"}}`; 404 for unknown
  ids, 400 for invalid bodies or transitions, 429 with Retry-After when
  throttled (fault injection).

Participants arrive at the external URL with the placeholders filled in and
return with a completion code (the "Your first data collection" and
"Reviewing submissions" guides); the test-side API stands in for them:
`participant_starts` (returns the submission id and the URL the participant
is sent to), `participant_submits(study_id, participant_id, completion_code)`
(runs the code's actions: AUTOMATICALLY_APPROVE, MANUALLY_REVIEW,
ADD_TO_PARTICIPANT_GROUP, REMOVE_FROM_PARTICIPANT_GROUP; a FIXED_SCREENOUT
code screens out), `participant_returns`. State: `studies`, `submissions`,
`bulk_bonuses`, `participant_groups`, `payments`, `requests`, `faults`, and
the checks `duplicate_studies()`, `double_payments()`, `paid_bonuses()`.
While a client runs in another thread or process, read the state under
`with fake.lock:`. Fault-injection operation names are the third column of
`FakeProlific.ROUTES` (e.g. "create_study", "pay_bonus_payments").
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import partial
from urllib.parse import urlencode

from tests.fakes.faults import FaultKind
from tests.fakes.httpserver import FakeServer, Request, Response

API = "/api/v1"
PLACEHOLDERS = ("{{%PROLIFIC_PID%}}", "{{%STUDY_ID%}}", "{{%SESSION_ID%}}")
REJECTION_CATEGORIES = frozenset(
    {
        "TOO_QUICKLY",
        "TOO_SLOWLY",
        "FAILED_INSTRUCTIONS",
        "INCOMP_LONGITUDINAL",
        "FAILED_CHECK",
        "LOW_EFFORT",
        "MALINGERING",
        "NO_CODE",
        "BAD_CODE",
        "NO_DATA",
        "UNSUPP_DEVICE",
        "OTHER",
    }
)
DEVICES = frozenset({"desktop", "tablet", "mobile"})
PROLIFIC_ID_OPTIONS = frozenset({"question", "url_parameters", "not_required"})
# Submissions that hold a place in the study.
HOLDING = frozenset({"RESERVED", "ACTIVE", "AWAITING REVIEW", "APPROVED", "PARTIALLY APPROVED"})
MIN_REJECTION_MESSAGE = 100


class ProlificError(Exception):
    def __init__(self, status: int, title: str, detail: object = None) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status, self.title, self.detail = status, title, detail


class ParticipantRefused(Exception):
    """Raised by the test-side API when a simulated participant cannot take part."""


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(when: datetime | None) -> str | None:
    return when.isoformat().replace("+00:00", "Z") if when else None


@dataclass
class Study:
    id: str
    fields: dict  # what the client sent (and PATCHed), echoed back
    status: str  # UNPUBLISHED | ACTIVE | PAUSED | STOPPED (derived further in study_status)
    created: datetime
    published_at: datetime | None = None


@dataclass
class Submission:
    id: str
    study_id: str
    participant_id: str
    status: str
    started_at: datetime
    completed_at: datetime | None = None
    entered_code: str | None = None
    rejection_category: str | None = None
    message: str | None = None
    bonus_payments: list[int] = field(default_factory=list)


@dataclass
class BulkBonus:
    id: str
    study_id: str
    lines: list[tuple[Submission, int]]  # (submission, amount in cents)
    fees: int
    created: datetime
    pay_count: int = 0

    @property
    def amount(self) -> int:
        return sum(cents for _, cents in self.lines)


@dataclass
class ParticipantGroup:
    id: str
    name: str
    workspace_id: str | None
    organisation_id: str | None
    description: str | None
    members: dict[str, datetime]


@dataclass
class Payment:
    """Money leaving the researcher's balance."""

    kind: str  # "reward" | "bonus"
    study_id: str
    submission_id: str
    participant_id: str
    cents: int
    bulk_bonus_id: str | None
    time: datetime


@dataclass
class Session:
    submission_id: str
    url: str


class FakeProlific(FakeServer):
    """The Prolific API on 127.0.0.1. Use as a context manager; the base URL is `api_url`."""

    def __init__(
        self,
        *,
        token: str = "fake-prolific-token",
        seed: int = 0,
        currency: str = "GBP",
        fee_rate: str = "0.3333",
        retry_after_seconds: int = 0,
        min_hourly_reward: int | None = None,
    ) -> None:
        super().__init__()
        self.token = token
        self.currency = currency
        self.fee_rate = Decimal(fee_rate)
        self.retry_after_seconds = retry_after_seconds
        #: cents per hour; when set, a draft paying less per estimated hour is refused.
        self.min_hourly_reward = min_hourly_reward
        self._ids = random.Random(f"prolific-ids|{seed}")
        self.researcher_id = self._new_id()
        self.workspace_id = self._new_id()
        self.studies: dict[str, Study] = {}
        self.submissions: dict[str, Submission] = {}
        self.bulk_bonuses: dict[str, BulkBonus] = {}
        self.participant_groups: dict[str, ParticipantGroup] = {}
        self.payments: list[Payment] = []

    @property
    def api_url(self) -> str:
        return self.url + API

    def _new_id(self) -> str:
        return "".join(self._ids.choice("0123456789abcdef") for _ in range(24))

    # -- routing ---------------------------------------------------------------------
    ROUTES: list[tuple[str, str, str]] = [
        ("GET", r"users/me", "get_user"),
        ("GET", r"studies", "list_studies"),
        ("POST", r"studies", "create_study"),
        ("GET", r"studies/(?P<id>[^/]+)", "get_study"),
        ("PATCH", r"studies/(?P<id>[^/]+)", "update_study"),
        ("DELETE", r"studies/(?P<id>[^/]+)", "delete_study"),
        ("POST", r"studies/(?P<id>[^/]+)/transition", "transition_study"),
        ("GET", r"studies/(?P<id>[^/]+)/submissions", "list_study_submissions"),
        ("GET", r"submissions", "list_submissions"),
        ("POST", r"submissions/bulk-approve", "bulk_approve"),
        ("POST", r"submissions/bonus-payments", "create_bonus_payments"),
        ("GET", r"submissions/(?P<id>[^/]+)", "get_submission"),
        ("POST", r"submissions/(?P<id>[^/]+)/transition", "transition_submission"),
        ("POST", r"bulk-bonus-payments/(?P<id>[^/]+)/pay", "pay_bonus_payments"),
        ("GET", r"participant-groups", "list_participant_groups"),
        ("POST", r"participant-groups", "create_participant_group"),
        ("GET", r"participant-groups/(?P<id>[^/]+)", "get_participant_group"),
        ("GET", r"participant-groups/(?P<id>[^/]+)/participants", "list_group_participants"),
        ("POST", r"participant-groups/(?P<id>[^/]+)/participants", "add_group_participants"),
        ("DELETE", r"participant-groups/(?P<id>[^/]+)/participants", "remove_group_participants"),
    ]
    _COMPILED = [(m, re.compile(rf"^{API}/{p}/?$"), name) for m, p, name in ROUTES]

    def route(self, request: Request):
        for method, pattern, name in self._COMPILED:
            match = pattern.match(request.path)
            if match and method == request.method:
                return name, partial(self._call, name, request, match.groupdict())
        return None, lambda: self._error(
            ProlificError(404, "Not found", f"{request.method} {request.path}")
        )

    def fault_response(self, kind: FaultKind) -> Response:
        if kind is FaultKind.THROTTLE:
            response = self._error(
                ProlificError(429, "Too Many Requests", "Request was throttled.")
            )
            response.headers["Retry-After"] = str(self.retry_after_seconds)
            return response
        if kind is FaultKind.HTTP_503:
            return self._error(ProlificError(503, "Service Unavailable", "Try again later."))
        return self._error(ProlificError(500, "Internal Server Error", "Something went wrong."))

    @staticmethod
    def _error(error: ProlificError) -> Response:
        return Response.json(
            error.status,
            {"error": {"status": error.status, "title": error.title, "detail": error.detail}},
        )

    def _call(self, name: str, request: Request, path_params: dict) -> Response:
        if request.headers.get("Authorization") != f"Token {self.token}":
            return self._error(ProlificError(401, "Unauthorized", "Invalid token."))
        try:
            body = request.json() if request.body else None
        except ValueError:
            return self._error(ProlificError(400, "Bad request", "The body is not JSON."))
        try:
            status, payload = getattr(self, f"_op_{name}")(request, body, **path_params)
        except ProlificError as error:
            return self._error(error)
        if status == 204:
            return Response(204)
        return Response.json(status, payload)

    # -- helpers ------------------------------------------------------------------------
    def _study(self, study_id: str) -> Study:
        study = self.studies.get(study_id)
        if study is None:
            raise ProlificError(404, "Not found", f"Study {study_id} does not exist.")
        return study

    def _submission(self, submission_id: str) -> Submission:
        submission = self.submissions.get(submission_id)
        if submission is None:
            raise ProlificError(404, "Not found", f"Submission {submission_id} does not exist.")
        return submission

    def _group(self, group_id: str) -> ParticipantGroup:
        group = self.participant_groups.get(group_id)
        if group is None:
            raise ProlificError(404, "Not found", f"Participant group {group_id} does not exist.")
        return group

    def _of_study(self, study_id: str) -> list[Submission]:
        return [s for s in self.submissions.values() if s.study_id == study_id]

    def places_taken(self, study: Study) -> int:
        return sum(s.status in HOLDING for s in self._of_study(study.id))

    def study_status(self, study: Study) -> str:
        if study.status in ("UNPUBLISHED", "PAUSED"):
            return study.status
        mine = self._of_study(study.id)
        full = self.places_taken(study) >= study.fields["total_available_places"]
        if study.status == "ACTIVE" and not full:
            return "ACTIVE"
        if any(s.status in ("RESERVED", "ACTIVE") for s in mine):
            return "ACTIVE"
        if any(s.status == "AWAITING REVIEW" for s in mine):
            return "AWAITING REVIEW"
        return "COMPLETED"

    def _study_out(self, study: Study) -> dict:
        reward = study.fields["reward"]
        places = study.fields["total_available_places"]
        subtotal = reward * places
        return {
            **study.fields,
            "id": study.id,
            "status": self.study_status(study),
            "places_taken": self.places_taken(study),
            "number_of_submissions": len(self._of_study(study.id)),
            "total_cost": subtotal + self._fee(subtotal),
            "currency_code": self.currency,
            "date_created": _iso(study.created),
            "published_at": _iso(study.published_at),
            "researcher": {"id": self.researcher_id},
        }

    @staticmethod
    def _short(s: Submission) -> dict:
        return {
            "id": s.id,
            "participant_id": s.participant_id,
            "status": s.status,
            "started_at": _iso(s.started_at),
            "completed_at": _iso(s.completed_at),
            "has_siblings": False,
            "study_code": s.entered_code,
            "return_requested": None,
        }

    @staticmethod
    def _full(s: Submission) -> dict:
        return {
            "id": s.id,
            "study_id": s.study_id,
            "participant": s.participant_id,
            "status": s.status,
            "started_at": _iso(s.started_at),
            "completed_at": _iso(s.completed_at),
            "entered_code": s.entered_code,
            "bonus_payments": list(s.bonus_payments),
            "return_requested": None,
        }

    def _fee(self, cents: int) -> int:
        return int((Decimal(cents) * self.fee_rate).quantize(Decimal(1), rounding=ROUND_HALF_UP))

    def _paginate(self, request: Request, items: list) -> dict:
        try:
            page = int(request.param("page", "1"))
            size = int(request.param("page_size", "20"))
        except ValueError as error:
            raise ProlificError(
                400, "Bad request", "page and page_size must be integers"
            ) from error
        if page < 1 or size < 1:
            raise ProlificError(400, "Bad request", "page and page_size must be positive")
        start = (page - 1) * size
        chunk = items[start : start + size]

        def link(p: int) -> dict:
            query = {k: v[-1] for k, v in request.query.items()}
            query.update(page=str(p), page_size=str(size))
            return {"href": f"{self.url}{request.path}?{urlencode(query)}"}

        last = max(1, -(-len(items) // size))
        return {
            "results": chunk,
            "_links": {
                "self": link(page),
                "next": link(page + 1) if start + size < len(items) else {"href": None},
                "previous": link(page - 1) if page > 1 else {"href": None},
                "last": link(last),
            },
            "meta": {"count": len(items)},
        }

    def _approve(self, s: Submission) -> None:
        s.status = "APPROVED"
        reward = self.studies[s.study_id].fields["reward"]
        self.payments.append(
            Payment("reward", s.study_id, s.id, s.participant_id, reward, None, _now())
        )

    # -- study validation -------------------------------------------------------------
    def _check_study_fields(self, fields: dict, *, partial: bool) -> None:
        errors: dict[str, str] = {}
        required = (
            "name",
            "description",
            "external_study_url",
            "estimated_completion_time",
            "reward",
            "total_available_places",
            "completion_codes",
        )
        if not partial:
            for name in required:
                if fields.get(name) in (None, "", []):
                    errors[name] = "This field is required."

        def positive_int(name: str) -> None:
            value = fields.get(name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                errors[name] = "A positive integer is required."

        for name in (
            "estimated_completion_time",
            "reward",
            "total_available_places",
            "maximum_allowed_time",
        ):
            positive_int(name)
        option = fields.get("prolific_id_option", "url_parameters")
        if option not in PROLIFIC_ID_OPTIONS:
            errors["prolific_id_option"] = f"Must be one of {sorted(PROLIFIC_ID_OPTIONS)}."
        url = fields.get("external_study_url")
        if url is not None:
            if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url):
                errors["external_study_url"] = "Enter a valid URL."
            elif option == "url_parameters" and PLACEHOLDERS[0] not in url:
                errors["external_study_url"] = (
                    "With prolific_id_option url_parameters the URL must contain {{%PROLIFIC_PID%}}."
                )
        codes = fields.get("completion_codes")
        if codes is not None:
            problem = self._check_codes(codes)
            if problem:
                errors["completion_codes"] = problem
        devices = fields.get("device_compatibility")
        if devices is not None and (not isinstance(devices, list) or not set(devices) <= DEVICES):
            errors["device_compatibility"] = f"Each item must be one of {sorted(DEVICES)}."
        filters = fields.get("filters")
        if filters is not None:
            ok = isinstance(filters, list) and all(
                isinstance(f, dict)
                and isinstance(f.get("filter_id"), str)
                and (
                    isinstance(f.get("selected_values"), list)
                    or isinstance(f.get("selected_range"), dict)
                )
                for f in filters
            )
            if not ok:
                errors["filters"] = (
                    "Each filter needs filter_id and selected_values or selected_range."
                )
        if (
            self.min_hourly_reward is not None
            and isinstance(fields.get("reward"), int)
            and isinstance(fields.get("estimated_completion_time"), int)
            and fields["reward"] * 60 < self.min_hourly_reward * fields["estimated_completion_time"]
        ):
            errors["reward"] = "The reward is below the minimum hourly rate for the estimated time."
        if errors:
            raise ProlificError(400, "Bad request", errors)

    @staticmethod
    def _check_codes(codes: object) -> str | None:
        if not isinstance(codes, list) or not codes:
            return "Specify at least one completion code."
        seen = set()
        for entry in codes:
            if (
                not isinstance(entry, dict)
                or not isinstance(entry.get("code"), str)
                or not entry["code"]
            ):
                return "Each completion code needs a code."
            if not isinstance(entry.get("code_type"), str):
                return "Each completion code needs a code_type."
            actions = entry.get("actions", [])
            if not isinstance(actions, list) or not all(
                isinstance(a, dict) and isinstance(a.get("action"), str) for a in actions
            ):
                return "actions must be a list of {action: ...} objects."
            names = {a["action"] for a in actions}
            if {"AUTOMATICALLY_APPROVE", "MANUALLY_REVIEW"} <= names:
                return "AUTOMATICALLY_APPROVE and MANUALLY_REVIEW cannot be used together."
            if entry["code"] in seen:
                return f"Completion code {entry['code']} is not unique within the study."
            seen.add(entry["code"])
        return None

    # -- operations ---------------------------------------------------------------------
    def _op_get_user(self, request, body):
        return 200, {
            "id": self.researcher_id,
            "name": "Fake Researcher",
            "email": "researcher@example.org",
            "currency_code": self.currency,
            "current_project_id": None,
            "workspace_id": self.workspace_id,
        }

    def _op_list_studies(self, request, body):
        return 200, self._paginate(request, [self._study_out(s) for s in self.studies.values()])

    def _op_create_study(self, request, body):
        if not isinstance(body, dict):
            raise ProlificError(400, "Bad request", "A JSON object is required.")
        fields = {k: v for k, v in body.items() if k not in ("id", "status")}
        fields.setdefault("prolific_id_option", "url_parameters")
        self._check_study_fields(fields, partial=False)
        study = Study(self._new_id(), fields, "UNPUBLISHED", _now())
        self.studies[study.id] = study
        return 201, self._study_out(study)

    def _op_get_study(self, request, body, id):
        return 200, self._study_out(self._study(id))

    def _op_update_study(self, request, body, id):
        study = self._study(id)
        if not isinstance(body, dict):
            raise ProlificError(400, "Bad request", "A JSON object is required.")
        if study.status != "UNPUBLISHED":
            # After publishing only these may change; places may only grow.
            allowed = {"internal_name", "total_available_places"}
            if set(body) - allowed:
                raise ProlificError(
                    400, "Bad request", f"A published study only accepts {sorted(allowed)}."
                )
            places = body.get("total_available_places")
            if places is not None and places < study.fields["total_available_places"]:
                raise ProlificError(
                    400, "Bad request", "total_available_places can only be increased."
                )
        merged = {**study.fields, **body}
        self._check_study_fields(merged, partial=False)
        study.fields = merged
        return 200, self._study_out(study)

    def _op_delete_study(self, request, body, id):
        study = self._study(id)
        if study.status != "UNPUBLISHED":
            raise ProlificError(400, "Bad request", "Only draft studies can be deleted.")
        del self.studies[id]
        return 204, None

    def _op_transition_study(self, request, body, id):
        study = self._study(id)
        action = (body or {}).get("action")
        status = self.study_status(study)
        moves = {
            ("PUBLISH", "UNPUBLISHED"): "ACTIVE",
            ("PAUSE", "ACTIVE"): "PAUSED",
            ("START", "PAUSED"): "ACTIVE",
            ("STOP", "ACTIVE"): "STOPPED",
            ("STOP", "PAUSED"): "STOPPED",
        }
        target = moves.get((action, status))
        if target is None:
            raise ProlificError(
                400, "Bad request", f"Cannot {action} a study whose status is {status}."
            )
        study.status = target
        if action == "PUBLISH":
            study.published_at = _now()
        return 200, self._study_out(study)

    def _op_list_study_submissions(self, request, body, id):
        self._study(id)
        return 200, self._paginate(request, [self._short(s) for s in self._of_study(id)])

    def _op_list_submissions(self, request, body):
        study_id = request.param("study")
        chosen = list(self.submissions.values())
        if study_id:
            self._study(study_id)
            chosen = [s for s in chosen if s.study_id == study_id]
        status = request.param("status")
        if status:
            wanted = status.upper().replace("_", " ")
            chosen = [s for s in chosen if s.status == wanted]
        return 200, self._paginate(request, [self._short(s) for s in chosen])

    def _op_get_submission(self, request, body, id):
        return 200, self._full(self._submission(id))

    def _op_transition_submission(self, request, body, id):
        s = self._submission(id)
        body = body or {}
        action = body.get("action")
        targets = {"APPROVE": "APPROVED", "REJECT": "REJECTED"}
        if action not in targets:
            raise ProlificError(400, "Bad request", {"action": f"Unsupported action {action!r}."})
        if action == "REJECT":
            errors = {}
            if len(body.get("message") or "") < MIN_REJECTION_MESSAGE:
                errors["message"] = (
                    f"A message of at least {MIN_REJECTION_MESSAGE} characters is required."
                )
            if body.get("rejection_category") not in REJECTION_CATEGORIES:
                errors["rejection_category"] = f"Must be one of {sorted(REJECTION_CATEGORIES)}."
            if errors:
                raise ProlificError(400, "Bad request", errors)
        if s.status == targets[action]:
            return 200, self._full(s)  # documented as idempotent: the repeat is ignored
        if s.status != "AWAITING REVIEW":
            raise ProlificError(
                400, "Bad request", f"Cannot {action} a submission whose status is {s.status}."
            )
        if action == "APPROVE":
            self._approve(s)
        else:
            s.status = "REJECTED"
            s.rejection_category = body["rejection_category"]
            s.message = body["message"]
        return 200, self._full(s)

    def _op_bulk_approve(self, request, body):
        body = body or {}
        if "submission_ids" in body:
            ids = body["submission_ids"]
            if not isinstance(ids, list):
                raise ProlificError(400, "Bad request", {"submission_ids": "A list is required."})
            missing = [i for i in ids if i not in self.submissions]
            chosen = [self.submissions[i] for i in ids if i in self.submissions]
        elif "study_id" in body and "participant_ids" in body:
            self._study(body["study_id"])
            by_participant = {s.participant_id: s for s in self._of_study(body["study_id"])}
            missing = [p for p in body["participant_ids"] if p not in by_participant]
            chosen = [by_participant[p] for p in body["participant_ids"] if p in by_participant]
        else:
            raise ProlificError(
                400, "Bad request", "Give submission_ids, or study_id and participant_ids."
            )
        if missing:
            raise ProlificError(400, "Bad request", {"invalid_ids": missing})
        wrong = [s.id for s in chosen if s.status not in ("AWAITING REVIEW", "APPROVED")]
        if wrong:
            raise ProlificError(400, "Bad request", {"not_awaiting_review": wrong})
        for s in chosen:
            if s.status == "AWAITING REVIEW":
                self._approve(s)
        return 200, "The request to bulk approve has been made successfully."

    def _op_create_bonus_payments(self, request, body):
        body = body or {}
        study = self._study(body.get("study_id", ""))
        csv = body.get("csv_bonuses")
        if not isinstance(csv, str) or not csv.strip():
            raise ProlificError(400, "Bad request", {"csv_bonuses": "This field is required."})
        mine = self._of_study(study.id)
        by_id = {s.id: s for s in mine} | {s.participant_id: s for s in mine}
        lines, invalid = [], []
        for raw in csv.strip().splitlines():
            who, _, amount = raw.strip().partition(",")
            try:
                value = Decimal(amount.strip())
            except InvalidOperation:
                value = Decimal(0)
            if who not in by_id or value <= 0:
                invalid.append(raw.strip())
                continue
            cents = int((value * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
            lines.append((by_id[who], cents))
        if invalid:
            raise ProlificError(400, "Bad request", {"invalid_rows": invalid})
        amount = sum(c for _, c in lines)
        bonus = BulkBonus(self._new_id(), study.id, lines, self._fee(amount), _now())
        self.bulk_bonuses[bonus.id] = bonus
        return 201, self._bonus_out(bonus)

    @staticmethod
    def _bonus_out(bonus: BulkBonus) -> dict:
        return {
            "id": bonus.id,
            "study": bonus.study_id,
            "amount": bonus.amount,
            "fees": bonus.fees,
            "vat": 0,
            "total_amount": bonus.amount + bonus.fees,
            "created_at": _iso(bonus.created),
        }

    def _op_pay_bonus_payments(self, request, body, id):
        bonus = self.bulk_bonuses.get(id)
        if bonus is None:
            raise ProlificError(404, "Not found", f"Bulk bonus payment {id} does not exist.")
        # Not idempotent, as documented: every call pays every line again.
        bonus.pay_count += 1
        for s, cents in bonus.lines:
            s.bonus_payments.append(cents)
            self.payments.append(
                Payment("bonus", s.study_id, s.id, s.participant_id, cents, bonus.id, _now())
            )
        return 202, {}

    def _group_out(self, group: ParticipantGroup) -> dict:
        return {
            "id": group.id,
            "name": group.name,
            "workspace_id": group.workspace_id,
            "organisation_id": group.organisation_id,
            "description": group.description,
            "participant_count": len(group.members),
            "is_deleted": False,
            "feeder_studies": [],
        }

    def _members_out(self, group: ParticipantGroup) -> dict:
        return {
            "results": [
                {"participant_id": pid, "datetime_created": _iso(when)}
                for pid, when in group.members.items()
            ]
        }

    def _op_list_participant_groups(self, request, body):
        workspace = request.param("filter[workspace_id]") or request.param("workspace_id")
        groups = [
            self._group_out(g)
            for g in self.participant_groups.values()
            if workspace is None or g.workspace_id == workspace
        ]
        return 200, {"results": groups}

    def _op_create_participant_group(self, request, body):
        body = body or {}
        if not body.get("name"):
            raise ProlificError(400, "Bad request", {"name": "This field is required."})
        if not body.get("workspace_id") and not body.get("organisation_id"):
            raise ProlificError(
                400, "Bad request", "Either a workspace or organisation ID must be specified."
            )
        now = _now()
        group = ParticipantGroup(
            self._new_id(),
            body["name"],
            body.get("workspace_id"),
            body.get("organisation_id"),
            body.get("description"),
            {pid: now for pid in body.get("participant_ids") or []},
        )
        self.participant_groups[group.id] = group
        return 201, self._group_out(group)

    def _op_get_participant_group(self, request, body, id):
        return 200, self._group_out(self._group(id))

    def _op_list_group_participants(self, request, body, id):
        return 200, self._members_out(self._group(id))

    def _op_add_group_participants(self, request, body, id):
        group = self._group(id)
        for pid in (body or {}).get("participant_ids") or []:
            group.members.setdefault(pid, _now())  # already a member: ignored
        return 200, self._members_out(group)

    def _op_remove_group_participants(self, request, body, id):
        group = self._group(id)
        for pid in (body or {}).get("participant_ids") or []:
            group.members.pop(pid, None)
        return 200, self._members_out(group)

    # -- simulated participants (test-side API) -----------------------------------------
    def _eligible(self, study: Study, participant_id: str) -> str | None:
        for f in study.fields.get("filters") or []:
            values = f.get("selected_values") or []
            fid = f.get("filter_id")
            if fid == "custom_allowlist" and participant_id not in values:
                return "not on the custom allowlist"
            if fid == "custom_blocklist" and participant_id in values:
                return "on the custom blocklist"
            if fid == "participant_group_allowlist" and not any(
                participant_id in self._group(g).members for g in values
            ):
                return "not in an allowed participant group"
            if fid == "participant_group_blocklist" and any(
                participant_id in self._group(g).members for g in values
            ):
                return "in a blocked participant group"
        return None

    def participant_starts(
        self, study_id: str, participant_id: str, *, device: str = "desktop"
    ) -> Session:
        """A participant opens the study: an ACTIVE submission and the URL they are sent to."""
        with self.lock:
            study = self.studies[study_id]
            status = self.study_status(study)
            if study.status != "ACTIVE" or status != "ACTIVE":
                raise ParticipantRefused(f"study {study_id} is {status}")
            if self.places_taken(study) >= study.fields["total_available_places"]:
                raise ParticipantRefused(f"study {study_id} has no places left")
            if any(s.participant_id == participant_id for s in self._of_study(study_id)):
                raise ParticipantRefused(f"participant {participant_id} already took part")
            devices = study.fields.get("device_compatibility")
            if devices and device not in devices:
                raise ParticipantRefused(f"device {device} is not allowed")
            reason = self._eligible(study, participant_id)
            if reason:
                raise ParticipantRefused(f"participant {participant_id} is {reason}")
            s = Submission(self._new_id(), study_id, participant_id, "ACTIVE", _now())
            self.submissions[s.id] = s
            url = study.fields["external_study_url"]
            for placeholder, value in zip(
                PLACEHOLDERS, (participant_id, study_id, s.id), strict=True
            ):
                url = url.replace(placeholder, value)
            return Session(s.id, url)

    def participant_submits(self, study_id: str, participant_id: str, completion_code: str) -> str:
        """A participant finishes and returns with a completion code; returns the submission id."""
        with self.lock:
            active = [
                s
                for s in self._of_study(study_id)
                if s.participant_id == participant_id and s.status == "ACTIVE"
            ]
            s = (
                active[0]
                if active
                else self.submissions[
                    self.participant_starts(study_id, participant_id).submission_id
                ]
            )
            s.completed_at = _now()
            s.entered_code = completion_code
            codes = {c["code"]: c for c in self.studies[study_id].fields["completion_codes"]}
            code = codes.get(completion_code)
            if code is None:
                s.status = "AWAITING REVIEW"  # an unknown code waits for the researcher
                return s.id
            s.status = (
                "SCREENED OUT" if code["code_type"] == "FIXED_SCREENOUT" else "AWAITING REVIEW"
            )
            for action in code.get("actions", []):
                name = action["action"]
                if name == "AUTOMATICALLY_APPROVE" and s.status == "AWAITING REVIEW":
                    self._approve(s)
                elif name == "ADD_TO_PARTICIPANT_GROUP":
                    self._group(action["participant_group"]).members.setdefault(
                        participant_id, _now()
                    )
                elif name == "REMOVE_FROM_PARTICIPANT_GROUP":
                    self._group(action["participant_group"]).members.pop(participant_id, None)
            return s.id

    def participant_returns(self, submission_id: str) -> None:
        """A participant gives the study back; the place frees up."""
        with self.lock:
            s = self.submissions[submission_id]
            if s.status != "ACTIVE":
                raise ParticipantRefused(f"submission {submission_id} is {s.status}")
            s.status = "RETURNED"

    def double_payments(self) -> dict[tuple[str, str, str | None], list[int]]:
        """Payments made more than once for one (kind, submission, bulk bonus)."""
        with self.lock:
            groups: dict[tuple[str, str, str | None], list[int]] = {}
            for p in self.payments:
                groups.setdefault((p.kind, p.submission_id, p.bulk_bonus_id), []).append(p.cents)
            return {key: cents for key, cents in groups.items() if len(cents) > 1}

    def duplicate_studies(self) -> dict[str, list[str]]:
        """Study ids sharing an internal_name (or name): what a retried create leaves behind."""
        with self.lock:
            groups: dict[str, list[str]] = {}
            for study in self.studies.values():
                key = study.fields.get("internal_name") or study.fields["name"]
                groups.setdefault(key, []).append(study.id)
            return {key: ids for key, ids in groups.items() if len(ids) > 1}

    def paid_bonuses(self, submission_id: str) -> list[int]:
        """Bonus payments (cents) that reached a submission, one entry per pay call."""
        with self.lock:
            return [
                p.cents
                for p in self.payments
                if p.kind == "bonus" and p.submission_id == submission_id
            ]
