"""How big the demo is: the full evaluation and the `--quick` one."""

from __future__ import annotations

from dataclasses import dataclass, field

MODEL_NAME = "distance"
COLLECT_DEPLOYMENT = "demo-collect"
SERVING_DEPLOYMENT = "demo-parking"
DATA_GROUP = "demo"


@dataclass(frozen=True)
class SweepSize:
    """A manual sweep's size: trials and the search space's epoch counts."""

    trials: int
    epochs: tuple[int, ...]
    learning_rates: tuple[float, ...] = (1e-3,)
    batch_sizes: tuple[int, ...] = (32,)
    dropouts: tuple[float, ...] = (0.1, 0.3)
    max_concurrent: int = 0


@dataclass(frozen=True)
class DemoConfig:
    """Sizes and limits of one demo run."""

    collect_runs: int
    """Phase 1: beige runs collected without a model (v1's training data)."""
    validate_runs: int
    """Runs driven to measure a model (phase 1 validation, every 'after')."""
    drift_runs: int
    """Phases 2-4: runs in the drifted world before retraining (also its training data)."""
    sweep: SweepSize
    warmup_s: float
    """Phase 5: seconds of live beige driving before the floor turns red."""
    red_timeout_s: float
    """Phase 5: give up when the retrained model does not serve within this many seconds."""
    after_switch_runs: int
    """Phase 5: live runs on red measured after the new version serves."""
    fps: float = 4.0
    seed: int = 1
    manual: bool = False
    """Phases 2-4 retrained by hand, as the thesis did (default: the monitor does it)."""
    phase_warmup_s: float = 60.0
    """Monitored phases 2-4: seconds of the known world driven live before the change."""
    settle_timeout_s: float = 0.0
    """Monitored phases: after the switch's runs, drive on until a newer version serves the
    new world (the monitor's consolidation, a second fine-tune once the world has 3x the
    data, or a further drift retrain), for at most this many seconds, then measure it on
    ``after_switch_runs`` runs (0: do not wait for one)."""
    sweep_timeout_s: float = 1800.0
    switch_timeout_s: float = 300.0
    scenarios: dict[int, str] = field(default_factory=lambda: {
        2: "beige-distant", 3: "green", 4: "green-angle", 5: "red"})

    def world_before(self, number: int) -> str:
        """The world the serving model knows when monitored phase ``number`` begins."""
        return "beige" if number in (2, 5) else self.scenarios[number - 1]

    @classmethod
    def full(cls) -> DemoConfig:
        """The evaluation at a size comparable to the thesis's drives."""
        return cls(collect_runs=40, validate_runs=10, drift_runs=14,
                   sweep=SweepSize(trials=4, epochs=(25,), learning_rates=(1e-3, 3e-4)),
                   warmup_s=300.0, red_timeout_s=1800.0, after_switch_runs=10,
                   settle_timeout_s=300.0)

    @classmethod
    def quick(cls) -> DemoConfig:
        """Small drives and sweeps; phase 5 stays live and waits for a real retrain."""
        return cls(collect_runs=20, validate_runs=4, drift_runs=6,
                   sweep=SweepSize(trials=2, epochs=(15,)),
                   warmup_s=90.0, red_timeout_s=1200.0, after_switch_runs=4,
                   sweep_timeout_s=900.0, phase_warmup_s=45.0, settle_timeout_s=240.0)
