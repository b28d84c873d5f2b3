"""kill -9 of the server in the middle of submissions loses nothing it acknowledged."""

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
from survey_helpers import ServerProcess, make_study, run_cli

from hitkit.platforms.local import publish_local
from hitkit.survey.ledger import Ledger


def participant(url, token, index, acks, lock):
    """Start, fetch, submit; returns (assignment_id, payload, acknowledged)."""
    aid = payload = None
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            aid = client.post("/api/assignments",
                              json={"token": token, "participant": f"c{index}"}).json()["assignment_id"]
            hit = client.get(f"/api/assignments/{aid}").json()
            payload = {"responses": [
                {"trial_id": t["trial_id"], "choice": index % 2, "rt_ms": 500.0 + index}
                for t in hit["trials"]]}
            reply = client.post(f"/api/assignments/{aid}/submit", json=payload)
    except (httpx.HTTPError, ValueError, KeyError):
        return aid, payload, False  # the submit may still have committed before the kill
    ok = reply.status_code == 200
    if ok:
        with lock:
            acks.append(aid)
    return aid, payload, ok


def test_kill_minus_nine_loses_nothing_committed(tmp_path):
    study = make_study(tmp_path / "study", responses_per_iri=40)
    run_cli("design", "--study", str(study.root))
    with Ledger.for_study(study.root) as ledger:
        token = publish_local(study, ledger, open_link=True, cap=1000).links[0].token
    # one client (loopback) plays every participant: the per-client limit is off
    server = ServerProcess(study.root, None, "--no-rate-limit").start()
    acks, lock = [], threading.Lock()
    killed = threading.Event()

    def killer():
        while len(acks) < 15:
            threading.Event().wait(0.01)
        server.kill9()
        killed.set()

    watcher = threading.Thread(target=killer)
    watcher.start()
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda i: participant(server.url, token, i, acks, lock),
                                    range(120)))
    finally:
        watcher.join(timeout=60)
        server.stop()
    assert killed.is_set(), "the server was not killed during the run"
    acknowledged = [r for r in results if r[2]]
    assert len(acknowledged) >= 15
    assert len(acknowledged) < len(results), "the kill came too late to interrupt anything"

    # the ledger after the crash: intact, every acknowledged submission complete, nothing partial
    with Ledger.for_study(study.root) as ledger:
        assert ledger.query_one("PRAGMA integrity_check")[0] == "ok"
        for aid, payload, _ in acknowledged:
            rows = ledger.query("SELECT trial_id, choice, rt_ms FROM responses WHERE assignment_id = ?",
                                (aid,))
            assert sorted((r["trial_id"], r["choice"], r["rt_ms"]) for r in rows) == sorted(
                (p["trial_id"], f"[{p['choice']}]", p["rt_ms"]) for p in payload["responses"])
        for row in ledger.query(
                "SELECT a.state, COUNT(r.response_id) AS n FROM assignments a"
                " LEFT JOIN responses r USING (assignment_id) GROUP BY a.assignment_id"):
            assert (row["state"] == "started") == (row["n"] == 0)

    # restarted, the server takes the unacknowledged submissions again, exactly once
    # one client (loopback) plays every participant: the per-client limit is off
    server = ServerProcess(study.root, None, "--no-rate-limit").start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for aid, payload, ok in results:
                if aid is None or payload is None:
                    continue
                reply = client.post(f"/api/assignments/{aid}/submit", json=payload)
                assert reply.status_code == 200, reply.text
                assert reply.json()["duplicate"] == ok or not ok
    finally:
        server.stop()
    with Ledger.for_study(study.root) as ledger:
        stored = ledger.query_one("SELECT COUNT(*), COUNT(DISTINCT assignment_id || trial_id) FROM responses")
        assert stored[0] == stored[1]
        expected = sum(len(p["responses"]) for aid, p, _ in results if aid and p)
        assert stored[0] == expected
