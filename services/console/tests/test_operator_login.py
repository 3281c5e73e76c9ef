"""Console logins with an operator's own token or the admin token, against a real registry.

The registry and the console run as shipped (``python -m edgeloop.registry``,
``python -m edgeloop.console``) on the private test PostgreSQL and an MLflow SQLite store;
an HTTP client with a cookie jar logs in and posts the console's write forms. Only
registry pages and writes are used: the features service the console points at is not
running (no page here reads it).
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import grpc
import pytest
from edgeloop.contracts.registry.v1 import operator_pb2 as opb
from edgeloop.contracts.registry.v1 import registry_service_pb2 as pb
from edgeloop.contracts.registry.v1 import registry_service_pb2_grpc
from edgeloop.platform import bearer
from edgeloop.testing import ServiceProcess, free_port

ADMIN = "console-login-admin-token-0123456789"
READ = "console-login-read-token-0123456789"
START_S = 240.0


@dataclass
class Stack:
    """The registry (a stub with the admin token) and the console's base URL and log."""

    registry: registry_service_pb2_grpc.RegistryServiceStub
    console: str
    console_log: Path

    def create_operator(self, name: str, role: int = opb.OPERATOR_ROLE_ADMIN) -> str:
        reply = self.registry.CreateOperator(pb.CreateOperatorRequest(name=name, role=role),
                                             metadata=bearer(ADMIN), timeout=30)
        return reply.token

    def add_device(self, device_id: str) -> None:
        self.registry.RegisterDevice(pb.RegisterDeviceRequest(device_id=device_id),
                                     metadata=bearer(ADMIN), timeout=30)

    def actors(self, device_id: str) -> list[tuple[str, str]]:
        """(action, actor) of the device's changes, oldest first."""
        reply = self.registry.ListHistory(pb.ListHistoryRequest(subject=f"device/{device_id}"),
                                          metadata=bearer(READ), timeout=30)
        return [(r.action, r.actor) for r in reversed(reply.records)]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def stack(pg_cluster: Any) -> Iterator[Stack]:
    folder = Path(tempfile.mkdtemp(prefix="edgeloop-console-login-"))
    registry = ServiceProcess("edgeloop.registry", {
        "EDGELOOP_LISTEN_ADDR": f"127.0.0.1:{free_port()}",
        "EDGELOOP_DATABASE_URL": pg_cluster.ensure_database(f"conlog_{uuid.uuid4().hex[:10]}"),
        "EDGELOOP_MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
        "EDGELOOP_ADMIN_TOKEN": ADMIN, "EDGELOOP_READ_TOKEN": READ,
        "EDGELOOP_MODEL_REPOSITORY": str(folder / "repository"), "EDGELOOP_LOG_FORMAT": "text",
    }, folder / "registry.log")
    console_addr = f"127.0.0.1:{free_port()}"
    console = ServiceProcess("edgeloop.console", {
        "EDGELOOP_LISTEN_ADDR": console_addr, "EDGELOOP_REGISTRY_ADDR": registry.address,
        "EDGELOOP_FEATURES_ADDR": f"127.0.0.1:{free_port()}", "EDGELOOP_TRAINER_ADDR": "",
        "EDGELOOP_READ_TOKEN": READ, "EDGELOOP_ADMIN_TOKEN": ADMIN,
        "EDGELOOP_LOG_FORMAT": "text", "EDGELOOP_LOG_LEVEL": "DEBUG",
    }, folder / "console.log")
    channel = None
    try:
        registry.start(timeout_s=START_S)
        console.start(wait=False)
        deadline = time.monotonic() + START_S
        while not _healthy(f"http://{console_addr}/healthz"):
            assert time.monotonic() < deadline, f"console not up; log:\n{console.log_tail()}"
            time.sleep(0.2)
        channel = grpc.insecure_channel(registry.address)
        yield Stack(registry_service_pb2_grpc.RegistryServiceStub(channel),
                    f"http://{console_addr}", folder / "console.log")
    finally:
        if channel is not None:
            channel.close()
        console.stop()
        registry.stop()
        shutil.rmtree(folder, ignore_errors=True)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 303 itself is the answer under test


class Browser:
    """A cookie-keeping HTTP client that does not follow redirects."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar),
                                                  _NoRedirect)

    def _open(self, request: urllib.request.Request) -> tuple[int, str]:
        try:
            with self.opener.open(request, timeout=60) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def get(self, path: str) -> tuple[int, str]:
        return self._open(urllib.request.Request(self.base + path))

    def post(self, path: str, fields: dict[str, str]) -> tuple[int, str]:
        data = urllib.parse.urlencode(fields).encode()
        return self._open(urllib.request.Request(self.base + path, data=data))

    def log_in(self, token: str, name: str = "") -> tuple[int, str]:
        return self.post("/login", {"name": name, "token": token, "back": "/login"})

    def csrf(self) -> str:
        status, body = self.get("/login")
        found = re.search(r'name="csrf" value="([^"]+)"', body)
        assert status == 200 and found, body
        return found[1]

    def who(self) -> str:
        found = re.search(r'<span id="operator">([^<]*)</span>', self.get("/login")[1])
        return found[1] if found else ""

    def revoke_device(self, device_id: str, csrf: str = "") -> tuple[int, str]:
        return self.post(f"/devices/{device_id}/revoke?back=/login",
                         {"csrf": csrf or self.csrf()})

    def cookies(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)


def test_an_operator_token_login_writes_as_that_operator(stack: Stack) -> None:
    token = stack.create_operator("olga")
    stack.add_device("car-1")
    browser = Browser(stack.console)
    assert browser.log_in(token, name="someone-else")[0] == 303
    assert browser.who() == "operator:olga"
    assert browser.revoke_device("car-1")[0] == 303
    assert stack.actors("car-1") == [("register", "admin"), ("revoke", "operator:olga")]
    assert token not in browser.cookies()
    assert token not in stack.console_log.read_text()


def test_the_admin_token_login_is_recorded_on_behalf_of_the_name(stack: Stack) -> None:
    stack.add_device("car-2")
    browser = Browser(stack.console)
    assert browser.log_in(ADMIN, name="tester")[0] == 303
    assert browser.who() == "tester"
    assert browser.revoke_device("car-2")[0] == 303
    assert stack.actors("car-2") == [("register", "admin"),
                                     ("revoke", "admin (on behalf of tester@console)")]


def test_read_operators_and_unknown_tokens_cannot_log_in(stack: Stack) -> None:
    reader = stack.create_operator("rita", opb.OPERATOR_ROLE_READ)
    for token, status, words in [(reader, 403, "operator:rita only reads"),
                                 (READ, 403, "only reads"),
                                 (ADMIN + "x", 401, "wrong token"),
                                 ("not a token", 401, "wrong token")]:
        browser = Browser(stack.console)
        answer = browser.log_in(token, name="rita")
        assert answer[0] == status and words in answer[1], (token == READ, answer)
        assert browser.who() == ""
    stack.add_device("car-3")
    assert Browser(stack.console).revoke_device("car-3", csrf="guess")[0] == 401
    assert stack.actors("car-3") == [("register", "admin")]


def test_a_revoked_operator_or_a_logged_out_session_can_no_longer_write(stack: Stack) -> None:
    stack.add_device("car-4")
    paul = Browser(stack.console)
    assert paul.log_in(stack.create_operator("paul"))[0] == 303
    stack.registry.RevokeOperator(pb.RevokeOperatorRequest(name="paul"), metadata=bearer(ADMIN),
                                  timeout=30)
    status, body = paul.revoke_device("car-4")
    assert status == 409 and "UNAUTHENTICATED" in body
    quinn = Browser(stack.console)
    assert quinn.log_in(stack.create_operator("quinn"))[0] == 303
    csrf, cookie = quinn.csrf(), quinn.cookies()
    assert quinn.post("/logout", {"csrf": csrf})[0] == 303
    replayed = urllib.request.Request(stack.console + "/devices/car-4/revoke?back=/login",
                                      data=urllib.parse.urlencode({"csrf": csrf}).encode(),
                                      headers={"Cookie": cookie})
    assert Browser(stack.console)._open(replayed)[0] == 401  # the kept token was forgotten
    assert stack.actors("car-4") == [("register", "admin")]
