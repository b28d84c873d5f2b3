"""Load benchmark of the survey server: simulated participants at once against uvicorn.

Starts `hitkit serve` on 127.0.0.1 as a subprocess for a generated study, lets
N simulated participants (default 200, all at once) start, fetch their HIT and
its images, answer and submit, with one in ten replaying its submission as a
retrying browser would. Reports completed assignments per second and the p50/p99
latency of submit, against a baseline of 20 participants, and checks the thing
that matters: zero lost and zero duplicated responses in the ledger.

Bounded: every phase has a time limit and the server is stopped at the end.

    .venv/bin/python benchmarks/survey_load.py [--participants 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "survey"))

from survey_helpers import free_port, make_study  # noqa: E402

from hitkit.platforms.local import publish_local  # noqa: E402
from hitkit.survey.design import make_design  # noqa: E402
from hitkit.survey.hits import store_design  # noqa: E402
from hitkit.survey.ledger import Ledger  # noqa: E402
from hitkit.survey.participants import allocate, parse_mix, simulate_async  # noqa: E402

PHASE_LIMIT_S = 300
MIX = "attentive=0.8,random=0.1,fast=0.05,side_biased=0.05"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def prepare(root: Path, participants: int):
    study = make_study(root, size=32, models=8, losses=2, targets=12, trials_per_hit=16,
                       catch_per_hit=2, repeat_share=0.15,
                       responses_per_iri=max(2, participants // 10 + 2))
    from hitkit.study.manifest import MANIFEST
    from hitkit.study.tables import read_table

    design = make_design(read_table(root / "manifest.parquet", MANIFEST), study.config)
    with Ledger.for_study(root) as ledger:
        store_design(ledger, design, study.config.survey.responses_per_iri)
    return study, design


def start_server(root: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(root / "server.log", "ab")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(
        [sys.executable, "-m", "hitkit.cli", "serve", "--study", str(root), "--host", "127.0.0.1",
         "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the server did not start within 60 s")


def stop_server(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=20)


def phase(study, url: str, n: int, seed: int) -> dict:
    with Ledger.for_study(study.root) as ledger:
        token = publish_local(study, ledger, open_link=True, cap=n, new=True).links[0].token
    behaviours = allocate(n, parse_mix(MIX), __import__("random").Random(seed))
    report = asyncio.run(asyncio.wait_for(
        simulate_async(url, token, behaviours, seed=seed, concurrency=n, replay_share=0.1),
        timeout=PHASE_LIMIT_S))
    latencies = [o.submit_seconds * 1000 for o in report.completed if o.submit_seconds]
    with Ledger.for_study(study.root) as ledger:
        lost = 0
        for o in report.completed:
            stored = ledger.query_one("SELECT COUNT(*) FROM responses WHERE assignment_id = ?",
                                      (o.assignment_id,))[0]
            lost += max(0, o.responses - stored)
        rows, distinct = ledger.query_one(
            "SELECT COUNT(*), COUNT(DISTINCT assignment_id || '/' || trial_id) FROM responses")
    return {
        "participants": n,
        "completed": len(report.completed),
        "failed": len(report.failed),
        "errors": sorted({o.error for o in report.failed if o.error})[:3],
        "replayed": sum(o.duplicate_checked for o in report.completed),
        "wall_s": report.wall_seconds,
        "per_s": len(report.completed) / report.wall_seconds if report.wall_seconds else 0.0,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "mean_ms": statistics.fmean(latencies) if latencies else float("nan"),
        "lost": lost,
        "duplicated": rows - distinct,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=200)
    parser.add_argument("--baseline", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hitkit-load-") as tmp:
        root = Path(tmp) / "study"
        study, design = prepare(root, args.participants + args.baseline)
        process, url = start_server(root)
        try:
            baseline = phase(study, url, args.baseline, seed=1)
            load = phase(study, url, args.participants, seed=2)
        finally:
            stop_server(process)
    trials = len(design.hits[0].trials)
    print(f"survey load: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{trials} trials per HIT, mix {MIX}, 10% replayed submits")
    print(f"{'':28}{'baseline':>12}{'load':>12}")
    rows = [
        ("participants at once", "participants", "{:d}"),
        ("completed assignments", "completed", "{:d}"),
        ("not completed", "failed", "{:d}"),
        ("replayed submits checked", "replayed", "{:d}"),
        ("wall time (s)", "wall_s", "{:.2f}"),
        ("completed per second", "per_s", "{:.1f}"),
        ("submit p50 (ms)", "p50_ms", "{:.1f}"),
        ("submit p99 (ms)", "p99_ms", "{:.1f}"),
        ("lost responses", "lost", "{:d}"),
        ("duplicated responses", "duplicated", "{:d}"),
    ]
    for label, key, pattern in rows:
        print(f"{label:28}{pattern.format(baseline[key]):>12}{pattern.format(load[key]):>12}")
    for name, result in (("baseline", baseline), ("load", load)):
        for error in result["errors"]:
            print(f"{name} error: {error}")
    ok = all(r["lost"] == 0 and r["duplicated"] == 0 and r["failed"] == 0 for r in (baseline, load))
    print("check: zero lost, zero duplicated, every participant completed:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
