"""What each deployment's arms resolve to now, and which TF Serving labels that implies.

Arms per strategy (CONTRIBUTING "Routing arms"): direct ``stable``; shadow ``stable`` +
``shadow``; canary ``stable`` + ``canary``; A/B ``a`` + ``b``; bandit its arm names.
The ``stable`` and ``canary`` arms carry TF Serving version labels of the same name.
A label belongs to a model, not a deployment: when two active deployments want the same
label of one model on different versions, the label is left out (arms then address
their version by number) and the conflict is reported.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from edgeloop.contracts.registry.v1 import deployment_pb2
from edgeloop.registry.selectors import ModelState

Strategy = deployment_pb2.Strategy
LABELS = ("stable", "canary")


@dataclass(frozen=True)
class ArmSpec:
    """One arm of a deployment: its name, selector and TF Serving label ('' for none)."""

    name: str
    selector: deployment_pb2.VersionSelector
    label: str


def arm_specs(deployment: deployment_pb2.Deployment) -> list[ArmSpec]:
    """The arms of ``deployment`` by its strategy; none without a model."""
    if not deployment.model_name:
        return []
    main, challenger = deployment.selector, deployment.challenger
    by_strategy = {
        Strategy.STRATEGY_DIRECT: [ArmSpec("stable", main, "stable")],
        Strategy.STRATEGY_SHADOW: [ArmSpec("stable", main, "stable"),
                                   ArmSpec("shadow", challenger, "")],
        Strategy.STRATEGY_CANARY: [ArmSpec("stable", main, "stable"),
                                   ArmSpec("canary", challenger, "canary")],
        Strategy.STRATEGY_AB: [ArmSpec("a", main, ""), ArmSpec("b", challenger, "")],
    }
    if deployment.strategy == Strategy.STRATEGY_BANDIT:
        return [ArmSpec(arm.name, arm.selector, "") for arm in deployment.arms]
    return by_strategy.get(deployment.strategy or Strategy.STRATEGY_DIRECT, [])


@dataclass
class Resolution:
    """Deployments with ``resolved`` filled, the label map, and label conflicts."""

    deployments: list[deployment_pb2.Deployment]
    labels: dict[str, dict[str, int]]
    conflicts: list[str]

    def needed_versions(self) -> dict[str, set[int]]:
        """model → the versions active deployments route to (what hosts must load)."""
        needed: dict[str, set[int]] = defaultdict(set)
        for deployment in self.deployments:
            if deployment.active:
                for arm in deployment.resolved:
                    if arm.model_version:
                        needed[arm.model_name].add(int(arm.model_version))
        return dict(needed)


def resolve(deployments: Iterable[deployment_pb2.Deployment], states: dict[str, ModelState],
            repository: str) -> Resolution:
    """Fill each deployment's ``resolved`` arms from the registry ``states``."""
    pairs = []
    for stored in deployments:
        deployment = deployment_pb2.Deployment()
        deployment.CopyFrom(stored)
        deployment.ClearField("resolved")
        state = states.get(deployment.model_name, ModelState())
        pairs.append((deployment, [(spec, state.resolve(spec.selector))
                                   for spec in arm_specs(deployment)]))
    labels, conflicts = _labels(pairs)
    for deployment, arms in pairs:
        for spec, version in arms:
            model = deployment.model_name
            label = spec.label if version and labels.get(model, {}).get(spec.label) == int(
                version) else ""
            deployment.resolved.append(deployment_pb2.ResolvedArm(
                arm=spec.name, model_name=model, model_version=version,
                model_path=os.path.join(repository, model, version) if version else "",
                version_label=label))
    return Resolution([d for d, _ in pairs], labels, conflicts)


def _labels(pairs: list[tuple[deployment_pb2.Deployment, list[tuple[ArmSpec, str]]]]) -> tuple[
        dict[str, dict[str, int]], list[str]]:
    wanted: dict[tuple[str, str], set[int]] = defaultdict(set)
    for deployment, arms in pairs:
        if not deployment.active:
            continue
        for spec, version in arms:
            if spec.label and version:
                wanted[(deployment.model_name, spec.label)].add(int(version))
    labels: dict[str, dict[str, int]] = defaultdict(dict)
    conflicts = []
    for (model, label), versions in sorted(wanted.items()):
        if len(versions) == 1:
            labels[model][label] = next(iter(versions))
        else:
            conflicts.append(f"model {model!r}: label {label!r} wanted on versions "
                             f"{sorted(versions)} by different active deployments")
    return dict(labels), conflicts
