"""The participant web app and its JSON API (Starlette, served by uvicorn).

Routes
  GET  /                              the page (consent, instructions, practice, trials)
  GET  /api/preview                   a sample trial for preview mode (no assignment, no answers)
  POST /api/assignments               start or resume: {"token"} | Prolific | MTurk parameters
  GET  /api/assignments/{id}          the HIT's trials without answers (+ the practice trial)
  POST /api/assignments/{id}/submit   the responses (validated, idempotent)
  GET  /img/{id}/{trial}/{slot}       image bytes by position (q0.., o0..), never by image ID,
                                      encoded for the slot (hitkit.survey.served_images)
  GET  /healthz

Every error is JSON ``{"error": {"field": ..., "message": ...}}`` with a 4xx
status; a rejected submission is logged in the ledger's events. Raw platform
IDs are never echoed, logged or put into an error message.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from hitkit.study.config import Study
from hitkit.study.images import ImageError, ImageStore, load_images
from hitkit.study.s3 import is_url as is_s3_url
from hitkit.survey.assignments import (
    Arrival,
    Assignment,
    AssignmentError,
    get_assignment,
    start_assignment,
    submit,
)
from hitkit.survey.design import Trial
from hitkit.survey.frontend import STATIC, served_page
from hitkit.survey.hits import hit_practice, hit_trials
from hitkit.survey.ledger import Ledger
from hitkit.survey.served_images import MEDIA_TYPE, SlotImages
from hitkit.survey.slot_store import slot_uploads
from hitkit.survey.submission import MAX_BODY_BYTES, SubmissionError, decode_body, parse_submission
from hitkit.survey.web.guard import Guard, RateLimit, RateLimits

PLATFORM_ID = re.compile(r"\A[A-Za-z0-9_-]{1,128}\Z")  # \Z: "$" would accept "ID\n"
MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"
SLOT = re.compile(r"\A([qo])([0-9]{1,2})\Z")
MAX_FIELD_CHARS = 80
BODY_TIMEOUT_S = 30.0
MOBILE_UA = re.compile(r"Mobi|Android|iPhone|iPad", re.IGNORECASE)


def error(field: str, message: str, status: int) -> JSONResponse:
    # a field can be a name the client made up (an unknown key): never echoed whole
    if len(field) > MAX_FIELD_CHARS:
        field = field[:MAX_FIELD_CHARS] + "..."
    return JSONResponse({"error": {"field": field, "message": message}}, status_code=status)


CompletionUrl = Callable[[Assignment], str | None]
# a Prolific or MTurk arrival -> the same arrival with the open batch (and, for MTurk, the
# hitkit HIT) that the platform published for it; None when nothing published admits it
Admit = Callable[[Arrival], Arrival | None]


class SurveyApp:
    """State shared by the routes: the study, its ledger, its images, cached trials."""

    def __init__(self, study: Study, ledger: Ledger, images: ImageStore,
                 completion_urls: dict[str, CompletionUrl] | None = None,
                 admit: dict[str, Admit] | None = None):
        self.study = study
        self.ledger = ledger
        self.images = images
        # per-slot image bytes (hitkit.survey.served_images), keyed by a secret of this process
        self.slots = SlotImages(images, secrets.token_bytes(32))
        # an S3 store: slots are uploaded once and the browser redirected (slot_store.py)
        where = study.config.study
        self.uploads = slot_uploads(where.store, where.store_urls, where.store_url_hours,
                                    secrets.token_bytes(32))
        # platform -> where a finished participant is sent back to (None: show the code only)
        self.completion_urls = dict(completion_urls or {})
        # platform -> what admits its arrivals (no entry: every arrival from it is refused)
        self.admit = dict(admit or {})
        self._trials: dict[str, list[Trial]] = {}
        # image lookups by position, cached: an assignment's HIT and a HIT's trials never change
        self._hit_of: dict[str, str] = {}
        self._shown: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {}
        self._groups: dict[str, tuple[str, ...]] = {}  # HIT -> every image it shows
        self._lock = threading.Lock()

    @property
    def hold_minutes(self) -> float:
        # an abandoned assignment frees its place after three times the time estimate
        return max(30.0, 3 * self.study.config.survey.time_estimate_minutes)

    def completion(self, assignment: Assignment, code: str) -> dict[str, Any]:
        """The completion code, and the platform's return URL when it has one."""
        body: dict[str, Any] = {"completion_code": code}
        make_url = self.completion_urls.get(assignment.platform)
        url = make_url(assignment) if make_url else None
        if url:
            body["completion_url"] = url
        return body

    def pin_hit(self, arrival: Arrival) -> Arrival:
        """A Prolific or MTurk arrival with the open batch that admits it (and the hitkit HIT
        behind an MTurk hitId) filled in by the platform's callback. A study, batch or HIT
        that was not published there leaves it without a batch: start_assignment refuses it."""
        admit = self.admit.get(arrival.platform)
        admitted = admit(arrival) if admit else None
        return admitted if admitted is not None else replace(arrival, batch_id=None, hit_id=None)

    def trials(self, hit_id: str) -> list[Trial]:
        with self._lock:
            cached = self._trials.get(hit_id)
        if cached is None:
            cached = hit_trials(self.ledger, hit_id)
            with self._lock:
                self._trials[hit_id] = cached
        return cached

    # ------------------------------------------------------------- pages

    async def page(self, request: Request) -> Response:
        survey = self.study.config.survey
        params = request.query_params
        preview = (
            params.get("preview") == "1"
            or params.get("assignmentId") == MTURK_PREVIEW
            or not any(k in params for k in ("token", "PROLIFIC_PID", "workerId"))
        )
        mobile = survey.desktop_only and bool(MOBILE_UA.search(request.headers.get("user-agent", "")))
        html = served_page(survey, preview=preview, mobile=mobile)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    async def preview(self, request: Request) -> Response:
        row = await run_in_threadpool(
            self.ledger.query_one,
            "SELECT hit_id FROM hits WHERE state = 'open' ORDER BY ordinal LIMIT 1")
        if row is None:
            return error("study", "no HITs yet: run `hitkit design`", 404)
        practice = await run_in_threadpool(hit_practice, self.ledger, row["hit_id"])
        return JSONResponse({
            "task": self.study.config.survey.task,
            "query": [f"/img/preview/q{i}" for i in range(len(practice["query"]))],
            "options": [f"/img/preview/o{i}" for i in range(len(practice["options"]))],
        })

    # --------------------------------------------------------------- API

    async def start(self, request: Request) -> Response:
        try:
            data = decode_body(await read_body(request, 8 * 1024))
        except SubmissionError as exc:
            return error(exc.field, exc.message, exc.status)
        if not isinstance(data, dict):
            return error("body", "must be a JSON object", 400)
        try:
            arrival, minted = arrival_from(data)
        except SubmissionError as exc:
            return error(exc.field, exc.message, exc.status)
        try:
            if arrival.platform != "local":
                arrival = await run_in_threadpool(self.pin_hit, arrival)
            assignment = await run_in_threadpool(
                start_assignment, self.ledger, arrival, self.hold_minutes)
        except AssignmentError as exc:
            return error(exc.field, exc.message, exc.status)
        body: dict[str, Any] = {
            "assignment_id": assignment.assignment_id,
            "state": assignment.state,
            "resumed": assignment.resumed,
        }
        if minted:
            body["participant"] = minted
        if assignment.state != "started":
            body.update(self.completion(assignment, assignment.completion_code))
        return JSONResponse(body, status_code=200 if assignment.resumed else 201)

    async def fetch(self, request: Request) -> Response:
        assignment_id = request.path_params["assignment_id"]
        assignment = await run_in_threadpool(get_assignment, self.ledger, assignment_id)
        if assignment is None:
            return error("assignment", "no such assignment", 404)
        trials = await run_in_threadpool(self.trials, assignment.hit_id)
        practice = await run_in_threadpool(hit_practice, self.ledger, assignment.hit_id)
        survey = self.study.config.survey
        base = f"/img/{assignment_id}"
        body: dict[str, Any] = {
            "assignment_id": assignment_id,
            "state": assignment.state,
            "task": survey.task,
            "trials": [
                {
                    "trial_id": t.trial_id,
                    "query": [f"{base}/{t.trial_id}/q{i}" for i in range(len(t.query))],
                    "options": [f"{base}/{t.trial_id}/o{i}" for i in range(len(t.options))],
                }
                for t in trials
            ],
        }
        if survey.practice and practice:
            # the practice trial is not data: its answer is sent so the page can give feedback
            body["practice"] = {
                "query": [f"{base}/practice/q{i}" for i in range(len(practice["query"]))],
                "options": [f"{base}/practice/o{i}" for i in range(len(practice["options"]))],
                "answer": practice["answer"],
            }
        if assignment.state != "started":
            body.update(self.completion(assignment, assignment.completion_code))
        return JSONResponse(body, headers={"Cache-Control": "no-store"})

    async def submit(self, request: Request) -> Response:
        assignment_id = request.path_params["assignment_id"]
        assignment = await run_in_threadpool(get_assignment, self.ledger, assignment_id)
        if assignment is None:
            return error("assignment", "no such assignment", 404)
        try:
            body = await read_body(request, MAX_BODY_BYTES)
            trials = await run_in_threadpool(self.trials, assignment.hit_id)
            submission = parse_submission(decode_body(body), trials)
        except SubmissionError as exc:
            await run_in_threadpool(
                self.ledger.event, "submit_rejected", assignment_id,
                field=exc.field, message=exc.message, status=exc.status)
            return error(exc.field, exc.message, exc.status)
        try:
            receipt = await run_in_threadpool(submit, self.ledger, assignment_id, submission)
        except AssignmentError as exc:
            body = {"error": {"field": exc.field, "message": exc.message}}
            if exc.status == 409:
                body.update(self.completion(assignment, assignment.completion_code))
            return JSONResponse(body, status_code=exc.status)
        return JSONResponse({
            "assignment_id": assignment_id,
            **self.completion(assignment, receipt.completion_code),
            "stored": receipt.stored,
            "duplicate": receipt.duplicate,
        })

    # ------------------------------------------------------------ images

    async def image(self, request: Request) -> Response:
        """An image by slot: bytes encoded for this slot alone, all of one size in a HIT
        (hitkit.survey.served_images), so neither size nor hash tells which image it is."""
        owner = request.path_params["owner"]
        trial_id = request.path_params["trial"]
        slot = SLOT.match(request.path_params["slot"])
        if slot is None:
            return error("slot", "must be q<N> or o<N>", 404)
        shown = self._shown.get((owner, trial_id))
        if shown is None:
            shown = await run_in_threadpool(self._images_shown, owner, trial_id)
        images = shown.get("query" if slot.group(1) == "q" else "options", ()) if shown else ()
        index = int(slot.group(2))
        if index >= len(images):
            return error("image", "no such image", 404)
        image_id = images[index]
        where = f"{shown['hit'][0]}/{trial_id}/{slot.group(1)}{index}"
        try:
            if self.uploads is not None and is_s3_url(self.images.uris.get(image_id, "")):
                url = await run_in_threadpool(
                    self.uploads.url, f"{where}\0{image_id}",
                    lambda: self.slots.slot_bytes(image_id, shown["group"], where))
                return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})
            data = self.slots.cached_slot(image_id, where) or await run_in_threadpool(
                self.slots.slot_bytes, image_id, shown["group"], where)
        except ImageError:
            return error("image", "image file missing on the server", 404)
        # no-store: the HIT's stimuli stay in no browser or proxy cache after the session (the
        # page keeps each image it loaded, so this costs no second download)
        return Response(data, media_type=MEDIA_TYPE, headers={"Cache-Control": "no-store"})

    def _hit_images(self, hit_id: str) -> tuple[str, ...]:
        """Every image a HIT shows (its trials and practice trial): the group whose images
        are served alike."""
        with self._lock:
            known = self._groups.get(hit_id)
        if known is not None:
            return known
        ids = {i for t in self.trials(hit_id) for i in (*t.query, *t.options)}
        practice = hit_practice(self.ledger, hit_id)
        if practice:
            ids |= set(practice["query"]) | set(practice["options"])
        group = tuple(sorted(ids))
        with self._lock:
            self._groups[hit_id] = group
        return group

    def _images_shown(self, owner: str, trial_id: str) -> dict[str, tuple[str, ...]] | None:
        """The image IDs a trial (or the practice/preview trial) shows, by role and position,
        with the HIT (`hit`, for the slot's key) and its images (`group`)."""
        if owner == "preview":
            row = self.ledger.query_one(
                "SELECT hit_id FROM hits WHERE state = 'open' ORDER BY ordinal LIMIT 1")
            practice = hit_practice(self.ledger, row["hit_id"]) if row else None
            if not practice:
                return None
            # the preview follows the open design: not cached
            query, options = tuple(practice["query"]), tuple(practice["options"])
            return {"query": query, "options": options, "hit": (f"preview-{row['hit_id']}",),
                    "group": tuple(sorted({*query, *options}))}
        hit_id = self._hit_of.get(owner)
        if hit_id is None:
            assignment = get_assignment(self.ledger, owner)
            if assignment is None:
                return None
            hit_id = self._hit_of.setdefault(owner, assignment.hit_id)
        if trial_id == "practice":
            practice = hit_practice(self.ledger, hit_id)
            shown = {"query": tuple(practice["query"]), "options": tuple(practice["options"])}
        else:
            found = [t for t in self.trials(hit_id) if t.trial_id == trial_id]
            if not found:
                return None
            shown = {"query": found[0].query, "options": found[0].options}
        shown |= {"hit": (hit_id,), "group": self._hit_images(hit_id)}
        with self._lock:
            if len(self._shown) < 200_000:
                self._shown[(owner, trial_id)] = shown
        return shown

async def read_body(request: Request, limit: int) -> bytes:
    """The request body: JSON by its Content-Type, at most `limit` bytes, within
    BODY_TIMEOUT_S seconds (a body sent a byte at a time holds a connection for nothing)."""
    # a cross-site form or a "simple" fetch can only send text/plain, form or multipart
    # bodies without a preflight: requiring application/json keeps other sites out
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise SubmissionError("body", "send the body as JSON with Content-Type: application/json",
                              status=415)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise SubmissionError("body", f"the declared length exceeds the limit of {limit} bytes",
                              status=413)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise SubmissionError("body", f"more than {limit} bytes (the limit)", status=413)
                chunks.append(chunk)
    except TimeoutError:
        raise SubmissionError("body", f"not received within {BODY_TIMEOUT_S:.0f} s", status=408) from None
    return b"".join(chunks)


def _platform_id(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not PLATFORM_ID.match(value):
        # the value itself is never echoed: it may be a personal identifier
        raise SubmissionError(name, "must be 1-128 letters, digits, '-' or '_'", status=400)
    return value


def arrival_from(data: dict[str, Any]) -> tuple[Arrival, str | None]:
    """How the participant is identified: a local token, Prolific or MTurk parameters."""
    if "PROLIFIC_PID" in data:
        pid = _platform_id(data, "PROLIFIC_PID")
        study = _platform_id(data, "STUDY_ID")
        session = _platform_id(data, "SESSION_ID")
        return Arrival("prolific", f"prolific:{pid}", platform_assignment_id=study,
                       platform_session_id=session), None
    if "workerId" in data:
        worker = _platform_id(data, "workerId")
        assignment = _platform_id(data, "assignmentId")
        hit = _platform_id(data, "hitId")
        if assignment == MTURK_PREVIEW:
            raise SubmissionError("assignmentId", "preview: accept the HIT first", status=403)
        return Arrival("mturk", f"mturk:{worker}", platform_assignment_id=assignment,
                       platform_hit_id=hit), None
    if "token" in data:
        token = _platform_id(data, "token")
        minted = None
        if "participant" in data:
            participant = _platform_id(data, "participant")
        else:
            participant = minted = secrets.token_hex(8)
        return Arrival("local", f"local:{token}", link_token=token,
                       link_participant=participant), minted
    raise SubmissionError(
        "body", "give token (local), PROLIFIC_PID/STUDY_ID/SESSION_ID (Prolific) or "
        "workerId/assignmentId/hitId (MTurk)", status=400)


def create_app(study: Study, ledger: Ledger | None = None,
               completion_urls: dict[str, CompletionUrl] | None = None,
               admit: dict[str, Admit] | None = None,
               rate_limits: RateLimits | None = None) -> Starlette:
    """The app. The platforms' parts come in as callbacks (hitkit.platforms.app_callbacks):
    `completion_urls` maps a platform to its return URL for a finished assignment, and
    `admit` maps a platform to what admits its arrivals (the open batch, and the hitkit HIT
    behind an MTurk hitId): without it, every arrival from that platform is refused.
    `rate_limits` default to RateLimits(), which exempts loopback clients (an in-process
    server for simulated participants or tests); `hitkit serve` limits every client."""
    ledger = ledger or Ledger.for_study(study.root)
    guard = Guard(rate_limits)  # rate limits on starts and rejected submissions (guard.py)
    app_state = SurveyApp(study, ledger, load_images(study.root), completion_urls, admit)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return error("path" if exc.status_code == 404 else "request", str(exc.detail), exc.status_code)

    async def server_error(request: Request, exc: Exception) -> Response:
        return error("server", "internal error; the request was not stored", 500)

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    routes = [
        Route("/", app_state.page),
        Route("/healthz", health),
        Route("/api/preview", app_state.preview),
        Route("/api/assignments", app_state.start, methods=["POST"]),
        Route("/api/assignments/{assignment_id}", app_state.fetch),
        Route("/api/assignments/{assignment_id}/submit", app_state.submit, methods=["POST"]),
        Route("/img/{owner}/{trial}/{slot}", app_state.image),
        Route("/img/{owner}/{slot}", _preview_image(app_state)),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error,
                                                       Exception: server_error},
                    middleware=[Middleware(SecurityHeaders,
                                           frame_ancestors=frame_ancestors(study),
                                           img_src=" ".join(
                                               ("'self'", app_state.uploads.origin())
                                               if app_state.uploads else ("'self'",))),
                                Middleware(RateLimit, guard=guard)])
    app.state.survey = app_state
    app.state.guard = guard  # its limits can be set before the first request
    return app


# where MTurk shows an ExternalQuestion: the worker sites frame the page
MTURK_FRAMERS = ("https://worker.mturk.com", "https://www.mturk.com",
                 "https://workersandbox.mturk.com")


def frame_ancestors(study: Study) -> str:
    """Who may frame the page: this site, and MTurk's worker sites only when the study runs
    on MTurk with an ExternalQuestion (an HTMLQuestion is MTurk's own page, and Prolific
    and local links open the page in its own window)."""
    platform = study.config.platform
    if platform.kind == "mturk" and platform.mturk.question == "external":
        return " ".join(("'self'", *MTURK_FRAMERS))
    return "'self'"


class SecurityHeaders:
    """No inline script, no third-party content, no referrer (URLs carry participant IDs).

    form-action allows https: for MTurk's external-submit form; frame-ancestors allows
    only the sites that must frame the page (see frame_ancestors).
    """

    def __init__(self, app, frame_ancestors: str = "'self'", img_src: str = "'self'"):
        self.app = app
        self.HEADERS = [
            (b"content-security-policy",
             b"default-src 'self'; img-src " + img_src.encode("ascii")
             + b"; object-src 'none'; base-uri 'none'; "
             b"form-action 'self' https:; frame-ancestors " + frame_ancestors.encode("ascii")),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
        ]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + self.HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _preview_image(app_state: SurveyApp):
    async def handler(request: Request) -> Response:
        if request.path_params["owner"] != "preview":
            return error("image", "no such image", 404)
        request.path_params["trial"] = "practice"
        return await app_state.image(request)
    return handler

