"""grpc.aio server bootstrap: health, reflection, tracing, errors and graceful shutdown.

A service is a :class:`ServiceApp`. :func:`run_service` is its ``__main__``: it reads
the settings, configures logging and tracing, serves until SIGTERM or SIGINT, then
stops accepting calls, lets in-flight ones finish within the grace period and exits 0.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TypeVar

from edgeloop.platform.channels import MAX_MESSAGE_BYTES, server_keepalive_options
from edgeloop.platform.config import ServiceSettings, answer_arguments, load_settings
from edgeloop.platform.errors import ConfigError
from edgeloop.platform.heap import freeze_heap
from edgeloop.platform.interceptors import ErrorInterceptor
from edgeloop.platform.logs import configure_logging, printed_lines_to_log
from edgeloop.platform.telemetry import Rotation, configure_tracing, shutdown_tracing
from edgeloop.platform.tls import ServerTLS
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

log = logging.getLogger(__name__)
SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


class ServiceApp(abc.ABC):
    """One service: the gRPC services it adds, what it opens at start and closes at stop."""

    name: str
    """Short name, e.g. ``registry``; also the log and trace service name."""

    @property
    @abc.abstractmethod
    def service_names(self) -> Sequence[str]:
        """Full gRPC service names served, e.g. ``edgeloop.registry.v1.RegistryService``."""

    @abc.abstractmethod
    def add_to_server(self, server: aio.Server) -> None:
        """Register the servicers on ``server``."""

    # start and stop are optional hooks, deliberately not abstract: an app with nothing to open
    # or close does not override them, so by default they do nothing.
    async def start(self) -> None:  # noqa: B027
        """Optional hook: open connections, apply migrations, start background tasks."""

    async def stop(self) -> None:  # noqa: B027
        """Optional hook: close what :meth:`start` opened; called after in-flight calls drained."""


class PortInUse(ConfigError):
    """The listen address cannot be bound."""


class RunningServer:
    """A started server: its bound address and the means to stop it."""

    def __init__(self, app: ServiceApp, server: aio.Server,
                 health_servicer: health.aio.HealthServicer, address: str) -> None:
        self.app = app
        self.server = server
        self.health = health_servicer
        self.address = address

    async def set_serving(self, serving: bool) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ("", *self.app.service_names):
            await self.health.set(name, status)

    async def stop(self, grace_s: float) -> None:
        """Stop accepting calls, drain in-flight ones within ``grace_s``, then stop the app."""
        await self.set_serving(False)
        await self.server.stop(grace_s)
        await self.app.stop()


def _bind(server: aio.Server, listen_addr: str, tls: ServerTLS | None) -> str:
    host, _, port = listen_addr.rpartition(":")
    try:
        bound = (server.add_secure_port(listen_addr, tls.grpc_credentials()) if tls
                 else server.add_insecure_port(listen_addr))
    except RuntimeError as exc:
        raise PortInUse(f"EDGELOOP_LISTEN_ADDR: cannot listen on {listen_addr}: {exc}") from exc
    if bound == 0:
        raise PortInUse(f"EDGELOOP_LISTEN_ADDR: cannot listen on {listen_addr} "
                        "(port in use or address not local)")
    return f"{host or '127.0.0.1'}:{bound}" if port == "0" else listen_addr


async def start_server(app: ServiceApp, settings: ServiceSettings) -> RunningServer:
    """Build and start the server: NOT_SERVING until ``app.start()`` returns, then SERVING."""
    errors = ErrorInterceptor()
    server = aio.server(interceptors=[errors], options=[
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", settings.max_request_bytes),
        # gRPC turns SO_REUSEPORT on by default; a port is shared only when asked for, so an
        # accidental second copy of a service fails loudly instead of taking half the calls.
        ("grpc.so_reuseport", int(settings.reuse_port)),
        *server_keepalive_options(),
    ])
    app.add_to_server(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*app.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME), server)
    tls = settings.server_tls()
    address = _bind(server, settings.listen_addr, tls)
    running = RunningServer(app, server, health_servicer, address)
    await running.set_serving(False)
    await server.start()
    try:
        await app.start()
    except BaseException:
        await server.stop(0)
        raise
    errors.ready = True
    await running.set_serving(True)
    log.info("serving", extra={"address": address, "services": list(app.service_names),
                               "tls": "mutual" if tls and tls.client_ca else bool(tls)})
    return running


@contextlib.asynccontextmanager
async def serve(app: ServiceApp, settings: ServiceSettings) -> AsyncIterator[RunningServer]:
    """Run ``app`` for the duration of the ``async with`` block (tests, embedding)."""
    running = await start_server(app, settings)
    try:
        yield running
    finally:
        await running.stop(settings.shutdown_grace_s)


async def _serve_until_signalled(app: ServiceApp, settings: ServiceSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    running = await start_server(app, settings)
    freeze_heap("started")
    await stop.wait()
    log.info("shutting down", extra={"grace_s": settings.shutdown_grace_s})
    await running.stop(settings.shutdown_grace_s)
    log.info("stopped")


def run_service(make_app: Callable[[SettingsT], ServiceApp], settings_type: type[SettingsT],
                argv: Sequence[str] | None = None) -> int:
    """The ``python -m edgeloop.<service>`` entry point; returns the exit code.

    The service reads only its environment; ``--help`` (or ``-h``) lists what it reads.
    """
    if (answered := answer_arguments(settings_type, argv)) is not None:
        return answered
    try:
        settings = load_settings(settings_type)
    except ConfigError as exc:
        configure_logging("config", "INFO", "text")
        log.error("%s", exc)
        return 2
    app = make_app(settings)
    configure_logging(app.name, settings.log_level, settings.log_format)
    printed_lines_to_log()
    configure_tracing(app.name, settings.otlp_endpoint, settings.trace_file,
                      Rotation(settings.trace_file_max_bytes, settings.trace_file_max_age_s,
                               settings.trace_file_backups))
    try:
        asyncio.run(_serve_until_signalled(app, settings))
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    finally:
        shutdown_tracing()
    return 0

