"""Sweeps outlive the faults of what they run on.

- A registry outage: the registry is stopped before the sweep needs it (the snapshot and
  the trials do not), so the sweep reaches its holdout evaluation with the registry down
  whatever the machine's speed; a registry restarted on the same address then gets the
  registration, exactly once.
- A Ray worker killed (SIGKILL) in the middle of a trial: Tune starts the trial again from
  its checkpoint and the sweep succeeds.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import grpc
import psutil
from edgeloop.contracts.registry.v1 import registry_service_pb2
from edgeloop.contracts.trainer.v1 import sweep_pb2 as S
from edgeloop.contracts.trainer.v1 import trainer_service_pb2 as pb
from edgeloop.platform import bearer

ADMIN = "trainer-tests-admin-token-0123456789"
DEPLOYMENT = "garage-beige"

TINY_SPACE = S.SearchSpace(learning_rates=[1e-3], batch_sizes=[32], epochs=[2],
                           architectures=["small"], filters=[8], dropouts=[0.1], dense_units=[16])


def _events_until_waiting(stub: Any, sweep_id: str) -> list[S.SweepEvent]:
    """Follow the sweep until it says it waits (or ends); the events seen."""
    seen: list[S.SweepEvent] = []
    call = stub.WatchSweep(pb.WatchSweepRequest(sweep_id=sweep_id), timeout=900)
    try:
        for reply in call:
            seen.append(reply.event)
            if reply.event.type == S.SWEEP_EVENT_TYPE_WAITING:
                break
    finally:
        call.cancel()
    return seen


def test_a_sweep_waits_for_the_registry_and_registers_once(stack: Any) -> None:
    address = stack.registry.address
    stack.registry.stop()  # down before the sweep needs it: no race with the trials
    with grpc.insecure_channel(stack.trainer.address) as channel:
        stub = stack.trainer_stub(channel)
        sweep_id = stub.StartSweep(pb.StartSweepRequest(
            data=S.DataSelection(deployments=[DEPLOYMENT]), search_space=TINY_SPACE,
            num_trials=1, promote=True, deployment=DEPLOYMENT), timeout=60).sweep.sweep_id
        before = _events_until_waiting(stub, sweep_id)
        assert before[-1].type == S.SWEEP_EVENT_TYPE_WAITING, [e.message for e in before]
        assert "registry" in before[-1].message and "UNAVAILABLE" in before[-1].message
        assert before[-1].state == S.SWEEP_STATE_RUNNING

        stack.start_registry_again()
        after = [r.event for r in stub.WatchSweep(pb.WatchSweepRequest(sweep_id=sweep_id),
                                                  timeout=600)]
        sweep = stub.GetSweep(pb.GetSweepRequest(sweep_id=sweep_id), timeout=30).sweep
    assert sweep.state == S.SWEEP_STATE_SUCCEEDED, sweep.error
    assert sweep.model_version == "1" and sweep.promoted, sweep.promotion_note
    kinds = [e.type for e in after]
    assert kinds.index(S.SWEEP_EVENT_TYPE_WAITING) < kinds.index(
        S.SWEEP_EVENT_TYPE_VERSION_REGISTERED)
    with grpc.insecure_channel(address) as channel:
        listed = stack.registry_stub(channel).ListModelVersions(
            registry_service_pb2.ListModelVersionsRequest(model_name="distance"),
            metadata=bearer(ADMIN), timeout=30).versions
    assert [(v.version, list(v.aliases)) for v in listed] == [("1", ["champion"])]


def _trial_workers() -> list[psutil.Process]:
    """The Ray actor processes of function trials. Ray titles them ``ray::ImplicitFunc``,
    plus ``.train()`` only while a training step runs, so the match ignores the method."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        title = " ".join(process.info["cmdline"] or [])
        if title.startswith("ray::ImplicitFunc"):
            found.append(process)
    return found


def test_a_trial_whose_worker_is_killed_starts_again_and_the_sweep_succeeds(stack: Any) -> None:
    epochs = 30  # long enough that the trial is still running when its worker is killed
    space = S.SearchSpace(learning_rates=[1e-3], batch_sizes=[32], epochs=[epochs],
                          architectures=["small"], filters=[8], dropouts=[0.1], dense_units=[16])
    with grpc.insecure_channel(stack.trainer.address) as channel:
        stub = stack.trainer_stub(channel)
        sweep_id = stub.StartSweep(pb.StartSweepRequest(
            model_name="distance-retried", data=S.DataSelection(deployments=[DEPLOYMENT]),
            search_space=space, num_trials=1), timeout=60).sweep.sweep_id
        call = stub.WatchSweep(pb.WatchSweepRequest(sweep_id=sweep_id), timeout=900)
        killed: list[int] = []
        try:
            for reply in call:  # the first epoch is checkpointed: kill the worker after it
                if reply.event.type == S.SWEEP_EVENT_TYPE_EPOCH:
                    for worker in _trial_workers():
                        os.kill(worker.pid, signal.SIGKILL)
                        killed.append(worker.pid)
                    break
        finally:
            call.cancel()
        assert killed, "no trial worker process found to kill"
        events = [r.event for r in stub.WatchSweep(pb.WatchSweepRequest(sweep_id=sweep_id),
                                                   timeout=900)]
        sweep = stub.GetSweep(pb.GetSweepRequest(sweep_id=sweep_id), timeout=30).sweep
    assert sweep.state == S.SWEEP_STATE_SUCCEEDED, sweep.error
    (trial,) = sweep.trials
    assert trial.state == "TERMINATED" and trial.epochs_done == epochs
    restarts = [e.message for e in events if "started again after its worker failed" in e.message]
    assert len(restarts) == 1, [e.message for e in events]
    assert sweep.model_version, "the restarted trial's model was registered"
