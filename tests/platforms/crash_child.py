"""A client process for the kill tests: runs a step and parks at a checkpoint to be SIGKILLed.

python -m tests.platforms.crash_child <kind> <study> <url> <point> <key-prefix> <step>
Prints "PARKED <point> <key>" when it reaches the point, then sleeps until killed.
"""

from __future__ import annotations

import sys
import time

from hitkit.platforms import Bonus, open_platform
from hitkit.study.config import load_study
from hitkit.survey.ledger import Ledger


def main() -> None:
    kind, root, url, point, prefix, step = sys.argv[1:7]
    study = load_study(root)

    def park(at: str, key: str) -> None:
        if at == point and key.startswith(prefix):
            print(f"PARKED {at} {key}", flush=True)
            time.sleep(600)

    ledger = Ledger.for_study(study.root)
    if kind == "prolific":
        p = open_platform(study, kind, ledger, api_url=url, token="fake-prolific-token",
                          checkpoint=park, bonus_settle_seconds=0)
    else:
        p = open_platform(study, kind, ledger, endpoint_url=url, checkpoint=park)
    if step == "publish":
        p.publish()
    else:
        ids = [r[0] for r in ledger.query("SELECT assignment_id FROM assignments ORDER BY 1")]
        p.approve(ids)
        p.bonus([Bonus(a, 30, "kill-test bonus") for a in ids])
    print("FINISHED", flush=True)


if __name__ == "__main__":
    main()
