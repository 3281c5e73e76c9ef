"""The features service's configuration (``EDGELOOP_*`` variables)."""

from __future__ import annotations

from pydantic import Field

from edgeloop.platform import ServiceSettings

DEFAULT_PORT = 50052


class Settings(ServiceSettings):
    """Configuration of the features service."""

    listen_addr: str = Field(default=f"127.0.0.1:{DEFAULT_PORT}",
                             description="host:port the gRPC server binds")
