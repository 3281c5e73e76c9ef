"""Synchronous successive halving, driven the way Tune's controller drives a scheduler.

The controller here runs one trial at a time (a 2-CPU node's bfloat16 sweep, or any sweep
whose trials each take the node): it asks the scheduler which trial to run, feeds it the
trial's results epoch by epoch, and carries out CONTINUE / PAUSE / STOP, including the stops
the scheduler orders for paused trials. The sweep through real Ray Tune is in
``test_trial_reuse.py``.

With a ``CpuBudget`` the controller here stands for a node with more CPUs than one trial
takes: a trial that goes on with more CPUs is one the scheduler resized while paused.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from edgeloop.trainer.halving import CpuBudget, SynchronousHalving, rung_epochs
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler


@dataclass(eq=False)
class _Trial:
    trial_id: str
    epochs: int
    score: Callable[[int], float]
    status: str = Trial.PENDING
    done: int = 0
    cpus: float = 1.0
    epoch_s: float = 10.0
    """What each epoch takes (Tune's ``time_this_iter_s``)."""

    @property
    def config(self) -> dict[str, int]:
        return {"epochs": self.epochs}

    def update_resources(self, resources: dict[str, float]) -> None:
        assert self.status != Trial.RUNNING, "Tune refuses to resize a running trial"
        self.cpus = resources["cpu"]


@dataclass
class _Controller:
    """One trial at a time, as Tune's controller would schedule it."""

    scheduler: SynchronousHalving
    trials: list[_Trial] = field(default_factory=list)
    runs: list[tuple[str, int]] = field(default_factory=list)
    """Every stretch a trial trained: (trial id, first epoch of the stretch)."""
    cpus: list[tuple[str, int, float]] = field(default_factory=list)
    """The CPUs of every stretch: (trial id, first epoch, CPUs)."""

    def get_trials(self) -> list[_Trial]:
        return self.trials

    def stop_trial(self, trial: _Trial) -> None:
        assert trial.status == Trial.PAUSED, "the scheduler stops paused trials only"
        trial.status = Trial.TERMINATED
        self.scheduler.on_trial_remove(self, trial)

    def add(self, trial: _Trial) -> None:
        self.trials.append(trial)
        self.scheduler.on_trial_add(self, trial)

    def run(self, late: list[_Trial] | None = None) -> None:
        late = list(late or [])
        while (trial := self.scheduler.choose_trial_to_run(self)) or late:
            if trial is None:
                self.add(late.pop(0))
                continue
            self._train(trial)

    def _train(self, trial: _Trial) -> None:
        trial.status = Trial.RUNNING
        self.runs.append((trial.trial_id, trial.done + 1))
        self.cpus.append((trial.trial_id, trial.done + 1, trial.cpus))
        while trial.done < trial.epochs:
            trial.done += 1
            result = {"epoch": trial.done, "val_score_mm": trial.score(trial.done),
                      "time_this_iter_s": trial.epoch_s}
            decision = self.scheduler.on_trial_result(self, trial, result)
            if decision == TrialScheduler.PAUSE:
                trial.status = Trial.PAUSED
                return
            if decision == TrialScheduler.STOP:
                break
            assert decision == TrialScheduler.CONTINUE
        trial.status = Trial.TERMINATED
        self.scheduler.on_trial_complete(self, trial, {})


def _scheduler(paused: list[tuple[str, int]] | None = None, epochs: int = 10,
               cpus: CpuBudget | None = None,
               widened: list[tuple[str, int, float]] | None = None) -> SynchronousHalving:
    def on_pause(trial_id: str, epoch: int, share: float) -> None:
        if share and widened is not None:
            widened.append((trial_id, epoch, share))
        elif not share and paused is not None:
            paused.append((trial_id, epoch))

    return SynchronousHalving(rung_epochs(epochs, 2, 2), 2, metric="val_score_mm",
                              on_pause=on_pause, cpus=cpus)


def _flat(mm: float) -> Callable[[int], float]:
    return lambda epoch: mm - epoch * 0.01


def test_rungs_double_from_the_grace_period_below_the_last_epoch() -> None:
    assert rung_epochs(10, 2, 2) == [2, 4, 8]
    assert rung_epochs(3, 2, 2) == [2]
    assert rung_epochs(2, 2, 2) == []
    assert rung_epochs(30, 3, 3) == [3, 9, 27]


@pytest.mark.parametrize("order", list(itertools.permutations(range(4))))
def test_four_trials_cost_eighteen_epochs_whatever_their_order(order: tuple[int, ...]) -> None:
    # trial "q1" is best; in ASHA with one trial at a time, a first or ever-better trial
    # ran all 10 epochs. Here every order trains 4 x 2 + 2 x 2 + 1 x 6 epochs.
    quality = [1.0, 2.0, 3.0, 4.0]
    paused: list[tuple[str, int]] = []
    controller = _Controller(_scheduler(paused))
    for index in order:
        controller.add(_Trial(f"q{quality[index]:.0f}", 10, _flat(quality[index])))
    controller.run()
    done = {t.trial_id: t.done for t in controller.trials}
    assert done == {"q1": 10, "q2": 4, "q3": 2, "q4": 2}
    assert sum(done.values()) == 18
    assert all(t.status == Trial.TERMINATED for t in controller.trials)
    # a resumed trial goes on from the rung it paused at, never from its first epoch again
    resumed = [(t, first - 1) for t, first in controller.runs if first > 1]
    assert resumed and set(resumed) <= set(paused)
    assert len(controller.runs) == 4 + len(resumed)


def test_the_trial_that_completes_a_rung_goes_on_without_pausing() -> None:
    paused: list[tuple[str, int]] = []
    controller = _Controller(_scheduler(paused))
    for name, mm in (("worse", 5.0), ("better", 1.0)):
        controller.add(_Trial(name, 10, _flat(mm)))
    controller.run()
    assert paused == [("worse", 2)], "only the first pauses; the second decides the rung"
    assert {t.trial_id: t.done for t in controller.trials} == {"worse": 2, "better": 10}
    assert controller.runs == [("worse", 1), ("better", 1)]


def test_ranked_by_the_best_score_so_far_not_the_rungs_epoch() -> None:
    # "dips" was best at epoch 1 and worse at its rung epoch: its best counts
    controller = _Controller(_scheduler())
    controller.add(_Trial("dips", 10, lambda e: 1.0 if e == 1 else 9.0))
    controller.add(_Trial("steady", 10, _flat(5.0)))
    controller.run()
    assert {t.trial_id: t.done for t in controller.trials} == {"dips": 10, "steady": 2}


def test_a_trial_that_ends_before_a_rung_releases_those_waiting_for_it() -> None:
    controller = _Controller(_scheduler())
    controller.add(_Trial("long-a", 10, _flat(2.0)))
    controller.add(_Trial("long-b", 10, _flat(3.0)))
    controller.add(_Trial("short", 3, _flat(1.0)))  # done after 3 epochs, before rung 4
    controller.run()
    done = {t.trial_id: t.done for t in controller.trials}
    # rung 2: 3 trials, 1 goes on ("short", the best); it ends at 3, nobody is left waiting
    assert done == {"long-a": 2, "long-b": 2, "short": 3}


def test_a_trial_added_after_its_rung_was_decided_is_judged_against_those_there() -> None:
    controller = _Controller(_scheduler())
    controller.add(_Trial("a", 10, _flat(2.0)))
    controller.add(_Trial("b", 10, _flat(4.0)))
    controller.run(late=[_Trial("late-good", 10, _flat(1.0)),
                         _Trial("late-poor", 10, _flat(9.0))])
    done = {t.trial_id: t.done for t in controller.trials}
    assert done["b"] == 2 and done["late-poor"] == 2, done
    assert done["late-good"] == 10, "ranked first among the rung's arrivals"
    assert done["a"] >= 4


def test_a_single_trial_never_pauses() -> None:
    paused: list[tuple[str, int]] = []
    controller = _Controller(_scheduler(paused))
    controller.add(_Trial("only", 10, _flat(3.0)))
    controller.run()
    assert paused == [] and controller.trials[0].done == 10


def test_the_trial_a_rung_keeps_goes_on_with_the_cpus_its_rivals_freed() -> None:
    # 2 trials on a 2-CPU node, one CPU each: after rung 2 the survivor takes both
    widened: list[tuple[str, int, float]] = []
    paused: list[tuple[str, int]] = []
    controller = _Controller(_scheduler(paused, cpus=CpuBudget(1, 2, 2, 2), widened=widened))
    for name, mm in (("worse", 5.0), ("better", 1.0)):
        controller.add(_Trial(name, 10, _flat(mm)))
    controller.run()
    assert paused == [("worse", 2)]
    # "better" completed the rung while running: Ray cannot resize a running worker, so it
    # paused too and went on, from epoch 3, with both CPUs
    assert widened == [("better", 2, 2.0)]
    assert controller.cpus == [("worse", 1, 1.0), ("better", 1, 1.0), ("better", 3, 2.0)]
    assert {t.trial_id: t.done for t in controller.trials} == {"worse": 2, "better": 10}


def test_a_paused_survivor_is_resized_before_it_resumes() -> None:
    widened: list[tuple[str, int, float]] = []
    controller = _Controller(_scheduler(cpus=CpuBudget(1, 2, 2, 2), widened=widened))
    for name, mm in (("better", 1.0), ("worse", 5.0)):
        controller.add(_Trial(name, 10, _flat(mm)))
    controller.run()
    assert widened == [("better", 2, 2.0)], "told, and resized where it waits"
    assert controller.cpus == [("better", 1, 1.0), ("worse", 1, 1.0), ("better", 3, 2.0)]


def test_shares_grow_within_a_node_and_only_when_they_grow() -> None:
    # 4 trials on 4 CPUs of 2-CPU nodes: rung 2 keeps 2 (2 CPUs each, a node's); rung 4
    # keeps 1, whose share would be 4 but one node has 2: it goes on as it is
    widened: list[tuple[str, int, float]] = []
    controller = _Controller(_scheduler(cpus=CpuBudget(1, 4, 2, 4), widened=widened))
    for index in range(4):
        controller.add(_Trial(f"q{index + 1}", 10, _flat(index + 1.0)))
    controller.run()
    stretches = {(t, first): cpus for t, first, cpus in controller.cpus}
    assert stretches[("q1", 3)] == stretches[("q2", 3)] == 2.0
    assert stretches[("q1", 5)] == 2.0
    assert widened == [("q1", 2, 2.0), ("q2", 2, 2.0)], "told once, at rung 2"
    assert {t.trial_id: t.done for t in controller.trials} == {"q1": 10, "q2": 4, "q3": 2,
                                                               "q4": 2}


def test_cpus_stay_while_a_trial_of_the_sweep_has_still_to_start() -> None:
    # the sweep has 3 trials; Tune adds the third only after rung 2 was decided: the CPUs
    # the rung freed are the third trial's, not the survivor's
    controller = _Controller(_scheduler(cpus=CpuBudget(1, 2, 2, 3)))
    controller.add(_Trial("a", 10, _flat(2.0)))
    controller.add(_Trial("b", 10, _flat(4.0)))
    controller.run(late=[_Trial("late", 10, _flat(3.0))])
    assert {cpus for _, _, cpus in controller.cpus} == {1.0}


def test_a_budget_splits_whole_cpus_within_a_node() -> None:
    budget = CpuBudget(per_trial=1, sweep=3, node=8, trials=3)
    assert (budget.share(3), budget.share(2), budget.share(1)) == (1, 1, 3)
    assert CpuBudget(per_trial=2, sweep=8, node=4, trials=4).share(1) == 4


@pytest.mark.parametrize(("epoch_s", "grows"), [(3.0, False), (4.0, True)])
def test_cpus_move_only_for_epochs_left_that_pay_for_a_new_worker(epoch_s: float,
                                                                  grows: bool) -> None:
    # 8 epochs left after rung 2: 24 s at 3 s an epoch is below the 30 s worth a new
    # worker's TensorFlow import; 32 s at 4 s is above
    widened: list[tuple[str, int, float]] = []
    controller = _Controller(_scheduler(cpus=CpuBudget(1, 2, 2, 2), widened=widened))
    for name, mm in (("worse", 5.0), ("better", 1.0)):
        controller.add(_Trial(name, 10, _flat(mm), epoch_s=epoch_s))
    controller.run()
    assert (widened == [("better", 2, 2.0)]) is grows
    assert controller.cpus[-1] == (("better", 3, 2.0) if grows else ("better", 1, 1.0))
