"""The server bootstrap: health, reflection, error mapping and graceful shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import grpc
import pytest
from edgeloop.contracts.features.v1 import (
    feature_store_service_pb2 as pb,
)
from edgeloop.contracts.features.v1 import (
    feature_store_service_pb2_grpc as pb_grpc,
)
from edgeloop.platform import InvalidArgument, ServiceApp, ServiceSettings, run_service, serve
from edgeloop.platform.pending import pending
from edgeloop.testing import free_port
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

SERVICE = pb.DESCRIPTOR.services_by_name["FeatureStoreService"]
CALL_STARTED_ENV = "EXAMPLE_CALL_STARTED_FILE"
"""Test-only: a file the slow call creates when it starts."""


class SlowServicer(pending(pb_grpc.FeatureStoreServiceServicer, SERVICE, "a later issue")):
    """GetWindowStats sleeps (drain test), fails on bad input, or crashes."""

    async def GetWindowStats(self, request: pb.GetWindowStatsRequest,
                             context: aio.ServicerContext) -> pb.GetWindowStatsResponse:
        if request.deployment == "bad":
            raise InvalidArgument("deployment", "must not be 'bad'")
        if request.deployment == "crash":
            raise RuntimeError("secret internals")
        started = os.environ.get(CALL_STARTED_ENV)
        if started:  # tells the drain test (another process) that the call is in flight
            Path(started).touch()
        await asyncio.sleep(request.histogram_bins / 10)
        return pb.GetWindowStatsResponse(deployment=request.deployment)


class ExampleApp(ServiceApp):
    name = "example"

    def __init__(self) -> None:
        self.stopped = False

    @property
    def service_names(self) -> Sequence[str]:
        return [SERVICE.full_name]

    def add_to_server(self, server: aio.Server) -> None:
        pb_grpc.add_FeatureStoreServiceServicer_to_server(SlowServicer(), server)

    async def stop(self) -> None:
        self.stopped = True


@pytest.fixture
async def running() -> AsyncIterator[tuple[str, ExampleApp]]:
    app = ExampleApp()
    settings = ServiceSettings(listen_addr=f"127.0.0.1:{free_port()}", shutdown_grace_s=5)
    async with serve(app, settings) as server:
        yield server.address, app
    assert app.stopped


async def test_health_serving_for_server_and_service(running: tuple[str, ExampleApp]) -> None:
    async with aio.insecure_channel(running[0]) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ("", SERVICE.full_name):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_service(running: tuple[str, ExampleApp]) -> None:
    async with aio.insecure_channel(running[0]) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
            list_services="")]), timeout=5)
        names = [s.name async for reply in call for s in reply.list_services_response.service]
    assert SERVICE.full_name in names
    assert "grpc.health.v1.Health" in names


async def test_errors_become_status_codes(running: tuple[str, ExampleApp]) -> None:
    async with aio.insecure_channel(running[0]) as channel:
        stub = pb_grpc.FeatureStoreServiceStub(channel)
        with pytest.raises(aio.AioRpcError) as bad:
            await stub.GetWindowStats(pb.GetWindowStatsRequest(deployment="bad"), timeout=5)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert bad.value.details().startswith("deployment:")
        with pytest.raises(aio.AioRpcError) as crash:
            await stub.GetWindowStats(pb.GetWindowStatsRequest(deployment="crash"), timeout=5)
        assert crash.value.code() == grpc.StatusCode.INTERNAL
        assert "secret internals" not in crash.value.details()


async def test_pending_rpcs_say_when_they_arrive(running: tuple[str, ExampleApp]) -> None:
    async with aio.insecure_channel(running[0]) as channel:
        stub = pb_grpc.FeatureStoreServiceStub(channel)
        with pytest.raises(aio.AioRpcError) as unary:
            await stub.ListDriftEvents(pb.ListDriftEventsRequest(), timeout=5)
        assert unary.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "arrives with a later issue" in unary.value.details()
        with pytest.raises(aio.AioRpcError) as streaming:
            async for _ in stub.ListObservations(pb.ListObservationsRequest(), timeout=5):
                pass
        assert streaming.value.code() == grpc.StatusCode.UNIMPLEMENTED


SERVER_SCRIPT = textwrap.dedent('''
    import sys
    sys.path.insert(0, {tests!r})
    from test_server import ExampleApp
    from edgeloop.platform import ServiceSettings, run_service
    raise SystemExit(run_service(lambda s: ExampleApp(), ServiceSettings))
''')


def test_sigterm_drains_in_flight_calls_and_exits_zero(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    started = tmp_path / "call-started"
    env = {**os.environ, "EDGELOOP_LISTEN_ADDR": address, "EDGELOOP_SHUTDOWN_GRACE_S": "10",
           CALL_STARTED_ENV: str(started)}
    script = SERVER_SCRIPT.format(tests=str(Path(__file__).parent))
    process = subprocess.Popen([sys.executable, "-c", script], env=env,
                               stderr=(tmp_path / "log").open("wb"))
    try:
        from edgeloop.testing import wait_serving

        wait_serving(address, timeout_s=120)
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.FeatureStoreServiceStub(channel)
            future = stub.GetWindowStats.future(
                pb.GetWindowStatsRequest(deployment="slow", histogram_bins=30), timeout=60)
            import time

            deadline = time.monotonic() + 60
            while not started.exists():  # the 3 s call has reached the server: in flight
                assert time.monotonic() < deadline and not future.done(), "call never started"
                time.sleep(0.02)
            process.send_signal(signal.SIGTERM)
            reply = future.result()
        assert reply.deployment == "slow"
        assert process.wait(20) == 0
        assert "heap frozen" in (tmp_path / "log").read_text()  # run_service froze it
    finally:
        process.kill()


async def test_a_taken_port_is_refused_unless_both_servers_share_it() -> None:
    from edgeloop.platform.server import PortInUse

    address = f"127.0.0.1:{free_port()}"
    async with serve(ExampleApp(), ServiceSettings(listen_addr=address)):
        with pytest.raises(PortInUse, match="EDGELOOP_LISTEN_ADDR"):
            async with serve(ExampleApp(), ServiceSettings(listen_addr=address)):
                pass
    shared = ServiceSettings(listen_addr=f"127.0.0.1:{free_port()}", reuse_port=True)
    async with serve(ExampleApp(), shared), serve(ExampleApp(), shared) as second:
        async with aio.insecure_channel(second.address) as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_an_idle_stream_outlives_the_clients_keepalive_pings(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients ping every KEEPALIVE_TIME_MS; the server must accept that, or it sends GOAWAY
    (too_many_pings) and the stream fails UNAVAILABLE: a gateway's idle WatchDeployments did.
    Both sides read the period at call time, so the test shrinks it to 300 ms."""
    from edgeloop.platform import channels

    monkeypatch.setattr(channels, "KEEPALIVE_TIME_MS", 300)
    app = ExampleApp()
    settings = ServiceSettings(listen_addr=f"127.0.0.1:{free_port()}", shutdown_grace_s=1)
    async with serve(app, settings) as server:
        # a client that keeps pinging (gRPC's limit of two pings without data is lifted
        # whenever the client sends: unary calls beside the stream, or stream messages)
        options = [*channels.channel_options(retries=False),
                   ("grpc.http2.max_pings_without_data", 0)]
        channel = channels.open_channel(server.address, options=options)
        try:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=""))
            first = await watch.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            # no status change: the stream stays idle while the client pings ~13 times
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(watch.read(), timeout=4.0)
        finally:
            await channel.close()


def test_help_lists_every_variable_the_service_reads(capsys: pytest.CaptureFixture[str]) -> None:
    def never(settings: ServiceSettings) -> ServiceApp:
        raise AssertionError("--help starts nothing")

    assert run_service(never, ServiceSettings, ["--help"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("usage: python -m edgeloop.platform")
    for field in ServiceSettings.model_fields:
        assert f"EDGELOOP_{field.upper()}  (" in shown, field
    assert "EDGELOOP_SHUTDOWN_GRACE_S  (default " in shown
    description = ServiceSettings.model_fields["listen_addr"].description
    assert description and description in shown


def test_arguments_are_refused_with_the_variables_to_use(
        capsys: pytest.CaptureFixture[str]) -> None:
    def never(settings: ServiceSettings) -> ServiceApp:
        raise AssertionError("a refused command line starts nothing")

    assert run_service(never, ServiceSettings, ["--port", "50051"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "EDGELOOP_LISTEN_ADDR" in captured.err
