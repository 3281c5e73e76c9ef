"""The shipped drift rules on simulated drives: quiet in every world, the right kind first,
quiet after each recovery.

Frames come from the real scene simulator and their statistics from the features
service's own ``jpeg_stats``; the rules run through ``edgeloop.features.drift.replay``
(the monitor's signals and decisions) with simulated timestamps, so 30 minutes of
driving replay in seconds. Long drives resample whole rendered runs (rendering 7,200
frames per world would cost minutes). The model's answers are emulated from the worlds
it was trained on (see ``bench/drift_calibration.py``, which also prints the full
calibration tables): no network is trained here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from edgeloop.features.drift.replay import replay
from edgeloop.features.drift.rules import load_rules

DRIVE_RUNS, REFERENCE_RUNS = 4, 8
"""Rendered runs per world: the drive resamples the first, the reference (another seed, so
another floor texture, as between two real drives) holds the second, about as many as a
quick demo's training drive."""


def _calibration() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "bench" / "drift_calibration.py"
    spec = importlib.util.spec_from_file_location("drift_calibration", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


CAL = _calibration()


@pytest.fixture(scope="module")
def worlds() -> tuple[dict[str, Any], dict[str, Any]]:
    pools = {w: CAL.render_runs(w, DRIVE_RUNS, 21) for w in CAL.WORLDS}
    refs = {w: CAL.render_runs(w, REFERENCE_RUNS, 121) for w in CAL.WORLDS}
    return pools, refs


@pytest.mark.parametrize("world", ["beige", "beige-distant", "green", "green-angle", "red"])
def test_thirty_undrifted_minutes_raise_no_drift_event(world: str, worlds: Any) -> None:
    pools, refs = worlds
    rng = np.random.default_rng(3)
    reference = CAL.reference(refs, (world,), rng)
    stream = CAL.drive([(pools[world], 30 * 60, "1", (world,))], reference["label_max_mm"], rng)
    assert stream.t_s[-1] >= 30 * 60
    result = replay(load_rules(), stream, {"1": reference})
    assert result.firings == [], [(f.rule, f.at_s, f.value) for f in result.firings]


@pytest.mark.parametrize("phase", [0, 1, 2, 3], ids=["label", "covariate", "concept", "red"])
def test_each_phase_is_detected_within_30_s_by_a_rule_of_its_kind_first(
        phase: int, worlds: Any) -> None:
    pools, refs = worlds
    known, before, after, kind = CAL.PHASES[phase]
    rng = np.random.default_rng(7 + phase)
    reference = CAL.reference(refs, known, rng)
    stream = CAL.drive([(pools[before], 180, "1", known), (pools[after], 120, "1", known)],
                       reference["label_max_mm"], rng)
    change = float(stream.t_s[np.searchsorted(stream.t_s, 180.0)])  # first frame of `after`
    result = replay(load_rules(), stream, {"1": reference})
    assert all(f.at_s >= change for f in result.firings), "nothing fires before the change"
    first = result.first(change)
    assert first is not None, f"{after} was not detected"
    assert first.kind == kind, (first.rule, [(f.rule, f.at_s) for f in result.firings])
    assert first.at_s - change <= 30.0


@pytest.mark.parametrize("phase", [0, 1, 2, 3], ids=["label", "covariate", "concept", "red"])
def test_quiet_for_ten_minutes_after_each_recovery(phase: int, worlds: Any) -> None:
    # v1 meets the new world for a minute; v2 (trained on it too) then serves 10 minutes.
    pools, refs = worlds
    known, before, after, _ = CAL.PHASES[phase]
    rng = np.random.default_rng(30 + phase)
    old, new = CAL.reference(refs, known, rng), CAL.reference(refs, (*known, after), rng)
    stream = CAL.drive([(pools[before], 120, "1", known), (pools[after], 60, "1", known),
                        (pools[after], 600, "2", (*known, after))], new["label_max_mm"], rng)
    switch = float(stream.t_s[np.argmax(stream.model_versions == "2")])
    result = replay(load_rules(), stream, {"1": old, "2": new})
    assert result.first(120.0) is not None, "the drift itself was seen"
    after_switch = [f for f in result.firings if f.at_s > switch]
    assert after_switch == [], [(f.rule, f.at_s - switch, f.value) for f in after_switch]
