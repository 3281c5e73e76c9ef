"""Deployment changes while robots stream, strategies through the stream, auth cache and revocation.

Registry and features are contract doubles (see conftest.py); the models are real
SavedModels whose answers say which version made them (version v answers v*1000 + [0, 100]).
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from edgeloop.contracts.registry.v1 import deployment_pb2
from grpc import aio

S = deployment_pb2.Strategy


async def _drive(gw, requests, jpegs, device: str, frames: int, pause_s: float = 0.005,
                 answers: list | None = None, hold: tuple[int, asyncio.Event] | None = None,
                 ) -> list:
    """One robot streaming ``frames`` frames, a little apart; returns every answer.

    ``answers`` collects them as they come; with ``hold=(seq, event)`` the robot waits for
    ``event`` before sending frame ``seq`` (its stream stays open meanwhile).
    """
    call = gw.open(device, f"secret-{device}")
    answers = [] if answers is None else answers

    async def receive() -> None:
        async for answer in call:
            answers.append(answer)

    receiver = asyncio.create_task(receive())
    await call.write(requests.hello(device, f"session-{device}"))
    for seq in range(1, frames + 1):
        if hold is not None and seq == hold[0]:
            await hold[1].wait()
        await call.write(requests.frame(seq, jpegs[seq % 8], 1500.0))
        await asyncio.sleep(pause_s)
    await call.done_writing()
    await receiver
    return answers


async def test_version_switch_while_ten_robots_stream(
    start_gateway, requests, jpegs, deployments, answer_version
) -> None:
    async with start_gateway() as gw:
        robots = [f"r{i}" for i in range(10)]
        for robot in robots:
            gw.registry.assign(robot, f"secret-{robot}", "parking")
        await gw.wait_state(lambda: all(gw.app.state.deployment_of(r) == "parking" for r in robots))
        # The switch happens while all ten streams are open and frames are in flight; its
        # moments are conditions, not durations: every robot has answers from version 1
        # before it, and frames 31-60 are sent once the gateway routes to version 2.
        answers: dict[str, list] = {r: [] for r in robots}
        switched = asyncio.Event()
        drives = [asyncio.create_task(_drive(gw, requests, jpegs, r, 60, answers=answers[r],
                                             hold=(31, switched))) for r in robots]
        await gw.wait_state(lambda: all(len(a) >= 6 for a in answers.values()), timeout_s=120)
        gw.registry.put_deployment(deployments.direct("parking", "2"))
        await gw.wait_state(lambda: gw.app.state.get("parking").arms["stable"].version == "2",
                            timeout_s=120)
        switched.set()
        results = await asyncio.gather(*drives)

        for answers in results:
            predictions = [a.prediction for a in answers[1:]]
            assert all(a.HasField("prediction") for a in answers[1:]), "no frame may fail"
            assert sorted(p.seq for p in predictions) == list(range(1, 61)), "no frame lost"
            for p in predictions:  # every answer names the version that made it
                assert p.model_version == answer_version(p.distance_mm)
            ordered = [p.model_version for p in sorted(predictions, key=lambda p: p.seq)]
            assert ordered == sorted(ordered), "a robot never goes back to the old version"
        versions = {p.prediction.model_version for answers in results for p in answers[1:]}
        assert versions == {"1", "2"}
        await gw.features.wait_for(600)
        assert all(
            o.model_version == answer_version(o.prediction_mm) for o in gw.features.stored.values()
        )


async def test_a_frame_decoded_late_keeps_the_version_it_was_routed_to(
    start_gateway, requests, jpegs, deployments, answer_version, monkeypatch
) -> None:
    # A stream's frames decode side by side: frame 1's decode is held until the deployment
    # has switched to version 2 while frame 2's finishes at once. Routing at the end of the
    # decode sent frame 2 to version 1 and frame 1 to version 2 (CI found it in the test
    # above); routed when received, both go to version 1, in the robot's order.
    async with start_gateway() as gw:
        gw.registry.assign("late", "secret-late", "parking")
        await gw.wait_state(lambda: gw.app.state.deployment_of("late") == "parking")
        decoder = gw.app.frames._decoder
        decode, held, release = decoder.decode, asyncio.Event(), asyncio.Event()
        calls = 0

        async def first_one_late(jpeg: bytes):  # noqa: ANN202 - the decoder's own type
            nonlocal calls
            calls += 1
            if calls == 1:
                held.set()
                await release.wait()
            return await decode(jpeg)

        monkeypatch.setattr(decoder, "decode", first_one_late)
        answers: list = []
        call = gw.open("late", "secret-late")

        async def receive() -> None:
            async for answer in call:
                answers.append(answer)

        receiver = asyncio.create_task(receive())
        await call.write(requests.hello("late", "session-late"))
        await call.write(requests.frame(1, jpegs[1], 1500.0))
        await held.wait()
        await call.write(requests.frame(2, jpegs[2], 1500.0))
        await gw.wait_state(lambda: any(a.HasField("prediction") for a in answers))
        gw.registry.put_deployment(deployments.direct("parking", "2"))
        await gw.wait_state(lambda: gw.app.state.get("parking").arms["stable"].version == "2",
                            timeout_s=120)
        release.set()
        await call.done_writing()
        await receiver
        by_seq = {a.prediction.seq: a.prediction for a in answers if a.HasField("prediction")}
        assert sorted(by_seq) == [1, 2]
        for p in by_seq.values():
            assert p.model_version == answer_version(p.distance_mm)
        assert [by_seq[1].model_version, by_seq[2].model_version] == ["1", "1"]


async def test_new_version_is_loaded_before_it_takes_traffic_and_old_one_released(
    start_gateway, requests, jpegs, deployments, monkeypatch
) -> None:
    import edgeloop.gateway.deployments as deployments_module

    monkeypatch.setattr(deployments_module, "RELEASE_GRACE_S", 0.1)
    async with start_gateway() as gw:
        host = gw.app.batcher.host
        events: list[str] = []
        original_load, original_release = host.ensure_loaded, host.release

        async def load(key):
            events.append(f"load {key.version}")
            await original_load(key)
            events.append(f"ready {key.version}")

        async def release(key):
            events.append(f"release {key.version}")
            await original_release(key)

        monkeypatch.setattr(host, "ensure_loaded", load)
        monkeypatch.setattr(host, "release", release)
        gw.registry.put_deployment(deployments.direct("parking", "3"))
        await gw.wait_state(lambda: "release 1" in events)
        assert events == ["load 3", "ready 3", "release 1"]
        assert host.ready_keys()[0].version == "3" and len(host.ready_keys()) == 1
        answers = await gw.exchange(
            "robot-1", "secret-1", [requests.hello("robot-1"), requests.frame(1, jpegs[0])]
        )
        assert answers[1].prediction.model_version == "3"


async def test_unloadable_version_keeps_the_old_routing(
    start_gateway, requests, jpegs, deployments, tmp_path, monkeypatch
) -> None:
    async with start_gateway() as gw:
        host = gw.app.batcher.host
        failed: list[str] = []
        original_load = host.ensure_loaded

        async def load(key):
            try:
                await original_load(key)
            except Exception:
                failed.append(key.version)
                raise

        monkeypatch.setattr(host, "ensure_loaded", load)
        broken = deployments.direct("parking", "9")
        broken.resolved[0].model_path = str(tmp_path / "no-such-model")
        gw.registry.put_deployment(broken)
        # The load of version 9 was tried and failed (the change is applied in the same step).
        await gw.wait_state(lambda: "9" in failed)
        answers = await gw.exchange(
            "robot-1", "secret-1", [requests.hello("robot-1"), requests.frame(1, jpegs[0])]
        )
        assert answers[1].prediction.model_version == "1"


def _two_arm(strategy: int, arms: tuple[str, str], deployments, **kw) -> deployment_pb2.Deployment:
    return deployment_pb2.Deployment(
        name="parking",
        model_name="distance",
        data_group="group-1",
        active=True,
        strategy=strategy,
        resolved=[deployments.resolved(arms[0], "1"), deployments.resolved(arms[1], "2")],
        **kw,
    )


async def test_shadow_answers_stable_and_records_the_challenger(
    start_gateway, requests, jpegs, deployments, answer_version
) -> None:
    async with start_gateway() as gw:
        gw.registry.put_deployment(_two_arm(S.STRATEGY_SHADOW, ("stable", "shadow"), deployments))
        await gw.wait_state(lambda: "shadow" in gw.app.state.get("parking").arms)
        answers = await gw.exchange(
            "robot-1",
            "secret-1",
            [requests.hello("robot-1"), *(requests.frame(s, jpegs[s % 8]) for s in range(1, 11))],
        )
        for answer in answers[1:]:
            assert answer.prediction.arm == "stable" and answer.prediction.model_version == "1"
        await gw.features.wait_for(10)
        for obs in gw.features.stored.values():
            (shadow,) = obs.shadow_predictions
            assert (shadow.arm, shadow.model_name, shadow.model_version) == (
                "shadow",
                "distance",
                "2",
            )
            assert answer_version(shadow.prediction_mm) == "2"
            assert obs.arm == "stable" and answer_version(obs.prediction_mm) == "1"


async def test_canary_devices_stay_on_their_arm(
    start_gateway, requests, jpegs, deployments, answer_version
) -> None:
    async with start_gateway() as gw:
        gw.registry.put_deployment(
            _two_arm(S.STRATEGY_CANARY, ("stable", "canary"), deployments, canary_fraction=0.5)
        )
        robots = [f"c{i}" for i in range(12)]
        for robot in robots:
            gw.registry.assign(robot, f"secret-{robot}", "parking")
        await gw.wait_state(lambda: all(gw.app.state.deployment_of(r) == "parking" for r in robots))
        results = await asyncio.gather(*(_drive(gw, requests, jpegs, r, 5, 0) for r in robots))
        arms_per_robot = [{a.prediction.arm for a in answers[1:]} for answers in results]
        assert all(len(arms) == 1 for arms in arms_per_robot)
        assert {next(iter(arms)) for arms in arms_per_robot} == {"stable", "canary"}
        for answers in results:
            for a in answers[1:]:
                expected = "2" if a.prediction.arm == "canary" else "1"
                assert (
                    a.prediction.model_version
                    == expected
                    == answer_version(a.prediction.distance_mm)
                )


async def test_bandit_learns_from_labelled_frames(
    start_gateway, requests, jpegs, deployments
) -> None:
    async with start_gateway() as gw:
        bandit = _two_arm(S.STRATEGY_BANDIT, ("near", "far"), deployments)
        bandit.arms.extend([deployment_pb2.Arm(name="near"), deployment_pb2.Arm(name="far")])
        gw.registry.put_deployment(bandit)
        await gw.wait_state(lambda: gw.app.state.get("parking").strategy == S.STRATEGY_BANDIT)
        # The sensor says 1050 mm: version 1 ("near", ~1050) errs by tens of mm, version 2 by ~1000.
        answers = await gw.exchange(
            "robot-1",
            "secret-1",
            [
                requests.hello("robot-1"),
                *(requests.frame(s, jpegs[s % 8], sensor_mm=1050.0) for s in range(1, 201)),
            ],
        )
        arms = [a.prediction.arm for a in sorted(answers[1:], key=lambda a: a.prediction.seq)]
        assert set(arms) == {"near", "far"}  # both were explored
        assert arms[-100:].count("near") >= 95


async def test_credentials_are_cached_until_revoked(start_gateway, requests, jpegs) -> None:
    async with start_gateway() as gw:
        for session in range(3):
            answers = await gw.exchange(
                "robot-1",
                "secret-1",
                [requests.hello("robot-1", f"s{session}"), requests.frame(1, jpegs[0])],
            )
            assert answers[1].HasField("prediction")
        assert gw.registry.auth_calls == 1


async def test_revocation_ends_a_live_stream(start_gateway, requests, jpegs) -> None:
    async with start_gateway() as gw:
        call = gw.open("robot-1", "secret-1")
        await call.write(requests.hello("robot-1"))
        assert (await call.read()).HasField("welcome")
        await call.write(requests.frame(1, jpegs[0]))
        assert (await call.read()).HasField("prediction")
        gw.registry.revoke("robot-1")
        await gw.wait_state(lambda: gw.app.auth.generation("robot-1") == 1)
        await call.write(requests.frame(2, jpegs[1]))
        with pytest.raises(aio.AioRpcError) as failure:
            await call.read()
        assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(aio.AioRpcError) as again:
            await gw.exchange("robot-1", "secret-1", [requests.hello("robot-1")])
        assert again.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_moved_version_label_does_not_unload_the_version(
    start_gateway, requests, jpegs, deployments, monkeypatch
) -> None:
    """The registry withdraws a TF Serving label when two deployments disagree on it; the
    embedded host must keep serving the version (its key must not change with the label)."""
    import edgeloop.gateway.deployments as deployments_module

    monkeypatch.setattr(deployments_module, "RELEASE_GRACE_S", 0.05)
    async with start_gateway() as gw:
        labelled = deployments.direct("parking", "1")
        labelled.resolved[0].version_label = "stable"
        gw.registry.put_deployment(labelled)
        await gw.wait_state(lambda: gw.app.state.get("parking").revision == 1)
        gw.registry.put_deployment(deployments.direct("parking", "1"))  # label withdrawn
        await gw.wait_state(lambda: gw.app.state.get("parking").revision == 2)
        # Past the release grace: every release the change scheduled has run.
        await gw.wait_state(lambda: not gw.app.watcher._releases)
        answers = await gw.exchange(
            "robot-1", "secret-1", [requests.hello("robot-1"), requests.frame(1, jpegs[0])]
        )
        assert answers[1].prediction.model_version == "1"
