"""A fake Prolific API (https://api.prolific.com/api/v1) for httpx clients.

Checked against Prolific's published OpenAPI document (a trimmed copy with its
source and date is in tests/fakes/prolific_openapi/): every request the fake
handles and every answer it gives is validated against it, and a mismatch is
an internal error of the fake (the test fails). Where this header and the
document differ, the document wins; the differences found when the document
was adopted (2026-12-01) are listed in docs/platforms.md. Behaviours the
document states in prose and the fake reproduces: paying a bulk bonus answers
202 and pays "in the following minutes" (`bonus_lag_requests`), not
idempotent; listings that lag behind changes (`listing_lag_requests`); a
submission that shows PROCESSING for a while after an approval
(`approve_processing_requests`; not in the document's enum); Retry-After as
an HTTP date (`retry_after_http_date`); limit/offset paging with
`_links.next` on study submissions (what Prolific's CLI sends), and a server
that ignores paging but keeps answering `next` (`ignore_paging`); STOP makes
a study COMPLETED; `GET /users/me/` is only {id, email}: the workspace comes
from `GET /workspaces/` (`workspaces`: how many the account has) and the
currency from `GET /workspaces/{id}/balance/`; filter IDs are those
`GET /filters/` lists (`previous_studies_blocklist`,
`participant_group_blocklist`, ...; `custom_blocklist` is refused); test
studies (`POST /studies/{id}/test-study`) need a test participant and
`test_studies_enabled`. Lag and processing windows are counted in API
requests, not seconds, so tests stay deterministic.

Earlier notes, from Prolific's API reference pages read on 2026-11-23:

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
  (selected_values: group ids) and `previous_studies_blocklist`
  (selected_values: study ids) are enforced when a simulated participant
  starts; `custom_allowlist` only on test studies the fake creates (no
  Prolific source documents it); other listed filters are stored, not
  evaluated, and an ID GET /filters/ does not list is refused.
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
from email.utils import formatdate
from functools import partial
from urllib.parse import urlencode

from tests.fakes import prolific_openapi
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
MAX_BULK_APPROVE = 1000
# The filter IDs GET /filters/ lists (a selection: the ones the fake models or tests use).
FILTERS = {
    "previous_studies_blocklist": "Exclude participants from previous studies",
    "previous_studies_allowlist": "Include participants from previous studies",
    "participant_group_allowlist": "Custom group allowlist",
    "participant_group_blocklist": "Custom group blocklist",
    "age": "Age",
    "handedness": "Handedness",
    "current-country-of-residence": "Current Country of Residence",
}


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
    status: str  # UNPUBLISHED | ACTIVE | PAUSED | COMPLETED (derived further in study_status)
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
    # (request tick, status) for every change: listings show the state of `lag` requests ago
    history: list[tuple[int, str]] = field(default_factory=list)
    processing_until: int = -1  # GET shows PROCESSING until this tick after an approval


@dataclass
class BulkBonus:
    id: str
    study_id: str
    lines: list[tuple[Submission, int]]  # (submission, amount in cents)
    fees: int
    created: datetime
    pay_count: int = 0
    due: list[int] = field(default_factory=list)  # ticks at which accepted pay calls settle

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
        workspaces: int = 1,
        bonus_lag_requests: int = 0,
        listing_lag_requests: int = 0,
        approve_processing_requests: int = 0,
        retry_after_http_date: bool = False,
        ignore_paging: bool = False,
        test_studies_enabled: bool = False,
    ) -> None:
        super().__init__()
        # Parse the OpenAPI document now, not inside the first request: on a loaded CI
        # machine the YAML load alone outlasts a client's read timeout.
        prolific_openapi.spec()
        self.token = token
        self.currency = currency
        self.fee_rate = Decimal(fee_rate)
        self.retry_after_seconds = retry_after_seconds
        self.retry_after_http_date = retry_after_http_date
        self.bonus_lag_requests = bonus_lag_requests
        self.listing_lag_requests = listing_lag_requests
        self.approve_processing_requests = approve_processing_requests
        self.ignore_paging = ignore_paging
        self.test_studies_enabled = test_studies_enabled
        self.tick = 0  # API requests handled so far: the fake's clock for lags
        self.filters = dict(FILTERS)  # what GET /filters/ lists (a test may remove one)
        self.test_participants: list[str] = []
        self.spec_problems: list[str] = []
        #: cents per hour; when set, a draft paying less per estimated hour is refused.
        self.min_hourly_reward = min_hourly_reward
        self._ids = random.Random(f"prolific-ids|{seed}")
        self.researcher_id = self._new_id()
        self.workspace_ids = [self._new_id() for _ in range(workspaces)]
        self.workspace_id = self.workspace_ids[0] if self.workspace_ids else None
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
        ("GET", r"workspaces", "list_workspaces"),
        ("GET", r"workspaces/(?P<id>[^/]+)/balance", "get_workspace_balance"),
        ("GET", r"filters", "list_filters"),
        ("POST", r"researchers/participants", "create_test_participant"),
        ("POST", r"studies/(?P<id>[^/]+)/test-study", "create_test_study"),
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
            if self.retry_after_http_date:  # RFC 9110 allows a date as well as seconds
                when = datetime.now(UTC).timestamp() + self.retry_after_seconds
                response.headers["Retry-After"] = formatdate(when, usegmt=True)
            else:
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
        self.tick += 1
        self._settle_bonuses()
        query = {k: v[-1] for k, v in request.query.items()}
        problems = prolific_openapi.check_request(request.method, request.path, query, body)
        # an undocumented query parameter would be ignored by Prolific: the fake cannot model
        # what the client meant, so it is an internal error; a body outside the document is
        # refused (400), as Prolific's validation would, and remembered in spec_problems
        self._spec([p for p in problems if "query parameter" in p])
        refused = [p for p in problems if "query parameter" not in p]
        if refused:
            self.spec_problems += refused
            # detail keyed by the field, as Prolific's validation errors are
            fields = {p.split(": ")[1].split("/")[0]: p.split(": ", 2)[-1] for p in refused}
            return self._error(ProlificError(400, "Bad request", fields))
        try:
            status, payload = getattr(self, f"_op_{name}")(request, body, **path_params)
        except ProlificError as error:
            return self._error(error)
        self._spec(prolific_openapi.check_response(request.method, request.path, status, payload))
        if status == 204:
            return Response(204)
        return Response.json(status, payload)

    def _spec(self, problems: list[str]) -> None:
        """A request or answer outside Prolific's document: the test that caused it fails."""
        self.spec_problems += problems
        self.internal_errors += [f"outside Prolific's OpenAPI document: {p}" for p in problems]

    def _settle_bonuses(self) -> None:
        """Accepted pay calls whose time has come pay every line (once per call)."""
        for bonus in self.bulk_bonuses.values():
            while bonus.due and bonus.due[0] <= self.tick:
                bonus.due.pop(0)
                for s, cents in bonus.lines:
                    s.bonus_payments.append(cents)
                    self.payments.append(Payment("bonus", s.study_id, s.id, s.participant_id,
                                                 cents, bonus.id, _now()))

    def settle_bonuses(self) -> None:
        """Test-side: every accepted bonus payment is made now (Prolific's 'following minutes')."""
        with self.lock:
            for bonus in self.bulk_bonuses.values():
                bonus.due = [0] * len(bonus.due)
            self._settle_bonuses()

    def pending_bonus_payments(self) -> int:
        with self.lock:
            return sum(len(b.due) for b in self.bulk_bonuses.values())

    def _set(self, s: Submission, status: str) -> None:
        s.status = status
        s.history.append((self.tick, status))

    def _listed(self, s: Submission) -> str | None:
        """The status a listing shows: the one of `listing_lag_requests` requests ago."""
        seen = self.tick - self.listing_lag_requests
        shown = [status for tick, status in s.history if tick <= seen]
        status = shown[-1] if shown else None
        if status == "APPROVED" and self.tick < s.processing_until:
            return "PROCESSING"
        return status

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
        # the document's Study has no counts, cost, currency or dates: those are StudyShort's
        return {**study.fields, "id": study.id, "status": self.study_status(study)}

    def _study_short(self, study: Study) -> dict:
        reward = study.fields["reward"]
        subtotal = reward * study.fields["total_available_places"]
        return {
            "id": study.id,
            "name": study.fields["name"],
            "internal_name": study.fields.get("internal_name"),
            "status": self.study_status(study),
            "total_available_places": study.fields["total_available_places"],
            "places_taken": self.places_taken(study),
            "number_of_submissions": len(self._of_study(study.id)),
            "reward": reward,
            "total_cost": subtotal + self._fee(subtotal),
            "published_at": _iso(study.published_at),
            "date_created": _iso(study.created),
        }

    def _short(self, s: Submission) -> dict:
        return {
            "id": s.id,
            "participant_id": s.participant_id,
            "status": self._listed(s),
            "started_at": _iso(s.started_at),
            "completed_at": _iso(s.completed_at),
            "has_siblings": False,
            "study_code": s.entered_code,
            "return_requested": None,
        }

    def _full(self, s: Submission) -> dict:
        processing = s.status == "APPROVED" and self.tick < s.processing_until
        return {
            "id": s.id,
            "study_id": s.study_id,
            "participant": s.participant_id,
            "status": "PROCESSING" if processing else s.status,
            "started_at": _iso(s.started_at),
            "completed_at": _iso(s.completed_at),
            "entered_code": s.entered_code,
            "bonus_payments": list(s.bonus_payments),
            "return_requested": None,
        }

    def _submission_out(self, s: Submission) -> dict:
        """The `Submission` schema (transition answers): no bonus_payments there."""
        full = self._full(s)
        return {k: full[k] for k in ("id", "study_id", "participant", "status", "started_at",
                                     "completed_at", "entered_code")}

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
        self._set(s, "APPROVED")
        s.processing_until = self.tick + self.approve_processing_requests
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
            else:
                unknown = [f["filter_id"] for f in filters if f["filter_id"] not in self.filters
                           and f["filter_id"] != "custom_allowlist"]  # set by test studies
                missing = [v for f in filters if f["filter_id"].startswith("previous_studies_")
                           for v in f.get("selected_values") or [] if v not in self.studies]
                if unknown:
                    errors["filters"] = f"Unknown filter_id {unknown} (see GET /filters/)."
                elif missing:
                    errors["filters"] = f"Unknown studies {missing} in a previous_studies filter."
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
        # the document's User: id and email, nothing about workspaces or currency
        return 200, {"id": self.researcher_id, "email": "researcher@example.org"}

    def _op_list_workspaces(self, request, body):
        return 200, {
            "results": [
                {"id": w, "title": f"Workspace {i + 1}", "owner": self.researcher_id,
                 "description": None}
                for i, w in enumerate(self.workspace_ids)
            ]
        }

    def _op_get_workspace_balance(self, request, body, id):
        if id not in self.workspace_ids:
            raise ProlificError(404, "Not found", f"Workspace {id} does not exist.")
        return 200, {"currency_code": self.currency, "total_balance": 100000,
                     "available_balance": 100000}

    def _op_list_filters(self, request, body):
        return 200, {
            "results": [{"filter_id": fid, "title": title, "type": "select"}
                        for fid, title in self.filters.items()]
        }

    def _op_create_test_participant(self, request, body):
        if not self.test_studies_enabled:
            raise ProlificError(403, "Forbidden", "Test participants are not enabled for you.")
        pid = self._new_id()
        self.test_participants.append(pid)
        return 201, {"participant_id": pid}

    def _op_create_test_study(self, request, body, id):
        study = self._study(id)
        if not self.test_studies_enabled:
            raise ProlificError(403, "Forbidden", "Test studies are not enabled for this workspace.")
        if not self.test_participants:
            raise ProlificError(400, "Bad request", "Create a test participant first.")
        if study.status != "UNPUBLISHED":
            raise ProlificError(400, "Bad request", "Only a draft study can be tested.")
        test = Study(self._new_id(), {**study.fields, "internal_name": "TEST " + str(
            study.fields.get("internal_name"))}, "ACTIVE", _now(), _now())
        test.fields["filters"] = [{"filter_id": "custom_allowlist",
                                   "selected_values": list(self.test_participants)}]
        self.studies[test.id] = test
        return 200, {"study_id": test.id,
                     "study_url": f"https://app.prolific.com/studies/{test.id}"}

    def _op_list_studies(self, request, body):
        # the document's StudiesListResponse: StudyShort items, no paging parameters
        return 200, {"results": [self._study_short(s) for s in self.studies.values()]}

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
        grew = merged["total_available_places"] > study.fields["total_available_places"]
        study.fields = merged
        if grew and study.status == "COMPLETED":
            study.status = "ACTIVE"  # "A completed study will become active again"
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
            ("STOP", "ACTIVE"): "COMPLETED",
            ("STOP", "PAUSED"): "COMPLETED",
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
        shown = [self._short(s) for s in self._of_study(id)]
        return 200, self._limit_offset(request, [s for s in shown if s["status"] is not None])

    def _limit_offset(self, request: Request, items: list) -> dict:
        """limit/offset paging with _links.next (what Prolific's CLI sends; the document lists
        no paging parameters for this endpoint). ignore_paging: the first page every time, and
        a `next` link while there are more items than fit."""
        try:
            limit = int(request.param("limit", "20"))
            offset = int(request.param("offset", "0"))
        except ValueError as error:
            raise ProlificError(400, "Bad request", "limit and offset must be integers") from error
        if limit < 1 or offset < 0:
            raise ProlificError(400, "Bad request", "limit must be positive, offset not negative")
        if self.ignore_paging:
            offset = 0
        chunk = items[offset : offset + limit]
        query = {k: v[-1] for k, v in request.query.items()}
        more = offset + limit < len(items) or (self.ignore_paging and len(items) > limit)
        nxt = None
        if more:
            query.update(limit=str(limit), offset=str(offset + limit))
            nxt = f"{self.url}{request.path}?{urlencode(query)}"
        return {"results": chunk, "_links": {"next": {"href": nxt}},
                "meta": {"count": len(items)}}

    def _op_list_submissions(self, request, body):
        study_id = request.param("study")
        chosen = list(self.submissions.values())
        if study_id:
            self._study(study_id)
            chosen = [s for s in chosen if s.study_id == study_id]
        status = request.param("status")
        if status:
            wanted = status.upper().replace("_", " ")
            chosen = [s for s in chosen if self._listed(s) == wanted]
        shown = [self._short(s) for s in chosen]
        return 200, self._paginate(request, [s for s in shown if s["status"] is not None])

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
            return 200, self._submission_out(s)  # documented as idempotent: repeat ignored
        if s.status != "AWAITING REVIEW":
            raise ProlificError(
                400, "Bad request", f"Cannot {action} a submission whose status is {s.status}."
            )
        if action == "APPROVE":
            self._approve(s)
        else:
            self._set(s, "REJECTED")
            s.rejection_category = body["rejection_category"]
            s.message = body["message"]
        return 200, self._submission_out(s)

    def _op_bulk_approve(self, request, body):
        body = body or {}
        if "submission_ids" in body:
            ids = body["submission_ids"]
            if not isinstance(ids, list):
                raise ProlificError(400, "Bad request", {"submission_ids": "A list is required."})
            if len(ids) > MAX_BULK_APPROVE:  # the documented recommendation, enforced here
                raise ProlificError(400, "Bad request", {"submission_ids": "At most 1000."})
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
        }

    def _op_pay_bonus_payments(self, request, body, id):
        bonus = self.bulk_bonuses.get(id)
        if bonus is None:
            raise ProlificError(404, "Not found", f"Bulk bonus payment {id} does not exist.")
        # Not idempotent, as documented: every call pays every line again, asynchronously
        # ("in the following minutes"): the money moves bonus_lag_requests requests later.
        bonus.pay_count += 1
        bonus.due.append(self.tick + self.bonus_lag_requests)
        self._settle_bonuses()
        return 202, "The bonus payments are being processed."

    def _group_out(self, group: ParticipantGroup) -> dict:
        return {
            "id": group.id,
            "name": group.name,
            "workspace_id": group.workspace_id,
            "organisation_id": group.organisation_id,
            "description": group.description,
            "participant_count": len(group.members),
            "is_deleted": False,
        }

    def _members_out(self, group: ParticipantGroup) -> dict:
        return {
            "results": [
                {"participant_id": pid, "datetime_created": _iso(when)}
                for pid, when in group.members.items()
            ]
        }

    def _op_list_participant_groups(self, request, body):
        # the document's `filter` object parameter, form style: ?workspace_id=...
        workspace = request.param("workspace_id")
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
            if fid == "previous_studies_blocklist" and any(
                s.participant_id == participant_id and s.study_id in values
                for s in self.submissions.values()
            ):
                return "a participant of a blocked previous study"
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
            s.history.append((self.tick, "ACTIVE"))
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
                self._set(s, "AWAITING REVIEW")  # an unknown code waits for the researcher
                return s.id
            self._set(
                s, "SCREENED OUT" if code["code_type"] == "FIXED_SCREENOUT" else "AWAITING REVIEW"
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
            self._set(s, "RETURNED")

    def participant_times_out(self, submission_id: str) -> None:
        """A participant runs past maximum_allowed_time; the place frees up."""
        with self.lock:
            s = self.submissions[submission_id]
            if s.status != "ACTIVE":
                raise ParticipantRefused(f"submission {submission_id} is {s.status}")
            self._set(s, "TIMED-OUT")

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
