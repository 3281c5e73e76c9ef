"""The local stack's CA and certificates: made once, private keys, variables per part."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography import x509
from edgeloop.compose.stack.tls import stack_tls, tls_mode
from edgeloop.compose.stack.topology import DEFAULT_PORTS, Topology


def test_certificates_are_made_once_with_private_keys(tmp_path: Path) -> None:
    first = stack_tls(tmp_path, "on")
    assert first is not None
    ca_pem = first.ca.read_bytes()
    server_pem = first.server.cert.read_bytes()
    again = stack_tls(tmp_path, "on")
    assert again is not None
    assert again.ca.read_bytes() == ca_pem and again.server.cert.read_bytes() == server_pem
    for key in ("ca-key.pem", "server-key.pem", "client-key.pem"):
        assert (tmp_path / "tls" / key).stat().st_mode & 0o777 == 0o600, key


def test_server_certificate_names_loopback_and_localhost(tmp_path: Path) -> None:
    tls = stack_tls(tmp_path, "on")
    assert tls is not None
    cert = x509.load_pem_x509_certificate(tls.server.cert.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1"}
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]


def test_every_service_gets_tls_and_only_the_gateway_asks_devices_for_certificates(
        tmp_path: Path) -> None:
    secrets = {"admin_token": "a", "read_token": "r", "webhook_secret": "w", "trainer_token": "t"}
    mutual = Topology(tmp_path, dict(DEFAULT_PORTS), tls_mode="mutual")
    for service in ("registry", "features", "trainer", "gateway"):
        env = mutual.service_env(service, secrets)
        assert env["EDGELOOP_TLS_CERT"].endswith("server.pem")
        assert env["EDGELOOP_TLS_CA"].endswith("ca.pem")
        assert ("EDGELOOP_TLS_CLIENT_CA" in env) == (service == "gateway")
    plain = Topology(tmp_path / "plain", dict(DEFAULT_PORTS), tls_mode="off")
    assert not any(k.startswith("EDGELOOP_TLS") for k in plain.service_env("gateway", secrets))
    assert not (tmp_path / "plain" / "tls").exists()


def test_tls_switch_names_the_variable() -> None:
    assert tls_mode({}) == "on" and tls_mode({"EDGELOOP_TLS": "OFF"}) == "off"
    with pytest.raises(ValueError, match="EDGELOOP_TLS"):
        tls_mode({"EDGELOOP_TLS": "yes"})


def test_cli_takes_tls_from_the_stack_unless_given_another_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgeloop.compose import endpoints

    tls = stack_tls(tmp_path, "on")
    assert tls is not None
    (tmp_path / "stack.json").write_text(json.dumps({"parts": {}, "tls": tls.client_env()}))
    for name in ("EDGELOOP_TLS_CA", "EDGELOOP_REGISTRY_ADDR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EDGELOOP_STATE_DIR", str(tmp_path))
    recorded = endpoints.client_tls("registry")
    assert recorded is not None and recorded.ca == str(tls.ca) and recorded.cert
    monkeypatch.setenv("EDGELOOP_REGISTRY_ADDR", "127.0.0.1:1")
    assert endpoints.client_tls("registry") is None, "a hand-given server is not the stack's"
    monkeypatch.setenv("EDGELOOP_TLS_CA", str(tls.ca))
    explicit = endpoints.client_tls("registry")
    assert explicit is not None and explicit.ca == str(tls.ca) and not explicit.cert
