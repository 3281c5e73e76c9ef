"""The RegistryService servicer: authorisation, then one domain call per RPC.

The token decides the actor every change is recorded with (:mod:`edgeloop.registry.auth`).

Mutating RPCs commit their transaction, then refresh the catalog, which rewrites the
model host config and tells watchers what changed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from edgeloop.contracts.registry.v1 import registry_service_pb2 as pb
from edgeloop.contracts.registry.v1 import registry_service_pb2_grpc
from edgeloop.contracts.registry.v1.operator_pb2 import OperatorRole
from edgeloop.platform import log_context
from edgeloop.platform.errors import NotFound
from edgeloop.registry import deployments, devices, history, operators
from edgeloop.registry.auth import Tokens
from edgeloop.registry.catalog import Catalog
from edgeloop.registry.models import Models
from edgeloop.registry.operators import ActiveOperators
from edgeloop.registry.promotion import (
    DEFAULT_ALIAS,
    Aliases,
    decide,
    known_worlds,
    world_maes,
)
from edgeloop.registry.selectors import check_alias, check_model_name, check_selector, check_version
from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio

log = logging.getLogger(__name__)


class RegistryService(registry_service_pb2_grpc.RegistryServiceServicer):
    """Devices, deployments and model versions over gRPC."""

    def __init__(self, tokens: Tokens, margin_mm: float, auth_ttl_s: int) -> None:
        self.tokens = tokens
        self.margin_mm = margin_mm
        self.auth_ttl_s = auth_ttl_s

    def attach(self, catalog: Catalog, models: Models, aliases: Aliases,
               active_operators: ActiveOperators) -> None:
        """Give the servicer what the app opened at start (calls are refused until then)."""
        self.catalog = catalog
        self.pool = catalog.pool
        self.models = models
        self.aliases = aliases
        self.active_operators = active_operators
        self.tokens.attach(active_operators)

    # Devices

    async def RegisterDevice(self, request: pb.RegisterDeviceRequest,
                             context: aio.ServicerContext) -> pb.RegisterDeviceResponse:
        actor = await self.tokens.require_admin(context, "RegisterDevice")
        async with self.pool.connection() as conn:
            device, token = await devices.register(conn, actor, request.name, request.device_id,
                                                   request.deployment)
        with log_context(device=device.device_id, deployment=device.deployment):
            log.info("device registered")  # never the token
        await self.catalog.refresh_quietly()
        return pb.RegisterDeviceResponse(device=device, token=token)

    async def ListDevices(self, request: pb.ListDevicesRequest,
                          context: aio.ServicerContext) -> pb.ListDevicesResponse:
        await self.tokens.require_read(context)
        async with self.pool.connection() as conn:
            return pb.ListDevicesResponse(devices=await devices.list_devices(
                conn, request.include_revoked))

    async def RevokeDevice(self, request: pb.RevokeDeviceRequest,
                           context: aio.ServicerContext) -> pb.RevokeDeviceResponse:
        actor = await self.tokens.require_admin(context, "RevokeDevice")
        async with self.pool.connection() as conn:
            device = await devices.revoke(conn, actor, request.device_id)
        with log_context(device=device.device_id):
            log.info("device revoked")
        await self.catalog.refresh_quietly()
        return pb.RevokeDeviceResponse(device=device)

    async def RotateDeviceToken(self, request: pb.RotateDeviceTokenRequest,
                                context: aio.ServicerContext) -> pb.RotateDeviceTokenResponse:
        actor = await self.tokens.require_admin(context, "RotateDeviceToken")
        async with self.pool.connection() as conn:
            device, token = await devices.rotate(conn, actor, request.device_id)
        with log_context(device=device.device_id):
            log.info("device token rotated")
        await self.catalog.refresh_quietly()
        return pb.RotateDeviceTokenResponse(device=device, token=token)

    async def AuthenticateDevice(self, request: pb.AuthenticateDeviceRequest,
                                 context: aio.ServicerContext) -> pb.AuthenticateDeviceResponse:
        await self.tokens.require_read(context)
        async with self.pool.connection() as conn:
            device = await devices.authenticate(conn, request.device_id, request.token)
        return pb.AuthenticateDeviceResponse(device=device, cache_ttl_seconds=self.auth_ttl_s)

    async def AssignDevices(self, request: pb.AssignDevicesRequest,
                            context: aio.ServicerContext) -> pb.AssignDevicesResponse:
        actor = await self.tokens.require_admin(context, "AssignDevices")
        async with self.pool.connection() as conn:
            assignments = await devices.assign(conn, actor, request.deployment, request.device_ids)
        await self.catalog.refresh_quietly()
        return pb.AssignDevicesResponse(assignments=assignments)

    # Deployments

    async def CreateDeployment(self, request: pb.CreateDeploymentRequest,
                               context: aio.ServicerContext) -> pb.CreateDeploymentResponse:
        actor = await self.tokens.require_admin(context, "CreateDeployment")
        async with self.pool.connection() as conn:
            stored = await deployments.create(conn, actor, request.deployment)
        await self.catalog.refresh_quietly()
        return pb.CreateDeploymentResponse(deployment=self.catalog.resolved(stored))

    async def UpdateDeployment(self, request: pb.UpdateDeploymentRequest,
                               context: aio.ServicerContext) -> pb.UpdateDeploymentResponse:
        actor = await self.tokens.require_admin(context, "UpdateDeployment")
        async with self.pool.connection() as conn:
            stored = await deployments.update(conn, actor, request.deployment,
                                              request.expected_revision)
        await self.catalog.refresh_quietly()
        return pb.UpdateDeploymentResponse(deployment=self.catalog.resolved(stored))

    async def ActivateDeployment(self, request: pb.ActivateDeploymentRequest,
                                 context: aio.ServicerContext) -> pb.ActivateDeploymentResponse:
        actor = await self.tokens.require_admin(context, "ActivateDeployment")
        async with self.pool.connection() as conn:
            stored = await deployments.activate(conn, actor, request.name, request.active)
        await self.catalog.refresh_quietly()
        return pb.ActivateDeploymentResponse(deployment=self.catalog.resolved(stored))

    async def GetDeployment(self, request: pb.GetDeploymentRequest,
                            context: aio.ServicerContext) -> pb.GetDeploymentResponse:
        await self.tokens.require_read(context)
        deployments.check_name(request.name, "name")
        for deployment in (await self.catalog.resolve_all()).deployments:
            if deployment.name == request.name:
                return pb.GetDeploymentResponse(deployment=deployment)
        raise NotFound(f"name: no deployment {request.name!r}")

    async def ListDeployments(self, request: pb.ListDeploymentsRequest,
                              context: aio.ServicerContext) -> pb.ListDeploymentsResponse:
        await self.tokens.require_read(context)
        resolved = (await self.catalog.resolve_all()).deployments
        return pb.ListDeploymentsResponse(deployments=[
            d for d in resolved if d.active or not request.active_only])

    async def ListHistory(self, request: pb.ListHistoryRequest,
                          context: aio.ServicerContext) -> pb.ListHistoryResponse:
        await self.tokens.require_read(context)
        async with self.pool.connection() as conn:
            records = await history.list_changes(conn, request.subject, request.limit)
        return pb.ListHistoryResponse(records=records)

    async def WatchDeployments(self, request: pb.WatchDeploymentsRequest,
                               context: aio.ServicerContext
                               ) -> AsyncIterator[pb.WatchDeploymentsResponse]:
        await self.tokens.require_read(context)
        subscription, snapshot = self.catalog.watchers.subscribe(request.watcher or context.peer())
        log.info("watch opened", extra={"watcher": subscription.name})
        try:
            yield snapshot
            while True:
                yield await subscription.next()
        finally:
            self.catalog.watchers.unsubscribe(subscription)
            log.info("watch closed", extra={"watcher": subscription.name})

    # Models

    async def RegisterModelVersion(self, request: pb.RegisterModelVersionRequest,
                                   context: aio.ServicerContext) -> pb.RegisterModelVersionResponse:
        actor = await self.tokens.require_admin(context, "RegisterModelVersion")
        version, retried = await self.models.register(actor, request)
        response = pb.RegisterModelVersionResponse(version=version)
        if request.promote and retried and DEFAULT_ALIAS in version.aliases:
            # The first attempt promoted it; its answer was lost. Say so, do not judge again.
            response.promotion.CopyFrom(pb.PromoteModelVersionResponse(
                promoted=True, version=version,
                reason=f"version {version.version} was promoted by an earlier attempt of "
                       f"request {request.request_id}"))
        elif request.promote:
            response.promotion.CopyFrom(await self._promote(
                actor, request.model_name, version.version, DEFAULT_ALIAS, force=False))
            response.version.CopyFrom(response.promotion.version)
        await self.catalog.refresh_quietly()
        return response

    async def ListModelVersions(self, request: pb.ListModelVersionsRequest,
                                context: aio.ServicerContext) -> pb.ListModelVersionsResponse:
        await self.tokens.require_read(context)
        return pb.ListModelVersionsResponse(
            versions=await self.models.list_versions(request.model_name))

    async def GetModelVersion(self, request: pb.GetModelVersionRequest,
                              context: aio.ServicerContext) -> pb.GetModelVersionResponse:
        await self.tokens.require_read(context)
        check_selector(request.selector, "selector", required=True)
        try:
            version = await self.models.select(request.model_name, request.selector)
            found = await self.models.get(request.model_name, version)
        except NotFound:
            if request.allow_missing:
                return pb.GetModelVersionResponse()
            raise
        return pb.GetModelVersionResponse(version=found)

    async def SetAlias(self, request: pb.SetAliasRequest,
                       context: aio.ServicerContext) -> pb.SetAliasResponse:
        actor = await self.tokens.require_admin(context, "SetAlias")
        model = check_model_name(request.model_name)
        alias = check_alias(request.alias)
        version = check_version(request.version)
        await self.models.get(model, version)  # NOT_FOUND for an unknown version
        await self.models.ensure_published(actor, model, version)
        async with self.aliases.lock:
            await self.aliases.move(actor, model, alias, version, "alias", {})
        await self.catalog.refresh_quietly()
        return pb.SetAliasResponse(version=await self.models.get(model, version))

    async def PromoteModelVersion(self, request: pb.PromoteModelVersionRequest,
                                  context: aio.ServicerContext) -> pb.PromoteModelVersionResponse:
        actor = await self.tokens.require_admin(context, "PromoteModelVersion")
        response = await self._promote(actor, request.model_name, request.version,
                                       request.alias or DEFAULT_ALIAS, request.force)
        await self.catalog.refresh_quietly()
        return response

    async def _promote(self, actor: str, model: str, version: str, alias: str,
                       force: bool) -> pb.PromoteModelVersionResponse:
        check_model_name(model)
        check_alias(alias)
        version = check_version(version)
        found = await self.models.get(model, version)
        async with self.aliases.lock:
            current = await self.aliases.current(model, alias)
            evaluation = await self.models.evaluation(model, version)
            champion_knew = (known_worlds(dict((await self.models.get(model, current)).metrics))
                             if current is not None and current != version else None)
            decision = decide(version, current, evaluation, self.margin_mm, force,
                              world_maes(dict(found.metrics)), champion_knew)
            decided_at = Timestamp()
            decided_at.GetCurrentTime()
            with log_context(model=model, version=version):
                log.info("promotion gate: %s", decision.reason, extra={"alias": alias})
            if decision.promoted:
                await self.models.ensure_published(actor, model, version)
                await self.aliases.move(actor, model, alias, version, "promote",
                                        {"reason": decision.reason, "forced": force})
            else:
                await self._record_refusal(actor, model, alias, version, decision.reason)
        return pb.PromoteModelVersionResponse(
            promoted=decision.promoted, reason=decision.reason, previous_version=current or "",
            version=await self.models.get(model, version), decided_at=decided_at)

    async def _record_refusal(self, actor: str, model: str, alias: str, version: str,
                              reason: str) -> None:
        async with self.pool.connection() as conn:
            await history.record(conn, actor, f"model/{model}", "promote_refused",
                                 {"alias": alias, "version": version, "reason": reason})

    async def RollbackModel(self, request: pb.RollbackModelRequest,
                            context: aio.ServicerContext) -> pb.RollbackModelResponse:
        actor = await self.tokens.require_admin(context, "RollbackModel")
        model = check_model_name(request.model_name)
        alias = check_alias(request.alias or DEFAULT_ALIAS)
        restored, rolled_back_from = await self.aliases.rollback(actor, model, alias)
        with log_context(model=model, version=restored):
            log.info("alias rolled back", extra={"alias": alias, "from": rolled_back_from})
        await self.catalog.refresh_quietly()
        return pb.RollbackModelResponse(version=await self.models.get(model, restored),
                                        rolled_back_from=rolled_back_from)


    # Operators

    async def CreateOperator(self, request: pb.CreateOperatorRequest,
                             context: aio.ServicerContext) -> pb.CreateOperatorResponse:
        actor = await self.tokens.require_admin(context, "CreateOperator")
        async with self.pool.connection() as conn:
            operator, token = await operators.create(conn, actor, request.name, request.role)
        self.active_operators.invalidate()
        log.info("operator created", extra={"operator": operator.name,  # never the token
                                            "role": OperatorRole.Name(operator.role),
                                            "actor": actor})
        return pb.CreateOperatorResponse(operator=operator, token=token)

    async def ListOperators(self, request: pb.ListOperatorsRequest,
                            context: aio.ServicerContext) -> pb.ListOperatorsResponse:
        await self.tokens.require_admin(context, "ListOperators")
        async with self.pool.connection() as conn:
            return pb.ListOperatorsResponse(operators=await operators.list_operators(
                conn, request.include_revoked))

    async def RevokeOperator(self, request: pb.RevokeOperatorRequest,
                             context: aio.ServicerContext) -> pb.RevokeOperatorResponse:
        actor = await self.tokens.require_admin(context, "RevokeOperator")
        async with self.pool.connection() as conn:
            operator = await operators.revoke(conn, actor, request.name)
        self.active_operators.invalidate()
        log.info("operator revoked", extra={"operator": operator.name, "actor": actor})
        return pb.RevokeOperatorResponse(operator=operator)

    async def RotateOperatorToken(self, request: pb.RotateOperatorTokenRequest,
                                  context: aio.ServicerContext) -> pb.RotateOperatorTokenResponse:
        actor = await self.tokens.require_admin(context, "RotateOperatorToken")
        async with self.pool.connection() as conn:
            operator, token = await operators.rotate(conn, actor, request.name)
        self.active_operators.invalidate()
        log.info("operator token rotated", extra={"operator": operator.name, "actor": actor})
        return pb.RotateOperatorTokenResponse(operator=operator, token=token)

    async def WhoAmI(self, request: pb.WhoAmIRequest,
                     context: aio.ServicerContext) -> pb.WhoAmIResponse:
        caller = await self.tokens.require_read(context)
        response = pb.WhoAmIResponse(actor=caller.actor, role=operators.role_to_proto(caller.role))
        if caller.operator:
            async with self.pool.connection() as conn:
                response.operator.CopyFrom(await operators.get(conn, caller.operator))
        return response
