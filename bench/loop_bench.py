"""Closed-loop benchmark: the demo's phases, and the issue's targets for phase 5.

Run: ``uv run python bench/loop_bench.py [--full] [--state DIR] [--warmup S]``. It starts the
local stack in the state folder (ports from ``EDGELOOP_<PART>_PORT``, like `edgeloop up`)
and runs `edgeloop demo` (``--quick`` sizes unless ``--full``), then prints:

- detection delay: first red frame → first drift event (target <= 60 s at 4 fps);
- detection → the retrained version's first prediction (target <= 5 min);
- phase 5 MAE after retraining / pre-drift MAE (target <= 1.3x);
- per drift phase, MAE before retraining / phase 1's beige MAE (target >= 2x).

``--from-result result.json`` prints the same numbers from an earlier run's saved result.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from edgeloop.compose.demo.config import DemoConfig
from edgeloop.compose.demo.results import DemoResult
from edgeloop.compose.demo.runner import run_demo
from edgeloop.compose.demo.services import DemoError


def _print_numbers(result: DemoResult) -> None:
    loop = result.loop
    print(f"closed loop ({result.mode}), model {result.model_name}, started {result.started_at}")
    for phase in result.phases:
        before = phase.before.describe() if phase.before else "-"
        after = phase.after.describe() if phase.after else "-"
        print(f"  phase {phase.number} {phase.scenario:14s} before: {before:38s} after: {after}"
              f"  retrain {phase.retrain_s or 0:.0f} s  v{phase.version_before or '-'} -> "
              f"v{phase.version_after or '-'}")
    if loop is not None:
        def s(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f} s"
        pre = loop.pre_drift.describe() if loop.pre_drift else "-"
        print(f"  phase 5: pre-drift {pre}; rule {loop.rule or '-'}; "
              f"detection {s(loop.detection_s)}; retraining {s(loop.retrain_s)}; "
              f"promotion -> serving {s(loop.switch_s)}; "
              f"false alarms {len(loop.false_alarms)}")
    print("targets:")
    for target in result.targets():
        print(f"  {target.describe()}")
    if not result.finished:
        print(f"did not finish: {result.failure}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the full demo instead of --quick")
    parser.add_argument("--state", type=Path, default=Path(".edgeloop"), help="state folder")
    parser.add_argument("--warmup", type=float, default=None, help="phase 5 beige seconds")
    parser.add_argument("--from-result", type=Path, default=None, help="a saved result.json")
    args = parser.parse_args()
    if args.from_result:
        _print_numbers(DemoResult.load(args.from_result))
        return 0
    config = DemoConfig.full() if args.full else DemoConfig.quick()
    if args.warmup is not None:
        config = replace(config, warmup_s=args.warmup)
    try:
        result, report = run_demo(args.state.resolve(), config, "full" if args.full else "quick",
                                  lambda line: print(line, file=sys.stderr, flush=True))
    except DemoError as exc:
        print(f"loop_bench: {exc}", file=sys.stderr)
        found = sorted(args.state.resolve().glob("demo/*/result.json"))
        if found:
            _print_numbers(DemoResult.load(found[-1]))
        return 1
    _print_numbers(result)
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
