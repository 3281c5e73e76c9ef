"""Lineage: from a model version back to the drift and data that made it, and forward to
the predictions it served; from one observation to the model that judged it.

Everything is read through the services' contracts: the registry (version tags
``sweep_id``, ``dataset_snapshot``, ``trigger``, ``trace_id``; deployments), the
trainer (the sweep, its snapshot, its MLflow runs) and features (drift events,
observations).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as fpb
from edgeloop.contracts.features.v1 import feature_store_service_pb2_grpc as fgrpc
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.contracts.registry.v1 import deployment_pb2, model_pb2
from edgeloop.contracts.registry.v1 import registry_service_pb2 as rpb
from edgeloop.contracts.registry.v1 import registry_service_pb2_grpc as rgrpc
from edgeloop.contracts.trainer.v1 import sweep_pb2
from edgeloop.contracts.trainer.v1 import trainer_service_pb2 as tpb
from edgeloop.contracts.trainer.v1 import trainer_service_pb2_grpc as tgrpc
from edgeloop.platform.channels import open_blocking_channel
from edgeloop.platform.tls import ClientTLS

DEADLINE_S = 30.0
DRIFT_TRIGGER = "drift:"
EVENT_SCAN_LIMIT = 1000


@dataclass
class Clients:
    """Stubs of the three services and the token the registry wants."""

    registry: rgrpc.RegistryServiceStub
    trainer: tgrpc.TrainerServiceStub
    features: fgrpc.FeatureStoreServiceStub
    token: str

    @property
    def auth(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)


@dataclass
class ModelLineage:
    """The chain behind and after one model version."""

    version: model_pb2.ModelVersion
    sweep: sweep_pb2.Sweep | None = None
    drift_event: observation_pb2.DriftEvent | None = None
    deployments: list[tuple[str, str]] = field(default_factory=list)
    """(deployment, arm) pairs that resolve to the version now."""
    first_predictions: list[observation_pb2.Observation] = field(default_factory=list)


@dataclass
class ObservationLineage:
    """What answered one observation and which sweeps trained on it."""

    observation: observation_pb2.Observation
    sweeps: list[sweep_pb2.Sweep] = field(default_factory=list)


def model_lineage(clients: Clients, model_name: str, version: str,
                  predictions: int = 5) -> ModelLineage:
    """Gather the lineage of ``model_name`` ``version``."""
    reply = clients.registry.GetModelVersion(rpb.GetModelVersionRequest(
        model_name=model_name, selector=deployment_pb2.VersionSelector(version=version)),
        timeout=DEADLINE_S, metadata=clients.auth)
    lineage = ModelLineage(reply.version)
    sweep_id = reply.version.tags.get("sweep_id", "")
    if sweep_id:
        lineage.sweep = clients.trainer.GetSweep(tpb.GetSweepRequest(sweep_id=sweep_id),
                                                 timeout=DEADLINE_S).sweep
    trigger = lineage.sweep.trigger if lineage.sweep else reply.version.tags.get("trigger", "")
    if trigger.startswith(DRIFT_TRIGGER):
        lineage.drift_event = _drift_event(clients, trigger.removeprefix(DRIFT_TRIGGER))
    lineage.deployments = _deployments_serving(clients, model_name, version)
    lineage.first_predictions = _first_predictions(clients, model_name, version, predictions)
    return lineage


def _drift_event(clients: Clients, event_id: str) -> observation_pb2.DriftEvent | None:
    reply = clients.features.ListDriftEvents(fpb.ListDriftEventsRequest(limit=EVENT_SCAN_LIMIT),
                                             timeout=DEADLINE_S)
    return next((e for e in reply.events if e.event_id == event_id), None)


def _deployments_serving(clients: Clients, model_name: str, version: str) -> list[tuple[str, str]]:
    reply = clients.registry.ListDeployments(rpb.ListDeploymentsRequest(), timeout=DEADLINE_S,
                                             metadata=clients.auth)
    return [(d.name, arm.arm) for d in reply.deployments for arm in d.resolved
            if arm.model_name == model_name and arm.model_version == version]


def _first_predictions(clients: Clients, model_name: str, version: str,
                       count: int) -> list[observation_pb2.Observation]:
    request = fpb.ListObservationsRequest(model_name=model_name, model_version=version, limit=count)
    return [o for page in clients.features.ListObservations(request, timeout=DEADLINE_S)
            for o in page.observations]


def observation_lineage(clients: Clients, observation_id: str) -> ObservationLineage:
    """Gather the lineage of one observation; NOT_FOUND if features does not know it."""
    request = fpb.ListObservationsRequest(observation_ids=[observation_id])
    found = [o for page in clients.features.ListObservations(request, timeout=DEADLINE_S)
             for o in page.observations]
    if not found:
        raise LookupError(f"observation {observation_id} is not in the feature store")
    sweeps = clients.trainer.ListSweeps(tpb.ListSweepsRequest(observation_id=observation_id),
                                        timeout=DEADLINE_S).sweeps
    return ObservationLineage(found[0], list(sweeps))


def open_clients(registry: str, trainer: str, features: str, token: str,
                 tls: ClientTLS | None = None) -> tuple[Clients, list[grpc.Channel]]:
    """Stubs over fresh channels, TLS with ``tls`` (the caller closes the channels)."""
    channels = [open_blocking_channel(a, tls=tls) for a in (registry, trainer, features)]
    clients = Clients(rgrpc.RegistryServiceStub(channels[0]), tgrpc.TrainerServiceStub(channels[1]),
                      fgrpc.FeatureStoreServiceStub(channels[2]), token)
    return clients, channels
