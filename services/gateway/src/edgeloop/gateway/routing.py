"""Routing strategies: which arm (model version) answers a frame, and which only shadow it.

Arm names follow CONTRIBUTING.md: direct ``stable``; shadow ``stable`` answers and
``shadow`` is recorded; canary ``stable``/``canary``; A/B ``a``/``b``; bandit the
deployment's arm names; ``none`` when nothing resolves to a model.

Per-device splits (canary, A/B) hash (device id, deployment) to [0, 1), so a device
stays on its arm across reconnects and gateways. The bandit samples each arm's mean
reward (−|prediction − sensor|) from a Gaussian posterior (Thompson sampling) and
learns from every labelled frame.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from dataclasses import dataclass, field

from edgeloop.contracts.registry.v1 import deployment_pb2
from edgeloop.gateway.hosts.base import ModelKey

Strategy = deployment_pb2.Strategy
NO_ARM = "none"


@dataclass(frozen=True)
class DeploymentView:
    """A deployment as routing needs it: strategy, split and the resolved arms."""

    name: str
    data_group: str = ""
    strategy: int = Strategy.STRATEGY_DIRECT
    canary_fraction: float = 0.0
    active: bool = True
    revision: int = 0
    device_shadow: bool = False
    """Also predict device-predicted frames on the server (device/server agreement)."""
    arms: dict[str, ModelKey | None] = field(default_factory=dict)
    """Arm name → the model version it resolves to (None: resolves to nothing yet)."""

    @classmethod
    def from_proto(cls, deployment: deployment_pb2.Deployment,
                   model_repository: str = "") -> DeploymentView:
        """The view of a registry ``Deployment`` with its ``resolved`` arms.

        A relative or missing ``model_path`` is taken inside ``model_repository``
        (``<repository>/<model>/<version>``, the TF Serving layout). Version labels are
        dropped: every host is called by version number (a label can move to another
        version mid-switch), and the registry moves or withdraws a label without the
        version changing, so the same version must stay the same model key or it would
        be reloaded and released.
        """
        arms: dict[str, ModelKey | None] = {}
        for resolved in deployment.resolved:
            if not (resolved.model_name and resolved.model_version):
                arms[resolved.arm] = None
                continue
            path = resolved.model_path or os.path.join(resolved.model_name, resolved.model_version)
            if model_repository and not os.path.isabs(path):
                path = os.path.join(model_repository, path)
            arms[resolved.arm] = ModelKey(resolved.model_name, resolved.model_version, path)
        return cls(name=deployment.name, data_group=deployment.data_group,
                   strategy=deployment.strategy, canary_fraction=deployment.canary_fraction,
                   active=deployment.active, revision=deployment.revision,
                   device_shadow=deployment.device_shadow, arms=arms)

    def model_keys(self) -> set[ModelKey]:
        """Every model version this deployment may call."""
        return {key for key in self.arms.values() if key is not None}


@dataclass(frozen=True)
class Route:
    """The routing decision for one frame."""

    arm: str
    key: ModelKey | None
    shadows: tuple[tuple[str, ModelKey], ...] = ()


def device_fraction(device_id: str, deployment: str) -> float:
    """A stable pseudo-random number in [0, 1) for the device in this deployment."""
    digest = hashlib.blake2b(f"{device_id}\x00{deployment}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class _Posterior:
    """Running mean and variance (Welford) of one arm's rewards."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, reward: float) -> None:
        self.n += 1
        delta = reward - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (reward - self.mean)


class ThompsonBandit:
    """Gaussian Thompson sampling over arms on reward −|error| in mm."""

    PRIOR_MEAN = 0.0
    """Optimistic (a perfect model), so every arm gets tried early."""
    PRIOR_SD = 1000.0
    NOISE_SD = 100.0
    """Assumed reward noise until an arm has two samples of its own."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self._stats: dict[tuple[str, str, str], _Posterior] = {}

    def choose(self, deployment: str, arms: dict[str, ModelKey]) -> str:
        """The arm whose sampled mean reward is highest."""
        draws = {name: self._sample(self._stats.get((deployment, name, key.version)))
                 for name, key in arms.items()}
        return max(draws, key=draws.__getitem__)

    def _sample(self, post: _Posterior | None) -> float:
        if post is None or post.n == 0:
            return self.rng.gauss(self.PRIOR_MEAN, self.PRIOR_SD)
        noise_var = max(post.m2 / (post.n - 1), 1.0) if post.n > 1 else self.NOISE_SD**2
        precision = 1 / self.PRIOR_SD**2 + post.n / noise_var
        mean = (self.PRIOR_MEAN / self.PRIOR_SD**2 + post.n * post.mean / noise_var) / precision
        return self.rng.gauss(mean, math.sqrt(1 / precision))

    def reward(self, deployment: str, arm: str, version: str, abs_error_mm: float) -> None:
        """Learn from one labelled frame answered by ``arm``."""
        self._stats.setdefault((deployment, arm, version), _Posterior()).add(-abs_error_mm)

    def pulls(self, deployment: str, arm: str, version: str) -> int:
        """How many labelled frames ``arm`` has answered (for logs and tests)."""
        post = self._stats.get((deployment, arm, version))
        return post.n if post else 0


class Router:
    """Applies a deployment's strategy to a device's frame."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.bandit = ThompsonBandit(rng)

    def route(self, deployment: DeploymentView, device_id: str) -> Route:
        """Which arm answers this frame and which arms only shadow it."""
        resolved = {name: key for name, key in deployment.arms.items() if key is not None}
        if not resolved:
            return Route(NO_ARM, None)
        strategy = deployment.strategy
        if strategy == Strategy.STRATEGY_SHADOW:
            arm = _first(resolved, "stable", "shadow")
            shadows = tuple((n, k) for n, k in resolved.items() if n == "shadow" and n != arm)
            return Route(arm, resolved[arm], shadows)
        if strategy == Strategy.STRATEGY_CANARY:
            on_canary = device_fraction(device_id, deployment.name) < deployment.canary_fraction
            arm = _first(resolved, *(("canary", "stable") if on_canary else ("stable", "canary")))
        elif strategy == Strategy.STRATEGY_AB:
            on_a = device_fraction(device_id, deployment.name) < 0.5
            arm = _first(resolved, *(("a", "b") if on_a else ("b", "a")))
        elif strategy == Strategy.STRATEGY_BANDIT:
            arm = self.bandit.choose(deployment.name, resolved)
        else:
            arm = _first(resolved, "stable")
        return Route(arm, resolved[arm])

    def learn(self, deployment: DeploymentView, route: Route, prediction_mm: float,
              sensor_mm: float) -> None:
        """Feed a labelled frame's error back to the bandit (other strategies do not learn)."""
        if deployment.strategy == Strategy.STRATEGY_BANDIT and route.key is not None:
            self.bandit.reward(deployment.name, route.arm, route.key.version,
                               abs(prediction_mm - sensor_mm))


def _first(resolved: dict[str, ModelKey], *preferred: str) -> str:
    """The first preferred arm that resolves, else any resolved arm (sorted, so stable)."""
    for name in preferred:
        if name in resolved:
            return name
    return sorted(resolved)[0]
