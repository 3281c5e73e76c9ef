"""Synchronous successive halving: every trial reaches a rung before the better half goes on.

ASHA (Tune's asynchronous halving) judges a trial at a rung against the trials that reached
it *before* it. With a node that runs one trial at a time, the first trial has no rival at
any rung and always runs every epoch, and a later trial that beats the earlier ones at each
rung runs every epoch too: a 4-trial sweep cost anywhere from 16 to 40 trial-epochs, decided
by the order the trials happened to come in (bench/README, "Trials fed batch by batch").

Here a trial that reaches a rung (an epoch count: grace period × reduction factor^k) pauses
there until every live trial of the sweep has reached it too; then the best
1/``reduction_factor`` of them (at least one), ranked by the best score each reported so
far, go on and the others stop. Four trials, rungs at 2, 4 and 8 epochs of 10: 4 × 2 + 2 × 2
+ 1 × 6 = 18 trial-epochs, whatever the order. A paused trial reports a checkpoint of its
latest state at the rung (the trial function checkpoints at every rung epoch; ``tune``
module) and goes on from it when resumed, in whatever Ray worker is free.

A trial added after a rung was decided (Tune adds trials as its search algorithm yields
them) is judged at that rung as ASHA would: it goes on if it ranks among the number kept
there. A trial that finishes, fails or is removed leaves the rungs it had not reached, so
the trials paused for it are decided without it.

A rung that leaves fewer trials than the sweep has CPUs for gives the CPUs it freed to the
trials that go on (``CpuBudget``): each goes on in a worker with its larger share, from its
rung's checkpoint, and its TensorFlow uses as many threads. On a 2-core node the survivor of
a 2-trial sweep trained on one core while the other idled: an epoch took 5.9 s on one thread
and 3.7 s on two (bench/README, "Trials after their last rival stopped"). Ray cannot add
CPUs to a running worker, so the trial that completes such a rung pauses too. The shares
grow only once every trial of the sweep has started (a trial still to come needs its CPUs)
and only for a trial whose epochs left take ``CpuBudget.worth_s`` at least at its last
epoch's pace: the new worker's TensorFlow import and first trace cost 5-10 s, which a
trial of tiny epochs would never win back.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CpuBudget:
    """The CPUs of a sweep's trials, for handing on what a rung frees."""

    per_trial: float
    """What each trial starts with."""
    sweep: float
    """What the sweep's trials hold together when all run at once."""
    node: float
    """The most one trial can hold: one worker runs on one node."""
    trials: int
    """How many trials the sweep runs (no CPUs move before all have started)."""
    worth_s: float = 30.0
    """A trial gets more CPUs only if its epochs left take this long at its last epoch's
    pace (about 1.4x faster on twice the threads: ~9 s saved against ~8 s for the worker)."""

    def share(self, going_on: int) -> float:
        """CPUs for each of ``going_on`` trials: the sweep's CPUs split, whole, within a node."""
        return max(self.per_trial, min(self.node, math.floor(self.sweep / max(1, going_on))))


def rung_epochs(max_epochs: int, grace_period: int, reduction_factor: int) -> list[int]:
    """The epochs where trials are compared: grace × factor^k, below ``max_epochs``."""
    rungs, epoch = [], max(1, grace_period)
    while epoch < max_epochs:
        rungs.append(epoch)
        epoch *= reduction_factor
    return rungs


class SynchronousHalving(FIFOScheduler):
    """Tune scheduler: trials wait for each other at every rung; the better part goes on."""

    _supports_buffered_results = False  # a trial must stop at its rung, not epochs later

    def __init__(self, rungs: Sequence[int], reduction_factor: int = 2,
                 time_attr: str = "epoch", metric: str | None = None, mode: str = "min",
                 on_pause: Callable[[str, int, float], None] | None = None,
                 cpus: CpuBudget | None = None) -> None:
        super().__init__()
        self._metric, self._sign = metric, -1.0 if mode == "max" else 1.0
        self.rungs = sorted(set(rungs))
        self.reduction_factor = max(2, reduction_factor)
        self.time_attr = time_attr
        self.on_pause = on_pause
        """Told the trial id, epoch and CPUs of every pause (the sweep's progress events):
        0 CPUs while it waits for the others at its rung; then, if its rung hands it more
        CPUs, the share it goes on with (a paused trial is told twice)."""
        self.cpus = cpus
        """Where set, a rung's freed CPUs go to the trials that go on."""
        self._live: list[Trial] = []
        self._best: dict[str, float] = {}
        self._next_rung: dict[str, int] = {}
        self._arrived: dict[int, dict[str, float]] = {}
        """Per rung: the trials that reached it and their best score then."""
        self._kept: dict[int, int] = {}
        """Per decided rung: how many of its trials went on."""
        self._resume: set[str] = set()
        self._grants: dict[str, float] = {}
        """Trials to resume with more CPUs than they had, and how many."""
        self._held: dict[str, float] = {}
        """CPUs of each trial that was given more than it started with."""
        self._added = 0
        self._epoch_s: dict[str, float] = {}
        """Each trial's last epoch, in seconds (Tune's ``time_this_iter_s``)."""
        self._deciding = False

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """The Tuner's metric and mode (unless given to the constructor)."""
        if self._metric and metric:
            return False
        self._metric = self._metric or metric
        if mode:
            self._sign = -1.0 if mode == "max" else 1.0
        return True

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        self._live.append(trial)
        self._added += 1
        self._next_rung.setdefault(trial.trial_id, 0)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict) -> str:
        self._resume.discard(trial.trial_id)
        if self._metric not in result or self.time_attr not in result:
            return TrialScheduler.CONTINUE
        trial_id = trial.trial_id
        self._epoch_s[trial_id] = float(result.get("time_this_iter_s") or 0.0)
        self._best[trial_id] = min(self._best.get(trial_id, float("inf")),
                                   self._sign * float(result[self._metric]))
        index = self._next_rung.get(trial_id, 0)
        if index >= len(self.rungs) or int(result[self.time_attr]) < self.rungs[index]:
            return TrialScheduler.CONTINUE
        rung = self.rungs[index]
        self._next_rung[trial_id] = index + 1
        self._arrived.setdefault(rung, {})[trial_id] = self._best[trial_id]
        if rung in self._kept:  # a latecomer: judged against those that were there
            ranked = sorted(self._arrived[rung], key=self._arrived[rung].__getitem__)
            return (TrialScheduler.CONTINUE if ranked.index(trial_id) < self._kept[rung]
                    else TrialScheduler.STOP)
        if self._waited_for(rung):
            if self.on_pause:
                self.on_pause(trial_id, rung, 0.0)
            return TrialScheduler.PAUSE
        return self._decide(tune_controller, rung, trial)

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict) -> None:
        self.on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self.on_trial_remove(tune_controller, trial)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        if trial in self._live:
            self._live.remove(trial)
        self._resume.discard(trial.trial_id)
        if self._deciding:
            return
        # the trials paused for this one are decided without it
        for rung in self.rungs:
            if rung not in self._kept and self._arrived.get(rung) and not self._waited_for(rung):
                self._decide(tune_controller, rung, None)

    def choose_trial_to_run(self, tune_controller: Any) -> Trial | None:
        """A new trial first, then a paused one that its rung let go on."""
        trials = tune_controller.get_trials()
        for trial in trials:
            if trial.status == Trial.PENDING:
                return trial
        for trial in trials:
            if trial.status == Trial.PAUSED and trial.trial_id in self._resume:
                if cpus := self._grants.pop(trial.trial_id, 0.0):
                    # a paused trial's next worker is requested with these (Tune allows
                    # changing a trial's resources while it does not run)
                    trial.update_resources({"cpu": cpus})
                return trial
        return None

    def debug_string(self) -> str:
        return (f"Synchronous successive halving: rungs at {self.rungs} "
                f"({self.time_attr}), 1/{self.reduction_factor} go on")

    def _waited_for(self, rung: int) -> bool:
        """Whether a live trial has still to reach ``rung``."""
        arrived = self._arrived.get(rung, {})
        return any(trial.trial_id not in arrived for trial in self._live)

    def _decide(self, tune_controller: Any, rung: int, current: Trial | None) -> str:
        """Rank the live trials at ``rung``: the best go on, the others stop.

        Returns the decision for ``current`` (the running trial whose result completed the
        rung); the paused trials are resumed or stopped here.
        """
        scores = self._arrived[rung]
        ranked = sorted((t for t in self._live if t.trial_id in scores),
                        key=lambda t: scores[t.trial_id])
        keep = max(1, len(ranked) // self.reduction_factor)
        self._kept[rung] = keep
        share = self._share(keep)
        granted: dict[str, float] = {}  # trial id: the CPUs this rung gave it
        action = TrialScheduler.CONTINUE
        self._deciding = True
        try:
            for place, trial in enumerate(ranked):
                goes_on = place < keep
                widens = (goes_on and share > self._held.get(trial.trial_id, 0.0)
                          and self._worth_widening(trial, rung))
                if widens:
                    self._grants[trial.trial_id] = self._held[trial.trial_id] = share
                    granted[trial.trial_id] = share
                    if self.on_pause:
                        self.on_pause(trial.trial_id, rung, share)
                if trial is current and widens:
                    # Ray cannot add CPUs to a running worker: it goes on in a new one
                    self._resume.add(trial.trial_id)
                    action = TrialScheduler.PAUSE
                elif trial is current:
                    action = TrialScheduler.CONTINUE if goes_on else TrialScheduler.STOP
                elif goes_on:
                    self._resume.add(trial.trial_id)
                else:
                    tune_controller.stop_trial(trial)
        finally:
            self._deciding = False
        log.info("rung decided", extra={"rung_epoch": rung, "trials": len(ranked),
                                        "going_on": [t.trial_id for t in ranked[:keep]],
                                        "cpus_granted": granted})
        return action

    def _worth_widening(self, trial: Trial, rung: int) -> bool:
        """Whether the trial's epochs left, at its last epoch's pace, pay for a new worker."""
        assert self.cpus is not None  # a share was granted
        epochs_left = int(trial.config.get("epochs", 0)) - rung
        return epochs_left * self._epoch_s.get(trial.trial_id, 0.0) >= self.cpus.worth_s

    def _share(self, going_on: int) -> float:
        """CPUs for each trial going on; 0 when they keep what they have."""
        if self.cpus is None or self._added < self.cpus.trials:
            return 0.0
        share = self.cpus.share(going_on)
        return share if share > self.cpus.per_trial else 0.0
