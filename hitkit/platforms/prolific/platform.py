"""Prolific (api.prolific.com, REST over httpx): the live recruitment backend.

A batch is one Prolific study. Publishing creates a draft study whose URL is
our survey app with Prolific's {{%PROLIFIC_PID%}} / {{%STUDY_ID%}} /
{{%SESSION_ID%}} placeholders, one completion code (manual review; it also
adds the participant to the study's "past participants" group, which every
later batch blocks), places, reward, estimated minutes, desktop-only and
participant filters, then publishes it. Collect lists the study's
submissions and matches them to the assignments our app stored. Approve
(bulk) and reject (with a message and category) are idempotent on Prolific;
creating a study is not, so a retry first looks for the study by its
internal name; paying a bulk bonus is not idempotent either, so the ledger
pays each bonus run once and, after an unknown outcome, pays again only when
the submissions show the bonus did not arrive.

The HTTP client and the API token are in hitkit.platforms.prolific.api.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
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
    no_checkpoint,
)
from hitkit.platforms.once import Transient, once, retrying
from hitkit.platforms.prolific.api import API_URL, ProlificAPI, load_token
from hitkit.study.config import PROLIFIC_MIN_REJECTION_MESSAGE, Study
from hitkit.study.fees import hourly_rate, prolific_cost, to_major_units, to_minor_units
from hitkit.survey.ledger import Action, Ledger

PLACEHOLDERS = "PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
REJECTION_CATEGORY = "FAILED_CHECK"


def completion_url(study: Study, ledger: Ledger, prolific_study_id: str) -> str | None:
    """Where a finished Prolific participant is sent: Prolific's completion page with the code
    of the batch whose study this is (None for a study hitkit did not publish)."""
    row = ledger.query_one("SELECT batch_id FROM batches WHERE platform = 'prolific' AND"
                           " external_id = ?", (prolific_study_id,))
    if row is None:
        return None
    code = "HK" + records.digest(study.config.study.id, row["batch_id"], "complete", length=8).upper()
    return f"https://app.prolific.com/submissions/complete?cc={code}"


class ProlificPlatform:
    kind = "prolific"

    def __init__(self, study: Study, ledger: Ledger, api: ProlificAPI, *,
                 checkpoint: Checkpoint = no_checkpoint, force: bool = False,
                 bonus_settle_seconds: float = 600.0, attempts: int = 4):
        self.study = study
        self.ledger = ledger
        self.api = api
        self.checkpoint = checkpoint
        self.force = force
        # Prolific pays bonuses asynchronously ("in the following minutes"): after an unknown
        # outcome, a bonus not yet visible is paid again only once this long has passed.
        self.bonus_settle_seconds = bonus_settle_seconds
        self.attempts = attempts
        self.settings = study.config.platform.prolific
        self.currency = study.config.platform.currency

    @classmethod
    def open(cls, study: Study, ledger: Ledger, *, api: ProlificAPI | None = None,
             token: str | None = None, api_url: str | None = None,
             endpoint_url: str | None = None, read_timeout: float | None = None,
             checkpoint: Checkpoint = no_checkpoint, force: bool = False,
             bonus_settle_seconds: float = 600.0, attempts: int = 4,
             **_: Any) -> ProlificPlatform:
        """The platform with its API client: `api`, or one from the token (default: load_token)
        and api_url or endpoint_url (default: Prolific's). Other platforms' options are ignored."""
        if api is None:
            api = ProlificAPI(token or load_token(study), api_url or endpoint_url or API_URL,
                              read_timeout=read_timeout)
        return cls(study, ledger, api, checkpoint=checkpoint, force=force,
                   bonus_settle_seconds=bonus_settle_seconds, attempts=attempts)

    # ------------------------------------------------------------ helpers

    def _once(self, key: str, kind: str, subject: str | None, request: dict, send, reconcile=None):
        return once(self.ledger, key, "prolific", kind, subject, request, send,
                    reconcile=reconcile, checkpoint=self.checkpoint, attempts=self.attempts)

    def _batch(self) -> Any:
        batch = records.open_batch(self.ledger, "prolific")
        if batch is None:
            raise PlatformError("no open Prolific batch: run `hitkit publish --platform prolific`")
        return batch

    def internal_name(self, batch_id: str) -> str:
        return f"hitkit:{self.study.config.study.id}:{batch_id}"

    def completion_code(self, batch_id: str) -> str:
        # deterministic, so the survey app can send finished participants back with it
        return "HK" + records.digest(self.study.config.study.id, batch_id, "complete", length=8).upper()

    def check_reward(self) -> list[str]:
        survey = self.study.config.survey
        rate = hourly_rate(survey.reward, survey.time_estimate_minutes)
        floor = self.settings.minimum_hourly
        if rate < floor:
            message = (f"[survey] reward {survey.reward:.2f} {self.currency} for "
                       f"{survey.time_estimate_minutes:g} minutes is {rate:.2f}/hour, below "
                       f"Prolific's minimum of {floor:.2f}/hour ([platform.prolific].minimum_hourly)")
            if not self.force:
                raise PlatformError(message + "; raise the reward or pass --force")
            return [message + " (published anyway: --force)"]
        return []

    # ------------------------------------------------------------ publish

    def publish(self, *, new: bool = False) -> PublishResult:
        if not self.settings.public_url:
            raise PlatformError("[platform.prolific] public_url: set it to the HTTPS address where "
                                "`hitkit serve` is reachable (participants are sent there)")
        notes = self.check_reward()
        places = records.planned_places(self.ledger)
        survey = self.study.config.survey
        estimate = prolific_cost(survey.reward, places, self.settings.service_fee,
                                 self.settings.vat, self.currency)
        cap = self.study.config.platform.budget_cap
        total = to_major_units(estimate.total_minor)
        if cap is not None and estimate.total_minor > to_minor_units(cap):
            raise PlatformError(f"estimated cost {total} {self.currency} ({places} places) "
                                f"exceeds [platform].budget_cap {cap:.2f}")
        batch = None if new else records.open_batch(self.ledger, "prolific")
        created = batch is None
        if batch is None:
            batch = records.create_batch(self.ledger, "prolific", places,
                                         {"public_url": self.settings.public_url})
        batch_id = batch["batch_id"]
        group_id = self._past_participants_group()
        study_id = self._create_study(batch_id, places, group_id)
        records.set_external_id(self.ledger, batch_id, study_id)
        self._once(f"prolific:publish:{batch_id}", "publish_study", batch_id, {"study": study_id},
                   lambda a: {"status": self.api.call("POST", f"/studies/{study_id}/transition/",
                                                      {"action": "PUBLISH"})["status"]},
                   lambda a: self._published(study_id))
        self.ledger.event("batch_published", batch_id, platform="prolific", places=places)
        return PublishResult("prolific", batch_id, study_id, places, created,
                             [f"https://app.prolific.com/researcher/studies/{study_id}"],
                             notes + [f"estimated cost {total} {self.currency} "
                                      f"({estimate.rate_note})"])

    def _published(self, study_id: str) -> dict | None:
        status = self.api.get(f"/studies/{study_id}/")["status"]
        return None if status == "UNPUBLISHED" else {"status": status}

    def _past_participants_group(self) -> str | None:
        """The study's participant group of everyone who completed a batch (blocked from later ones)."""
        name = f"hitkit:{self.study.config.study.id}:participants"
        me = self.api.get("/users/me/")
        workspace = me.get("workspace_id") or me.get("current_workspace_id")
        if not workspace:
            return None

        def find(action: Action | None = None) -> dict | None:
            groups = self.api.get("/participant-groups/", {"workspace_id": workspace})
            for g in groups.get("results", []) if isinstance(groups, dict) else groups:
                if g.get("name") == name and not g.get("is_deleted"):
                    return {"id": g["id"]}
            return None

        found = find()
        key = f"prolific:group:{self.study.config.study.id}"
        if found is not None and self.ledger.query_one(
                "SELECT 1 FROM actions WHERE idempotency_key = ?", (key,)) is None:
            return found["id"]
        reply = self._once(key, "create_participant_group", None, {"name": name},
                           lambda a: {"id": self.api.call("POST", "/participant-groups/", {
                               "name": name, "workspace_id": workspace,
                               "description": "hitkit: completed a batch of this study"})["id"]},
                           find)
        return reply["id"]

    def _create_study(self, batch_id: str, places: int, group_id: str | None) -> str:
        survey = self.study.config.survey
        internal = self.internal_name(batch_id)
        code = self.completion_code(batch_id)
        actions = [{"action": "MANUALLY_REVIEW"}]
        if group_id:
            actions.append({"action": "ADD_TO_PARTICIPANT_GROUP", "participant_group": group_id})
        filters = list(self.settings.filters)
        if group_id:
            filters.append({"filter_id": "participant_group_blocklist", "selected_values": [group_id]})
        if self.settings.allow_list:
            filters.append({"filter_id": "custom_allowlist",
                            "selected_values": list(self.settings.allow_list)})
        blocked = list(self.settings.block_list) + self._participants_of(self.settings.block_studies)
        if blocked:
            filters.append({"filter_id": "custom_blocklist",
                            "selected_values": sorted(set(blocked))})
        url = self.settings.public_url
        minutes = max(1, math.ceil(survey.time_estimate_minutes))
        body = {
            "name": survey.title,
            "internal_name": internal,
            "description": survey.instructions or survey.title,
            "external_study_url": url + ("&" if "?" in url else "?") + PLACEHOLDERS,
            "prolific_id_option": "url_parameters",
            "completion_codes": [{"code": code, "code_type": "COMPLETED", "actions": actions}],
            "total_available_places": places,
            "estimated_completion_time": minutes,
            "maximum_allowed_time": max(3 * minutes, minutes + 30),
            "reward": to_minor_units(survey.reward),
            "device_compatibility": ["desktop"] if survey.desktop_only else
                                    ["desktop", "tablet", "mobile"],
            "filters": filters,
        }
        # journal what identifies the draft, not the body: filters can hold participant IDs
        summary = {"internal_name": internal, "places": places, "reward_cents": body["reward"],
                   "minutes": minutes, "filters": [f["filter_id"] for f in filters]}

        def find(action: Action | None = None) -> dict | None:
            for s in self.api.pages("/studies/"):
                if s.get("internal_name") == internal:
                    return {"id": s["id"]}
            return None

        reply = self._once(f"prolific:create-study:{batch_id}", "create_study", batch_id, summary,
                           lambda a: {"id": self.api.call("POST", "/studies/", body)["id"]}, find)
        return reply["id"]

    def _participants_of(self, study_ids: list[str]) -> list[str]:
        found = []
        for sid in study_ids:
            found += [s["participant_id"] for s in self.api.pages(f"/studies/{sid}/submissions/")]
        return found

    # ------------------------------------------------------------- status

    def status(self) -> BatchStatus:
        batch = self._batch()
        study = self.api.get(f"/studies/{batch['external_id']}/")
        counts: dict[str, int] = {}
        for s in self.api.pages(f"/studies/{batch['external_id']}/submissions/"):
            counts[s["status"]] = counts.get(s["status"], 0) + 1
        return BatchStatus("prolific", batch["batch_id"], batch["external_id"], study["status"],
                           batch["places"], counts)

    # ------------------------------------------------------------ collect

    def _known(self) -> dict[str, dict]:
        """assignment ID -> the latest {submission_id, status} recorded by collect."""
        known: dict[str, dict] = {}
        for e in self.ledger.events("prolific_submission"):
            known[e["subject"]] = e["data"]
        return known

    def collect(self) -> CollectResult:
        batch = self._batch()
        study_id = batch["external_id"]
        if not study_id:
            raise PlatformError("the Prolific study was not created yet: run `hitkit publish` again")
        rows = self.ledger.query(
            "SELECT assignment_id, participant_key, state FROM assignments"
            " WHERE platform = 'prolific' AND platform_assignment_id = ?", (study_id,))
        mine = {r["participant_key"]: r for r in rows}
        known = self._known()
        new, awaiting, approved, rejected, pending, problems = 0, [], 0, 0, 0, []
        for s in self.api.pages(f"/studies/{study_id}/submissions/"):
            row = mine.pop("prolific:" + s["participant_id"], None)
            status = s["status"]
            if row is None:
                if status in ("AWAITING REVIEW", "APPROVED"):
                    problems.append(f"Prolific submission {s['id']} ({status}) has no assignment "
                                    "in the ledger: the participant did not use the survey link")
                continue
            aid = row["assignment_id"]
            if known.get(aid) != {"submission_id": s["id"], "status": status}:
                self.ledger.event("prolific_submission", aid, submission_id=s["id"], status=status)
                new += known.get(aid) is None
            state = row["state"]
            if status == "APPROVED":
                records.record_review(self.ledger, aid, "approved",
                                      to_minor_units(self.study.config.survey.reward),
                                      self.currency, None)
                approved += 1
            elif status == "REJECTED":
                records.record_review(self.ledger, aid, "rejected", None, self.currency, None)
                rejected += 1
            elif status == "AWAITING REVIEW" and state == "submitted":
                awaiting.append(aid)
            elif status == "AWAITING REVIEW":
                problems.append(f"assignment {aid}: completed on Prolific (submission {s['id']}) "
                                f"but {state} here: no responses stored")
            elif state == "submitted":
                pending += 1  # data stored; the participant has not returned to Prolific yet
        for row in mine.values():
            if row["state"] == "submitted":
                problems.append(f"assignment {row['assignment_id']}: responses stored but Prolific "
                                "lists no submission for it")
        self.ledger.event("collected", batch["batch_id"], platform="prolific", new=new,
                          awaiting_review=len(awaiting), problems=len(problems))
        return CollectResult("prolific", new, awaiting, approved, rejected, pending, problems)

    def _submission_ids(self, assignment_ids: list[str]) -> tuple[dict[str, str], dict[str, str]]:
        known = self._known()
        found, missing = {}, {}
        for aid in assignment_ids:
            if aid in known:
                found[aid] = known[aid]["submission_id"]
            else:
                missing[aid] = "no Prolific submission known for it: run `hitkit collect` first"
        return found, missing

    # ------------------------------------------------------ approve/reject

    def approve(self, assignment_ids: list[str]) -> ActionSummary:
        found, failed = self._submission_ids(assignment_ids)
        known = self._known()
        for aid in list(found):
            status = known[aid]["status"]
            if status not in ("AWAITING REVIEW", "APPROVED"):
                # one such ID would make Prolific refuse the whole bulk request
                failed[aid] = f"Prolific lists its submission as {status}; run `hitkit collect` later"
                del found[aid]
        reward_minor = to_minor_units(self.study.config.survey.reward)
        keys = {aid: f"prolific:approve:{sid}" for aid, sid in found.items()}
        todo, already, done = {}, [], []
        for aid, key in keys.items():
            action = self.ledger.journal(key, "prolific", "approve", aid, {"submission": found[aid]})
            if action.state == "done":
                records.record_review(self.ledger, aid, "approved", reward_minor, self.currency, key)
                already.append(aid)
            else:
                todo[aid] = action

        def settle_approved(aids: list[str]) -> None:
            for aid in aids:
                if self._submission_status(found[aid]) == "APPROVED":
                    self._record_approval(aid, keys[aid], reward_minor)
                    done.append(aid)
                    del todo[aid]

        # an earlier attempt's outcome is unknown: ask first
        settle_approved([aid for aid, action in todo.items() if action.state == "sent"])

        def send() -> None:
            if not todo:
                return
            for aid in todo:
                self.checkpoint("journaled", keys[aid])
                self.ledger.settle(keys[aid], "sent")
            try:
                self.api.call("POST", "/submissions/bulk-approve/",
                              {"submission_ids": [found[a] for a in todo]})
            except Transient:
                raise
            except PlatformError as exc:
                for aid in todo:
                    self.ledger.settle(keys[aid], "failed", {"error": str(exc)})
                    failed[aid] = str(exc)
                todo.clear()
                return
            for aid in todo:
                self.checkpoint("sent", keys[aid])
                self._record_approval(aid, keys[aid], reward_minor)
                done.append(aid)
            todo.clear()

        # after an unknown outcome some may have gone through: settle those, resend the rest
        try:
            retrying(send, self.attempts, before_retry=lambda: settle_approved(list(todo)))
        except Transient:
            settle_approved(list(todo))
        for aid in todo:
            failed[aid] = "outcome unknown after retries; run the command again"
        return ActionSummary(done, already, failed)

    def _record_approval(self, aid: str, key: str, reward_minor: int) -> None:
        self.ledger.settle(key, "done", {"status": "APPROVED"})
        records.record_review(self.ledger, aid, "approved", reward_minor, self.currency, key)

    def _submission_status(self, submission_id: str) -> str:
        return self.api.get(f"/submissions/{submission_id}/")["status"]

    def reject(self, assignment_ids: list[str], message: str,
               category: str = REJECTION_CATEGORY) -> ActionSummary:
        if len(message) < PROLIFIC_MIN_REJECTION_MESSAGE:
            raise PlatformError(f"rejection message: {len(message)} characters; Prolific needs at "
                                f"least {PROLIFIC_MIN_REJECTION_MESSAGE} ([quality].rejection_message)")
        found, failed = self._submission_ids(assignment_ids)
        done, already = [], []
        for aid, sid in found.items():
            key = f"prolific:reject:{sid}"
            prior = self.ledger.query_one("SELECT state FROM actions WHERE idempotency_key = ?", (key,))
            try:
                self._once(key, "reject", aid, {"submission": sid, "category": category},
                           lambda a, sid=sid: {"status": self.api.call(
                               "POST", f"/submissions/{sid}/transition/",
                               {"action": "REJECT", "message": message,
                                "rejection_category": category})["status"]},
                           lambda a, sid=sid: {"status": "REJECTED"}
                           if self._submission_status(sid) == "REJECTED" else None)
            except PlatformError as exc:
                failed[aid] = str(exc)
                continue
            records.record_review(self.ledger, aid, "rejected", None, self.currency, key, message)
            (already if prior is not None and prior["state"] == "done" else done).append(aid)
        return ActionSummary(done, already, failed)

    # -------------------------------------------------------------- bonus

    def bonus(self, bonuses: list[Bonus]) -> ActionSummary:
        batch = self._batch()
        payment_ids = records.plan_bonuses(self.ledger, bonuses, self.currency)
        paid_before = [r["payment_id"] for r in records.payments(self.ledger, payment_ids)
                       if r["state"] == "paid"]
        done, failed = [], {}
        for run_key, pids in records.unpaid_bonus_runs(self.ledger, payment_ids).items():
            if run_key is None:
                run_key = "prolific:bonus-pay:" + records.digest(*sorted(pids))
                self.ledger.journal(run_key, "prolific", "pay_bonus", None, {"payments": pids})
                records.bind_payments(self.ledger, pids, run_key)
            try:
                self._pay_run(batch["external_id"], run_key)
                done += pids
            except PlatformError as exc:
                for pid in pids:
                    failed[pid] = str(exc)
        return ActionSummary(done, paid_before, failed)

    def _pay_run(self, study_id: str, run_key: str) -> None:
        rows = self.ledger.query("SELECT * FROM payments WHERE action_key = ? ORDER BY payment_id",
                                 (run_key,))
        pids = [r["payment_id"] for r in rows]
        found, missing = self._submission_ids([r["assignment_id"] for r in rows])
        if missing:
            raise PlatformError("; ".join(f"{a}: {m}" for a, m in missing.items()))
        lines = [(r["payment_id"], r["assignment_id"], found[r["assignment_id"]], r["amount"])
                 for r in rows]
        csv = "\n".join(f"{sid},{to_major_units(records.amount_minor(amount))}"
                        for _, _, sid, amount in lines)
        # creating a bulk bonus only sets it up (nothing is paid): a repeat is harmless
        create_key = run_key.replace(":bonus-pay:", ":bonus-create:")
        bulk = self._once(create_key, "create_bonus", None, {"payments": pids},
                          lambda a: {"id": self.api.call("POST", "/submissions/bonus-payments/",
                                                         {"study_id": study_id,
                                                          "csv_bonuses": csv})["id"]})
        # what each submission had received from hitkit before this run
        before = {aid: records.paid_bonus_count(self.ledger, aid) for _, aid, _, _ in lines}

        def reconcile(action: Action) -> dict | None:
            seen = {sid: len(self.api.get(f"/submissions/{sid}/").get("bonus_payments") or [])
                    for _, _, sid, _ in lines}
            arrived = [seen[sid] > before[aid] for _, aid, sid, _ in lines]
            if all(arrived):
                return {"bulk_id": bulk["id"], "reconciled": True}
            if any(arrived):
                raise PlatformError(f"bonus run {run_key}: only some bonuses arrived; check the "
                                    "study's bonuses on Prolific before paying anything again")
            sent_at = datetime.fromisoformat(action.response.get("sent_at")) if (
                action.response and action.response.get("sent_at")) else None
            waited = (datetime.now(UTC) - sent_at).total_seconds() if sent_at else math.inf
            if waited < self.bonus_settle_seconds:
                raise OutcomeUnknown(f"bonus run {run_key}: paid {waited:.0f} s ago with no answer "
                                     "and not visible yet (Prolific pays asynchronously); run "
                                     f"again after {self.bonus_settle_seconds:.0f} s")
            return None

        def pay(action: Action) -> dict:
            # the time it was sent goes into the journal first: reconcile waits from it
            self.ledger.settle(run_key, "sent", {"sent_at": datetime.now(UTC).isoformat(),
                                                 "bulk_id": bulk["id"]})
            self.api.call("POST", f"/bulk-bonus-payments/{bulk['id']}/pay/")
            return {"bulk_id": bulk["id"]}

        self._once(run_key, "pay_bonus", None, {"payments": pids, "bulk_id": bulk["id"]}, pay,
                   reconcile)
        records.settle_payments(self.ledger, pids, "paid")

    # ------------------------------------------------------------- expire

    def expire(self) -> list[str]:
        batch = self._batch()
        study_id = batch["external_id"]
        if study_id:
            def stopped(action: Action) -> dict | None:
                status = self.api.get(f"/studies/{study_id}/")["status"]
                return None if status in ("ACTIVE", "PAUSED", "UNPUBLISHED") else {"status": status}

            status = self.api.get(f"/studies/{study_id}/")["status"]
            if status in ("ACTIVE", "PAUSED"):
                self._once(f"prolific:stop:{batch['batch_id']}", "stop_study", batch["batch_id"],
                           {"study": study_id},
                           lambda a: {"status": self.api.call(
                               "POST", f"/studies/{study_id}/transition/", {"action": "STOP"})["status"]},
                           stopped)
        records.close_batch(self.ledger, batch["batch_id"])
        return [study_id] if study_id else []
