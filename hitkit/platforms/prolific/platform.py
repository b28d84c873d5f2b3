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
internal name; paying a bulk bonus is not idempotent and is carried out
asynchronously ("in the following minutes"), so the ledger pays each bonus run
once and, after an unknown outcome, never pays it again on its own: when the
submissions' own record of bonus payments does not show it, the run is
reported unresolved with the `hitkit pay --settle` command that settles it.

Everything here follows Prolific's published OpenAPI document (see
docs/platforms.md): the workspace comes from GET /workspaces/ or
[platform.prolific].workspace_id (GET /users/me/ has only id and email), the
account currency from the workspace balance, earlier studies' participants are
excluded with the `previous_studies_blocklist` and
`participant_group_blocklist` filters after checking GET /filters/ lists
them, and listings follow the API's own `_links.next`.

The HTTP client and the API token are in hitkit.platforms.prolific.api.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
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
from hitkit.platforms.once import Transient, once, retrying
from hitkit.platforms.prolific.api import API_URL, ProlificAPI, load_token
from hitkit.study.config import PROLIFIC_MIN_REJECTION_MESSAGE, Study
from hitkit.study.fees import hourly_rate, prolific_cost, to_major_units, to_minor_units
from hitkit.survey.assignments import Arrival
from hitkit.survey.ledger import Action, Ledger

PLACEHOLDERS = "PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
REJECTION_CATEGORY = "FAILED_CHECK"
# "We recommend a maximum of 1,000 submission or participant IDs per request" (bulk approve)
BULK_APPROVE_MAX = 1000
# Prolific approves a submission left awaiting review this long after completion
AUTO_APPROVE_DAYS = 21
# the filters that keep earlier participants out; publishing stops when either is missing
EXCLUSION_FILTERS = ("previous_studies_blocklist", "participant_group_blocklist")
# statuses that mean an approval was received (PROCESSING: reported while it is applied;
# not in the document's enum)
APPROVED = ("APPROVED", "PROCESSING")


def completion_url(study: Study, ledger: Ledger, prolific_study_id: str) -> str | None:
    """Where a finished Prolific participant is sent: Prolific's completion page with the code
    of the batch whose study this is (None for a study hitkit did not publish)."""
    row = ledger.query_one("SELECT batch_id FROM batches WHERE platform = 'prolific' AND"
                           " external_id = ?", (prolific_study_id,))
    if row is None:
        return None
    code = "HK" + records.digest(study.config.study.id, row["batch_id"], "complete", length=8).upper()
    return f"https://app.prolific.com/submissions/complete?cc={code}"


def admit_arrival(ledger: Ledger, arrival: Arrival) -> Arrival | None:
    """A Prolific arrival with the batch that admits it: the open batch whose published
    Prolific study is the arrival's STUDY_ID (start_assignment then checks that its design
    is the current one). None otherwise: a STUDY_ID hitkit never published, or stopped with
    `hitkit expire`, admits nobody."""
    row = ledger.query_one(
        "SELECT b.batch_id FROM batches b JOIN actions x"
        " ON x.idempotency_key = 'prolific:publish:' || b.batch_id AND x.state = 'done'"
        " WHERE b.platform = 'prolific' AND b.state = 'open' AND b.external_id = ?",
        (arrival.platform_assignment_id,))
    return replace(arrival, batch_id=row["batch_id"], hit_id=None) if row else None


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
        # outcome, a bonus not listed yet is "run again later" for this long, then unresolved
        # (settled by the operator); it is never paid again on hitkit's own judgement.
        self.bonus_settle_seconds = bonus_settle_seconds
        self.attempts = attempts
        self.settings = study.config.platform.prolific
        self.currency = study.config.platform.currency
        self._workspace_id: str | None = None
        self.page_size = 100  # items asked for per page of a listing

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

    def minutes_sent(self) -> int:
        """estimated_completion_time as sent: Prolific takes whole minutes."""
        return max(1, math.ceil(self.study.config.survey.time_estimate_minutes))

    def check_reward(self) -> list[str]:
        survey = self.study.config.survey
        # the rate Prolific checks is the one of the minutes it is sent, not the fraction
        minutes = self.minutes_sent()
        rate = hourly_rate(survey.reward, minutes)
        floor = self.settings.minimum_hourly
        if rate < floor:
            sent = (f" (sent as {minutes}: Prolific takes whole minutes)"
                    if minutes != survey.time_estimate_minutes else "")
            message = (f"[survey] reward {survey.reward:.2f} {self.currency} for "
                       f"{survey.time_estimate_minutes:g} minutes{sent} is {rate:.2f}/hour, below "
                       f"Prolific's minimum of {floor:.2f}/hour ([platform.prolific].minimum_hourly)")
            if not self.force:
                raise PlatformError(message + "; raise the reward or pass --force")
            return [message + " (published anyway: --force)"]
        return []

    # ------------------------------------------------------------ publish

    def publish(self, *, new: bool = False, test: bool = False) -> PublishResult:
        """Create and publish the batch's study; `test`: create the draft and a test study of
        it for the workspace's test participants instead (nothing is published)."""
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
        workspace = self.workspace()
        self._check_currency(workspace)
        self._check_filters(workspace)
        group_id = self._past_participants_group()
        study_id = self._create_study(batch_id, places, group_id)
        records.set_external_id(self.ledger, batch_id, study_id)
        if test:
            return self._test_study(batch_id, study_id, places, created, notes)
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

    def workspace(self) -> str:
        """The workspace to work in: [platform.prolific].workspace_id, else the account's only
        one (GET /workspaces/). Prolific's User has no workspace field, and guessing between
        several would put the exclusion group where the studies are not."""
        if self._workspace_id:
            return self._workspace_id
        if self.settings.workspace_id:
            self._workspace_id = self.settings.workspace_id
            return self._workspace_id
        found = list(self.api.pages("/workspaces/"))
        if len(found) != 1:
            listed = ", ".join(f"{w['id']} ({w.get('title')})" for w in found) or "none"
            raise PlatformError(f"[platform.prolific] workspace_id: not set, and the account has "
                                f"{len(found)} workspaces ({listed}); set it to the workspace "
                                "to publish in")
        self._workspace_id = found[0]["id"]
        return self._workspace_id

    def _check_currency(self, workspace: str) -> None:
        """Rewards and bonuses are in the workspace's currency: a study priced in another
        would pay £ for $. Checked before anything is created."""
        balance = self.api.get(f"/workspaces/{workspace}/balance/")
        theirs = (balance.get("currency_code") or "").upper()
        if not theirs:
            raise PlatformError(f"Prolific workspace {workspace}: its balance names no currency; "
                                f"cannot check [platform].currency {self.currency}")
        if theirs != self.currency.upper():
            raise PlatformError(f"[platform].currency is {self.currency} but Prolific workspace "
                                f"{workspace} pays in {theirs}: rewards and bonuses would be paid "
                                f"in {theirs}; set currency = \"{theirs}\" (and the reward in it)")

    def _check_filters(self, workspace: str) -> None:
        """The exclusion filters exist on this account (GET /filters/ lists the IDs): without
        them earlier participants would be let in, so publishing stops instead."""
        listed = {f.get("filter_id") for f in self.api.pages("/filters/", {"workspace_id": workspace})}
        missing = [f for f in EXCLUSION_FILTERS if f not in listed]
        if missing:
            raise PlatformError(f"Prolific lists no filter {', '.join(missing)} for workspace "
                                f"{workspace} (GET /filters/): earlier participants could not be "
                                "excluded, so nothing was published")

    def _past_participants_group(self) -> str:
        """The study's participant group of everyone who completed a batch (blocked from later ones)."""
        return self._group(f"hitkit:{self.study.config.study.id}:participants",
                           f"prolific:group:{self.study.config.study.id}",
                           "hitkit: completed a batch of this study")

    def _group(self, name: str, key: str, description: str) -> str:
        """A participant group of the workspace, found by name or created once."""
        workspace = self.workspace()

        def find(action: Action | None = None) -> dict | None:
            for g in self.api.pages("/participant-groups/", {"workspace_id": workspace},
                                    limit=self.page_size):
                if g.get("name") == name and not g.get("is_deleted"):
                    return {"id": g["id"]}
            return None

        found = find()
        if found is not None and self.ledger.query_one(
                "SELECT 1 FROM actions WHERE idempotency_key = ?", (key,)) is None:
            return found["id"]
        reply = self._once(key, "create_participant_group", None, {"name": name},
                           lambda a: {"id": self.api.call("POST", "/participant-groups/", {
                               "name": name, "workspace_id": workspace,
                               "description": description})["id"]},
                           find)
        return reply["id"]

    def _listed_group(self, kind: str, participants: list[str]) -> str:
        """A group holding [platform.prolific].allow_list or block_list (adding is idempotent)."""
        sid = self.study.config.study.id
        group = self._group(f"hitkit:{sid}:{kind}", f"prolific:group:{sid}:{kind}",
                            f"hitkit: [platform.prolific].{kind.replace('-', '_')}")
        retrying(lambda: self.api.call("POST", f"/participant-groups/{group}/participants/",
                                       {"participant_ids": sorted(set(participants))}))
        return group

    def _earlier_studies(self, batch_id: str) -> list[str]:
        """Prolific studies of this study's earlier batches and [platform.prolific].block_studies."""
        rows = self.ledger.query("SELECT external_id FROM batches WHERE platform = 'prolific'"
                                 " AND external_id IS NOT NULL AND batch_id != ?", (batch_id,))
        return sorted({r["external_id"] for r in rows} | set(self.settings.block_studies))

    def _test_study(self, batch_id: str, study_id: str, places: int, created: bool,
                    notes: list[str]) -> PublishResult:
        """POST /studies/{id}/test-study: a copy for the workspace's test participants."""
        try:
            reply = self._once(f"prolific:test-study:{study_id}", "create_test_study", batch_id,
                               {"study": study_id},
                               lambda a: self.api.call("POST", f"/studies/{study_id}/test-study"))
        except PlatformError as exc:
            raise PlatformError(f"{exc}. Test studies need the feature enabled for the workspace "
                                "(Prolific support) and a test participant (POST "
                                "/api/v1/researchers/participants/); the draft "
                                f"{study_id} was left unpublished") from None
        self.ledger.event("test_study_created", batch_id, platform="prolific", study=study_id,
                          test_study=reply.get("study_id"))
        return PublishResult("prolific", batch_id, study_id, places, created,
                             [u for u in (reply.get("study_url"),) if u],
                             notes + [f"test study {reply.get('study_id')} for the workspace's "
                                      f"test participants; the draft {study_id} is not published "
                                      "(run `hitkit publish` without --test to publish it)"])

    def add_places(self, extra: int) -> int:
        """Raise the open batch's places by `extra` (PATCH total_available_places, which may only
        grow; a completed study becomes active again). Returns the new total."""
        if extra < 1:
            raise PlatformError(f"--add-places {extra}: give a positive number")
        batch = self._batch()
        study_id = batch["external_id"]
        if not study_id:
            raise PlatformError("the Prolific study was not created yet: run `hitkit publish`")
        target = batch["places"] + extra

        def grown(action: Action | None = None) -> dict | None:
            now = self.api.get(f"/studies/{study_id}/")["total_available_places"]
            return {"places": now} if now >= target else None

        self._once(f"prolific:places:{batch['batch_id']}:{target}", "add_places",
                   batch["batch_id"], {"study": study_id, "places": target},
                   lambda a: {"places": self.api.call("PATCH", f"/studies/{study_id}/", {
                       "total_available_places": target})["total_available_places"]}, grown)
        with self.ledger.transaction() as con:
            con.execute("UPDATE batches SET places = ? WHERE batch_id = ?",
                        (target, batch["batch_id"]))
        self.ledger.event("places_added", batch["batch_id"], platform="prolific", extra=extra,
                          places=target)
        return target

    def _create_study(self, batch_id: str, places: int, group_id: str | None) -> str:
        survey = self.study.config.survey
        internal = self.internal_name(batch_id)
        code = self.completion_code(batch_id)
        actions = [{"action": "MANUALLY_REVIEW"}]
        if group_id:
            actions.append({"action": "ADD_TO_PARTICIPANT_GROUP", "participant_group": group_id})
        filters = list(self.settings.filters)
        # everyone who completed a batch (the code adds them to the group) and everyone who
        # took part in an earlier batch's study at all; ID lists go in groups, as the
        # documented filters take group or study IDs only
        blocked_groups = [group_id]
        if self.settings.block_list:
            blocked_groups.append(self._listed_group("block-list", self.settings.block_list))
        filters.append({"filter_id": "participant_group_blocklist",
                        "selected_values": blocked_groups})
        earlier = self._earlier_studies(batch_id)
        if earlier:
            filters.append({"filter_id": "previous_studies_blocklist", "selected_values": earlier})
        if self.settings.allow_list:
            filters.append({"filter_id": "participant_group_allowlist", "selected_values": [
                self._listed_group("allow-list", self.settings.allow_list)]})
        url = self.settings.public_url
        minutes = self.minutes_sent()
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
            for s in self.api.pages("/studies/"):  # the document lists no paging parameters
                if s.get("internal_name") == internal:
                    return {"id": s["id"]}
            return None

        reply = self._once(f"prolific:create-study:{batch_id}", "create_study", batch_id, summary,
                           lambda a: {"id": self.api.call("POST", "/studies/", body)["id"]}, find)
        return reply["id"]

    def _submissions(self, study_id: str):
        """The study's submissions, every page (limit/offset, as Prolific's CLI asks)."""
        return self.api.pages(f"/studies/{study_id}/submissions/", limit=self.page_size)

    # ------------------------------------------------------------- status

    def status(self) -> BatchStatus:
        batch = self._batch()
        study = self.api.get(f"/studies/{batch['external_id']}/")
        counts: dict[str, int] = {}
        waiting: list[datetime] = []
        for s in self._submissions(batch["external_id"]):
            counts[s["status"]] = counts.get(s["status"], 0) + 1
            if s["status"] == "AWAITING REVIEW" and s.get("completed_at"):
                waiting.append(datetime.fromisoformat(s["completed_at"].replace("Z", "+00:00")))
        notes = []
        if waiting:
            due = min(waiting) + timedelta(days=AUTO_APPROVE_DAYS)
            notes.append(f"{len(waiting)} submission(s) awaiting review: Prolific approves (and "
                         f"pays) them automatically {AUTO_APPROVE_DAYS} days after completion, "
                         f"the first on {due:%Y-%m-%d %H:%M} UTC; review before then")
        return BatchStatus("prolific", batch["batch_id"], batch["external_id"], study["status"],
                           batch["places"], counts, notes=notes)

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
            "SELECT assignment_id, participant_key, platform_session_id, state, confirmation"
            " FROM assignments WHERE platform = 'prolific' AND platform_assignment_id = ?",
            (study_id,))
        mine = {r["participant_key"]: r for r in rows}
        known = self._known()
        new, awaiting, approved, rejected, pending, problems = 0, [], 0, 0, 0, []
        for s in self._submissions(study_id):
            row = mine.pop("prolific:" + s["participant_id"], None)
            status = s["status"]
            if row is None:
                if status in ("AWAITING REVIEW", *APPROVED):
                    problems.append(f"Prolific submission {s['id']} ({status}) has no assignment "
                                    "in the ledger: the participant did not use the survey link")
                continue
            aid = row["assignment_id"]
            # Prolific's SESSION_ID is the submission's ID: the same participant in another
            # session (or an invented session) is not this submission
            if row["platform_session_id"] != s["id"]:
                problems.append(f"assignment {aid}: Prolific lists this participant's submission "
                                f"{s['id']} under another session: not confirmed")
                continue
            if row["confirmation"] != "confirmed":
                records.confirm(self.ledger, aid, "prolific", submission_id=s["id"])
            if known.get(aid) != {"submission_id": s["id"], "status": status}:
                self.ledger.event("prolific_submission", aid, submission_id=s["id"], status=status)
                new += known.get(aid) is None
            state = row["state"]
            if status in APPROVED:
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
            elif status in ("RETURNED", "TIMED-OUT") and state == "submitted":
                # the data is here, but Prolific will never pay a reward for it
                problems.append(f"assignment {aid}: responses stored, but Prolific lists its "
                                f"submission {s['id']} as {status}: no reward will be paid; keep "
                                "or drop the data, and to compensate pay a bonus "
                                f"(`hitkit pay --bonus-csv` with {aid})")
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
            if status not in ("AWAITING REVIEW", *APPROVED):
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
                # PROCESSING: Prolific received the approval and is applying it (seen after a
                # lost answer); it is not a failure and must not be sent again
                if self._submission_status(found[aid]) in APPROVED:
                    self._record_approval(aid, keys[aid], reward_minor)
                    done.append(aid)
                    del todo[aid]

        # an earlier attempt's outcome is unknown: ask first
        settle_approved([aid for aid, action in todo.items() if action.state == "sent"])

        def send(chunk: list[str]) -> None:
            chunk = [aid for aid in chunk if aid in todo]
            if not chunk:
                return
            for aid in chunk:
                self.checkpoint("journaled", keys[aid])
                self.ledger.settle(keys[aid], "sent")
            try:
                self.api.call("POST", "/submissions/bulk-approve/",
                              {"submission_ids": [found[a] for a in chunk]})
            except Transient:
                raise
            except PlatformError as exc:
                for aid in chunk:
                    self.ledger.settle(keys[aid], "failed", {"error": str(exc)})
                    failed[aid] = str(exc)
                    del todo[aid]
                return
            for aid in chunk:
                self.checkpoint("sent", keys[aid])
                self._record_approval(aid, keys[aid], reward_minor)
                done.append(aid)
                del todo[aid]

        # at most BULK_APPROVE_MAX IDs a request; after an unknown outcome some may have gone
        # through: settle those, resend the rest
        pending = list(todo)
        for start in range(0, len(pending), BULK_APPROVE_MAX):
            chunk = pending[start:start + BULK_APPROVE_MAX]
            try:
                retrying(lambda c=chunk: send(c), self.attempts,
                         before_retry=lambda c=chunk: settle_approved([a for a in c if a in todo]))
            except Transient:
                settle_approved([a for a in chunk if a in todo])
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
            except OutcomeUnknown as exc:  # may have been paid: never sent again from here
                records.settle_payments(self.ledger, pids, "sent")
                for pid in pids:
                    failed[pid] = f"unresolved: {exc}"
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

        settle_with = (" ".join(f"hitkit pay --settle {pid}=paid" for pid in pids)
                       + " (after checking the study's bonuses on Prolific; =unpaid for a bonus "
                       "that is not there lets the next `hitkit pay` send it)")

        def reconcile(action: Action) -> dict | None:
            """Prolific's own record (each submission's bonus_payments) after an unknown
            outcome. The pay call is not idempotent and is carried out later, so a bonus that
            is not visible yet may still arrive: it is never sent again from here; only the
            operator's `--settle ...=unpaid` lets the next run send it."""
            if (action.response or {}).get("operator") == "unpaid":
                return None
            seen = {sid: self.api.get(f"/submissions/{sid}/").get("bonus_payments") or []
                    for _, _, sid, _ in lines}
            arrived = [len(seen[sid]) > before[aid] for _, aid, sid, _ in lines]
            if all(arrived):
                return {"bulk_id": bulk["id"], "reconciled": True}
            if any(arrived):
                raise Unresolved(f"bonus run {run_key}: only some of its bonuses are listed on "
                                 "Prolific; nothing was sent again", settle_with)
            sent_at = datetime.fromisoformat(action.response.get("sent_at")) if (
                action.response and action.response.get("sent_at")) else None
            waited = (datetime.now(UTC) - sent_at).total_seconds() if sent_at else math.inf
            if waited < self.bonus_settle_seconds:
                raise OutcomeUnknown(f"bonus run {run_key}: sent {waited:.0f} s ago with no "
                                     "answer and not listed yet (Prolific pays asynchronously, "
                                     f"in the following minutes); run `hitkit pay` again after "
                                     f"{self.bonus_settle_seconds:.0f} s")
            raise Unresolved(f"bonus run {run_key}: sent with no answer and still not listed on "
                             "Prolific; it may be processing or may not have arrived, and "
                             "paying again could pay twice: nothing was sent again", settle_with)

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
        """Stop every open Prolific study of this study's batches (every design's) and close
        the batches: no arrival is admitted afterwards."""
        batches = records.open_batches(self.ledger, "prolific")
        if not batches:
            raise PlatformError("no open Prolific batch: nothing to stop")
        stopped = []
        for batch in batches:
            study_id = batch["external_id"]
            if study_id:
                self._stop(batch["batch_id"], study_id)
                stopped.append(study_id)
            records.close_batch(self.ledger, batch["batch_id"])
        return stopped

    def _stop(self, batch_id: str, study_id: str) -> None:
        def stopped(action: Action) -> dict | None:
            status = self.api.get(f"/studies/{study_id}/")["status"]
            return None if status in ("ACTIVE", "PAUSED", "UNPUBLISHED") else {"status": status}

        status = self.api.get(f"/studies/{study_id}/")["status"]
        if status in ("ACTIVE", "PAUSED"):
            self._once(f"prolific:stop:{batch_id}", "stop_study", batch_id, {"study": study_id},
                       lambda a: {"status": self.api.call(
                           "POST", f"/studies/{study_id}/transition/", {"action": "STOP"})["status"]},
                       stopped)
