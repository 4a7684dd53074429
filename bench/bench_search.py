"""Fit-to-device search on the digits for two boards: the front, time per trial, trials dropped early.

Run: ``PYTHONPATH=. EDGEFLOW_PROGRESS=0 python bench/bench_search.py [--trials N] [--quick]``

For each board (Arduino Nano 33 BLE and Raspberry Pi Pico) it first runs the unsearched
recipe (``recipes/fit_digits.yaml`` at width 1.0, no pruning, int8) and reads the RAM the
board needs for it; then it searches the recipe's space (width × structured-pruning ratio ×
int8/int16x8) under a RAM cap 2,000 B below that need, so the default CNN cannot win. It
prints the Pareto front, the accuracy the unsearched model had, the wall time per complete
trial and per dropped trial, and how many trials were dropped before training.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from edgeflow import report
from edgeflow.pipeline import run_recipe
from edgeflow.recipe import load_recipe
from edgeflow.search import search

BOARDS = ("arduino-nano-33-ble", "raspberry-pi-pico")
RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "fit_digits.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12, help="trials per board (default 12)")
    parser.add_argument("--quick", action="store_true", help="4 trials, 4 training epochs")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("-o", "--output-dir", help="keep the search folders here (default: a temporary folder)")
    args = parser.parse_args()
    trials = 4 if args.quick else args.trials
    epochs = ["stages.0.epochs=4", "stages.1.epochs=1"] if args.quick else []
    root = Path(args.output_dir or tempfile.mkdtemp(prefix="bench-search-"))
    print(f"fit-to-device search, {RECIPE.name}, {trials} trials per board, {args.workers} worker(s); "
          f"folders in {root}")
    for board in BOARDS:
        base = ["search.constraints.ram=null", f"stages.3.devices=[{board}]", *epochs]
        start = time.perf_counter()
        plain = run_recipe(load_recipe(RECIPE, [*base, "stages.1.ratio=0.0"]), output_dir=root / board / "plain",
                           verbose=0)
        plain_s = time.perf_counter() - start
        need = plain.check[board].ram_required_bytes
        cap = need - 2000
        acc = next(r for r in plain.records if r.stage == "convert").tflite_accuracy
        print(f"\n== {board}: unsearched model (width 1.0, no pruning, int8): accuracy {acc:.4f}, "
              f"RAM needed {need:,} B ({plain_s:.1f} s); search cap ram <= {cap:,} B")
        start = time.perf_counter()
        result = search(load_recipe(RECIPE, [*base, f"search.constraints.ram={{max: {cap}}}"]), board,
                        trials=trials, workers=args.workers, output_dir=root / board / "search", verbose=0)
        wall = time.perf_counter() - start
        print(report.render_search_table(result))
        complete = [t.seconds for t in result.trials if t.state == "complete" and t.seconds]
        dropped = [t.seconds for t in result.trials if t.state == "dropped" and t.seconds]
        best = result.trial(result.best) if result.best is not None else None
        print(f"wall {wall:.1f} s for {len(result.trials)} trials; per complete trial "
              f"{_stats(complete)}; per dropped trial {_stats(dropped)}; dropped early: "
              f"{result.dropped} of {len(result.trials)}")
        if best is not None:
            print(f"best #{best.number}: accuracy {best.figures['accuracy']:.4f} "
                  f"({best.figures['accuracy'] - acc:+.4f} vs unsearched), RAM {int(best.figures['ram']):,} B "
                  f"(cap {cap:,} B), MACs {int(best.figures['macs']):,}")
    return 0


def _stats(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"median {statistics.median(values):.1f} s (n={len(values)}, min {min(values):.1f}, max {max(values):.1f})"


if __name__ == "__main__":
    sys.exit(main())
