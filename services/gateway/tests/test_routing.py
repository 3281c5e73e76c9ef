"""Routing strategies, tested statistically with fixed seeds."""

from __future__ import annotations

import random

import numpy as np
import pytest
from edgeloop.contracts.registry.v1 import deployment_pb2
from edgeloop.gateway.hosts.base import ModelKey
from edgeloop.gateway.routing import DeploymentView, Router, device_fraction

S = deployment_pb2.Strategy
V1, V2, V3 = (ModelKey("distance", v, f"/models/distance/{v}") for v in ("1", "2", "3"))
DEVICES = [f"robot-{i}" for i in range(4000)]


def view(strategy: int, arms: dict[str, ModelKey | None], **kw: object) -> DeploymentView:
    return DeploymentView(name="parking", strategy=strategy, arms=arms, **kw)


def test_direct_answers_with_stable_and_no_shadow() -> None:
    route = Router().route(view(S.STRATEGY_DIRECT, {"stable": V1}), "robot-1")
    assert (route.arm, route.key, route.shadows) == ("stable", V1, ())


def test_nothing_resolved_routes_to_no_arm() -> None:
    for arms in ({}, {"stable": None}):
        route = Router().route(view(S.STRATEGY_DIRECT, arms), "robot-1")
        assert (route.arm, route.key) == ("none", None)


def test_shadow_answers_with_stable_and_shadows_the_challenger() -> None:
    route = Router().route(view(S.STRATEGY_SHADOW, {"stable": V1, "shadow": V2}), "robot-1")
    assert (route.arm, route.key, route.shadows) == ("stable", V1, (("shadow", V2),))


def test_shadow_without_resolved_challenger_is_plain_stable() -> None:
    route = Router().route(view(S.STRATEGY_SHADOW, {"stable": V1, "shadow": None}), "robot-1")
    assert (route.arm, route.shadows) == ("stable", ())


@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.5])
def test_canary_share_matches_the_fraction(fraction: float) -> None:
    router = Router()
    deployment = view(S.STRATEGY_CANARY, {"stable": V1, "canary": V2}, canary_fraction=fraction)
    share = np.mean([router.route(deployment, d).arm == "canary" for d in DEVICES])
    # 4000 devices: binomial sd <= 0.8 %; 3 sd of tolerance.
    assert share == pytest.approx(
        fraction, abs=3 * np.sqrt(fraction * (1 - fraction) / len(DEVICES))
    )


def test_canary_is_stable_per_device_and_grows_monotonically() -> None:
    router = Router()
    small = view(S.STRATEGY_CANARY, {"stable": V1, "canary": V2}, canary_fraction=0.1)
    large = view(S.STRATEGY_CANARY, {"stable": V1, "canary": V2}, canary_fraction=0.3)
    for device in DEVICES[:500]:
        arms = {router.route(small, device).arm for _ in range(5)}
        assert len(arms) == 1  # the same device always lands on the same arm
        if arms == {"canary"}:  # raising the fraction never moves a canary device back
            assert router.route(large, device).arm == "canary"


def test_canary_split_differs_between_deployments() -> None:
    # The hash includes the deployment, so one unlucky device is not the canary everywhere.
    a = [device_fraction(d, "parking") < 0.5 for d in DEVICES[:1000]]
    b = [device_fraction(d, "garage") < 0.5 for d in DEVICES[:1000]]
    assert 0.4 < np.mean(np.array(a) == np.array(b)) < 0.6


def test_ab_splits_devices_half_and_half_and_sticks() -> None:
    router = Router()
    deployment = view(S.STRATEGY_AB, {"a": V1, "b": V2})
    arms = [router.route(deployment, d).arm for d in DEVICES]
    assert set(arms) == {"a", "b"}
    assert np.mean([arm == "a" for arm in arms]) == pytest.approx(0.5, abs=0.025)
    assert [router.route(deployment, d).arm for d in DEVICES[:200]] == arms[:200]
    assert all(
        router.route(deployment, d).key == (V1 if arm == "a" else V2)
        for d, arm in zip(DEVICES[:200], arms, strict=False)
    )


def test_ab_falls_back_to_the_resolved_arm() -> None:
    deployment = view(S.STRATEGY_AB, {"a": V1, "b": None})
    assert {Router().route(deployment, d).arm for d in DEVICES[:100]} == {"a"}


def _run_bandit(
    seed: int, errors_sd: dict[str, tuple[float, float]], frames: int
) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    router = Router(random.Random(seed))
    arms = {"old": V1, "new": V2, "odd": V3}
    deployment = view(S.STRATEGY_BANDIT, {name: arms[name] for name in errors_sd})
    counts = dict.fromkeys(errors_sd, 0)
    for i in range(frames):
        route = router.route(deployment, f"robot-{i % 10}")
        counts[route.arm] += 1
        mean, sd = errors_sd[route.arm]
        sensor = 1000.0
        router.learn(deployment, route, sensor + rng.normal(mean, sd), sensor)
    return counts


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bandit_converges_to_the_better_arm(seed: int) -> None:
    counts = _run_bandit(
        seed, {"old": (80.0, 30.0), "new": (20.0, 30.0), "odd": (150.0, 60.0)}, 2000
    )
    assert counts["new"] > 0.85 * sum(counts.values())
    assert min(counts.values()) > 0  # every arm was tried


def test_bandit_late_frames_go_to_the_winner() -> None:
    router = Router(random.Random(7))
    deployment = view(S.STRATEGY_BANDIT, {"old": V1, "new": V2})
    rng = np.random.default_rng(7)
    for _ in range(1000):
        route = router.route(deployment, "robot-1")
        error = rng.normal(60.0 if route.arm == "old" else 10.0, 20.0)
        router.learn(deployment, route, 1000.0 + error, 1000.0)
    late = [router.route(deployment, "robot-1").arm for _ in range(200)]
    assert late.count("new") >= 195


def test_bandit_does_not_learn_from_other_strategies() -> None:
    router = Router(random.Random(1))
    deployment = view(S.STRATEGY_DIRECT, {"stable": V1})
    route = router.route(deployment, "robot-1")
    router.learn(deployment, route, 1100.0, 1000.0)
    assert router.bandit.pulls("parking", "stable", "1") == 0


def test_deployment_view_resolves_paths_in_the_repository() -> None:
    deployment = deployment_pb2.Deployment(
        name="parking",
        resolved=[
            deployment_pb2.ResolvedArm(
                arm="stable",
                model_name="distance",
                model_version="4",
                model_path="distance/4",
                version_label="stable",
            ),
            deployment_pb2.ResolvedArm(arm="canary", model_name="distance", model_version="5"),
            deployment_pb2.ResolvedArm(arm="shadow", model_name="distance", model_version=""),
        ],
    )
    arms = DeploymentView.from_proto(deployment, "/repo").arms
    # The label is dropped: hosts are called by number (a label moves during a switch).
    assert arms["stable"] == ModelKey("distance", "4", "/repo/distance/4", "")
    assert arms["canary"] == ModelKey("distance", "5", "/repo/distance/5", "")
    assert arms["shadow"] is None
