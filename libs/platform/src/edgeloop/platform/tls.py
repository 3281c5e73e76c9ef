"""Transport security: server and client TLS material from ``EDGELOOP_TLS_*`` variables.

Server side (every gRPC server and the trainer's webhook):

- ``EDGELOOP_TLS_CERT`` + ``EDGELOOP_TLS_KEY``: the server's certificate chain and key (PEM).
  Both set: the server speaks only TLS; a plaintext client fails its handshake.
- ``EDGELOOP_TLS_CLIENT_CA``: CA bundle; when set, clients must present a certificate it
  signed (mutual TLS, meant for devices at the gateway). Needs the two above.

Client side (every channel a service, the CLI or ``edgeloop-edge`` opens):

- ``EDGELOOP_TLS_CA``: CA bundle that verifies servers; set, channels use TLS.
- ``EDGELOOP_TLS_CLIENT_CERT`` + ``EDGELOOP_TLS_CLIENT_KEY``: the client's own certificate
  for servers that require one. Needs ``EDGELOOP_TLS_CA``.

A mismatch (plaintext client, TLS server or the reverse) shows as UNAVAILABLE with a
transport message; :func:`explain_unavailable` probes the address and says which side
lacks TLS, for the clients we control to report.
"""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
from edgeloop.platform.errors import ConfigError


def _read(variable: str, path: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read {path}: {exc.strerror}") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{variable}: {path} is not a PEM file")
    return data


@dataclass(frozen=True)
class ServerTLS:
    """A server's certificate and key, and the CA its clients' certificates must chain to."""

    cert: str
    key: str
    client_ca: str = ""

    @classmethod
    def from_values(cls, cert: str, key: str, client_ca: str = "") -> ServerTLS | None:
        """None when neither cert nor key is given; a half-configured pair is an error."""
        if not cert and not key:
            if client_ca:
                raise ConfigError("EDGELOOP_TLS_CLIENT_CA: needs EDGELOOP_TLS_CERT and "
                                  "EDGELOOP_TLS_KEY (mutual TLS is TLS first)")
            return None
        if not cert or not key:
            missing = "EDGELOOP_TLS_CERT" if not cert else "EDGELOOP_TLS_KEY"
            raise ConfigError(f"{missing}: required when the other of EDGELOOP_TLS_CERT/"
                              "EDGELOOP_TLS_KEY is set")
        tls = cls(cert, key, client_ca)
        tls.check()
        return tls

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the variable when a file is unreadable or bad."""
        self._pem()
        try:
            self.ssl_context()
        except ssl.SSLError as exc:
            raise ConfigError(f"EDGELOOP_TLS_CERT/EDGELOOP_TLS_KEY: {self.cert} and {self.key} "
                              f"do not form a usable certificate and key: {exc}") from None

    def _pem(self) -> tuple[bytes, bytes, bytes | None]:
        return (_read("EDGELOOP_TLS_CERT", self.cert), _read("EDGELOOP_TLS_KEY", self.key),
                _read("EDGELOOP_TLS_CLIENT_CA", self.client_ca) if self.client_ca else None)

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Credentials for ``server.add_secure_port``; client certificates required with a CA."""
        cert, key, client_ca = self._pem()
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca,
                                           require_client_auth=client_ca is not None)

    def ssl_context(self) -> ssl.SSLContext:
        """A server-side context (the webhook's HTTPS) with the same rules as the gRPC ports."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        if self.client_ca:
            context.load_verify_locations(self.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context


@dataclass(frozen=True)
class ClientTLS:
    """The CA that verifies servers, and optionally this client's own certificate and key."""

    ca: str
    cert: str = ""
    key: str = ""

    @classmethod
    def from_values(cls, ca: str, cert: str = "", key: str = "") -> ClientTLS | None:
        """None when no CA is given (plaintext); a client certificate needs a CA and a key."""
        if not ca:
            if cert or key:
                raise ConfigError("EDGELOOP_TLS_CLIENT_CERT/EDGELOOP_TLS_CLIENT_KEY: need "
                                  "EDGELOOP_TLS_CA (the CA that verifies the server)")
            return None
        if bool(cert) != bool(key):
            missing = "EDGELOOP_TLS_CLIENT_CERT" if not cert else "EDGELOOP_TLS_CLIENT_KEY"
            raise ConfigError(f"{missing}: required when the other of EDGELOOP_TLS_CLIENT_CERT/"
                              "EDGELOOP_TLS_CLIENT_KEY is set")
        tls = cls(ca, cert, key)
        tls._pem()
        return tls

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClientTLS | None:
        """From ``EDGELOOP_TLS_CA``, ``EDGELOOP_TLS_CLIENT_CERT``, ``EDGELOOP_TLS_CLIENT_KEY``."""
        env = os.environ if env is None else env
        return cls.from_values(env.get("EDGELOOP_TLS_CA", ""),
                               env.get("EDGELOOP_TLS_CLIENT_CERT", ""),
                               env.get("EDGELOOP_TLS_CLIENT_KEY", ""))

    def _pem(self) -> tuple[bytes, bytes | None, bytes | None]:
        ca = _read("EDGELOOP_TLS_CA", self.ca)
        if not self.cert:
            return ca, None, None
        return (ca, _read("EDGELOOP_TLS_CLIENT_CERT", self.cert),
                _read("EDGELOOP_TLS_CLIENT_KEY", self.key))

    def grpc_credentials(self) -> grpc.ChannelCredentials:
        """Channel credentials: verify the server against the CA, present our cert if any."""
        ca, cert, key = self._pem()
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                            certificate_chain=cert)

    def ssl_context(self) -> ssl.SSLContext:
        """A client-side context for HTTPS (e.g. posting to the webhook)."""
        context = ssl.create_default_context(cafile=self.ca)
        if self.cert:
            context.load_cert_chain(self.cert, self.key)
        return context


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.removeprefix("dns:///").rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def _probe(address: str, timeout_s: float) -> str | None:
    """What ``address`` speaks: "tls", "mutual-tls", "plaintext", or None if unreachable."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Only asking "is this TLS?" (the real channel verifies the certificate).
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        host, port = _host_port(address)
        with socket.create_connection((host, port), timeout=timeout_s) as raw, \
                context.wrap_socket(raw, server_hostname=host) as tls:
            # TLS 1.3 finishes the client's handshake before the server checks our (absent)
            # certificate: a gRPC server requiring one then closes at once, while a plain
            # TLS one sends its HTTP/2 settings.
            return "tls" if tls.recv(1) else "mutual-tls"
    except ssl.SSLError as exc:
        text = str(exc).upper()
        if "CERTIFICATE_REQUIRED" in text or "HANDSHAKE_FAILURE" in text:
            return "mutual-tls"
        return "plaintext" if "WRONG_VERSION" in text or "EOF" in text else None
    except TimeoutError:
        return "tls"
    except (OSError, ValueError):
        return None


def explain_unavailable(address: str, tls: ClientTLS | None, timeout_s: float = 2.0) -> str:
    """Why a call to ``address`` got UNAVAILABLE, when it is a TLS mismatch; else ''.

    Clients call this after UNAVAILABLE to turn a transport message into one that says
    which variable to set.
    """
    speaks = _probe(address, timeout_s)
    if speaks in ("tls", "mutual-tls") and tls is None:
        return (f"the server at {address} requires TLS: set EDGELOOP_TLS_CA to the CA that "
                "signed its certificate")
    if speaks == "mutual-tls" and not tls.cert:  # type: ignore[union-attr]
        return (f"the server at {address} requires a client certificate (mutual TLS): set "
                "EDGELOOP_TLS_CLIENT_CERT and EDGELOOP_TLS_CLIENT_KEY")
    if speaks in ("tls", "mutual-tls") and tls is not None:
        return _explain_handshake(address, tls, timeout_s)
    if speaks == "plaintext" and tls is not None:
        return (f"the server at {address} does not speak TLS (plaintext) but EDGELOOP_TLS_CA "
                "is set: configure the server with EDGELOOP_TLS_CERT/EDGELOOP_TLS_KEY or unset "
                "EDGELOOP_TLS_CA")
    return ""


def _explain_handshake(address: str, tls: ClientTLS, timeout_s: float) -> str:
    """Handshake as the channel would: an untrusted server or a refused client certificate."""
    try:
        host, port = _host_port(address)
        context = tls.ssl_context()
        context.set_alpn_protocols(["h2"])
        with socket.create_connection((host, port), timeout=timeout_s) as raw, \
                context.wrap_socket(raw, server_hostname=host) as conn:
            if conn.recv(1):
                return ""
    except ssl.SSLCertVerificationError as exc:
        return (f"the certificate of the server at {address} does not verify against "
                f"EDGELOOP_TLS_CA ({tls.ca}): {exc.verify_message}")
    except TimeoutError:
        return ""
    except (ssl.SSLError, OSError, ValueError):
        pass  # the server cut the handshake short: below
    # Verified the server, yet it closed on us: it did not accept our certificate.
    return (f"the server at {address} refused this client's certificate "
            f"(EDGELOOP_TLS_CLIENT_CERT={tls.cert}): it must be signed by the CA the server "
            "trusts (its EDGELOOP_TLS_CLIENT_CA)") if tls.cert else ""
