"""Calibrate the drift rules on simulated drives: false-alarm margins and detection delays.

Renders runs of every simulator world, computes the features service's image statistics
(``jpeg_stats``), and replays ``rules.yaml`` over them with simulated timestamps
(``edgeloop.features.drift.replay``: the monitor's signals and decisions, no database):

1. **Quiet**: a ``--minutes`` drive of each world (runs resampled from the rendered pool)
   against a reference of that world (rendered with another seed): every rule's peak
   value against its threshold, and any firing (there must be none).
2. **Detection**: each demo phase (the serving model knows the earlier worlds, the drive
   switches to the next world after 3 minutes): the first rule to fire, its kind and delay.

The model's answers are emulated from the worlds it was trained on (this script trains no
network): in a known world, error = per-run bias N(0, 1.5) + per-frame N(0, 2.5) mm; a
floor it never saw, N(0, 20) mm (the learnability table measures 14-30 mm); beyond its
trained distances it predicts at most its largest label; on an angled wall it never saw
it reads the distance the camera sees (sensor + sensor_x * tan(yaw)).

    uv run python bench/drift_calibration.py --runs 16 --minutes 30
"""

from __future__ import annotations

import argparse
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from edgeloop.edge_client.scene.scenarios import get_scenario
from edgeloop.edge_client.simulate import simulate_captures
from edgeloop.features.drift.replay import Stream, replay
from edgeloop.features.drift.rules import RuleSet, load_rules
from edgeloop.features.statistics import STAT_NAMES, jpeg_stats

WORLDS = ("beige", "beige-distant", "green", "green-angle", "red")
PHASES = (  # (worlds the serving model knows, world before, world after, expected kind)
    (("beige",), "beige", "beige-distant", "label"),
    (("beige", "beige-distant"), "beige-distant", "green", "covariate"),
    (("beige", "beige-distant", "green"), "green", "green-angle", "concept"),
    (("beige", "beige-distant", "green", "green-angle"), "beige", "red", "covariate"),
)
FPS, PAUSE_S = 4.0, 2.0


@dataclass
class Run:
    """One rendered run: per-frame statistics, sensor, truth and wall yaw."""

    world: str
    stats: dict[str, np.ndarray]
    sensor: np.ndarray
    true: np.ndarray
    yaw: np.ndarray


def render_runs(world: str, runs: int, seed: int) -> list[Run]:
    """``runs`` complete runs of ``world`` with their statistics."""
    found: dict[int, list[Any]] = {}
    for capture in simulate_captures(world, runs * 40, seed=seed):
        found.setdefault(capture.run, []).append(capture)
    complete = [found[r] for r in sorted(found)][:-1][:runs]  # the last run may be cut short
    result = []
    for frames in complete:
        stats = [jpeg_stats(c.jpeg).stats.values() for c in frames]
        sensor = [np.nan if c.sensor_mm is None else c.sensor_mm for c in frames]
        result.append(Run(world, {n: np.array([s[i] for s in stats], float)
                                  for i, n in enumerate(STAT_NAMES)}, np.array(sensor),
                          np.array([c.true_mm for c in frames]),
                          np.array([c.yaw_deg for c in frames])))
    return result


def predictions(run: Run, known: tuple[str, ...], label_max: float,
                rng: np.random.Generator) -> np.ndarray:
    """The emulated model's answers on ``run`` (see the module docstring)."""
    noise = rng.normal(0, 1.5) + rng.normal(0, 2.5, len(run.true))
    scenario = get_scenario(run.world)
    floors = {get_scenario(w).floor.name for w in known}
    if scenario.floor.name not in floors:
        return run.true + rng.normal(0, 20, len(run.true))
    seen = run.true.copy()
    if scenario.max_yaw_deg and not any(get_scenario(w).max_yaw_deg for w in known):
        seen = seen + scenario.sensor_x_mm * np.tan(np.radians(run.yaw))
    return np.minimum(seen, label_max) + noise


def reference(pools: dict[str, list[Run]], known: tuple[str, ...], rng: np.random.Generator
              ) -> dict[str, Any]:
    """A reference.json as the trainer writes it, for a model trained on ``known``."""
    groups = {}
    labels = np.concatenate([r.sensor for w in known for r in pools[w]])
    labels = labels[np.isfinite(labels)]
    for world in known:
        runs = pools[world]
        stats = {}
        for name in STAT_NAMES:
            values = np.concatenate([r.stats[name] for r in runs])
            counts, edges = np.histogram(values, bins=20)
            stats[name] = {"mean": float(values.mean()), "std": float(values.std()),
                           "histogram": {"edges": edges.tolist(), "counts": counts.tolist()}}
        sensor = np.concatenate([r.sensor for r in runs])
        counts, edges = np.histogram(sensor[np.isfinite(sensor)], bins=20)
        groups[world] = {"stats": stats, "label_histogram": {"edges": edges.tolist(),
                                                             "counts": counts.tolist()}}
    errors = np.concatenate([np.abs(predictions(r, known, labels.max(), rng) - r.sensor)
                             for w in known for r in pools[w]])
    return {**groups[known[0]], "groups": groups, "label_min_mm": float(labels.min()),
            "label_max_mm": float(labels.max()), "holdout_mae_mm": float(np.nanmean(errors))}


def drive(segments: list[tuple[list[Run], float, str, tuple[str, ...]]], label_max: float,
          rng: np.random.Generator) -> Stream:
    """Runs resampled from each segment's pool for its seconds, served by its version."""
    t, rows = 0.0, []
    for pool, seconds, version, known in segments:
        end = t + seconds
        while t < end:
            run = pool[int(rng.integers(len(pool)))]
            pred = predictions(run, known, label_max, rng)
            for i in range(len(run.true)):
                rows.append((t, version, {n: run.stats[n][i] for n in STAT_NAMES},
                             run.sensor[i], pred[i]))
                t += 1 / FPS
            t += PAUSE_S
    columns = {n: np.array([r[2][n] for r in rows]) for n in STAT_NAMES}
    columns["sensor_mm"] = np.array([r[3] for r in rows])
    columns["prediction_mm"] = np.array([r[4] for r in rows])
    columns["abs_error_mm"] = np.abs(columns["prediction_mm"] - columns["sensor_mm"])
    return Stream(np.array([r[0] for r in rows]), np.array([r[1] for r in rows], dtype=object),
                  columns)


def quiet(rules: RuleSet, pools: dict[str, list[Run]], refs: dict[str, list[Run]],
          minutes: float, seed: int) -> None:
    """Table 1: peaks of every rule over an undrifted drive of each world."""
    print(f"\n## {minutes:.0f}-minute undrifted drives: peak value per rule (threshold)\n")
    print("| rule | threshold | " + " | ".join(WORLDS) + " |")
    print("|---|---|" + "---|" * len(WORLDS))
    peaks, fired = {}, {}
    for world in WORLDS:
        rng = np.random.default_rng(seed)
        ref = reference(refs, (world,), rng)
        stream = drive([(pools[world], minutes * 60, "1", (world,))], ref["label_max_mm"], rng)
        result = replay(rules, stream, {"1": ref})
        peaks[world], fired[world] = result.peaks, [f.rule for f in result.firings]
    for rule in rules:
        limit = rule.threshold.max if rule.threshold.max is not None else rule.threshold.band
        cells = [f"{peaks[w].get(rule.name, float('nan')):.3g}" for w in WORLDS]
        print(f"| {rule.name} | {limit} | " + " | ".join(cells) + " |")
    print("\nfirings: " + "; ".join(f"{w}: {fired[w] or 'none'}" for w in WORLDS))


def detection(rules: RuleSet, pools: dict[str, list[Run]], refs: dict[str, list[Run]],
              seed: int) -> None:
    """Table 2: per phase, the first rule to fire after the change, its kind and delay."""
    print("\n## Detection per phase (change after 180 s; delay from the change)\n")
    print("| phase | before → after | first rule | kind | expected | delay s | then |")
    print("|---|---|---|---|---|---|---|")
    for number, (known, before, after, expected) in enumerate(PHASES, start=2):
        rng = np.random.default_rng(seed + number)
        ref = reference(refs, known, rng)
        stream = drive([(pools[before], 180, "1", known), (pools[after], 120, "1", known)],
                       ref["label_max_mm"], rng)
        result = replay(rules, stream, {"1": ref})
        early = [f.rule for f in result.firings if f.at_s < 180]
        first = result.first(180)
        later = [f"{f.rule} {f.at_s - 180:.0f}s" for f in result.firings if f.at_s >= 180][1:4]
        row = (f"| {number} | {before} → {after} | {first.rule if first else '-'} | "
               f"{first.kind if first else '-'} | {expected} | "
               f"{first.at_s - 180 if first else float('nan'):.0f} | {', '.join(later)} |")
        print(row + (f" (before the change: {early})" if early else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=16, help="rendered runs per world and pool")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--cache", type=Path, default=None,
                        help="pickle of the rendered runs: written once, then reused")
    parser.add_argument("--rules", type=Path, default=None, help="rules file (default: shipped)")
    args = parser.parse_args()
    rules = load_rules(args.rules)
    if args.cache and args.cache.exists():
        pools, refs = pickle.loads(args.cache.read_bytes())
    else:
        pools = {w: render_runs(w, args.runs, args.seed) for w in WORLDS}
        refs = {w: render_runs(w, args.runs, args.seed + 100) for w in WORLDS}
        if args.cache:
            args.cache.write_bytes(pickle.dumps((pools, refs)))
    for world in WORLDS:
        sat = np.concatenate([r.stats["saturation"] for r in refs[world]])
        print(f"{world}: {sum(len(r.true) for r in refs[world])} reference frames, "
              f"saturation {sat.mean():.1f} ± {sat.std():.1f}")
    quiet(rules, pools, refs, args.minutes, args.seed)
    detection(rules, pools, refs, args.seed)


if __name__ == "__main__":
    main()
