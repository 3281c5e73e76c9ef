"""The services the console reads and changes, through their gRPC contracts only.

Reads carry the registry's read token; the features and trainer services take no token.
Writes carry the token of a logged-in operator: their own operator token (the registry
records ``operator:<name>``), or the admin token with the ``x-edgeloop-actor`` metadata
(recorded as ``admin (on behalf of <name>@console)``, see ``edgeloop.registry.auth``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import grpc
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as fpb
from edgeloop.contracts.features.v1 import feature_store_service_pb2_grpc as fgrpc
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.contracts.registry.v1 import deployment_pb2, device_pb2, model_pb2
from edgeloop.contracts.registry.v1 import registry_service_pb2 as rpb
from edgeloop.contracts.registry.v1 import registry_service_pb2_grpc as rgrpc
from edgeloop.contracts.trainer.v1 import sweep_pb2
from edgeloop.contracts.trainer.v1 import trainer_service_pb2 as tpb
from edgeloop.contracts.trainer.v1 import trainer_service_pb2_grpc as tgrpc
from edgeloop.platform.channels import open_channel
from edgeloop.platform.tls import ClientTLS
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio

DEADLINE_S = 15.0
ACTOR_HEADER = "x-edgeloop-actor"
"""With the admin token, the registry records this name as on whose behalf (registry/auth.py)."""


def stamp(moment: datetime) -> Timestamp:
    """A protobuf Timestamp of an aware datetime."""
    value = Timestamp()
    value.FromDatetime(moment.astimezone(UTC).replace(tzinfo=None))
    return value


def when(value: Timestamp) -> datetime | None:
    """An aware datetime of a Timestamp, None when unset."""
    if not value.seconds and not value.nanos:
        return None
    return value.ToDatetime().replace(tzinfo=UTC)


@dataclass
class Backends:
    """Stubs over one channel per service, opened at start-up and closed at shutdown."""

    registry_addr: str
    features_addr: str
    trainer_addr: str
    read_token: str
    tls: ClientTLS | None = None
    """TLS for the channels (the stack's CA), or None for plaintext."""
    channels: list[aio.Channel] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.registry = rgrpc.RegistryServiceStub(self._open(self.registry_addr))
        self.features = fgrpc.FeatureStoreServiceStub(self._open(self.features_addr))
        self.trainer = (tgrpc.TrainerServiceStub(self._open(self.trainer_addr))
                        if self.trainer_addr else None)

    def _open(self, address: str) -> aio.Channel:
        channel = open_channel(address, tls=self.tls)
        self.channels.append(channel)
        return channel

    async def close(self) -> None:
        """Close every channel."""
        for channel in self.channels:
            await channel.close()

    @property
    def _read(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.read_token}"),)

    async def who_is(self, token: str) -> rpb.WhoAmIResponse | None:
        """Who the registry takes ``token`` for (a login); None when it knows no such token."""
        try:
            return await self.registry.WhoAmI(rpb.WhoAmIRequest(), timeout=DEADLINE_S,
                                              metadata=(("authorization", f"Bearer {token}"),))
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                return None
            raise

    # --- registry reads -------------------------------------------------------------------

    async def devices(self) -> list[device_pb2.Device]:
        reply = await self.registry.ListDevices(rpb.ListDevicesRequest(include_revoked=True),
                                                timeout=DEADLINE_S, metadata=self._read)
        return list(reply.devices)

    async def deployments(self) -> list[deployment_pb2.Deployment]:
        reply = await self.registry.ListDeployments(rpb.ListDeploymentsRequest(),
                                                    timeout=DEADLINE_S, metadata=self._read)
        return list(reply.deployments)

    async def deployment(self, name: str) -> deployment_pb2.Deployment:
        reply = await self.registry.GetDeployment(rpb.GetDeploymentRequest(name=name),
                                                  timeout=DEADLINE_S, metadata=self._read)
        return reply.deployment

    async def history(self, subject: str = "", limit: int = 50,
                      ) -> list[deployment_pb2.ChangeRecord]:
        reply = await self.registry.ListHistory(
            rpb.ListHistoryRequest(subject=subject, limit=limit), timeout=DEADLINE_S,
            metadata=self._read)
        return list(reply.records)

    async def versions(self, model: str) -> list[model_pb2.ModelVersion]:
        reply = await self.registry.ListModelVersions(
            rpb.ListModelVersionsRequest(model_name=model), timeout=DEADLINE_S,
            metadata=self._read)
        return list(reply.versions)

    async def version(self, model: str, version: str) -> model_pb2.ModelVersion:
        reply = await self.registry.GetModelVersion(rpb.GetModelVersionRequest(
            model_name=model, selector=deployment_pb2.VersionSelector(version=version)),
            timeout=DEADLINE_S, metadata=self._read)
        return reply.version

    # --- features reads -------------------------------------------------------------------

    async def observations(self, *, deployments: Sequence[str] = (), since: timedelta | None = None,
                           ids: Sequence[str] = (), model_name: str = "", model_version: str = "",
                           limit: int = 0, include_jpeg: bool = False,
                           newest_first: bool = False, spread: bool = False,
                           ) -> list[observation_pb2.Observation]:
        request = fpb.ListObservationsRequest(
            deployments=list(deployments), observation_ids=list(ids), model_name=model_name,
            model_version=model_version, limit=limit, include_jpeg=include_jpeg,
            newest_first=newest_first, spread=spread)
        if since is not None:
            request.start_time.CopyFrom(stamp(datetime.now(UTC) - since))
        found: list[observation_pb2.Observation] = []
        async for page in self.features.ListObservations(request, timeout=DEADLINE_S * 2):
            found.extend(page.observations)
        return found

    async def traffic(self, since: timedelta, deployments: Sequence[str] = (),
                      ) -> fpb.SummarizeTrafficResponse:
        """Frames and error per device and per arm since ``since`` ago, counted by features."""
        request = fpb.SummarizeTrafficRequest(deployments=list(deployments))
        request.start_time.CopyFrom(stamp(datetime.now(UTC) - since))
        return await self.features.SummarizeTraffic(request, timeout=DEADLINE_S)

    async def gateway_samples(self, since: timedelta, most: int,
                              ) -> list[fpb.GatewaySample]:
        """Every gateway's samples since ``since`` ago, at most ``most`` each."""
        request = fpb.ListGatewaySamplesRequest(max_per_gateway=most)
        request.start_time.CopyFrom(stamp(datetime.now(UTC) - since))
        reply = await self.features.ListGatewaySamples(request, timeout=DEADLINE_S)
        return list(reply.samples)

    async def drift_events(self, deployment: str = "", limit: int = 100,
                           ) -> list[observation_pb2.DriftEvent]:
        reply = await self.features.ListDriftEvents(
            fpb.ListDriftEventsRequest(deployment=deployment, limit=limit), timeout=DEADLINE_S)
        return list(reply.events)

    async def rule_states(self, deployment: str = "") -> list[observation_pb2.RuleState]:
        reply = await self.features.ListRuleStates(
            fpb.ListRuleStatesRequest(deployment=deployment), timeout=DEADLINE_S)
        return list(reply.states)

    # --- trainer reads --------------------------------------------------------------------

    async def sweeps(self, limit: int = 50) -> list[sweep_pb2.Sweep]:
        if self.trainer is None:
            return []
        reply = await self.trainer.ListSweeps(tpb.ListSweepsRequest(limit=limit),
                                              timeout=DEADLINE_S)
        return list(reply.sweeps)

    async def sweep(self, sweep_id: str) -> sweep_pb2.Sweep | None:
        if self.trainer is None or not sweep_id:
            return None
        reply = await self.trainer.GetSweep(tpb.GetSweepRequest(sweep_id=sweep_id),
                                            timeout=DEADLINE_S)
        return reply.sweep


@dataclass(frozen=True)
class Writer:
    """Registry writes made for one logged-in operator: their token (+ the actor header)."""

    registry: rgrpc.RegistryServiceStub
    token: str
    actor: str = ""
    """The name declared with the admin token; '' with an operator's own token."""

    @property
    def _metadata(self) -> tuple[tuple[str, str], ...]:
        authorization = ("authorization", f"Bearer {self.token}")
        return (authorization, (ACTOR_HEADER, self.actor)) if self.actor else (authorization,)

    async def call(self, rpc: str, request: object) -> object:
        """Call registry ``rpc`` with ``request``; gRPC errors propagate as ``grpc.RpcError``."""
        method = getattr(self.registry, rpc)
        return await method(request, timeout=DEADLINE_S * 4, metadata=self._metadata)


def rpc_error_text(exc: grpc.RpcError) -> str:
    """``CODE: details`` of a gRPC error, for a page."""
    code = exc.code().name if hasattr(exc, "code") and exc.code() else "UNKNOWN"
    details = exc.details() if hasattr(exc, "details") else str(exc)
    return f"{code}: {details}"
