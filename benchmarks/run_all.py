"""Run every benchmark script in this folder, one after another (`make bench`).

Each script prints its own side-by-side table against a baseline; the figures
are recorded in docs/performance.md.
"""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main() -> int:
    scripts = sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name)
    if not scripts:
        print("no benchmark scripts in benchmarks/ yet")
        return 0
    failed = 0
    for script in scripts:
        print(f"== {script.name}", flush=True)
        failed += subprocess.call([sys.executable, str(script)]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
