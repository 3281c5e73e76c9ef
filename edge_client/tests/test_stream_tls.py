"""The stream client over TLS: a gateway that requires device certificates (mutual TLS)."""

from __future__ import annotations

from pathlib import Path

import pytest
from edgeloop.edge_client.simulate import drive_session_async
from edgeloop.edge_client.stream.client import StreamClosed
from edgeloop.platform.tls import ClientTLS
from edgeloop.testing.tls import TLSFiles


async def _drive(gateway,  # noqa: ANN001
                  tls: ClientTLS | None, tmp_path: Path):  # noqa: ANN202
    return await drive_session_async(gateway.address, gateway.device, gateway.token, "beige",
                                     runs=1, seed=2, buffer_path=tmp_path / "b.db", tls=tls,
                                     drain_timeout_s=5)


async def test_device_with_certificate_streams_over_mutual_tls(mtls_gateway,
                                                               tls_files: TLSFiles,
                                                               tmp_path: Path) -> None:
    summary = await _drive(mtls_gateway, tls_files.client_tls(with_cert=True), tmp_path)
    assert summary.delivery.frames > 0
    assert summary.delivery.predictions == summary.delivery.frames
    assert len(mtls_gateway.state.received) == summary.delivery.frames


@pytest.mark.parametrize(("who", "reason"), [
    ("plaintext", "requires TLS: set EDGELOOP_TLS_CA"),
    ("no certificate", "requires a client certificate"),
    ("unknown certificate", "refused this client's certificate"),
])
async def test_device_refused_by_the_gateway_is_told_what_to_set(
        mtls_gateway, tls_files: TLSFiles, tmp_path: Path, who: str,
        reason: str) -> None:
    tls = {"plaintext": None, "no certificate": tls_files.client_tls(),
           "unknown certificate": tls_files.client_tls(cert=tls_files.stranger)}[who]
    with pytest.raises(StreamClosed, match=reason):
        await _drive(mtls_gateway, tls, tmp_path)
    assert mtls_gateway.state.received == [], "nothing crossed the refused connection"
