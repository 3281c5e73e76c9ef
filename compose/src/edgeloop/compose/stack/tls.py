"""The local stack's TLS: a CA and certificates in ``<state>/tls``, made once, and their variables.

``EDGELOOP_TLS`` chooses: ``on`` (default) every gRPC port and the webhook speak TLS with a
server certificate for 127.0.0.1 and localhost; ``mutual`` also makes the gateway require
device certificates signed by the stack's CA; ``off`` plaintext. The files:

- ``ca.pem`` / ``ca-key.pem``: the stack's CA (give ``ca.pem`` to clients: ``--tls-ca``,
  ``EDGELOOP_TLS_CA``, ``grpcurl -cacert``)
- ``server.pem`` / ``server-key.pem``: every service's certificate
- ``client.pem`` / ``client-key.pem``: the certificate the services, the CLI and the demo's
  robots present when a server asks for one (mutual TLS)

Keys are mode 600. MLflow's HTTP server and PostgreSQL stay plaintext on loopback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edgeloop.platform.certificates import LOCAL_NAMES, Issued, create_ca, issue
from edgeloop.platform.tls import ClientTLS

MODES = ("on", "mutual", "off")


def tls_mode(env: dict[str, str] | None = None) -> str:
    """``EDGELOOP_TLS``: on (default), mutual or off; anything else is an error naming it."""
    value = (os.environ if env is None else env).get("EDGELOOP_TLS", "on").strip().lower() or "on"
    if value not in MODES:
        raise ValueError(f"EDGELOOP_TLS: expected one of {', '.join(MODES)} (got {value!r})")
    return value


@dataclass(frozen=True)
class StackTLS:
    """The PEM files of one state folder and the variables each part gets from them."""

    folder: Path
    mutual: bool = False

    @property
    def ca(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def server(self) -> Issued:
        return Issued(self.folder / "server.pem", self.folder / "server-key.pem")

    @property
    def client(self) -> Issued:
        return Issued(self.folder / "client.pem", self.folder / "client-key.pem")

    def ensure(self) -> StackTLS:
        """Create what is missing: the CA once, then the certificates it issues."""
        ca = Issued(self.ca, self.folder / "ca-key.pem")
        if not (ca.cert.exists() and ca.key.exists()):
            create_ca(ca.cert, ca.key)
            for stale in (self.server, self.client):  # issued by a CA that is gone
                stale.cert.unlink(missing_ok=True)
        if not self.server.cert.exists():
            issue(ca, self.server.cert, self.server.key, "edgeloop local services",
                  names=LOCAL_NAMES)
        if not self.client.cert.exists():
            issue(ca, self.client.cert, self.client.key, "edgeloop local client", server=False)
        return self

    def client_env(self) -> dict[str, str]:
        """What a client of the stack sets: the CA, and the certificate it may be asked for."""
        return {"EDGELOOP_TLS_CA": str(self.ca),
                "EDGELOOP_TLS_CLIENT_CERT": str(self.client.cert),
                "EDGELOOP_TLS_CLIENT_KEY": str(self.client.key)}

    def service_env(self, service: str) -> dict[str, str]:
        """A service's variables: its server certificate and its clients' TLS."""
        env = {"EDGELOOP_TLS_CERT": str(self.server.cert),
               "EDGELOOP_TLS_KEY": str(self.server.key), **self.client_env()}
        if self.mutual and service == "gateway":
            env["EDGELOOP_TLS_CLIENT_CA"] = str(self.ca)
        return env

    def client_tls(self) -> ClientTLS:
        """The stack's client TLS as the CLI and the demo use it."""
        tls = ClientTLS.from_env(self.client_env())
        assert tls is not None
        return tls


def stack_tls(state_dir: Path, mode: str) -> StackTLS | None:
    """The stack's TLS files for ``mode`` (created when missing), or None when off."""
    if mode == "off":
        return None
    return StackTLS(state_dir / "tls", mutual=mode == "mutual").ensure()
