"""MTurk through boto3 (`mturk`, us-east-1): HIT types, HITs, collect, review, bonuses, expire.

Amazon closed Mechanical Turk on 2026-09-30. This backend stays for
MTurk-compatible endpoints (`endpoint_url`) and for studies that must be
re-run the way MTurk users expect; pointing it at a real Amazon endpoint
prints the closure notice. Sandbox is the default; production needs
`production=True`, a confirmation (or `yes=True`) and [platform].budget_cap.
The boto3 client, its credentials, retries and errors are in
hitkit.platforms.mturk.api.

Exactly once: each HIT is created with CreateHITWithHITType and a
UniqueRequestToken derived from (study, batch, HIT) and journaled before the
call; `HitAlreadyExists` gives the existing HIT back, and after an unknown
outcome ListHITs is searched for the batch tag in RequesterAnnotation first
(tokens only protect for 24 h). Approve/reject look at the assignment's
state first; bonuses carry a UniqueRequestToken and are reconciled with
ListBonusPayments. Every collected assignment's raw answer is archived in
the ledger (MTurk deletes HITs after 120 days), without the WorkerId, which
lives in `assignments.participant_key` only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hitkit.platforms import records
from hitkit.platforms.base import (
    ActionSummary,
    BatchStatus,
    Bonus,
    Checkpoint,
    CollectResult,
    OutcomeUnknown,
    PlatformError,
    PublishResult,
    Unresolved,
    no_checkpoint,
)
from hitkit.platforms.mturk.answers import parse_answers, submission_body
from hitkit.platforms.mturk.api import (
    PRODUCTION_URL,
    SANDBOX_URL,
    MTurkAPI,
    MTurkRefused,
    connect,
    is_amazon,
)
from hitkit.platforms.mturk.question import (
    MAX_QUESTION_BYTES,
    REMEDY,
    QuestionTooLarge,
    external_question,
    hosted_page,
    html_question,
    inline_page,
    slot_plan,
)
from hitkit.platforms.once import once
from hitkit.study.config import Study
from hitkit.study.fees import mturk_cost, to_major_units, to_minor_units
from hitkit.survey.assignments import Arrival
from hitkit.survey.hits import active_design_id, hit_trials
from hitkit.survey.ledger import Action, Ledger
from hitkit.survey.submission import SubmissionError, parse_submission

CLOSURE_NOTICE = ("Amazon closed Mechanical Turk on 2026-09-30 (see the notice on the MTurk API "
                  "reference); its endpoints are not expected to answer. Use Prolific for new data, "
                  "or endpoint_url for an MTurk-compatible service.")
REWARD = re.compile(r"^[0-9]+(\.)?[0-9]{0,2}$")
QUAL_APPROVAL_RATE = "000000000000000000L0"
QUAL_NUMBER_APPROVED = "00000000000000000040"
QUAL_LOCALE = "00000000000000000071"
MASTERS = {"production": "2F1QJWKUDD8XADTFD2Q0G6UTO95ALH", "sandbox": "2ARFPLSP75KLA8M8DH1HTEQVJT3SY6"}
STATUSES = ["Submitted", "Approved", "Rejected"]
# botocore's model: SendBonus raises ServiceFault or RequestError, and a repeated
# UniqueRequestToken "will return an error with a message containing the request ID" (no
# TurkErrorCode is documented for it). The code, never the message, is what hitkit reads.
DUPLICATE_TOKEN_CODE = "RequestError"
# MTurk forgets a UniqueRequestToken after 24 h; an hour's margin for clock differences
TOKEN_SAFE = timedelta(hours=23)


def bonus_reason(reason: str, token: str) -> str:
    """The Reason sent with a bonus: the operator's text and a reference derived from the
    UniqueRequestToken, so ListBonusPayments can tell this payment from any other."""
    return f"{reason} (ref {token[:10]})"


def settle_command(study: Study, payment_id: str) -> str:
    return (f"check the bonus on the MTurk requester site, then run `hitkit pay --study "
            f"{study.root} --settle {payment_id}=paid` (or `=unpaid` to let hitkit send it)")


def reward_string(amount_minor: int) -> str:
    """MTurk's Reward/BonusAmount: USD with two decimals ("0.50"), from cents."""
    text = str(to_major_units(amount_minor))
    if not REWARD.match(text) or amount_minor <= 0:
        raise PlatformError(f"reward {text} USD: must be a positive amount with two decimals")
    return text


class MTurkPlatform:
    kind = "mturk"

    def __init__(self, study: Study, ledger: Ledger, client: Any, *, environment: str,
                 endpoint: str, checkpoint: Checkpoint = no_checkpoint,
                 image_url: Callable[[str], str] | None = None, attempts: int = 4):
        self.study, self.ledger, self.api = study, ledger, MTurkAPI(client)
        self.environment, self.endpoint = environment, endpoint
        self.checkpoint = checkpoint
        self.image_url = image_url
        self.attempts = attempts
        self.settings = study.config.platform.mturk
        self.notes = [CLOSURE_NOTICE] if is_amazon(endpoint) else []
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)  # tests move it

    @classmethod
    def open(cls, study: Study, ledger: Ledger, *, production: bool = False, yes: bool = False,
             confirm: Callable[[str], bool] | None = None, endpoint_url: str | None = None,
             client: Any = None, read_timeout: float = 30.0, attempts: int = 4,
             checkpoint: Checkpoint = no_checkpoint,
             image_url: Callable[[str], str] | None = None, image_base_url: str | None = None,
             **_: Any) -> MTurkPlatform:
        settings = study.config.platform.mturk
        if image_base_url and image_url is None:
            if not image_base_url.startswith("https://"):
                raise PlatformError(f"image_base_url {image_base_url!r}: must be https://")
            image_url = base_url_images(study, image_base_url)
        if settings.production and not production:
            raise PlatformError("[platform.mturk] production = true: also pass --production "
                                "(spending real money is never implied by a file)")
        endpoint = endpoint_url or settings.endpoint_url or (PRODUCTION_URL if production else SANDBOX_URL)
        environment = "production" if production else "sandbox"
        if production:
            if study.config.platform.budget_cap is None:
                raise PlatformError("--production needs [platform].budget_cap in study.toml")
            if not yes:
                question = (f"Publish to MTurk PRODUCTION at {endpoint} and spend real money "
                            f"(budget cap ${study.config.platform.budget_cap:.2f})?")
                if confirm is None or not confirm(question):
                    raise PlatformError("not confirmed: pass --yes to publish to production")
        if client is None:
            client = connect(endpoint, read_timeout, attempts)
        return cls(study, ledger, client, environment=environment, endpoint=endpoint,
                   checkpoint=checkpoint, image_url=image_url, attempts=attempts)

    # ------------------------------------------------------------ plumbing

    def _once(self, key, kind, subject, request, send, reconcile=None):
        return once(self.ledger, key, "mturk", kind, subject, request, send, reconcile=reconcile,
                    checkpoint=self.checkpoint, attempts=self.attempts)

    def _batch(self) -> Any:
        batch = records.open_batch(self.ledger, "mturk")
        if batch is None:
            raise PlatformError("no open MTurk batch: run `hitkit publish --platform mturk`")
        return batch

    def annotation(self, batch_id: str, hit_id: str) -> str:
        return f"hitkit;study={self.study.config.study.id};batch={batch_id};hit={hit_id}"[:255]

    def token(self, batch_id: str, hit_id: str) -> str:
        return records.digest(self.study.config.study.id, batch_id, hit_id, length=64)

    # ------------------------------------------------------------ publish

    def estimate(self):
        hits = self.ledger.query("SELECT max_assignments FROM hits WHERE design_id = ? AND state = 'open'",
                                 (active_design_id(self.ledger),))
        per_hit = max((h["max_assignments"] for h in hits), default=1)
        return mturk_cost(self.study.config.survey.reward, per_hit, len(hits), self.settings.masters)

    def publish(self, *, new: bool = False) -> PublishResult:
        survey = self.study.config.survey
        reward = reward_string(to_minor_units(survey.reward))
        estimate = self.estimate()
        total = to_major_units(estimate.total_minor)
        cap = self.study.config.platform.budget_cap
        if cap is not None and estimate.total_minor > to_minor_units(cap):
            raise PlatformError(f"estimated cost ${total} exceeds [platform].budget_cap "
                                f"${cap:.2f} ({estimate.rate_note})")
        batch = None if new else records.open_batch(self.ledger, "mturk")
        created = batch is None
        questions = self.check_questions()  # the 65,535-byte limit, before anything is sent
        if created:
            balance = self.api.call("GetAccountBalance")["AvailableBalance"]
            if to_minor_units(balance) < estimate.total_minor:
                raise PlatformError(f"MTurk balance ${balance} is below the estimated cost "
                                    f"${total} ({estimate.rate_note})")
            batch = records.create_batch(self.ledger, "mturk", estimate.assignments,
                                         {"environment": self.environment,
                                          "endpoint": self.endpoint})
        batch_id = batch["batch_id"]
        qual_id = self._participated_type() if self.settings.qualifications.exclude_past_participants else None
        type_params = {
            "Title": survey.title[:128],
            "Description": (survey.instructions or survey.title)[:1999],
            "Keywords": self.settings.keywords[:999],
            "Reward": reward,
            "AssignmentDurationInSeconds": self.settings.assignment_duration_minutes * 60,
            "AutoApprovalDelayInSeconds": int(self.settings.auto_approval_days * 86400),
            "QualificationRequirements": self._requirements(qual_id),
        }
        # CreateHITType is idempotent: the same properties give the same HITTypeId
        hit_type = self._once(f"mturk:hit-type:{batch_id}", "create_hit_type", batch_id,
                              {k: v for k, v in type_params.items() if k != "Description"},
                              lambda a: {"HITTypeId": self.api.call("CreateHITType", **type_params)["HITTypeId"]},
                              lambda a: None)["HITTypeId"]
        records.set_external_id(self.ledger, batch_id, hit_type)
        lifetime = int(self.settings.lifetime_days * 86400)
        urls = []
        for hit in self.ledger.query("SELECT hit_id, max_assignments FROM hits WHERE design_id = ?"
                                     " AND state = 'open' ORDER BY ordinal", (batch["design_id"],)):
            mturk_hit = self._create_hit(batch_id, hit_type, hit["hit_id"], hit["max_assignments"],
                                         lifetime, questions.get(hit["hit_id"]))
            urls.append(self._worker_url(hit_type, mturk_hit))
        self.ledger.event("batch_published", batch_id, platform="mturk", environment=self.environment)
        return PublishResult("mturk", batch_id, hit_type, estimate.assignments, created, urls[:1],
                             self.notes + [f"{self.environment}: {len(urls)} HITs, estimated cost "
                                           f"${total} ({estimate.rate_note})"])

    def _worker_url(self, hit_type: str, hit_id: str) -> str:
        host = "worker.mturk.com" if self.environment == "production" else "workersandbox.mturk.com"
        return f"https://{host}/projects/{hit_type}/tasks"

    def _requirements(self, qual_id: str | None) -> list[dict]:
        q = self.settings.qualifications
        out = []
        if q.min_approval_rate is not None:
            out.append({"QualificationTypeId": QUAL_APPROVAL_RATE, "Comparator": "GreaterThanOrEqualTo",
                        "IntegerValues": [q.min_approval_rate], "ActionsGuarded": "DiscoverPreviewAndAccept"})
        if q.min_approved is not None:
            out.append({"QualificationTypeId": QUAL_NUMBER_APPROVED, "Comparator": "GreaterThanOrEqualTo",
                        "IntegerValues": [q.min_approved], "ActionsGuarded": "DiscoverPreviewAndAccept"})
        if q.locales:
            out.append({"QualificationTypeId": QUAL_LOCALE, "Comparator": "In",
                        "LocaleValues": [{"Country": c} for c in q.locales],
                        "ActionsGuarded": "DiscoverPreviewAndAccept"})
        if self.settings.masters:
            out.append({"QualificationTypeId": MASTERS[self.environment], "Comparator": "Exists",
                        "ActionsGuarded": "DiscoverPreviewAndAccept"})
        if qual_id:
            out.append({"QualificationTypeId": qual_id, "Comparator": "DoesNotExist",
                        "ActionsGuarded": "DiscoverPreviewAndAccept"})
        if len(out) > 10:
            raise PlatformError("MTurk allows at most 10 qualification requirements")
        return out

    def _participated_type(self) -> str:
        """The study's "already participated" qualification type (granted silently on collect).

        Names are unique per requester and MTurk cannot look one up by name through this
        API subset, so a create whose outcome was lost is retried under the next name:
        the orphan type costs nothing and is never used.
        """
        base = f"hitkit {self.study.config.study.id} participated"
        for n in range(10):
            key = f"mturk:qualification-type:{self.study.config.study.id}:{n}"
            row = self.ledger.query_one("SELECT state, response FROM actions WHERE idempotency_key = ?", (key,))
            if row is not None and row["state"] in ("failed", "sent"):
                continue  # refused, or its outcome unknown: that name may be taken
            name = base if n == 0 else f"{base} ({n + 1})"
            params = {"Name": name, "QualificationTypeStatus": "Active",
                      "Description": "Took part in this study before (hitkit sets it; repeat "
                                     "participation is excluded)."}
            try:
                reply = once(self.ledger, key, "mturk", "create_qualification_type", None, {"name": name},
                             lambda a, p=params: {"id": self.api.call("CreateQualificationType", **p)
                                                  ["QualificationType"]["QualificationTypeId"]},
                             checkpoint=self.checkpoint, attempts=1)
            except PlatformError:
                continue
            return reply["id"]
        raise PlatformError("could not create the 'participated' qualification type")

    def _question(self, hit_id: str) -> str:
        if self.settings.question == "external":
            return external_question(self.settings.external_url)
        from hitkit.study.images import load_images
        from hitkit.survey.hits import hit_practice

        trials, practice = hit_trials(self.ledger, hit_id), hit_practice(self.ledger, hit_id)
        if self.image_url is None:  # inlined: one data URI per slot (question.inline_page)
            images = load_images(self.study.root)
            return html_question(inline_page(self.study.config.survey, trials, practice, images))
        # hosted: one URL per slot (export_images wrote the files)
        plan = slot_plan(trials, practice, f"{hit_id}/")
        return html_question(hosted_page(self.study.config.survey, plan, self.image_url))

    def check_questions(self) -> dict[str, str]:
        """Every open HIT's Question, built and size-checked before anything is sent."""
        out = {}
        for row in self.ledger.query("SELECT hit_id FROM hits WHERE design_id = ? AND"
                                     " state = 'open' ORDER BY ordinal",
                                     (active_design_id(self.ledger),)):
            try:
                out[row["hit_id"]] = self._question(row["hit_id"])
            except QuestionTooLarge as exc:
                trials = hit_trials(self.ledger, row["hit_id"])
                slots = sum(len(t.query) + len(t.options) for t in trials)
                how = ("its images are inlined as data URIs, one per slot" if self.image_url is None
                       else "even with hosted images")
                raise PlatformError(
                    f"HIT {row['hit_id']} does not fit MTurk: its Question is {exc.size:,} bytes "
                    f"and MTurk allows {MAX_QUESTION_BYTES:,} ({len(trials)} trials, {slots} "
                    f"image slots; {how}). Nothing was sent. {REMEDY}") from None
        return out

    def _create_hit(self, batch_id: str, hit_type: str, hit_id: str, places: int,
                    lifetime: int, question: str | None = None) -> str:
        key = f"mturk:create-hit:{batch_id}:{hit_id}"
        done = self.ledger.query_one("SELECT state, response FROM actions WHERE idempotency_key = ?", (key,))
        if done is not None and done["state"] == "done":
            return self.ledger.journal(key, "mturk", "create_hit", hit_id).response["HITId"]
        annotation = self.annotation(batch_id, hit_id)
        token = self.token(batch_id, hit_id)
        params = {"HITTypeId": hit_type, "MaxAssignments": places, "LifetimeInSeconds": lifetime,
                  "Question": question or self._question(hit_id), "RequesterAnnotation": annotation,
                  "UniqueRequestToken": token}

        def send(action: Action) -> dict:
            try:
                return {"HITId": self.api.call("CreateHITWithHITType", **params)["HIT"]["HITId"]}
            except MTurkRefused as exc:
                if exc.turk_code == "AWS.MechanicalTurk.HitAlreadyExists":
                    found = re.search(r"\b([A-Z0-9]{20,64})\b", exc.message)
                    if found:
                        return {"HITId": found.group(1), "recovered": "HitAlreadyExists"}
                    return self._find_hit(annotation) or _raise(exc)
                raise

        reply = self._once(key, "create_hit", hit_id,
                           {"annotation": annotation, "token": token, "places": places},
                           send, lambda a: self._find_hit(annotation))
        return reply["HITId"]

    def _find_hit(self, annotation: str) -> dict | None:
        for hit in self._list_hits():
            if hit.get("RequesterAnnotation") == annotation:
                return {"HITId": hit["HITId"], "recovered": "ListHITs"}
        return None

    def _list_hits(self) -> list[dict]:
        return self.api.pages("ListHITs", "HITs")

    def batch_hits(self, batch_id: str) -> dict[str, str]:
        """MTurk HITId -> hitkit hit_id for the batch: the journal, plus orphans found by tag."""
        out = {}
        for row in self.ledger.query("SELECT subject, response FROM actions WHERE kind = 'create_hit'"
                                     " AND platform = 'mturk' AND state = 'done'"
                                     " AND idempotency_key LIKE ?", (f"mturk:create-hit:{batch_id}:%",)):
            import json

            out[json.loads(row["response"])["HITId"]] = row["subject"]
        prefix = f"hitkit;study={self.study.config.study.id};batch={batch_id};hit="
        for hit in self._list_hits():
            tag = hit.get("RequesterAnnotation") or ""
            if tag.startswith(prefix) and hit["HITId"] not in out:
                out[hit["HITId"]] = tag[len(prefix):]
        return out

    # ------------------------------------------------------------- status

    def status(self) -> BatchStatus:
        batch = self._batch()
        counts: dict[str, int] = {}
        states = set()
        for mturk_hit in self.batch_hits(batch["batch_id"]):
            hit = self.api.call("GetHIT", HITId=mturk_hit)["HIT"]
            states.add(hit["HITStatus"])
            for name, field in (("pending", "NumberOfAssignmentsPending"),
                                ("available", "NumberOfAssignmentsAvailable"),
                                ("completed", "NumberOfAssignmentsCompleted")):
                counts[name] = counts.get(name, 0) + int(hit.get(field) or 0)
        return BatchStatus("mturk", batch["batch_id"], batch["external_id"],
                           ",".join(sorted(states)) or "none", batch["places"], counts)

    # ------------------------------------------------------------ collect

    def _assignments(self, mturk_hit: str) -> list[dict]:
        # Approved too: auto-approval turns Submitted into Approved without telling anyone
        return self.api.pages("ListAssignmentsForHIT", "Assignments", HITId=mturk_hit,
                          AssignmentStatuses=STATUSES)

    def collect(self) -> CollectResult:
        batch = self._batch()
        reward_minor = to_minor_units(self.study.config.survey.reward)
        qual_id = None
        if self.settings.qualifications.exclude_past_participants:
            qual_id = self._participated_type()
        new, awaiting, approved, rejected, problems = 0, [], 0, 0, []
        for mturk_hit, hit_id in sorted(self.batch_hits(batch["batch_id"]).items()):
            trials = hit_trials(self.ledger, hit_id)
            for a in self._assignments(mturk_hit):
                worker = a["WorkerId"]
                raw = {k: (v.isoformat() if isinstance(v, datetime) else v)
                       for k, v in a.items() if k != "WorkerId"}
                records.archive_raw(self.ledger, "mturk", a["AssignmentId"], raw)
                aid = self._submitted_in_app(a["AssignmentId"], worker, hit_id, problems)
                if aid is None:
                    try:
                        submission = parse_submission(
                            submission_body(parse_answers(a.get("Answer"))), trials)
                    except (PlatformError, SubmissionError) as exc:
                        problems.append(f"MTurk assignment {a['AssignmentId']}: {exc} "
                                        "(raw answer archived in the ledger)")
                        continue
                    submitted = a.get("SubmitTime")
                    aid, created = records.store_submission(
                        self.ledger, hit_id=hit_id, batch_id=batch["batch_id"], platform="mturk",
                        participant_key=f"mturk:{worker}", platform_assignment_id=a["AssignmentId"],
                        submission=submission,
                        submitted_at=submitted.isoformat() if isinstance(submitted, datetime) else None)
                    new += created
                if qual_id:
                    self._once(f"mturk:qualify:{a['AssignmentId']}", "qualify_worker", aid,
                               {"qualification": qual_id},
                               lambda act, w=worker: self.api.call(
                                   "AssociateQualificationWithWorker", scrub=(w,),
                                   QualificationTypeId=qual_id, WorkerId=w, IntegerValue=1,
                                   SendNotification=False) and {})
                status = a["AssignmentStatus"]
                if status == "Approved":
                    records.record_review(self.ledger, aid, "approved", reward_minor, "USD", None)
                    approved += 1
                elif status == "Rejected":
                    records.record_review(self.ledger, aid, "rejected", None, "USD", None)
                    rejected += 1
                else:
                    awaiting.append(aid)
        self.ledger.event("collected", batch["batch_id"], platform="mturk", new=new,
                          awaiting_review=len(awaiting), problems=len(problems))
        return CollectResult("mturk", new, awaiting, approved, rejected, 0, problems)

    def _submitted_in_app(self, mturk_assignment: str, worker: str, hit_id: str,
                          problems: list[str]) -> str | None:
        """The hitkit assignment an ExternalQuestion participant submitted through the survey
        app (its answer on MTurk carries only the completion code), or None. MTurk listing
        the same assignment for the same worker and HIT confirms it."""
        # the worker's own row first: anyone may have arrived with this assignmentId
        row = self.ledger.query_one(
            "SELECT assignment_id, participant_key, hit_id, confirmation FROM assignments"
            " WHERE platform = 'mturk' AND platform_assignment_id = ? AND state != 'started'"
            " ORDER BY participant_key = ? DESC LIMIT 1", (mturk_assignment, f"mturk:{worker}"))
        if row is None:
            return None
        if row["participant_key"] != f"mturk:{worker}" or row["hit_id"] != hit_id:
            problems.append(f"assignment {row['assignment_id']}: MTurk lists its assignmentId "
                            "for another worker or HIT: not confirmed")
        elif row["confirmation"] != "confirmed":
            records.confirm(self.ledger, row["assignment_id"], "mturk",
                            assignment=mturk_assignment)
        return row["assignment_id"]

    def _platform_ids(self, assignment_ids: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
        found, missing = {}, {}
        for aid in assignment_ids:
            row = self.ledger.query_one("SELECT * FROM assignments WHERE assignment_id = ? AND"
                                        " platform = 'mturk'", (aid,))
            if row is None or not row["platform_assignment_id"]:
                missing[aid] = "not an MTurk assignment in the ledger: run `hitkit collect` first"
            else:
                found[aid] = row
        return found, missing

    # ------------------------------------------------------ approve/reject

    def _review(self, assignment_ids: list[str], target: str, message: str | None) -> ActionSummary:
        found, failed = self._platform_ids(assignment_ids)
        reward_minor = to_minor_units(self.study.config.survey.reward)
        operation = "ApproveAssignment" if target == "Approved" else "RejectAssignment"
        done, already = [], []
        for aid, row in found.items():
            pid = row["platform_assignment_id"]
            key = f"mturk:{target.lower()[:-1]}:{pid}"
            prior = self.ledger.query_one("SELECT state FROM actions WHERE idempotency_key = ?", (key,))

            def current(action: Action | None = None, pid=pid, aid=aid) -> dict | None:
                state = self.api.call("GetAssignment", AssignmentId=pid)["Assignment"]["AssignmentStatus"]
                if state == target:
                    return {"status": state}
                if state != "Submitted":
                    raise PlatformError(f"assignment {aid} is {state} on MTurk; cannot make it {target}")
                return None

            try:
                if prior is None or prior["state"] != "done":
                    # no tokens on approve/reject: look at the state before sending
                    seen = current()
                    if seen is not None:
                        self.ledger.journal(key, "mturk", operation, aid, {"assignment": pid})
                        self.ledger.settle(key, "done", {**seen, "observed": True})
                params = {"AssignmentId": pid}
                if message:
                    params["RequesterFeedback"] = message[:1024]
                self._once(key, operation, aid, {"assignment": pid},
                           lambda a, p=params: self.api.call(operation, **p) and {"status": target},
                           current)
            except PlatformError as exc:
                failed[aid] = str(exc)
                continue
            state = "approved" if target == "Approved" else "rejected"
            records.record_review(self.ledger, aid, state,
                                  reward_minor if state == "approved" else None,
                                  "USD", key, message if state == "rejected" else None)
            (already if prior is not None and prior["state"] == "done" else done).append(aid)
        return ActionSummary(done, already, failed)

    def approve(self, assignment_ids: list[str]) -> ActionSummary:
        return self._review(assignment_ids, "Approved", None)

    def reject(self, assignment_ids: list[str], message: str) -> ActionSummary:
        if not message.strip():
            raise PlatformError("MTurk needs a rejection message ([quality].rejection_message)")
        return self._review(assignment_ids, "Rejected", message)

    # -------------------------------------------------------------- bonus

    def bonus(self, bonuses: list[Bonus]) -> ActionSummary:
        payment_ids = records.plan_bonuses(self.ledger, bonuses, "USD")
        balance = None
        done, already, failed = [], [], {}
        for row in records.payments(self.ledger, payment_ids):
            if row["state"] == "paid":
                already.append(row["payment_id"])
                continue
            found, missing = self._platform_ids([row["assignment_id"]])
            if missing:
                failed[row["payment_id"]] = missing[row["assignment_id"]]
                continue
            a = found[row["assignment_id"]]
            worker = a["participant_key"].split(":", 1)[1]
            pid = a["platform_assignment_id"]
            amount_minor = records.amount_minor(row["amount"])
            amount = reward_string(amount_minor)
            key = f"mturk:bonus:{row['payment_id']}"
            if row["action_key"] is None:
                self.ledger.journal(key, "mturk", "send_bonus", row["assignment_id"],
                                    {"payment": row["payment_id"], "amount": amount})
                records.bind_payments(self.ledger, [row["payment_id"]], key)
            if balance is None:
                balance = to_minor_units(self.api.call("GetAccountBalance")["AvailableBalance"])
            token = records.digest(key, length=64)
            # the token's prefix in the Reason marks this payment in ListBonusPayments
            reason = bonus_reason(row["reason"], token)
            params = {"WorkerId": worker, "AssignmentId": pid, "BonusAmount": amount,
                      "Reason": reason, "UniqueRequestToken": token}
            where = (f"bonus {row['payment_id']} ({amount} USD, assignment {row['assignment_id']}, "
                     f"MTurk assignment {pid})")

            def listed(pid=pid, worker=worker, amount_minor=amount_minor, reason=reason,
                       legacy=row["reason"]) -> dict | None:
                for b in self.api.pages("ListBonusPayments", "BonusPayments", AssignmentId=pid):
                    if (b.get("WorkerId") == worker and b.get("Reason") in (reason, legacy)
                            and to_minor_units(b["BonusAmount"]) == amount_minor):
                        return {"reconciled": "ListBonusPayments"}
                return None

            def paid(action: Action, key=key, listed=listed, where=where,
                     payment_id=row["payment_id"]) -> dict | None:
                found = listed()
                if found is not None:
                    return found
                # the operator looked (hitkit pay --settle =unpaid): earlier sends paid nothing
                verdict = action.response or {}
                first = records.first_sent(self.ledger, key, verdict.get("at")
                                           if verdict.get("operator") == "unpaid" else None)
                if first is None or self.now() - datetime.fromisoformat(first) < TOKEN_SAFE:
                    return None  # never sent, or a repeat is refused by the live token
                raise Unresolved(
                    f"{where}: sent at {first} without a definite answer, not in "
                    f"ListBonusPayments, and its UniqueRequestToken no longer protects a repeat "
                    f"(MTurk keeps tokens 24 h); nothing was sent again",
                    settle_command(self.study, payment_id))

            def send(action: Action, p=params, listed=listed, worker=worker,
                     where=where, payment_id=row["payment_id"]) -> dict:
                try:
                    self.api.call("SendBonus", scrub=(worker,), **p)
                except MTurkRefused as exc:
                    # a refusal of a repeat (the token was sent before) may be the documented
                    # duplicate-token RequestError, whose only promise is a request ID in the
                    # message: never read as "not paid", whatever its wording
                    if exc.code == DUPLICATE_TOKEN_CODE and (action.attempts > 1 or exc.retried):
                        if listed() is not None:
                            return {"reconciled": "ListBonusPayments after a refused repeat"}
                        raise Unresolved(
                            f"{where}: a repeat with the same UniqueRequestToken was refused "
                            f"({exc.turk_code or exc.code}) and ListBonusPayments does not list "
                            "the bonus yet; nothing was sent again",
                            "run `hitkit pay` again later (MTurk's listing catches up), or "
                            + settle_command(self.study, payment_id)) from None
                    raise
                return {"sent": True}

            try:
                self._once(key, "send_bonus", row["assignment_id"],
                           {"payment": row["payment_id"], "amount": amount}, send, paid)
            except OutcomeUnknown as exc:
                records.settle_payments(self.ledger, [row["payment_id"]], "sent")
                failed[row["payment_id"]] = f"unresolved: {exc}"
                continue
            except PlatformError as exc:
                failed[row["payment_id"]] = str(exc)
                continue
            records.settle_payments(self.ledger, [row["payment_id"]], "paid")
            done.append(row["payment_id"])
        return ActionSummary(done, already, failed)

    # ------------------------------------------------------------- expire

    def expire(self, delete: bool = False) -> list[str]:
        """Expire the HITs of every open batch now, of any design (and delete the reviewed
        ones when `delete`), and close the batches: no arrival is admitted afterwards."""
        batches = records.open_batches(self.ledger, "mturk")
        if not batches:
            raise PlatformError("no open MTurk batch: nothing to expire")
        expired = []
        for batch in batches:
            expired += self._expire_batch(batch, delete)
        return expired

    def _expire_batch(self, batch: Any, delete: bool) -> list[str]:
        expired = []
        for mturk_hit in sorted(self.batch_hits(batch["batch_id"])):
            # idempotent: expiring an expired HIT again changes nothing
            self.api.call("UpdateExpirationForHIT", HITId=mturk_hit,
                          ExpireAt=datetime(2015, 1, 1, tzinfo=UTC))
            expired.append(mturk_hit)
            if delete:
                try:
                    self.api.call("DeleteHIT", HITId=mturk_hit)
                except MTurkRefused as exc:
                    if "Disposed" not in exc.message:
                        raise
        self.ledger.event("batch_expired", batch["batch_id"], hits=len(expired), deleted=delete)
        records.close_batch(self.ledger, batch["batch_id"])
        return expired


def admit_arrival(ledger: Ledger, arrival: Arrival) -> Arrival | None:
    """An MTurk ExternalQuestion arrival with the batch and hitkit HIT behind its hitId: a HIT
    that an open batch created (start_assignment then checks that the HIT is still open and
    counts its places). None for any other hitId: invented, or expired with `hitkit expire`."""
    row = ledger.query_one(
        "SELECT b.batch_id, x.subject AS hit_id FROM actions x JOIN batches b"
        " ON x.idempotency_key = 'mturk:create-hit:' || b.batch_id || ':' || x.subject"
        " JOIN hits h ON h.hit_id = x.subject AND h.design_id = b.design_id"
        " WHERE x.platform = 'mturk' AND x.kind = 'create_hit' AND x.state = 'done'"
        " AND json_extract(x.response, '$.HITId') = ? AND b.platform = 'mturk'"
        " AND b.state = 'open'", (arrival.platform_hit_id,))
    if row is None:
        return None
    return replace(arrival, batch_id=row["batch_id"], hit_id=row["hit_id"])


def hitkit_hit_for(ledger: Ledger, mturk_hit_id: str) -> str | None:
    """The hitkit HIT behind an MTurk HITId (for an ExternalQuestion arrival's hitId)."""
    row = ledger.query_one("SELECT subject FROM actions WHERE platform = 'mturk' AND"
                           " kind = 'create_hit' AND state = 'done'"
                           " AND json_extract(response, '$.HITId') = ?", (mturk_hit_id,))
    return row["subject"] if row is not None else None


def slot_file(secret: bytes, slot: str) -> str:
    """A hosted slot's public file name: a keyed hash of the slot (HIT, trial, position),
    so a URL names neither the image nor whether two slots show the same one."""
    from hitkit.survey.pseudonym import pseudonym

    return pseudonym(secret, "slot:" + slot)[:32] + ".png"


def slot_key(secret: bytes) -> bytes:
    """The key of hosted slots' encodings: export and publish draw the same bytes."""
    import hashlib
    import hmac

    return hmac.new(secret, b"hitkit hosted slot bytes", hashlib.sha256).digest()


def hit_slot_plans(ledger: Ledger) -> dict[str, Any]:
    """hitkit HIT -> its SlotPlan, for the open HITs of the active design."""
    from hitkit.platforms.mturk.question import slot_plan
    from hitkit.survey.hits import hit_practice

    return {row["hit_id"]: slot_plan(hit_trials(ledger, row["hit_id"]),
                                     hit_practice(ledger, row["hit_id"]), f"{row['hit_id']}/")
            for row in ledger.query("SELECT hit_id FROM hits WHERE design_id = ? AND"
                                    " state = 'open' ORDER BY ordinal",
                                    (active_design_id(ledger),))}


def export_images(study: Study, ledger: Ledger, destination: str | Path) -> int:
    """Write every slot's image of the open HITs to `destination` (a folder, or an
    s3://bucket/prefix through hitkit.study.s3) under its keyed name, with that slot's own
    encoding (hitkit.survey.served_images): serve them at the https:// address given to
    `hitkit publish --image-base-url`. Returns how many files were written."""
    from hitkit.study import s3
    from hitkit.study.images import load_images
    from hitkit.survey.pseudonym import load_or_create_secret
    from hitkit.survey.served_images import MEDIA_TYPE, SlotImages

    secret = load_or_create_secret(study.secret_path)
    slots = SlotImages(load_images(study.root), slot_key(secret))
    remote = s3.is_url(str(destination))
    client = s3.client() if remote else None
    folder = None if remote else Path(destination)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for plan in hit_slot_plans(ledger).values():
        for slot, image_id in plan.images.items():
            data = slots.slot_bytes(image_id, plan.group, slot)
            name = slot_file(secret, slot)
            if folder is not None:
                (folder / name).write_bytes(data)
            else:
                s3.put(client, f"{str(destination).rstrip('/')}/{name}", data, MEDIA_TYPE, {},
                       cache_control="public, max-age=31536000, immutable")
            written += 1
    return written


def base_url_images(study: Study, base_url: str) -> Callable[[str], str]:
    """slot -> its hosted URL under `base_url` (what export_images wrote there)."""
    from hitkit.survey.pseudonym import load_or_create_secret

    secret = load_or_create_secret(study.secret_path)
    return lambda slot: f"{base_url.rstrip('/')}/{slot_file(secret, slot)}"


def _raise(exc: Exception):
    raise exc
