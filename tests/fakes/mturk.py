"""A fake MTurk Requester service that boto3 talks to unchanged.

Protocol (from botocore's service model, `get_service_model("mturk")`,
metadata `protocol json`, `jsonVersion 1.1`, `targetPrefix
MTurkRequesterServiceV20170117`): every call is `POST /` with
`X-Amz-Target: MTurkRequesterServiceV20170117.<Operation>` and a JSON body.
Requests are validated against the operation's input shape (required
members, types, string length/pattern/enum, integer and list bounds) -- the
checks botocore skips client-side, such as the Reward pattern and the
64-character token limit, included. Responses are built through the output
shape (timestamps as epoch seconds) and checked against it, so an ID that
breaks `^[A-Z0-9]+$` is a bug in the fake, reported in `internal_errors`.

Errors are the model's two exception shapes, in the JSON 1.1 error format
botocore parses: `{"__type": "RequestError" | "ServiceFault", "Message": ...,
"TurkErrorCode": ...}` with HTTP 400 / 500. boto3 raises `ClientError` with
`response["Error"]["Code"] == "RequestError"` and the TurkErrorCode at
`response["TurkErrorCode"]`. `AWS.MechanicalTurk.HitAlreadyExists` (with the
existing HITId in the message) is documented in the model; the other
TurkErrorCodes below are this fake's own names for documented conditions.

Operations: GetAccountBalance, CreateHITType, CreateHITWithHITType, CreateHIT, GetHIT,
ListHITs, UpdateExpirationForHIT, DeleteHIT, CreateAdditionalAssignmentsForHIT,
ListAssignmentsForHIT, GetAssignment, ApproveAssignment, RejectAssignment,
SendBonus, ListBonusPayments, CreateQualificationType, GetQualificationType,
AssociateQualificationWithWorker, DisassociateQualificationFromWorker,
ListWorkersWithQualificationType. Any other operation answers 400
`UnknownOperationException`.

Semantics modelled (model docs and shared/research/crowd.md §1):
- CreateHITType is idempotent: identical properties return the same HITTypeId.
- UniqueRequestToken on CreateHITWithHITType, CreateAdditionalAssignmentsForHIT
  and SendBonus: reuse within 24 h is refused (HitAlreadyExists for HITs; for
  SendBonus a RequestError whose message carries the request ID, as the model
  documents, with a TurkErrorCode the model does not name: `duplicate_turk_code`);
  after 24 h a reused token is forgotten and may duplicate, as documented.
- ListBonusPayments may lag: `bonus_listing_lag` seconds of the fake's clock pass
  before a granted bonus is listed.
- HIT status from its assignments and expiry (Assignable, Unassignable,
  Reviewable, Disposed); DeleteHIT only when Reviewable with every submitted
  assignment reviewed; disposal after 120 days; disposed HITs leave ListHITs.
- Assignments: Accepted (invisible to the API) -> Submitted -> Approved /
  Rejected; auto-approval at SubmitTime + AutoApprovalDelayInSeconds;
  accepted work past its deadline is abandoned; ListAssignmentsForHIT
  filters by AssignmentStatuses and paginates with an opaque NextToken
  (default page size 10, MaxResults 1-100).
- Money: a balance charged reward + fee on approval and bonus + fee on
  SendBonus (20 %, +20 % for HITs with >= 10 assignments, +5 % Masters,
  $0.01 minimum); every charge is appended to `payments`.
- Qualification requirements are enforced when a simulated worker accepts a
  HIT: custom types against granted scores (Exists / DoesNotExist /
  comparisons), the system types (approval rate, number approved, locale,
  adult, Masters) against the worker's profile (`add_worker`).

Test-side API (plain methods, no HTTP): `add_worker`, `worker_accepts`,
`worker_submits(hit_id, worker_id, answers)` (Answer is QuestionFormAnswers
XML with FreeText answers), `worker_returns`, `task_url` (the HIT framed
the way MTurk frames it, posting to `POST /mturk/externalSubmit`),
`advance(seconds)` for the clock, and the state itself: `hit_types`, `hits`,
`assignments`, `bonuses`, `qualification_types`, `qualifications`,
`payments`, `balance`, `requests` (every API call as sent), `faults`, and
the checks `duplicate_hits()` and `double_bonuses()`. While a client runs
in another thread or process, read the state under `with fake.lock:`.

Faults (`fake.faults`, see tests.fakes.faults) apply to API calls only and
are keyed by operation name ("CreateHITWithHITType", "SendBonus", ...); the
worker pages (/mturk/task, /mturk/frame, /mturk/externalSubmit) never fault.
Fault answers: HTTP_500 -> 500 ServiceFault; HTTP_503 -> 503
ServiceUnavailableException; THROTTLE -> 400 ThrottlingException "Rate
exceeded" (botocore's standard retry mode retries all three).
"""

from __future__ import annotations

import base64
import html
import json
import random
import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import parse_qs, urlencode

import botocore.session
import defusedxml.ElementTree as SafeET

from tests.fakes.faults import FaultKind
from tests.fakes.httpserver import FakeServer, Request, Response

MODEL = botocore.session.get_session().get_service_model("mturk")
TARGET_PREFIX = MODEL.metadata["targetPrefix"]
CONTENT_TYPE = "application/x-amz-json-1.1"

ANSWERS_NS = "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2005-10-01/QuestionFormAnswers.xsd"
QUESTION_NAMESPACES = {
    "HTMLQuestion": {
        "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2011-11-11/HTMLQuestion.xsd"
    },
    "ExternalQuestion": {
        "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2006-07-14/ExternalQuestion.xsd"
    },
    "QuestionForm": {
        "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2005-10-01/QuestionForm.xsd",
        "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2017-11-06/QuestionForm.xsd",
    },
}
MAX_QUESTION_BYTES = 65535
TOKEN_LIFETIME = timedelta(hours=24)
HIT_RETENTION = timedelta(days=120)
OVERRIDE_WINDOW = timedelta(days=30)
PREVIEW_ASSIGNMENT_ID = "ASSIGNMENT_ID_NOT_AVAILABLE"
RESERVED_FIELDS = {"assignmentId", "hitId", "turkSubmitTo", "workerId"}

# System qualification types (crowd.md §1.6).
QUAL_PERCENT_APPROVED = "000000000000000000L0"
QUAL_NUMBER_APPROVED = "00000000000000000040"
QUAL_LOCALE = "00000000000000000071"
QUAL_ADULT = "00000000000000000060"
QUAL_MASTERS = {"2F1QJWKUDD8XADTFD2Q0G6UTO95ALH", "2ARFPLSP75KLA8M8DH1HTEQVJT3SY6"}

WORKER_ID = re.compile(r"^A[A-Z0-9]+$")
CENT = Decimal("0.01")


class MTurkError(Exception):
    """An error answer in the service's format."""

    def __init__(self, message: str, turk_code: str, *, type_: str = "RequestError") -> None:
        super().__init__(message)
        self.message = message
        self.turk_code = turk_code
        self.type_ = type_

    @property
    def status(self) -> int:
        return 500 if self.type_ == "ServiceFault" else 400


class WorkerNotQualified(Exception):
    """Raised by the test-side API when a simulated worker may not accept a HIT."""


# -- model-driven validation and serialisation ------------------------------------
def validate(shape, value: Any, path: str = "") -> str | None:
    """The first way `value` breaks `shape`, or None. Checks what the model states."""
    where = path or shape.name
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        if not isinstance(value, dict):
            return f"{where} must be an object"
        for name in shape.required_members:
            if value.get(name) is None:
                return f"{where}.{name} is required"
        for name, item in value.items():
            if name not in shape.members:
                return f"{where}: unknown member {name}"
            if item is not None:
                problem = validate(shape.members[name], item, f"{where}.{name}")
                if problem:
                    return problem
        return None
    if kind == "list":
        if not isinstance(value, list):
            return f"{where} must be a list"
        if "min" in meta and len(value) < meta["min"]:
            return f"{where} needs at least {meta['min']} items"
        if "max" in meta and len(value) > meta["max"]:
            return f"{where} allows at most {meta['max']} items"
        for i, item in enumerate(value):
            problem = validate(shape.member, item, f"{where}[{i}]")
            if problem:
                return problem
        return None
    if kind == "string":
        if not isinstance(value, str):
            return f"{where} must be a string"
        if "min" in meta and len(value) < meta["min"]:
            return f"{where} is shorter than {meta['min']} characters"
        if "max" in meta and len(value) > meta["max"]:
            return f"{where} is longer than {meta['max']} characters"
        if "pattern" in meta and not re.search(meta["pattern"], value):
            return f"{where} value {value!r} does not match {meta['pattern']}"
        if shape.enum and value not in shape.enum:
            return f"{where} value {value!r} is not one of {shape.enum}"
        return None
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{where} must be an integer"
        if "min" in meta and value < meta["min"]:
            return f"{where} must be at least {meta['min']}"
        if "max" in meta and value > meta["max"]:
            return f"{where} must be at most {meta['max']}"
        return None
    if kind == "boolean":
        return None if isinstance(value, bool) else f"{where} must be a boolean"
    if kind == "timestamp":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else f"{where} must be a timestamp"
    return None


def serialize(shape, value: Any) -> Any:
    """Python state -> JSON value through an output shape (datetimes -> epoch seconds)."""
    kind = shape.type_name
    if kind == "structure":
        out = {}
        for name, item in value.items():
            if item is None:
                continue
            if name not in shape.members:
                raise KeyError(f"{shape.name} has no member {name}")
            out[name] = serialize(shape.members[name], item)
        return out
    if kind == "list":
        return [serialize(shape.member, item) for item in value]
    if kind == "timestamp":
        return value.timestamp()
    return value


def question_form_answers(answers: dict[str, str]) -> str:
    """QuestionFormAnswers XML with one FreeText answer per field, as MTurk returns it."""
    root = ET.Element("QuestionFormAnswers", xmlns=ANSWERS_NS)
    for identifier, text in answers.items():
        answer = ET.SubElement(root, "Answer")
        ET.SubElement(answer, "QuestionIdentifier").text = identifier
        ET.SubElement(answer, "FreeText").text = text
    body = ET.tostring(root, encoding="us-ascii", xml_declaration=False).decode("ascii")
    return '<?xml version="1.0" encoding="ASCII"?>' + body


def fee_for(amount: Decimal, *, many_assignments: bool = False, masters: bool = False) -> Decimal:
    rate = (
        Decimal("0.20")
        + (Decimal("0.20") if many_assignments else 0)
        + (Decimal("0.05") if masters else 0)
    )
    return max(CENT, (amount * rate).quantize(CENT, rounding=ROUND_HALF_UP))


# -- state --------------------------------------------------------------------------
@dataclass
class HITType:
    id: str
    title: str
    description: str
    keywords: str | None
    reward: str
    assignment_duration: int
    auto_approval_delay: int
    qualification_requirements: list[dict]


@dataclass
class HIT:
    id: str
    hit_type: HITType
    created: datetime
    expiration: datetime
    max_assignments: int
    question: str | None
    layout_id: str | None
    annotation: str | None
    token: str | None
    disposed: bool = False


@dataclass
class Assignment:
    id: str
    hit_id: str
    worker_id: str
    status: str  # Accepted | Submitted | Approved | Rejected | Returned | Abandoned
    accept_time: datetime
    deadline: datetime
    submit_time: datetime | None = None
    auto_approval_time: datetime | None = None
    approval_time: datetime | None = None
    rejection_time: datetime | None = None
    answer: str | None = None
    feedback: str | None = None


@dataclass
class BonusPayment:
    worker_id: str
    assignment_id: str
    amount: str
    reason: str
    grant_time: datetime
    token: str | None
    request_id: str


@dataclass
class QualificationType:
    id: str
    name: str
    description: str
    keywords: str | None
    status: str
    auto_granted: bool
    auto_granted_value: int | None
    created: datetime


@dataclass
class QualificationGrant:
    type_id: str
    worker_id: str
    value: int
    granted: datetime
    status: str = "Granted"


@dataclass
class Payment:
    """One charge to the requester's balance."""

    kind: str  # "reward" | "bonus"
    worker_id: str
    assignment_id: str
    amount: Decimal
    fee: Decimal
    time: datetime


@dataclass
class WorkerProfile:
    approval_rate: int = 100
    approved_hits: int = 1000
    country: str = "US"
    subdivision: str | None = None
    adult: bool = True
    masters: bool = False


@dataclass
class _Token:
    target_id: str
    request_id: str
    used: datetime


# -- the fake -------------------------------------------------------------------------
class FakeMTurk(FakeServer):
    """An MTurk Requester API on 127.0.0.1. Use as a context manager."""

    def __init__(
        self,
        *,
        balance: str = "10000.00",
        seed: int = 0,
        default_page_size: int = 10,
    ) -> None:
        super().__init__()
        self.balance = Decimal(balance)
        self.default_page_size = default_page_size
        # Entity ids and request ids come from separate seeded streams, so the ids of
        # HITs and assignments do not shift when a schedule adds or drops error answers.
        self._ids = random.Random(f"mturk-ids|{seed}")
        self._request_ids = random.Random(f"mturk-requests|{seed}")
        self._clock_offset = timedelta()
        self.hit_types: dict[str, HITType] = {}
        self.hits: dict[str, HIT] = {}
        self.assignments: dict[str, Assignment] = {}
        self.bonuses: list[BonusPayment] = []
        self.qualification_types: dict[str, QualificationType] = {}
        self.qualifications: dict[tuple[str, str], QualificationGrant] = {}
        self.payments: list[Payment] = []
        self.workers: dict[str, WorkerProfile] = {}
        self._hit_tokens: dict[str, _Token] = {}
        self._extra_tokens: dict[str, _Token] = {}
        self._bonus_tokens: dict[str, _Token] = {}
        #: seconds (of the fake's clock) before a paid bonus appears in ListBonusPayments
        self.bonus_listing_lag = 0.0
        #: the TurkErrorCode of a duplicate-token refusal: undocumented, so tests vary it
        self.duplicate_turk_code = "AWS.MechanicalTurk.DuplicateRequest"

    # -- time and ids -----------------------------------------------------------
    def now(self) -> datetime:
        return datetime.now(UTC) + self._clock_offset

    def advance(self, seconds: float) -> None:
        """Move the fake's clock forward (auto-approval, expiry, token lifetime)."""
        with self.lock:
            self._clock_offset += timedelta(seconds=seconds)
            self._tick()

    def _request_id(self) -> str:
        return str(uuid.UUID(int=self._request_ids.getrandbits(128), version=4))

    def _new_id(self, length: int = 30, prefix: str = "") -> str:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        return prefix + "".join(self._ids.choice(alphabet) for _ in range(length - len(prefix)))

    # -- HTTP -------------------------------------------------------------------
    def route(self, request: Request):
        if request.path == "/mturk/externalSubmit":
            return None, lambda: self._external_submit(request)
        if request.path.startswith("/mturk/task/"):
            return None, lambda: self._task_page(request)
        if request.path.startswith("/mturk/frame/"):
            return None, lambda: self._frame_page(request)
        target = request.headers.get("X-Amz-Target", "")
        prefix, _, operation = target.partition(".")
        if request.method != "POST" or request.path != "/" or prefix != TARGET_PREFIX:
            return operation or None, lambda: self._aws_error(
                404 if request.path != "/" else 400,
                "UnknownOperationException",
                f"no operation {target!r}",
            )
        return operation, lambda: self._call(operation, request)

    def fault_response(self, kind: FaultKind) -> Response:
        if kind is FaultKind.THROTTLE:
            return self._aws_error(400, "ThrottlingException", "Rate exceeded")
        if kind is FaultKind.HTTP_503:
            return self._aws_error(503, "ServiceUnavailableException", "Service is unavailable")
        return self._error_response(
            MTurkError(
                "Your request could not be processed at this time. Try your call again.",
                "AWS.MechanicalTurk.ServiceFault",
                type_="ServiceFault",
            )
        )

    def _aws_error(self, status: int, code: str, message: str) -> Response:
        response = Response.json(status, {"__type": code, "message": message}, CONTENT_TYPE)
        response.headers["x-amzn-RequestId"] = self._request_id()
        return response

    def _error_response(self, error: MTurkError) -> Response:
        body = {"__type": error.type_, "Message": error.message, "TurkErrorCode": error.turk_code}
        response = Response.json(error.status, body, CONTENT_TYPE)
        response.headers["x-amzn-RequestId"] = self._request_id()
        return response

    def _call(self, operation: str, request: Request) -> Response:
        handler = getattr(self, f"_op_{operation}", None)
        if handler is None:
            return self._aws_error(
                400, "UnknownOperationException", f"{operation} is not in the fake"
            )
        if not request.headers.get("Authorization", "").startswith("AWS4-HMAC-SHA256"):
            return self._aws_error(
                403, "MissingAuthenticationTokenException", "Missing Authentication Token"
            )
        if not request.headers.get("Content-Type", "").startswith(CONTENT_TYPE):
            return self._aws_error(
                400, "SerializationException", f"Content-Type must be {CONTENT_TYPE}"
            )
        op_model = MODEL.operation_model(operation)
        try:
            params = request.json() or {}
        except ValueError:
            return self._aws_error(400, "SerializationException", "body is not JSON")
        request_id = self._request_id()
        try:
            if op_model.input_shape is not None:
                problem = validate(op_model.input_shape, params)
                if problem:
                    raise MTurkError(problem, "AWS.MechanicalTurk.InvalidParameterValue")
            self._tick()
            result = handler(params, request_id)
        except MTurkError as error:
            return self._error_response(error)
        out = serialize(op_model.output_shape, result) if op_model.output_shape else {}
        if op_model.output_shape is not None:
            problem = validate(op_model.output_shape, out)
            if problem:  # the fake broke the model: surface it as a test failure
                raise AssertionError(f"fake produced an invalid {operation} response: {problem}")
        response = Response.json(200, out, CONTENT_TYPE)
        response.headers["x-amzn-RequestId"] = request_id
        return response

    # -- lifecycle of the state -----------------------------------------------------
    def _tick(self) -> None:
        """Apply what time alone changes: abandonment, auto-approval, disposal."""
        now = self.now()
        for a in self.assignments.values():
            if a.status == "Accepted" and now > a.deadline:
                a.status = "Abandoned"
            elif a.status == "Submitted" and a.auto_approval_time and now >= a.auto_approval_time:
                self._approve(a, a.auto_approval_time, feedback=None, check_funds=False)
        for hit in self.hits.values():
            if not hit.disposed and now - hit.created > HIT_RETENTION:
                hit.disposed = True

    def _hit(self, hit_id: str) -> HIT:
        hit = self.hits.get(hit_id)
        if hit is None:
            raise MTurkError(f"Hit {hit_id} does not exist.", "AWS.MechanicalTurk.HITDoesNotExist")
        return hit

    def _assignment(self, assignment_id: str) -> Assignment:
        a = self.assignments.get(assignment_id)
        if a is None or a.status in ("Accepted", "Returned", "Abandoned"):
            raise MTurkError(
                f"Assignment {assignment_id} does not exist.",
                "AWS.MechanicalTurk.AssignmentDoesNotExist",
            )
        return a

    def _counts(self, hit: HIT) -> tuple[int, int, int, int]:
        """(pending, submitted-or-reviewed, completed, available)."""
        mine = [a for a in self.assignments.values() if a.hit_id == hit.id]
        pending = sum(a.status == "Accepted" for a in mine)
        done = sum(a.status in ("Submitted", "Approved", "Rejected") for a in mine)
        completed = sum(a.status in ("Approved", "Rejected") for a in mine)
        expired = self.now() >= hit.expiration
        available = 0 if expired else max(0, hit.max_assignments - pending - done)
        return pending, done, completed, available

    def hit_status(self, hit: HIT) -> str:
        if hit.disposed:
            return "Disposed"
        pending, done, _, available = self._counts(hit)
        if available > 0:
            return "Assignable"
        return "Unassignable" if pending else "Reviewable"

    def _hit_out(self, hit: HIT) -> dict:
        t = hit.hit_type
        pending, _, completed, available = self._counts(hit)
        return {
            "HITId": hit.id,
            "HITTypeId": t.id,
            "HITGroupId": t.id,
            "HITLayoutId": hit.layout_id,
            "CreationTime": hit.created,
            "Title": t.title,
            "Description": t.description,
            "Question": hit.question,
            "Keywords": t.keywords,
            "HITStatus": self.hit_status(hit),
            "MaxAssignments": hit.max_assignments,
            "Reward": t.reward,
            "AutoApprovalDelayInSeconds": t.auto_approval_delay,
            "Expiration": hit.expiration,
            "AssignmentDurationInSeconds": t.assignment_duration,
            "RequesterAnnotation": hit.annotation,
            "QualificationRequirements": t.qualification_requirements,
            "HITReviewStatus": "NotReviewed",
            "NumberOfAssignmentsPending": pending,
            "NumberOfAssignmentsAvailable": available,
            "NumberOfAssignmentsCompleted": completed,
        }

    @staticmethod
    def _assignment_out(a: Assignment) -> dict:
        return {
            "AssignmentId": a.id,
            "WorkerId": a.worker_id,
            "HITId": a.hit_id,
            "AssignmentStatus": a.status,
            "AutoApprovalTime": a.auto_approval_time,
            "AcceptTime": a.accept_time,
            "SubmitTime": a.submit_time,
            "ApprovalTime": a.approval_time,
            "RejectionTime": a.rejection_time,
            "Deadline": a.deadline,
            "Answer": a.answer,
            "RequesterFeedback": a.feedback,
        }

    def _page(self, items: list, params: dict, key: str) -> tuple[list, str | None]:
        """Slice by NextToken/MaxResults; the token is opaque to clients."""
        size = params.get("MaxResults") or self.default_page_size
        offset = 0
        token = params.get("NextToken")
        if token:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
                assert decoded["k"] == key
                offset = int(decoded["o"])
            except Exception as error:
                raise MTurkError(
                    "The NextToken is invalid.", "AWS.MechanicalTurk.InvalidNextToken"
                ) from error
        chunk = items[offset : offset + size]
        if offset + size < len(items):
            raw = json.dumps({"k": key, "o": offset + size}).encode()
            return chunk, base64.urlsafe_b64encode(raw).decode()
        return chunk, None

    @staticmethod
    def _check_amount(value: str, name: str) -> Decimal:
        amount = Decimal(value)
        if amount <= 0:
            raise MTurkError(
                f"{name} must be positive.", "AWS.MechanicalTurk.InvalidParameterValue"
            )
        return amount

    def _live_token(self, table: dict[str, _Token], token: str | None) -> _Token | None:
        if not token:
            return None
        entry = table.get(token)
        if entry is not None and self.now() - entry.used > TOKEN_LIFETIME:
            del table[token]  # documented: after 24 h a reused token may create duplicates
            return None
        return entry

    def _is_masters(self, hit: HIT) -> bool:
        return any(
            r["QualificationTypeId"] in QUAL_MASTERS
            for r in hit.hit_type.qualification_requirements
        )

    def _approve(
        self, a: Assignment, when: datetime, *, feedback: str | None, check_funds: bool
    ) -> None:
        hit = self.hits[a.hit_id]
        reward = Decimal(hit.hit_type.reward)
        fee = fee_for(
            reward, many_assignments=hit.max_assignments >= 10, masters=self._is_masters(hit)
        )
        if check_funds and self.balance < reward + fee:
            raise MTurkError(
                "You do not have enough funds to approve this assignment.",
                "AWS.MechanicalTurk.InsufficientFunds",
            )
        self.balance -= reward + fee
        self.payments.append(Payment("reward", a.worker_id, a.id, reward, fee, when))
        a.status = "Approved"
        a.approval_time = when
        a.rejection_time = None
        if feedback is not None:
            a.feedback = feedback

    @staticmethod
    def _check_question(question: str) -> None:
        if len(question.encode("utf-8")) > MAX_QUESTION_BYTES:
            raise MTurkError(
                f"Question is longer than {MAX_QUESTION_BYTES} bytes.",
                "AWS.MechanicalTurk.InvalidParameterValue",
            )
        try:
            root = SafeET.fromstring(question.encode("utf-8"))
        except Exception as error:
            raise MTurkError(
                f"Question is not well-formed XML: {error}", "AWS.MechanicalTurk.XMLParseError"
            ) from error
        namespace, _, local = root.tag.rpartition("}")
        namespace = namespace.lstrip("{")
        if namespace not in QUESTION_NAMESPACES.get(local, set()):
            raise MTurkError(
                f"Question root {root.tag!r} is not a known question structure.",
                "AWS.MechanicalTurk.XMLParseError",
            )
        ns = {"q": namespace}
        if local in ("HTMLQuestion", "ExternalQuestion"):
            if root.find("q:FrameHeight", ns) is None:
                raise MTurkError(f"{local} needs FrameHeight.", "AWS.MechanicalTurk.XMLParseError")
        if local == "HTMLQuestion" and not (root.findtext("q:HTMLContent", "", ns) or "").strip():
            raise MTurkError("HTMLQuestion needs HTMLContent.", "AWS.MechanicalTurk.XMLParseError")
        if local == "ExternalQuestion":
            url = (root.findtext("q:ExternalURL", "", ns) or "").strip()
            if not url.startswith("https://"):
                raise MTurkError(
                    "ExternalURL must be an HTTPS URL.", "AWS.MechanicalTurk.XMLParseError"
                )

    # -- operations ----------------------------------------------------------------------
    def _op_GetAccountBalance(self, params: dict, request_id: str) -> dict:
        return {"AvailableBalance": f"{self.balance:.2f}", "OnHoldBalance": "0.00"}

    def _op_CreateHITType(self, params: dict, request_id: str) -> dict:
        self._check_amount(params["Reward"], "Reward")
        duration = params["AssignmentDurationInSeconds"]
        if not 30 <= duration <= 31536000:
            raise MTurkError(
                "AssignmentDurationInSeconds must be between 30 and 31536000.",
                "AWS.MechanicalTurk.InvalidParameterValue",
            )
        delay = params.get("AutoApprovalDelayInSeconds", 2592000)
        if not 0 <= delay <= 2592000:
            raise MTurkError(
                "AutoApprovalDelayInSeconds must be between 0 and 2592000.",
                "AWS.MechanicalTurk.InvalidParameterValue",
            )
        requirements = params.get("QualificationRequirements") or []
        if len(requirements) > 10:
            raise MTurkError(
                "At most 10 QualificationRequirements.", "AWS.MechanicalTurk.InvalidParameterValue"
            )
        for requirement in requirements:
            type_id = requirement["QualificationTypeId"]
            builtin = type_id in QUAL_MASTERS or type_id in (
                QUAL_PERCENT_APPROVED,
                QUAL_NUMBER_APPROVED,
                QUAL_LOCALE,
                QUAL_ADULT,
            )
            if not builtin and type_id not in self.qualification_types:
                raise MTurkError(
                    f"QualificationType {type_id} does not exist.",
                    "AWS.MechanicalTurk.QualificationTypeDoesNotExist",
                )
        properties = {
            "title": params["Title"],
            "description": params["Description"],
            "keywords": params.get("Keywords"),
            "reward": params["Reward"],
            "assignment_duration": duration,
            "auto_approval_delay": delay,
            "qualification_requirements": requirements,
        }
        for existing in self.hit_types.values():  # idempotent: same properties, same id
            if all(getattr(existing, k) == v for k, v in properties.items()):
                return {"HITTypeId": existing.id}
        hit_type = HITType(id=self._new_id(), **properties)
        self.hit_types[hit_type.id] = hit_type
        return {"HITTypeId": hit_type.id}

    def _op_CreateHITWithHITType(self, params: dict, request_id: str) -> dict:
        hit_type = self.hit_types.get(params["HITTypeId"])
        if hit_type is None:
            raise MTurkError(
                f"HITType {params['HITTypeId']} does not exist.",
                "AWS.MechanicalTurk.HITTypeDoesNotExist",
            )
        token = params.get("UniqueRequestToken")
        existing = self._live_token(self._hit_tokens, token)
        if existing is not None:
            raise MTurkError(
                f"The HIT with ID {existing.target_id} already exists with this UniqueRequestToken.",
                "AWS.MechanicalTurk.HitAlreadyExists",
            )
        question, layout = params.get("Question"), params.get("HITLayoutId")
        if (question is None) == (layout is None):
            raise MTurkError(
                "Exactly one of Question and HITLayoutId is required.",
                "AWS.MechanicalTurk.InvalidParameterValue",
            )
        if question is not None:
            self._check_question(question)
        lifetime = params["LifetimeInSeconds"]
        if not 30 <= lifetime <= 31536000:
            raise MTurkError(
                "LifetimeInSeconds must be between 30 and 31536000.",
                "AWS.MechanicalTurk.InvalidParameterValue",
            )
        max_assignments = params.get("MaxAssignments", 1)
        if not 1 <= max_assignments <= 1000000:
            raise MTurkError(
                "MaxAssignments must be at least 1.", "AWS.MechanicalTurk.InvalidParameterValue"
            )
        annotation = params.get("RequesterAnnotation")
        if annotation is not None and len(annotation) > 255:
            raise MTurkError(
                "RequesterAnnotation is longer than 255 characters.",
                "AWS.MechanicalTurk.InvalidParameterValue",
            )
        now = self.now()
        hit = HIT(
            id=self._new_id(),
            hit_type=hit_type,
            created=now,
            expiration=now + timedelta(seconds=lifetime),
            max_assignments=max_assignments,
            question=question,
            layout_id=layout,
            annotation=annotation,
            token=token,
        )
        self.hits[hit.id] = hit
        if token:
            self._hit_tokens[token] = _Token(hit.id, request_id, now)
        return {"HIT": self._hit_out(hit)}

    def _op_CreateHIT(self, params: dict, request_id: str) -> dict:
        # CreateHIT is CreateHITType + CreateHITWithHITType in one call (model docs).
        type_keys = set(MODEL.operation_model("CreateHITType").input_shape.members)
        type_params = {k: v for k, v in params.items() if k in type_keys}
        hit_type_id = self._op_CreateHITType(type_params, request_id)["HITTypeId"]
        rest = {k: v for k, v in params.items() if k not in type_keys}
        return self._op_CreateHITWithHITType({**rest, "HITTypeId": hit_type_id}, request_id)

    def _op_GetHIT(self, params: dict, request_id: str) -> dict:
        return {"HIT": self._hit_out(self._hit(params["HITId"]))}

    def _op_ListHITs(self, params: dict, request_id: str) -> dict:
        live = [h for h in self.hits.values() if not h.disposed]
        chunk, token = self._page(live, params, "ListHITs")
        return {
            "HITs": [self._hit_out(h) for h in chunk],
            "NumResults": len(chunk),
            "NextToken": token,
        }

    def _op_UpdateExpirationForHIT(self, params: dict, request_id: str) -> dict:
        hit = self._hit(params["HITId"])
        if hit.disposed:
            raise MTurkError(
                "This HIT is currently in the state 'Disposed'.",
                "AWS.MechanicalTurk.InvalidHITState",
            )
        expire_at = datetime.fromtimestamp(params["ExpireAt"], UTC)
        hit.expiration = max(expire_at, self.now())  # a past time expires the HIT now
        return {}

    def _op_DeleteHIT(self, params: dict, request_id: str) -> dict:
        hit = self._hit(params["HITId"])
        status = self.hit_status(hit)
        if status != "Reviewable":
            raise MTurkError(
                f"This HIT is currently in the state '{status}'. "
                "This operation can be called with a status of: Reviewable",
                "AWS.MechanicalTurk.InvalidHITState",
            )
        if any(a.hit_id == hit.id and a.status == "Submitted" for a in self.assignments.values()):
            raise MTurkError(
                "This HIT has submitted assignments that are neither approved nor rejected.",
                "AWS.MechanicalTurk.InvalidHITState",
            )
        hit.disposed = True
        return {}

    def _op_CreateAdditionalAssignmentsForHIT(self, params: dict, request_id: str) -> dict:
        hit = self._hit(params["HITId"])
        token = params.get("UniqueRequestToken")
        if self._live_token(self._extra_tokens, token) is not None:
            raise MTurkError(
                f"A request with this UniqueRequestToken was already processed "
                f"(request {self._extra_tokens[token].request_id}).",
                "AWS.MechanicalTurk.DuplicateRequest",
            )
        extra = params["NumberOfAdditionalAssignments"]
        if extra < 1:
            raise MTurkError(
                "NumberOfAdditionalAssignments must be at least 1.",
                "AWS.MechanicalTurk.InvalidParameterValue",
            )
        if hit.max_assignments < 10 <= hit.max_assignments + extra:
            raise MTurkError(
                "A HIT created with fewer than 10 assignments cannot be extended to 10 or more.",
                "AWS.MechanicalTurk.InvalidMaximumAssignmentsIncrease",
            )
        hit.max_assignments += extra
        if token:
            self._extra_tokens[token] = _Token(hit.id, request_id, self.now())
        return {}

    def _op_ListAssignmentsForHIT(self, params: dict, request_id: str) -> dict:
        hit = self._hit(params["HITId"])
        statuses = set(params.get("AssignmentStatuses") or ["Submitted", "Approved", "Rejected"])
        mine = (
            []
            if hit.disposed
            else [
                a for a in self.assignments.values() if a.hit_id == hit.id and a.status in statuses
            ]
        )
        key = "ListAssignmentsForHIT|" + hit.id + "|" + ",".join(sorted(statuses))
        chunk, token = self._page(mine, params, key)
        return {
            "Assignments": [self._assignment_out(a) for a in chunk],
            "NumResults": len(chunk),
            "NextToken": token,
        }

    def _op_GetAssignment(self, params: dict, request_id: str) -> dict:
        a = self._assignment(params["AssignmentId"])
        return {"Assignment": self._assignment_out(a), "HIT": self._hit_out(self.hits[a.hit_id])}

    def _op_ApproveAssignment(self, params: dict, request_id: str) -> dict:
        a = self._assignment(params["AssignmentId"])
        feedback = params.get("RequesterFeedback")
        self._check_feedback(feedback)
        if a.status == "Rejected" and params.get("OverrideRejection"):
            if self.hits[a.hit_id].disposed or self.now() - a.submit_time > OVERRIDE_WINDOW:
                raise MTurkError(
                    "This rejection can no longer be overridden.",
                    "AWS.MechanicalTurk.InvalidAssignmentState",
                )
        elif a.status != "Submitted":
            raise MTurkError(
                f"This operation can be called with a status of: Submitted "
                f"(assignment {a.id} is {a.status}).",
                "AWS.MechanicalTurk.InvalidAssignmentState",
            )
        self._approve(a, self.now(), feedback=feedback, check_funds=True)
        return {}

    def _op_RejectAssignment(self, params: dict, request_id: str) -> dict:
        a = self._assignment(params["AssignmentId"])
        self._check_feedback(params["RequesterFeedback"])
        if a.status != "Submitted":
            raise MTurkError(
                f"This operation can be called with a status of: Submitted "
                f"(assignment {a.id} is {a.status}).",
                "AWS.MechanicalTurk.InvalidAssignmentState",
            )
        a.status = "Rejected"
        a.rejection_time = self.now()
        a.feedback = params["RequesterFeedback"]
        return {}

    @staticmethod
    def _check_feedback(feedback: str | None) -> None:
        if feedback is None:
            return
        if len(feedback) > 1024 or re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", feedback):
            raise MTurkError(
                "RequesterFeedback is longer than 1024 characters or has control characters.",
                "AWS.MechanicalTurk.InvalidParameterValue",
            )

    def _op_SendBonus(self, params: dict, request_id: str) -> dict:
        token = params.get("UniqueRequestToken")
        previous = self._live_token(self._bonus_tokens, token)
        if previous is not None:
            # botocore's model promises only "an error with a message containing the request
            # ID" (RequestError, no documented TurkErrorCode): the wording here is deliberately
            # not one a client could match on
            raise MTurkError(
                f"This request was processed already (request {previous.request_id}).",
                self.duplicate_turk_code,
            )
        a = self._assignment(params["AssignmentId"])
        if a.worker_id != params["WorkerId"]:
            raise MTurkError(
                f"Assignment {a.id} was not done by worker {params['WorkerId']}.",
                "AWS.MechanicalTurk.InvalidParameterValue",
            )
        amount = self._check_amount(params["BonusAmount"], "BonusAmount")
        fee = fee_for(amount)
        if self.balance < amount + fee:
            raise MTurkError(
                "You do not have enough funds to pay this bonus.",
                "AWS.MechanicalTurk.InsufficientFunds",
            )
        now = self.now()
        self.balance -= amount + fee
        self.payments.append(Payment("bonus", a.worker_id, a.id, amount, fee, now))
        self.bonuses.append(
            BonusPayment(
                a.worker_id, a.id, params["BonusAmount"], params["Reason"], now, token, request_id
            )
        )
        if token:
            self._bonus_tokens[token] = _Token(a.id, request_id, now)
        return {}

    def _op_ListBonusPayments(self, params: dict, request_id: str) -> dict:
        hit_id, assignment_id = params.get("HITId"), params.get("AssignmentId")
        if (hit_id is None) == (assignment_id is None):
            raise MTurkError(
                "Exactly one of HITId and AssignmentId is required.",
                "AWS.MechanicalTurk.InvalidParameterValue",
            )
        if hit_id is not None:
            self._hit(hit_id)
            chosen = [b for b in self.bonuses if self.assignments[b.assignment_id].hit_id == hit_id]
        else:
            self._assignment(assignment_id)
            chosen = [b for b in self.bonuses if b.assignment_id == assignment_id]
        # a lagging listing: a bonus shows only `bonus_listing_lag` seconds (fake clock) after
        # it was granted (the API promises no read-after-write consistency)
        visible = self.now() - timedelta(seconds=self.bonus_listing_lag)
        chosen = [b for b in chosen if b.grant_time <= visible]
        chunk, token = self._page(chosen, params, f"ListBonusPayments|{hit_id}|{assignment_id}")
        return {
            "BonusPayments": [
                {
                    "WorkerId": b.worker_id,
                    "BonusAmount": b.amount,
                    "AssignmentId": b.assignment_id,
                    "Reason": b.reason,
                    "GrantTime": b.grant_time,
                }
                for b in chunk
            ],
            "NumResults": len(chunk),
            "NextToken": token,
        }

    def _qualification_type_out(self, q: QualificationType) -> dict:
        return {
            "QualificationTypeId": q.id,
            "CreationTime": q.created,
            "Name": q.name,
            "Description": q.description,
            "Keywords": q.keywords,
            "QualificationTypeStatus": q.status,
            "IsRequestable": False,
            "AutoGranted": q.auto_granted,
            "AutoGrantedValue": q.auto_granted_value,
        }

    def _op_CreateQualificationType(self, params: dict, request_id: str) -> dict:
        if any(q.name == params["Name"] for q in self.qualification_types.values()):
            raise MTurkError(
                "You have already created a QualificationType with this name. "
                "A QualificationType's name must be unique among all of the QualificationTypes "
                "created by the same user.",
                "AWS.MechanicalTurk.QualificationTypeAlreadyExists",
            )
        q = QualificationType(
            id=self._new_id(),
            name=params["Name"],
            description=params["Description"],
            keywords=params.get("Keywords"),
            status=params["QualificationTypeStatus"],
            auto_granted=params.get("AutoGranted", False),
            auto_granted_value=params.get("AutoGrantedValue"),
            created=self.now(),
        )
        self.qualification_types[q.id] = q
        return {"QualificationType": self._qualification_type_out(q)}

    def _qualification_type(self, type_id: str) -> QualificationType:
        q = self.qualification_types.get(type_id)
        if q is None:
            raise MTurkError(
                f"QualificationType {type_id} does not exist.",
                "AWS.MechanicalTurk.QualificationTypeDoesNotExist",
            )
        return q

    def _op_GetQualificationType(self, params: dict, request_id: str) -> dict:
        return {
            "QualificationType": self._qualification_type_out(
                self._qualification_type(params["QualificationTypeId"])
            )
        }

    def _op_AssociateQualificationWithWorker(self, params: dict, request_id: str) -> dict:
        q = self._qualification_type(params["QualificationTypeId"])
        key = (q.id, params["WorkerId"])
        self.qualifications[key] = QualificationGrant(
            q.id, params["WorkerId"], params.get("IntegerValue", 1), self.now()
        )
        return {}

    def _op_DisassociateQualificationFromWorker(self, params: dict, request_id: str) -> dict:
        q = self._qualification_type(params["QualificationTypeId"])
        grant = self.qualifications.get((q.id, params["WorkerId"]))
        if grant is None or grant.status != "Granted":
            raise MTurkError(
                f"Worker {params['WorkerId']} does not hold qualification {q.id}.",
                "AWS.MechanicalTurk.QualificationDoesNotExist",
            )
        grant.status = "Revoked"
        return {}

    def _op_ListWorkersWithQualificationType(self, params: dict, request_id: str) -> dict:
        q = self._qualification_type(params["QualificationTypeId"])
        status = params.get("Status", "Granted")
        grants = [
            g for g in self.qualifications.values() if g.type_id == q.id and g.status == status
        ]
        chunk, token = self._page(
            grants, params, f"ListWorkersWithQualificationType|{q.id}|{status}"
        )
        return {
            "Qualifications": [
                {
                    "QualificationTypeId": g.type_id,
                    "WorkerId": g.worker_id,
                    "GrantTime": g.granted,
                    "IntegerValue": g.value,
                    "Status": g.status,
                }
                for g in chunk
            ],
            "NumResults": len(chunk),
            "NextToken": token,
        }

    # -- simulated workers (test-side API) -------------------------------------------------
    def add_worker(self, worker_id: str, **profile) -> None:
        """Describe a worker for the system qualifications (defaults: 100 %, 1000 HITs, US, adult)."""
        self._check_worker_id(worker_id)
        with self.lock:
            self.workers[worker_id] = WorkerProfile(**profile)

    @staticmethod
    def _check_worker_id(worker_id: str) -> None:
        if not WORKER_ID.match(worker_id) or len(worker_id) > 64:
            raise ValueError(f"worker id {worker_id!r} does not match {WORKER_ID.pattern}")

    def _qualified(self, worker_id: str, requirement: dict) -> bool:
        type_id = requirement["QualificationTypeId"]
        profile = self.workers.get(worker_id, WorkerProfile())
        comparator = requirement["Comparator"]
        if type_id == QUAL_LOCALE:
            locales = requirement.get("LocaleValues") or []
            matches = any(
                loc["Country"] == profile.country
                and (loc.get("Subdivision") is None or loc["Subdivision"] == profile.subdivision)
                for loc in locales
            )
            if comparator in ("EqualTo", "In"):
                return matches
            if comparator in ("NotEqualTo", "NotIn"):
                return not matches
            return comparator == "Exists"
        value: int | None
        if type_id == QUAL_PERCENT_APPROVED:
            value = profile.approval_rate
        elif type_id == QUAL_NUMBER_APPROVED:
            value = profile.approved_hits
        elif type_id == QUAL_ADULT:
            value = 1 if profile.adult else 0
        elif type_id in QUAL_MASTERS:
            value = 1 if profile.masters else None
        else:
            grant = self.qualifications.get((type_id, worker_id))
            value = grant.value if grant is not None and grant.status == "Granted" else None
        if comparator == "Exists":
            return value is not None
        if comparator == "DoesNotExist":
            return value is None
        if value is None:
            return False
        wanted = requirement.get("IntegerValues") or []
        first = wanted[0] if wanted else None
        return {
            "LessThan": lambda: value < first,
            "LessThanOrEqualTo": lambda: value <= first,
            "GreaterThan": lambda: value > first,
            "GreaterThanOrEqualTo": lambda: value >= first,
            "EqualTo": lambda: value == first,
            "NotEqualTo": lambda: value != first,
            "In": lambda: value in wanted,
            "NotIn": lambda: value not in wanted,
        }[comparator]()

    def worker_accepts(self, hit_id: str, worker_id: str) -> str:
        """A worker accepts a HIT: an assignment the API cannot see until it is submitted."""
        self._check_worker_id(worker_id)
        with self.lock:
            self._tick()
            hit = self.hits[hit_id]
            if self.hit_status(hit) != "Assignable":
                raise WorkerNotQualified(f"HIT {hit_id} is {self.hit_status(hit)}, not Assignable")
            if any(
                a.hit_id == hit_id and a.worker_id == worker_id for a in self.assignments.values()
            ):
                raise WorkerNotQualified(f"worker {worker_id} already worked on HIT {hit_id}")
            for requirement in hit.hit_type.qualification_requirements:
                if not self._qualified(worker_id, requirement):
                    raise WorkerNotQualified(
                        f"worker {worker_id} fails {requirement['QualificationTypeId']} "
                        f"{requirement['Comparator']}"
                    )
            now = self.now()
            a = Assignment(
                id=self._new_id(),
                hit_id=hit_id,
                worker_id=worker_id,
                status="Accepted",
                accept_time=now,
                deadline=now + timedelta(seconds=hit.hit_type.assignment_duration),
            )
            self.assignments[a.id] = a
            return a.id

    def _submit(self, a: Assignment, answers: dict[str, str]) -> None:
        if a.status != "Accepted":
            raise WorkerNotQualified(f"assignment {a.id} is {a.status}, not Accepted")
        now = self.now()
        a.status = "Submitted"
        a.submit_time = now
        a.answer = question_form_answers(answers)
        delay = self.hits[a.hit_id].hit_type.auto_approval_delay
        a.auto_approval_time = now + timedelta(seconds=delay)
        self._tick()  # a zero delay approves at once

    def worker_submits(self, hit_id: str, worker_id: str, answers: dict[str, str]) -> str:
        """A worker submits answers (accepting the HIT first if needed); returns the AssignmentId."""
        with self.lock:
            accepted = [
                a
                for a in self.assignments.values()
                if a.hit_id == hit_id and a.worker_id == worker_id and a.status == "Accepted"
            ]
            assignment_id = accepted[0].id if accepted else self.worker_accepts(hit_id, worker_id)
            self._submit(self.assignments[assignment_id], answers)
            return assignment_id

    def worker_returns(self, assignment_id: str) -> None:
        """A worker gives an accepted assignment back; it never shows in the API."""
        with self.lock:
            a = self.assignments[assignment_id]
            if a.status != "Accepted":
                raise WorkerNotQualified(f"assignment {a.id} is {a.status}, not Accepted")
            a.status = "Returned"

    def task_url(self, hit_id: str, worker_id: str | None = None) -> str:
        """The page a worker sees: the HIT in an iframe with MTurk's query parameters.

        Without a worker it is the preview (assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE);
        with one, the worker accepts the HIT first.
        """
        if worker_id is None:
            query = {"assignmentId": PREVIEW_ASSIGNMENT_ID}
        else:
            query = {"assignmentId": self.worker_accepts(hit_id, worker_id), "workerId": worker_id}
        return f"{self.url}/mturk/task/{hit_id}?{urlencode(query)}"

    def live_hits(self) -> list[HIT]:
        with self.lock:
            return [h for h in self.hits.values() if not h.disposed]

    def duplicate_hits(self) -> dict[tuple[str | None, str | None], list[str]]:
        """HIT ids sharing a (RequesterAnnotation, Question): what a retried create leaves behind."""
        with self.lock:
            groups: dict[tuple[str | None, str | None], list[str]] = {}
            for hit in self.hits.values():
                groups.setdefault((hit.annotation, hit.question), []).append(hit.id)
            return {key: ids for key, ids in groups.items() if len(ids) > 1}

    def double_bonuses(self) -> dict[tuple[str, str], list[str]]:
        """Bonus amounts paid more than once for one (assignment, reason)."""
        with self.lock:
            groups: dict[tuple[str, str], list[str]] = {}
            for bonus in self.bonuses:
                groups.setdefault((bonus.assignment_id, bonus.reason), []).append(bonus.amount)
            return {key: amounts for key, amounts in groups.items() if len(amounts) > 1}

    # -- worker-side pages (no faults: they stand for MTurk's website, not the API) --------
    def _frame_query(self, hit: HIT, request: Request) -> dict[str, str]:
        query = {
            "assignmentId": request.param("assignmentId", PREVIEW_ASSIGNMENT_ID),
            "hitId": hit.id,
        }
        if query["assignmentId"] != PREVIEW_ASSIGNMENT_ID:
            query["turkSubmitTo"] = self.url
            query["workerId"] = request.param("workerId", "")
        return query

    def _task_page(self, request: Request) -> Response:
        hit = self.hits.get(request.path.rsplit("/", 1)[-1])
        if hit is None or hit.question is None:
            return Response.html(404, "<p>No such HIT.</p>")
        root = SafeET.fromstring(hit.question.encode("utf-8"))
        namespace = root.tag[1:].split("}")[0]
        ns = {"q": namespace}
        height = int(root.findtext("q:FrameHeight", "0", ns) or 0) or 800
        query = urlencode(self._frame_query(hit, request))
        if root.tag.endswith("ExternalQuestion"):
            base = root.findtext("q:ExternalURL", "", ns).strip()
            src = base + ("&" if "?" in base else "?") + query
        else:
            src = f"/mturk/frame/{hit.id}?{query}"
        page = (
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>HIT</title></head><body>"
            f"<h1>{html.escape(hit.hit_type.title)}</h1>"
            f"<iframe id='hit-frame' src='{html.escape(src)}' height='{height}' width='100%' "
            "sandbox='allow-scripts allow-forms allow-same-origin allow-popups'></iframe>"
            "</body></html>"
        )
        return Response.html(200, page)

    def _frame_page(self, request: Request) -> Response:
        hit = self.hits.get(request.path.rsplit("/", 1)[-1])
        if hit is None or hit.question is None or "HTMLQuestion" not in hit.question:
            return Response.html(404, "<p>No such HTMLQuestion HIT.</p>")
        root = SafeET.fromstring(hit.question.encode("utf-8"))
        namespace = root.tag[1:].split("}")[0]
        return Response.html(200, root.findtext("q:HTMLContent", "", {"q": namespace}))

    def _external_submit(self, request: Request) -> Response:
        if request.method != "POST":
            return Response.html(405, "<p>externalSubmit accepts POST only.</p>")
        form = {
            k: v[-1]
            for k, v in parse_qs(request.body.decode("utf-8"), keep_blank_values=True).items()
        }
        assignment_id = form.get("assignmentId", "")
        if assignment_id in ("", PREVIEW_ASSIGNMENT_ID):
            return Response.html(
                400, "<p>There was a problem submitting your results for this HIT.</p>"
            )
        answers = {k: v for k, v in form.items() if k not in RESERVED_FIELDS}
        if not answers:
            return Response.html(400, "<p>The HIT was not submitted correctly.</p>")
        a = self.assignments.get(assignment_id)
        if a is None or a.status != "Accepted":
            return Response.html(400, "<p>This assignment cannot be submitted.</p>")
        self._submit(a, answers)
        return Response.html(200, "<p id='submitted'>Your HIT has been submitted.</p>")
