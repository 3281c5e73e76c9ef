"""The data plane over TLS: a robot with a device certificate → gateway → registry, features.

Registry, features and gateway are the real services, served in-process on loopback with
the TLS settings `edgeloop up` gives them: every port speaks only TLS with one server
certificate, every channel between them verifies it against the CA, and the gateway
requires device certificates signed by that CA (mutual TLS). The robot is the real
stream client driving the scene simulator, as a library and as the `edgeloop-edge` command.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as fs_pb2
from edgeloop.contracts.features.v1 import feature_store_service_pb2_grpc as fs_grpc
from edgeloop.contracts.registry.v1 import deployment_pb2
from edgeloop.contracts.registry.v1 import registry_service_pb2 as reg_pb2
from edgeloop.contracts.registry.v1 import registry_service_pb2_grpc as reg_grpc
from edgeloop.edge_client.simulate import drive_session_async
from edgeloop.edge_client.stream.client import StreamClosed
from edgeloop.platform import bearer, open_channel
from edgeloop.platform.server import start_server
from edgeloop.platform.tls import ClientTLS
from edgeloop.testing import free_port
from edgeloop.testing.tls import TLSFiles

pytestmark = pytest.mark.asyncio(loop_scope="module")

ADMIN = "tls-admin-token-0123456789abcdef"
READ = "tls-read-token-0123456789abcdef"


def _tls_settings(tls_files: TLSFiles, mutual: bool = False) -> dict[str, str]:
    """The server and client TLS fields of a service, as `edgeloop up` sets them."""
    env = {**tls_files.server_env(mutual), **tls_files.client_env(with_cert=True)}
    return {name.removeprefix("EDGELOOP_").lower(): value for name, value in env.items()}


@dataclass
class SecurePlane:
    registry_addr: str
    features_addr: str
    gateway_addr: str
    client: ClientTLS


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def plane(pg_cluster, logged_models, tmp_path_factory,  # noqa: ANN001
                tls_files: TLSFiles) -> AsyncIterator[SecurePlane]:
    from edgeloop.features.app import build_app as build_features
    from edgeloop.features.settings import Settings as FeaturesSettings
    from edgeloop.gateway.app import build_app as build_gateway
    from edgeloop.gateway.settings import Settings as GatewaySettings
    from edgeloop.registry.app import App as RegistryApp
    from edgeloop.registry.settings import Settings as RegistrySettings

    root = tmp_path_factory.mktemp("tls-plane")
    database = pg_cluster.ensure_database(f"tls_{uuid.uuid4().hex[:12]}")
    registry_settings = RegistrySettings(
        listen_addr=f"127.0.0.1:{free_port()}", database_url=database,
        mlflow_tracking_uri=logged_models.tracking_uri, admin_token=ADMIN, read_token=READ,
        model_repository=str(root / "models"), shutdown_grace_s=1.0, refresh_interval_s=60.0,
        **_tls_settings(tls_files))
    features_settings = FeaturesSettings(
        listen_addr=f"127.0.0.1:{free_port()}", database_url=database,
        object_store_dir=str(root / "objects"), shutdown_grace_s=1.0,
        **_tls_settings(tls_files))
    gateway_settings = GatewaySettings(
        listen_addr=f"127.0.0.1:{free_port()}", registry_addr=registry_settings.listen_addr,
        registry_token=READ, features_addr=features_settings.listen_addr,
        model_repository=str(root / "models"), spool_dir=str(root / "spool"),
        forward_interval_ms=50, gateway_id="gw-tls", shutdown_grace_s=1.0,
        **_tls_settings(tls_files, mutual=True))
    servers = []
    try:
        for app, settings in ((RegistryApp(registry_settings), registry_settings),
                              (build_features(features_settings), features_settings),
                              (build_gateway(gateway_settings), gateway_settings)):
            servers.append(await start_server(app, settings))
        plane = SecurePlane(registry_settings.listen_addr, features_settings.listen_addr,
                            gateway_settings.listen_addr, tls_files.client_tls(with_cert=True))
        await _register_and_deploy(plane, logged_models.run_ids[0])
        yield plane
    finally:
        for server in reversed(servers):
            await server.stop(1.0)


async def _register_and_deploy(plane: SecurePlane, run_id: str) -> None:
    async with open_channel(plane.registry_addr, tls=plane.client) as channel:
        registry = reg_grpc.RegistryServiceStub(channel)
        reply = await registry.RegisterModelVersion(reg_pb2.RegisterModelVersionRequest(
            model_name="distance", run_id=run_id, artifact_path="model"),
            metadata=bearer(ADMIN), timeout=300)
        await registry.CreateDeployment(reg_pb2.CreateDeploymentRequest(
            deployment=deployment_pb2.Deployment(
                name="secure", model_name="distance", data_group="secure-data", active=True,
                strategy=deployment_pb2.STRATEGY_DIRECT,
                selector=deployment_pb2.VersionSelector(version=reply.version.version))),
            metadata=bearer(ADMIN), timeout=30)


async def _add_device(plane: SecurePlane, device_id: str) -> str:
    async with open_channel(plane.registry_addr, tls=plane.client) as channel:
        reply = await reg_grpc.RegistryServiceStub(channel).RegisterDevice(
            reg_pb2.RegisterDeviceRequest(name=device_id, device_id=device_id,
                                          deployment="secure"),
            metadata=bearer(ADMIN), timeout=30)
    return reply.token


async def _observations(plane: SecurePlane, device_id: str, count: int) -> list:
    async with open_channel(plane.features_addr, tls=plane.client) as channel:
        stub = fs_grpc.FeatureStoreServiceStub(channel)
        for _ in range(300):
            found = [o async for page in stub.ListObservations(
                fs_pb2.ListObservationsRequest(device_id=device_id), timeout=30)
                for o in page.observations]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.2)
    return found


async def test_robot_with_device_certificate_frames_become_rows_over_tls(
        plane: SecurePlane, tmp_path: Path) -> None:
    token = await _add_device(plane, "car-tls")
    summary = await drive_session_async(plane.gateway_addr, "car-tls", token, "beige", runs=1,
                                        seed=4, buffer_path=tmp_path / "b.db",
                                        prediction_timeout_s=10.0, tls=plane.client)
    sent = summary.delivery.frames
    assert sent > 5 and summary.delivery.predictions == sent and summary.delivery.errors == 0
    rows = await _observations(plane, "car-tls", sent)
    assert len({r.observation_id for r in rows}) == sent
    assert {(r.deployment, r.model_name) for r in rows} == {("secure", "distance")}


async def test_robot_without_device_certificate_is_refused(plane: SecurePlane,
                                                           tls_files: TLSFiles,
                                                           tmp_path: Path) -> None:
    token = await _add_device(plane, "car-no-cert")
    with pytest.raises(StreamClosed, match="requires a client certificate"):
        await drive_session_async(plane.gateway_addr, "car-no-cert", token, "beige", runs=1,
                                  seed=4, buffer_path=tmp_path / "b.db",
                                  tls=tls_files.client_tls())
    assert await _observations(plane, "car-no-cert", 0) == []


async def test_edgeloop_edge_cli_streams_with_tls_flags(plane: SecurePlane, tls_files: TLSFiles,
                                                        tmp_path: Path) -> None:
    token = await _add_device(plane, "car-cli")
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "edgeloop-edge"), "drive", "--fast", "--runs", "1",
        "--gateway", plane.gateway_addr, "--device", "car-cli", "--token", token,
        "--buffer", str(tmp_path / "b.db"), "--tls-ca", str(tls_files.ca.cert),
        "--tls-cert", str(tls_files.client.cert), "--tls-key", str(tls_files.client.key),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), 600)
    assert process.returncode == 0, output.decode()
    assert "left in offline buffer 0" in output.decode()
    assert await _observations(plane, "car-cli", 1)
