"""Print how long the command line takes to start: ``edgeflow --help`` and each command's help.

Run: ``PYTHONPATH=. python bench/bench_cli.py [--runs 5]``

Each figure is the median wall-clock time of a fresh ``python -m edgeflow ...`` process
(interpreter start-up included) over ``--runs`` runs, and whether the process imported
TensorFlow (it should not: commands import it only when they run). The target is under one
second for ``edgeflow --help``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_PROBE = """
import sys
from edgeflow.cli import main
try:
    main({args!r}, prog_name="edgeflow")
except SystemExit:
    pass
sys.stderr.write("tensorflow imported: %s\\n" % ("tensorflow" in sys.modules))
"""


def _time(args: list[str], runs: int) -> tuple[float, bool]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    seconds, imported = [], False
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", _PROBE.format(args=args)], capture_output=True,
                              text=True, env=env, check=True)
        seconds.append(time.perf_counter() - start)
        imported |= "tensorflow imported: True" in proc.stderr
    return statistics.median(seconds), imported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()

    from edgeflow.cli import COMMANDS

    cases = [["--help"]] + [[name, "--help"] for name in sorted(COMMANDS)] + [["deploy", "mcu", "--help"]]
    print(f"{'command':<28} {'median s':>9}  imports TensorFlow")
    for args in cases:
        median, imported = _time(args, opts.runs)
        print(f"{'edgeflow ' + ' '.join(args):<28} {median:>9.3f}  {'yes' if imported else 'no'}")


if __name__ == "__main__":
    main()
