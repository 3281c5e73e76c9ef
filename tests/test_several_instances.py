"""Several registry instances on one database: a change made through either reaches the
gateways watching the other at once (PostgreSQL LISTEN/NOTIFY), not at the periodic
refresh.

Two registries and two gateways run in-process on loopback (the real services; gateway i
watches registry i), on one private PostgreSQL database and one MLflow store. The
registries' periodic refresh is set to 10 minutes, so only the notification path can
deliver a change in time. The test waits on the condition (each gateway's routing state
shows the change) and reports the measured delays; its only timing bound is a generous
one that the 10-minute refresh could never meet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from pathlib import Path

from edgeloop.contracts.registry.v1 import deployment_pb2
from edgeloop.contracts.registry.v1 import registry_service_pb2 as reg_pb2
from edgeloop.contracts.registry.v1 import registry_service_pb2_grpc as reg_grpc
from edgeloop.platform import bearer, serve
from edgeloop.platform.server import start_server
from edgeloop.testing import free_port
from grpc import aio

log = logging.getLogger(__name__)
ADMIN = "instances-admin-token-0123456789abcdef"
READ = "instances-read-token-0123456789abcdef"
REFRESH_INTERVAL_S = 600.0
BOUND_S = 10.0
"""Generous: the requirement is 1 s; a loaded CI machine must not fail it, and the
periodic refresh (10 minutes here) could never meet it."""


async def _until(condition, timeout_s: float = 60.0) -> float:
    """Poll ``condition`` every 5 ms until true; the monotonic time it first held."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(0.005)
    return time.monotonic()


async def _switch(stub, gateways, change, expect, label: str) -> list[float]:
    """Make ``change`` and return each gateway's delay until ``expect(state)`` holds."""
    started = time.monotonic()
    await change(stub)
    seen = await asyncio.gather(*(_until(lambda g=g: expect(g.app.state)) for g in gateways))
    delays = [round(at - started, 3) for at in seen]
    log.info("registry change %r reached every gateway after %s s", label, delays)
    return delays


async def test_a_change_through_either_registry_reaches_every_gateway(
        pg_cluster, logged_models, tmp_path: Path, record_property) -> None:
    from edgeloop.gateway.app import build_app as build_gateway
    from edgeloop.gateway.settings import Settings as GatewaySettings
    from edgeloop.registry.app import App as RegistryApp
    from edgeloop.registry.settings import Settings as RegistrySettings

    database = pg_cluster.ensure_database(f"instances_{uuid.uuid4().hex[:12]}")
    registries = []
    try:
        for name in ("a", "b"):
            settings = RegistrySettings(
                listen_addr=f"127.0.0.1:{free_port()}", database_url=database,
                mlflow_tracking_uri=logged_models.tracking_uri, admin_token=ADMIN,
                read_token=READ, model_repository=str(tmp_path / f"models-{name}"),
                refresh_interval_s=REFRESH_INTERVAL_S, shutdown_grace_s=1.0)
            registries.append(await start_server(RegistryApp(settings), settings))
        for registry in registries:
            await asyncio.wait_for(registry.app.catalog.listening.wait(), 60)

        async with contextlib.AsyncExitStack() as stack:
            gateways = []
            for n, registry in enumerate(registries):
                settings = GatewaySettings(
                    listen_addr="127.0.0.1:0", registry_addr=registry.address,
                    registry_token=READ, features_addr=f"127.0.0.1:{free_port()}",
                    model_repository=str(tmp_path / f"models-{n}"),
                    spool_dir=str(tmp_path / f"spool-{n}"), gateway_id=f"gw-{n}",
                    shutdown_grace_s=1.0)
                gateways.append(await stack.enter_async_context(
                    serve(build_gateway(settings), settings)))
            channels = [await stack.enter_async_context(aio.insecure_channel(r.address))
                        for r in registries]
            via_a, via_b = (reg_grpc.RegistryServiceStub(c) for c in channels)
            auth = bearer(ADMIN)

            await via_a.CreateDeployment(reg_pb2.CreateDeploymentRequest(
                deployment=deployment_pb2.Deployment(name="parking")), metadata=auth, timeout=30)
            await asyncio.gather(*(_until(lambda g=g: g.app.state.get("parking") is not None)
                                   for g in gateways))
            assert not any(g.app.state.get("parking").active for g in gateways)

            async def activate(stub):
                await stub.ActivateDeployment(reg_pb2.ActivateDeploymentRequest(
                    name="parking", active=True), metadata=auth, timeout=30)

            async def deactivate(stub):
                await stub.ActivateDeployment(reg_pb2.ActivateDeploymentRequest(
                    name="parking", active=False), metadata=auth, timeout=30)

            on = await _switch(via_a, gateways, activate,
                               lambda s: s.get("parking").active, "activate via A")
            off = await _switch(via_b, gateways, deactivate,
                                lambda s: not s.get("parking").active, "deactivate via B")
    finally:
        for registry in registries:
            await registry.stop(1.0)

    record_property("switch_delays_s", {"activate via A": on, "deactivate via B": off})
    # gateway 1 (A's change) and gateway 0 (B's change) only learn through the other
    # registry, which heard of it by NOTIFY
    assert max(on + off) < BOUND_S, (on, off)
