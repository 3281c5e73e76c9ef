"""TLS material for tests: one local CA, a server certificate and client certificates."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeloop.platform.certificates import LOCAL_NAMES, Issued, create_ca, issue
from edgeloop.platform.tls import ClientTLS, ServerTLS


@dataclass(frozen=True)
class TLSFiles:
    """PEM files in one folder: ``ca`` signed ``server`` and ``client``; ``stranger`` is
    signed by another CA (a device certificate the stack never issued)."""

    ca: Issued
    server: Issued
    client: Issued
    stranger: Issued

    def server_env(self, mutual: bool = False) -> dict[str, str]:
        """``EDGELOOP_TLS_*`` variables for a server (requiring client certificates if mutual)."""
        env = {"EDGELOOP_TLS_CERT": str(self.server.cert), "EDGELOOP_TLS_KEY": str(self.server.key)}
        if mutual:
            env["EDGELOOP_TLS_CLIENT_CA"] = str(self.ca.cert)
        return env

    def client_env(self, with_cert: bool = False) -> dict[str, str]:
        """``EDGELOOP_TLS_*`` variables for a client (presenting ``client`` if asked)."""
        env = {"EDGELOOP_TLS_CA": str(self.ca.cert)}
        if with_cert:
            env |= {"EDGELOOP_TLS_CLIENT_CERT": str(self.client.cert),
                    "EDGELOOP_TLS_CLIENT_KEY": str(self.client.key)}
        return env

    def server_tls(self, mutual: bool = False) -> ServerTLS:
        tls = ServerTLS.from_values(str(self.server.cert), str(self.server.key),
                                    str(self.ca.cert) if mutual else "")
        assert tls is not None
        return tls

    def client_tls(self, with_cert: bool = False, cert: Issued | None = None) -> ClientTLS:
        chosen = cert or (self.client if with_cert else None)
        tls = ClientTLS.from_values(str(self.ca.cert), str(chosen.cert) if chosen else "",
                                    str(chosen.key) if chosen else "")
        assert tls is not None
        return tls


def make_tls_files(folder: Path) -> TLSFiles:
    """Create the CA, a server certificate for 127.0.0.1/localhost and client certificates."""
    ca = create_ca(folder / "ca.pem", folder / "ca-key.pem")
    other_ca = create_ca(folder / "other-ca.pem", folder / "other-ca-key.pem", "another CA")
    return TLSFiles(
        ca=ca,
        server=issue(ca, folder / "server.pem", folder / "server-key.pem", "edgeloop server",
                     names=LOCAL_NAMES),
        client=issue(ca, folder / "client.pem", folder / "client-key.pem", "robot-1",
                     server=False),
        stranger=issue(other_ca, folder / "stranger.pem", folder / "stranger-key.pem",
                       "robot-unknown", server=False),
    )
