"""The survey API against a real uvicorn server on 127.0.0.1.

Fuzzed with hypothesis: never a 5xx, never an accepted invalid submission,
every valid one stored exactly once, replays idempotent.
"""

import json
import math
import threading

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from survey_helpers import make_study, published_platform_batches

from hitkit.platforms import admission
from hitkit.platforms.local import publish_local
from hitkit.study.tables import read_table
from hitkit.survey.design import make_design
from hitkit.survey.hits import store_design
from hitkit.survey.ledger import Ledger
from hitkit.survey.web.app import create_app
from hitkit.survey.web.serving import background_server


class Env:
    def __init__(self, study, ledger, url, token, planned):
        self.study, self.ledger, self.url, self.token, self.planned = study, ledger, url, token, planned
        # the API takes JSON only (Content-Type: application/json), raw bodies included
        self.client = httpx.Client(base_url=url, timeout=30,
                                   headers={"content-type": "application/json"})
        self.count = 0

    def start(self, **identity):
        self.count += 1
        body = identity or {"token": self.token, "participant": f"p{self.count}"}
        reply = self.client.post("/api/assignments", json=body)
        assert reply.status_code in (200, 201), reply.text
        aid = reply.json()["assignment_id"]
        return aid, self.client.get(f"/api/assignments/{aid}").json()

    def stored(self, aid):
        return self.ledger.query_one(
            "SELECT COUNT(*) FROM responses WHERE assignment_id = ?", (aid,))[0]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("api") / "study"
    study = make_study(root, responses_per_iri=400)
    from hitkit.study.manifest import MANIFEST

    design = make_design(read_table(root / "manifest.parquet", MANIFEST), study.config)
    ledger = Ledger.for_study(root)
    store_design(ledger, design, study.config.survey.responses_per_iri)
    open_batch = publish_local(study, ledger, open_link=True, cap=5000)
    planned = publish_local(study, ledger, cap=5, new=True)
    platform_batches = published_platform_batches(ledger, "s1")
    with background_server(create_app(study, ledger, admit=admission(ledger))) as url:
        env = Env(study, ledger, url, open_batch.links[0].token, [link.token for link in planned.links])
        env.platform_batches = platform_batches
        yield env
    ledger.close()


def valid_payload(hit, choice=0):
    responses = []
    for t in hit["trials"]:
        c = choice % len(t["options"]) if hit["task"] == "2afc" else list(range(len(t["query"])))
        responses.append({"trial_id": t["trial_id"], "choice": c, "rt_ms": 700.0})
    return {"responses": responses, "comment": "", "client": {"width": 1280}}


def is_valid(payload, hit):
    """An independent statement of what a valid submission is."""
    if not isinstance(payload, dict) or set(payload) - {"responses", "comment", "client"}:
        return False
    items = payload.get("responses")
    if not isinstance(items, list):
        return False
    trials = {t["trial_id"]: t for t in hit["trials"]}
    ids = []
    for item in items:
        if not isinstance(item, dict) or set(item) != {"trial_id", "choice", "rt_ms"}:
            return False
        trial = trials.get(item["trial_id"]) if isinstance(item["trial_id"], str) else None
        if trial is None:
            return False
        ids.append(item["trial_id"])
        choice, rt = item["choice"], item["rt_ms"]
        n = len(trial["options"])
        if hit["task"] == "2afc":
            if type(choice) is not int or not 0 <= choice < n:
                return False
        elif (not isinstance(choice, list) or len(choice) != len(trial["query"])
              or any(type(c) is not int or not 0 <= c < n for c in choice)
              or len(set(choice)) != len(choice)):
            return False
        if type(rt) not in (int, float) or not 0 <= rt <= 6 * 3600 * 1000 or not math.isfinite(rt):
            return False
    if sorted(ids) != sorted(trials):
        return False
    comment = payload.get("comment", "")
    if comment is not None and (not isinstance(comment, str) or len(comment) > 2000 or "\x00" in comment
                                or not unicode_text(comment)):
        return False
    client = payload.get("client", {})
    if client is not None:
        if not isinstance(client, dict) or len(client) > 20:
            return False
        for key, value in client.items():
            if len(key) > 40:
                return False
            if not (value is None or type(value) in (bool, int, str) or (
                    type(value) is float and math.isfinite(value))):
                return False
            if isinstance(value, str) and (len(value) > 300 or not unicode_text(value)):
                return False
            if type(value) is int and abs(value) > 2**53:
                return False
    return True


def unicode_text(text):
    """False for a string with a lone surrogate, which JSON can carry and SQLite cannot."""
    return not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def nested(depth):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


def test_hit_payload_carries_no_answer_and_no_image_ids(env):
    aid, hit = env.start()
    text = json.dumps(hit)
    for leak in ("target-", "iri-", "seed-", "answer\": [", "catch", "repeat", "main", "m0"):
        if leak == "answer\": [":
            # only the practice trial (not data) may carry its answer, for feedback
            assert text.count('"answer"') == 1 and '"answer"' in json.dumps(hit["practice"])
        else:
            assert leak not in text, leak
    for trial in hit["trials"]:
        assert set(trial) == {"trial_id", "query", "options"}
    # images are served by position and are real PNGs
    first = hit["trials"][0]
    image = env.client.get(first["options"][1])
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert env.client.get(f"/img/{aid}/{first['trial_id']}/o9").status_code == 404
    assert env.client.get(f"/img/nobody/{first['trial_id']}/o0").status_code == 404


def test_start_resumes_and_identifies_each_platform(env):
    token = env.planned[0]
    first = env.client.post("/api/assignments", json={"token": token})
    assert first.status_code == 201
    again = env.client.post("/api/assignments", json={"token": token, "participant": "other"})
    assert again.status_code == 200 and again.json()["resumed"]
    assert again.json()["assignment_id"] == first.json()["assignment_id"]
    prolific = {"PROLIFIC_PID": "5f0c0ffee0ddba11", "STUDY_ID": "s1", "SESSION_ID": "x1"}
    a = env.client.post("/api/assignments", json=prolific).json()["assignment_id"]
    assert env.client.post("/api/assignments", json=prolific).json()["assignment_id"] == a
    mturk = {"workerId": "A1WORKER", "assignmentId": "3AS", "hitId": "3HIT0000"}
    assert env.client.post("/api/assignments", json=mturk).status_code == 201
    preview = dict(mturk, assignmentId="ASSIGNMENT_ID_NOT_AVAILABLE")
    assert env.client.post("/api/assignments", json=preview).status_code == 403
    row = env.ledger.query_one("SELECT platform, participant_key FROM assignments WHERE assignment_id = ?", (a,))
    assert tuple(row) == ("prolific", "prolific:5f0c0ffee0ddba11")


def test_bad_identities_are_refused_without_echoing_them(env):
    for body in ({"token": "nope-not-a-token"}, {"PROLIFIC_PID": "<script>alert(1)</script>"},
                 {"workerId": "W1"}, {}, [], {"token": "x" * 500}):
        reply = env.client.post("/api/assignments", json=body)
        assert 400 <= reply.status_code < 500, reply.text
        assert "script" not in reply.text and "x" * 100 not in reply.text
        assert "error" in reply.json()
    reply = env.client.post("/api/assignments", content=b"{not json")
    assert reply.status_code == 400 and reply.json()["error"]["field"] == "body"


def test_valid_submission_is_stored_once_and_replays_are_idempotent(env):
    aid, hit = env.start()
    payload = valid_payload(hit)
    reply = env.client.post(f"/api/assignments/{aid}/submit", json=payload)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["stored"] == len(hit["trials"]) and not body["duplicate"]
    replay = env.client.post(f"/api/assignments/{aid}/submit", json=payload)
    assert replay.status_code == 200
    assert replay.json()["completion_code"] == body["completion_code"] and replay.json()["duplicate"]
    changed = valid_payload(hit, choice=1)
    conflict = env.client.post(f"/api/assignments/{aid}/submit", json=changed)
    assert conflict.status_code == 409 and conflict.json()["completion_code"] == body["completion_code"]
    assert env.stored(aid) == len(hit["trials"])
    # resuming a submitted assignment shows the same completion code
    fetched = env.client.get(f"/api/assignments/{aid}").json()
    assert fetched["completion_code"] == body["completion_code"]


def test_concurrent_submissions_store_one_copy(env):
    aid, hit = env.start()
    payload = valid_payload(hit)
    replies = []

    def send():
        with httpx.Client(base_url=env.url, timeout=30) as client:
            replies.append(client.post(f"/api/assignments/{aid}/submit", json=payload))

    threads = [threading.Thread(target=send) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status_code == 200 for r in replies)
    assert sum(not r.json()["duplicate"] for r in replies) == 1
    assert len({r.json()["completion_code"] for r in replies}) == 1
    assert env.stored(aid) == len(hit["trials"])


def test_oversized_and_malformed_bodies(env):
    aid, hit = env.start()
    big = b'{"responses": [' + b'{"trial_id": "x", "choice": 0, "rt_ms": 1},' * 20000 + b"]}"
    reply = env.client.post(f"/api/assignments/{aid}/submit", content=big)
    assert reply.status_code == 413 and reply.json()["error"]["field"] == "body"
    for raw in (b"", b"[", b"\xff\xfe", b'{"responses": NaN}', b"[" * 100000 + b"]" * 100000):
        reply = env.client.post(f"/api/assignments/{aid}/submit", content=raw)
        assert 400 <= reply.status_code < 500, (raw[:20], reply.status_code)
    nan = valid_payload(hit)
    text = json.dumps(nan).replace('"rt_ms": 700.0', '"rt_ms": Infinity', 1)
    reply = env.client.post(f"/api/assignments/{aid}/submit", content=text.encode())
    assert reply.status_code == 400
    assert env.stored(aid) == 0
    rejected = env.ledger.events("submit_rejected")
    assert sum(e["subject"] == aid for e in rejected) >= 7
    assert env.client.post("/api/assignments/anone/submit", json={}).status_code == 404
    assert env.client.get("/no/such/route").status_code == 404


def test_script_in_comment_is_stored_as_text_never_markup(env):
    aid, hit = env.start()
    payload = valid_payload(hit)
    payload["comment"] = '<script>alert("x")</script> nice study'
    reply = env.client.post(f"/api/assignments/{aid}/submit", json=payload)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/json")
    row = env.ledger.query_one("SELECT comment FROM assignments WHERE assignment_id = ?", (aid,))
    assert row["comment"] == payload["comment"]
    page = env.client.get(f"/?token={env.token}")
    assert "<script>alert" not in page.text


def test_error_messages_name_the_problem(env):
    aid, hit = env.start()
    payload = valid_payload(hit)
    payload["responses"][2]["choice"] = 5
    reply = env.client.post(f"/api/assignments/{aid}/submit", json=payload)
    assert reply.status_code == 422
    assert reply.json()["error"]["field"] == "responses[2].choice"
    payload = valid_payload(hit)
    payload["responses"].append(dict(payload["responses"][0]))
    error = env.client.post(f"/api/assignments/{aid}/submit", json=payload).json()["error"]
    assert "answered twice" in error["message"]
    payload = valid_payload(hit)
    payload["responses"].pop()
    error = env.client.post(f"/api/assignments/{aid}/submit", json=payload).json()["error"]
    assert "unanswered" in error["message"]


def test_preview_is_inert(env):
    page = env.client.get("/?preview=1")
    assert page.status_code == 200 and 'data-preview="1"' in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert page.headers["referrer-policy"] == "no-referrer"
    preview = env.client.get("/api/preview").json()
    assert "answer" not in preview and preview["options"][0].startswith("/img/preview/")
    assert env.client.get(preview["options"][0]).content.startswith(b"\x89PNG")
    mturk_preview = env.client.get("/?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=1")
    assert 'data-preview="1"' in mturk_preview.text


def test_raw_ids_are_not_logged(env):
    pid = "RAWPID0123456789"
    reply = env.client.post("/api/assignments",
                            json={"PROLIFIC_PID": pid, "STUDY_ID": "s1", "SESSION_ID": "t"})
    aid = reply.json()["assignment_id"]
    env.client.post(f"/api/assignments/{aid}/submit", json={"responses": "bad"})
    events = json.dumps(env.ledger.events())
    assert pid not in events


# ------------------------------------------------------------------ fuzzing

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**12) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30) | st.integers(10**300, 10**400) | st.sampled_from(["\ud800", "a\udc00"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)

weird = st.one_of(st.none(), st.booleans(), st.integers(-3, 5), st.floats(allow_nan=False),
                  st.text(max_size=12), st.lists(st.integers(-1, 3), max_size=4),
                  st.just("<script>alert(1)</script>"), st.just(1e300), st.just(-0.0),
                  # huge integers (a float conversion overflows), lone surrogates, deep nesting
                  st.integers(2**53 - 2, 2**53 + 2), st.just(10**400), st.just(-(10**4000)),
                  st.sampled_from(["\ud800", "ok\udfff", "\udc00\ud800x"]),
                  st.integers(15, 40).map(nested))


@st.composite
def mutations(draw):
    """A list of edits to a valid payload (possibly none: then it stays valid)."""
    return draw(st.lists(st.tuples(
        st.sampled_from(["choice", "rt_ms", "trial_id", "drop", "duplicate", "extra_field",
                         "comment", "client", "top_extra", "swap_ids", "replace_all"]),
        st.integers(0, 100), weird), max_size=3))


def apply(payload, edits):
    responses = payload["responses"]
    for what, index, value in edits:
        i = index % len(responses) if responses else 0
        if what in ("choice", "rt_ms", "trial_id") and responses:
            responses[i][what] = value
        elif what == "drop" and responses:
            responses.pop(i)
        elif what == "duplicate" and responses:
            responses.append(dict(responses[i]))
        elif what == "extra_field" and responses:
            responses[i]["note"] = value
        elif what == "comment":
            payload["comment"] = value if not isinstance(value, str) else value * (index + 1) * 10
        elif what == "client":
            payload["client"] = {"w": value} if index % 2 else value
        elif what == "top_extra":
            payload["extra"] = value
        elif what == "swap_ids" and len(responses) > 1:
            responses[0]["trial_id"], responses[i]["trial_id"] = responses[i]["trial_id"], responses[0]["trial_id"]
        elif what == "replace_all":
            return value
    return payload


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(edits=mutations())
def test_fuzzed_submissions(env, edits):
    aid, hit = env.start()
    payload = apply(valid_payload(hit), edits)
    valid = is_valid(payload, hit)
    body = json.dumps(payload).encode()  # infinities go out as JSON's non-standard Infinity
    reply = env.client.post(f"/api/assignments/{aid}/submit", content=body)
    assert reply.status_code < 500, reply.text
    assert "error" in reply.json() or reply.status_code == 200
    if valid:
        assert reply.status_code == 200, (payload, reply.text)
        assert env.stored(aid) == len(hit["trials"])
        replay = env.client.post(f"/api/assignments/{aid}/submit", content=body)
        assert replay.status_code == 200 and replay.json()["duplicate"]
        assert env.stored(aid) == len(hit["trials"])
    else:
        assert 400 <= reply.status_code < 500, (payload, reply.text)
        assert env.stored(aid) == 0


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=json_values)
def test_arbitrary_json_never_breaks_the_server(env, body):
    aid, hit = env.start()
    for path in (f"/api/assignments/{aid}/submit", "/api/assignments"):
        # json.dumps escapes lone surrogates ("\\ud800"), which httpx's encoder cannot send
        reply = env.client.post(path, content=json.dumps(body).encode())
        assert reply.status_code < 500, reply.text
    assert env.stored(aid) == 0


def test_concurrent_starts_of_one_participant_make_one_assignment(env):
    body = {"PROLIFIC_PID": "concurrentpid", "STUDY_ID": "s1", "SESSION_ID": "t"}
    ids = []

    def start():
        with httpx.Client(base_url=env.url, timeout=30) as client:
            ids.append(client.post("/api/assignments", json=body).json()["assignment_id"])

    threads = [threading.Thread(target=start) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and len(ids) == 10
    count = env.ledger.query_one(
        "SELECT COUNT(*) FROM assignments WHERE participant_key = 'prolific:concurrentpid'")[0]
    assert count == 1


def test_a_platform_return_url_comes_with_the_completion_code(env):
    back = {"prolific": lambda a: f"https://app.prolific.com/submissions/complete?cc=STUDY{a.platform[:1]}"}
    with background_server(create_app(env.study, env.ledger, completion_urls=back,
                                      admit=admission(env.ledger))) as url:
        with httpx.Client(base_url=url, timeout=30) as client:
            body = {"PROLIFIC_PID": "returnpid", "STUDY_ID": "s1", "SESSION_ID": "t"}
            aid = client.post("/api/assignments", json=body).json()["assignment_id"]
            hit = client.get(f"/api/assignments/{aid}").json()
            assert "completion_url" not in hit
            reply = client.post(f"/api/assignments/{aid}/submit", json=valid_payload(hit)).json()
            assert reply["completion_url"] == "https://app.prolific.com/submissions/complete?cc=STUDYp"
            again = client.post("/api/assignments", json=body).json()
            assert again["completion_url"] == reply["completion_url"]
            local_aid, local_hit = env.start()
            local = client.post(f"/api/assignments/{local_aid}/submit", json=valid_payload(local_hit))
            assert "completion_url" not in local.json()
