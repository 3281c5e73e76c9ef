"""Restart recovery (real PostgreSQL); the trainer's own Ray (real Ray): the dashboard's token
authentication, no idle workers."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest
from edgeloop.contracts.trainer.v1 import sweep_pb2, trainer_service_pb2
from edgeloop.trainer.events import EventBus, make_event
from edgeloop.trainer.store import SweepStore
from edgeloop.trainer.sweeps import RESTARTED, Dependencies, SweepManager
from google.protobuf.timestamp_pb2 import Timestamp


def _deps(store: SweepStore, bus: EventBus | None = None) -> Dependencies:
    """What a SweepManager needs to recover, finish and cancel sweeps: the store and its bus."""
    return Dependencies(settings=None, store=store, bus=bus or EventBus(store),  # type: ignore[arg-type]
                        objects=None, features=None, registry=None,  # type: ignore[arg-type]
                        work_dir=Path("."), total_cpus=1)


async def test_a_sweep_left_running_is_failed_at_start(database_url: str) -> None:
    store = SweepStore(database_url)
    await store.open()
    try:
        now = Timestamp()
        now.GetCurrentTime()
        left = sweep_pb2.Sweep(
            sweep_id="left-running",
            model_name="distance",
            state=sweep_pb2.SWEEP_STATE_RUNNING,
            created_at=now,
        )
        done = sweep_pb2.Sweep(
            sweep_id="finished",
            model_name="distance",
            state=sweep_pb2.SWEEP_STATE_SUCCEEDED,
            created_at=now,
        )
        for sweep in (left, done):
            await store.insert(sweep, trainer_service_pb2.StartSweepRequest())
        await SweepManager(_deps(store)).recover()
        failed = await store.get("left-running")
        assert failed.state == sweep_pb2.SWEEP_STATE_FAILED and failed.error == RESTARTED
        assert failed.HasField("finished_at")
        assert (await store.get("finished")).state == sweep_pb2.SWEEP_STATE_SUCCEEDED
        events = [e for _, e in await store.events_after("left-running", 0)]
        assert events[-1].message == RESTARTED and events[-1].state == sweep_pb2.SWEEP_STATE_FAILED
    finally:
        await store.close()


def _get(url: str, token: str | None) -> int:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_ray_dashboard_requires_the_token(ray_info: Any) -> None:
    assert ray_info.dashboard_url.startswith("http://127.0.0.1:")
    token = Path(ray_info.token_file).read_text().strip()
    assert len(token) >= 32
    url = f"{ray_info.dashboard_url}/api/version"
    assert _get(url, None) in (401, 403)
    assert _get(url, "not-the-token") in (401, 403)
    assert _get(url, token) == 200


def _idle_ray_workers() -> list[str]:
    """This process's Ray worker processes that run no actor: still starting, or ray::IDLE."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            command = process.cmdline()
        except psutil.Error:
            continue
        if command and (command[0].startswith("ray::IDLE") or (
                "raylet" not in command[0] and any("default_worker.py" in a for a in command))):
            found.append(" ".join(command)[:80])
    return found


def test_the_trainers_ray_starts_no_idle_workers(ray_info: Any) -> None:
    # A raylet forks one worker per CPU as the driver registers, i.e. before start_ray
    # returns; they would stay until Ray stops, never used (trials are actors).
    assert ray_info.started_here
    assert _idle_ray_workers() == []


def test_the_trainers_ray_workers_start_with_few_malloc_arenas(ray_info: Any) -> None:
    import ray  # noqa: PLC0415 - the session's Ray, started by the ray_info fixture

    @ray.remote(num_cpus=0)
    def arenas() -> str | None:
        import os  # noqa: PLC0415 - runs in the worker

        return os.environ.get("MALLOC_ARENA_MAX")

    assert ray_info.started_here
    assert ray.get(arenas.remote(), timeout=120) == "2"


async def test_a_watch_ends_with_the_final_state_even_before_its_event_is_stored(
        database_url: str) -> None:
    """The race of issue 16: the state was saved, the event carrying it not yet."""
    store = SweepStore(database_url)
    await store.open()
    try:
        sweep = sweep_pb2.Sweep(sweep_id="racing", model_name="distance",
                                state=sweep_pb2.SWEEP_STATE_RUNNING)
        await store.insert(sweep, trainer_service_pb2.StartSweepRequest())
        bus = EventBus(store)
        await bus.emit(make_event(sweep, sweep_pb2.SWEEP_EVENT_TYPE_PROMOTION, "promoted"))
        sweep.state = sweep_pb2.SWEEP_STATE_SUCCEEDED
        await store.save(sweep)  # ... and the process stops before it stores the event
        events = [event async for event in bus.watch("racing")]
        assert [e.message for e in events[:-1]] == ["promoted"]
        assert events[-1].state == sweep_pb2.SWEEP_STATE_SUCCEEDED
        assert events[-1].type == sweep_pb2.SWEEP_EVENT_TYPE_STATE_CHANGED
    finally:
        await store.close()


async def test_a_finished_sweep_stores_its_final_event_before_its_state(database_url: str) -> None:
    """Watchers stop at the final state, so the final event must be stored first."""
    store = SweepStore(database_url)
    await store.open()
    try:
        sweep = sweep_pb2.Sweep(sweep_id="finishing", model_name="distance",
                                state=sweep_pb2.SWEEP_STATE_RUNNING)
        await store.insert(sweep, trainer_service_pb2.StartSweepRequest())
        seen: list[tuple[str, int]] = []

        class Recording(EventBus):
            async def emit(self, event: sweep_pb2.SweepEvent) -> None:
                stored = await self.store.get(event.sweep_id)
                seen.append((event.message, stored.state))
                await super().emit(event)

        deps = _deps(store, Recording(store))
        await SweepManager(deps)._finish(sweep, sweep_pb2.SWEEP_STATE_SUCCEEDED, "done")
        assert seen == [("done", sweep_pb2.SWEEP_STATE_RUNNING)]
        assert (await store.get("finishing")).state == sweep_pb2.SWEEP_STATE_SUCCEEDED
        events = [event async for event in deps.bus.watch("finishing")]
        assert events[-1].message == "done"
        assert events[-1].state == sweep_pb2.SWEEP_STATE_SUCCEEDED
    finally:
        await store.close()


async def test_a_cancel_while_the_sweep_is_being_started_keeps_it_cancelled(
        database_url: str) -> None:
    """CancelSweep between the start of a sweep's task and its first state: it never runs."""
    store = SweepStore(database_url)
    await store.open()
    try:
        sweep = sweep_pb2.Sweep(sweep_id="cancel-early", model_name="distance",
                                state=sweep_pb2.SWEEP_STATE_QUEUED)
        await store.insert(sweep, trainer_service_pb2.StartSweepRequest())
        loading, release = asyncio.Event(), asyncio.Event()
        read_request = store.request

        async def slow_request(sweep_id: str) -> trainer_service_pb2.StartSweepRequest:
            loading.set()  # the task has read the sweep (still QUEUED) and waits here
            await release.wait()
            return await read_request(sweep_id)

        store.request = slow_request  # type: ignore[method-assign]
        manager = SweepManager(_deps(store))
        await manager.kick("distance")
        task = manager.running["distance"]
        await asyncio.wait_for(loading.wait(), 30)
        answered = await manager.cancel("cancel-early")
        release.set()
        await asyncio.wait_for(task, 30)
        assert answered.state == sweep_pb2.SWEEP_STATE_CANCELLED
        assert (await store.get("cancel-early")).state == sweep_pb2.SWEEP_STATE_CANCELLED
        messages = [e.message for _, e in await store.events_after("cancel-early", 0)]
        assert "running" not in messages, messages
        assert "distance" not in manager.running and "cancel-early" not in manager.live
    finally:
        await store.close()


def test_the_trainer_limits_its_own_malloc_arenas_on_glibc() -> None:
    import platform  # noqa: PLC0415

    from edgeloop.trainer.raycluster import _limit_malloc_arenas  # noqa: PLC0415

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the arena limit is glibc's; this C library has none to set")
    assert _limit_malloc_arenas(2) is True
