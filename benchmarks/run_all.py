"""Run every benchmark in its quick form, one after another (``make bench``).

Full runs (the numbers in the README) are listed in benchmarks/README.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
QUICK = [
    ["bench_foundation.py", "--quick"],
    ["bench_detectors.py", "--quick"],
    ["bench_eval.py", "--detector", "contrast"],
    ["bench_real.py", "--max-images", "3", "--splits", "1"],
    ["bench_illumination.py", "--detectors", "rulebased,contrast"],
    ["bench_server.py", "--requests", "16"],
    ["bench_hunt.py", "--quick"],
    ["bench_server_edges.py", "--flood", "600", "--header-timeout", "2", "--body-timeout", "2"],
]


def main() -> int:
    failed = []
    for script, *args in QUICK:
        print(f"\n## {script} {' '.join(args)}\n", flush=True)
        if subprocess.call([sys.executable, str(HERE / script), *args]) != 0:
            failed.append(script)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
