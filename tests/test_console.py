"""The web console in a real browser against a running stack after a simulated drive.

One stack for the module: a private PostgreSQL cluster, the real registry, features and
gateway services as processes (the registry on the session's SQLite MLflow store with
two tiny models: version ``n`` answers ``1000 * n + [0, 100]`` mm), and the console as a
process (``python -m edgeloop.console``). The features service reads a rules file with a
short saturation band, so a red floor fires a drift event within seconds; no trainer runs
(Ray's start costs minutes; the sweeps page's trainer-less state is shown instead).
Debian's ``chromium`` drives the pages headless through ``chromedriver`` (Selenium).

Screenshots of every page go to ``$EDGELOOP_TEST_ARTIFACTS/console`` (default: the
pytest temporary folder), named after the page.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import signal
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as fpb
from edgeloop.contracts.features.v1 import feature_store_service_pb2_grpc as fgrpc
from edgeloop.contracts.registry.v1 import deployment_pb2
from edgeloop.contracts.registry.v1 import registry_service_pb2 as rpb
from edgeloop.contracts.registry.v1 import registry_service_pb2_grpc as rgrpc
from edgeloop.edge_client.simulate import drive_session_async
from edgeloop.testing import ServiceProcess, free_port, wait_serving

pytestmark = pytest.mark.timeout(1800)
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ADMIN = "console-admin-token-0123456789abcdef"
READ = "console-read-token-0123456789abcdef"
HOOK_SECRET = "console-grafana-hook-secret"
MODEL = "distance"
DEPLOYMENT = "console-parking"
DEVICE = "console-robot"
SILENT_DEVICE = "console-parked-robot"
"""Registered, never streams: the fleet page lists it as a row like any other."""
START_S = 600.0
"""Importing TensorFlow takes ~10 s on an idle 2-core machine and minutes on a busy one."""
RULES = """\
version: 1
interval: 1s
rules:
  - name: saturation_band
    kind: covariate
    signal: window_mean
    statistic: saturation
    window: 60s
    min_samples: 15
    threshold: {band: [40, 60]}
    pending: 2s
    cooldown: 10m
    description: 1-minute mean saturation outside [40, 60].
"""

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip("Debian's chromium and chromium-driver are not installed (./run test installs "
                "them)", allow_module_level=True)


@dataclass
class Stack:
    """Where the running parts are."""

    registry: str
    features: str
    gateway: str
    console: str
    device_token: str
    versions: dict[str, float]
    console_process: ServiceProcess | None = None
    spool: Path | None = None

    def url(self, path: str) -> str:
        return f"http://{self.console}{path}"

    def restart_console(self) -> None:
        """Stop the console process and start it again, until it answers."""
        assert self.console_process is not None
        # uvicorn shuts down gracefully, then raises the SIGTERM it caught again
        assert self.console_process.stop() in (0, -signal.SIGTERM)
        self.console_process.start(wait=False)
        _wait(lambda: _http_ok(self.url("/healthz")), START_S,
              f"the restarted console; log:\n{self.console_process.log_tail()}")


def _wait(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _current_text(browser: Any, selector: str) -> str:
    """The text of the element ``selector`` finds now; "" while the page is replacing it (its
    refresh re-renders lists, so an element found a moment ago may be gone)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return browser.find_element(By.CSS_SELECTOR, selector).text
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status == 200
    except OSError:
        return False


def _setup(stack: Stack) -> None:
    """Register the deployment serving @champion, a device that drives and one that never
    does."""
    auth = (("authorization", f"Bearer {ADMIN}"),)
    with grpc.insecure_channel(stack.registry) as channel:
        registry = rgrpc.RegistryServiceStub(channel)
        deployment = deployment_pb2.Deployment(
            name=DEPLOYMENT, model_name=MODEL, active=True, strategy=deployment_pb2.STRATEGY_DIRECT,
            selector=deployment_pb2.VersionSelector(alias="champion"))
        registry.CreateDeployment(rpb.CreateDeploymentRequest(deployment=deployment),
                                  metadata=auth, timeout=60)
        reply = registry.RegisterDevice(rpb.RegisterDeviceRequest(
            name="robot", device_id=DEVICE, deployment=DEPLOYMENT), metadata=auth, timeout=60)
        stack.device_token = reply.token
        registry.RegisterDevice(rpb.RegisterDeviceRequest(
            name="parked", device_id=SILENT_DEVICE, deployment=DEPLOYMENT), metadata=auth,
            timeout=60)


def _register(stack: Stack, run_ids: tuple[str, ...]) -> None:
    auth = (("authorization", f"Bearer {ADMIN}"),)
    with grpc.insecure_channel(stack.registry) as channel:
        registry = rgrpc.RegistryServiceStub(channel)
        for index, run_id in enumerate(run_ids):
            reply = registry.RegisterModelVersion(rpb.RegisterModelVersionRequest(
                model_name=MODEL, run_id=run_id, artifact_path="model", promote=index == 0),
                metadata=auth,
                timeout=300)
            stack.versions[reply.version.version] = 1000.0 * (index + 1)


def champion(stack: Stack) -> str:
    """The version @champion points at now."""
    with grpc.insecure_channel(stack.registry) as channel:
        reply = rgrpc.RegistryServiceStub(channel).ListModelVersions(
            rpb.ListModelVersionsRequest(model_name=MODEL),
            metadata=(("authorization", f"Bearer {READ}"),), timeout=30)
    return next(v.version for v in reply.versions if "champion" in v.aliases)


def drive(stack: Stack, scenario: str, runs: int, ago_s: float = 0.0,
          realtime: bool = False) -> str:
    """Drive ``runs`` simulated runs in ``scenario``: captured from ``ago_s`` seconds ago as
    fast as the gateway answers, or (``realtime``) paced on the wall clock, so the frames
    stay inside the drift window however slow the machine is."""
    session = uuid.uuid4().hex
    asyncio.run(drive_session_async(
        stack.gateway, DEVICE, stack.device_token, scenario, runs=runs, seed=runs,
        session_id=session, realtime=realtime,
        start_time=datetime.now(UTC) - timedelta(seconds=ago_s)))
    return session


def observations(stack: Stack, since: datetime) -> list[Any]:
    request = fpb.ListObservationsRequest(deployments=[DEPLOYMENT])
    request.start_time.FromDatetime(since.replace(tzinfo=None))
    with grpc.insecure_channel(stack.features) as channel:
        stub = fgrpc.FeatureStoreServiceStub(channel)
        return [o for page in stub.ListObservations(request, timeout=30) for o in page.observations]


@pytest.fixture(scope="module")
def stack(pg_cluster, logged_models, tmp_path_factory) -> Iterator[Stack]:
    """Registry, features, gateway and the console as processes; stopped after the module."""
    root = tmp_path_factory.mktemp("console-stack")
    logs, traces = root / "logs", root / "traces"
    logs.mkdir()
    traces.mkdir()
    (root / "rules.yaml").write_text(RULES)
    database = pg_cluster.ensure_database(f"console_{uuid.uuid4().hex[:12]}")
    addresses = {name: f"127.0.0.1:{free_port()}" for name in
                 ("registry", "features", "gateway", "console")}
    common = {"EDGELOOP_LOG_FORMAT": "json", "EDGELOOP_SHUTDOWN_GRACE_S": "2"}
    env = {
        "registry": {"EDGELOOP_DATABASE_URL": database,
                     "EDGELOOP_MLFLOW_TRACKING_URI": logged_models.tracking_uri,
                     "EDGELOOP_ADMIN_TOKEN": ADMIN, "EDGELOOP_READ_TOKEN": READ,
                     "EDGELOOP_MODEL_REPOSITORY": str(root / "models")},
        "features": {"EDGELOOP_DATABASE_URL": database,
                     "EDGELOOP_OBJECT_STORE_DIR": str(root / "objects"),
                     "EDGELOOP_REGISTRY_ADDR": addresses["registry"],
                     "EDGELOOP_REGISTRY_TOKEN": READ,
                     "EDGELOOP_DRIFT_RULES": str(root / "rules.yaml")},
        "gateway": {"EDGELOOP_FEATURES_ADDR": addresses["features"],
                    "EDGELOOP_MODEL_HOST": "embedded",
                    "EDGELOOP_MODEL_REPOSITORY": str(root / "models"),
                    "EDGELOOP_SPOOL_DIR": str(root / "spool"),
                    "EDGELOOP_REGISTRY_ADDR": addresses["registry"],
                    "EDGELOOP_REGISTRY_TOKEN": READ, "EDGELOOP_FORWARD_INTERVAL_MS": "50",
                    "EDGELOOP_SAMPLE_INTERVAL_S": "0.5"},
        "console": {"EDGELOOP_REGISTRY_ADDR": addresses["registry"],
                    "EDGELOOP_FEATURES_ADDR": addresses["features"],
                    "EDGELOOP_TRAINER_ADDR": "",
                    "EDGELOOP_READ_TOKEN": READ, "EDGELOOP_ADMIN_TOKEN": ADMIN,
                    "EDGELOOP_TRACE_DIR": str(traces), "EDGELOOP_REFRESH_S": "2",
                    "EDGELOOP_SPOOL_DIRS": str(root / "spool"),
                    "EDGELOOP_WEBHOOK_SECRET": HOOK_SECRET,
                    "EDGELOOP_ALERTS_FILE": str(root / "console" / "alerts.json"),
                    # Never contacted: only rendered as deep links (no Jaeger here).
                    "EDGELOOP_JAEGER_URL": "http://jaeger.invalid:16686"},
    }
    processes = []
    try:
        for name in ("registry", "features", "gateway", "console"):
            variables = {**common, **env[name], "EDGELOOP_LISTEN_ADDR": addresses[name]}
            if name != "console":
                variables["EDGELOOP_TRACE_FILE"] = str(traces / f"{name}.jsonl")
            process = ServiceProcess(f"edgeloop.{name}", variables, logs / f"{name}.log")
            processes.append(process)
            process.start(wait=False)
        for process in processes[:-1]:
            try:
                wait_serving(process.address, timeout_s=START_S)
            except TimeoutError as exc:
                raise TimeoutError(f"{exc}; log:\n{process.log_tail()}") from exc
        _wait(lambda: _http_ok(f"http://{addresses['console']}/healthz"), START_S,
              f"the console; log:\n{processes[-1].log_tail()}")
        stack = Stack(addresses["registry"], addresses["features"], addresses["gateway"],
                      addresses["console"], "", {}, console_process=processes[-1],
                      spool=root / "spool")
        _register(stack, logged_models.run_ids)
        _setup(stack)
        yield stack
    finally:
        for process in reversed(processes):
            process.stop(timeout_s=30.0)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    """Where screenshots go: $EDGELOOP_TEST_ARTIFACTS/console or a pytest temporary folder."""
    configured = os.environ.get("EDGELOOP_TEST_ARTIFACTS")
    folder = (Path(configured) / "console" if configured
              else tmp_path_factory.mktemp("console-shots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian chromium through chromedriver, with a fresh profile; no downloads."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="edgeloop-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage", "--window-size=1400,1000",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(browser: Any) -> list[dict[str, Any]]:
    """Browser console entries of level SEVERE since the last call."""
    return [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def shot(browser: Any, artifacts: Path, name: str) -> Path:
    """Save a full-page screenshot of the current page (Chrome DevTools, beyond the viewport)."""
    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 4000),
            "scale": 1}
    data = browser.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True, "clip": clip})
    path = artifacts / f"{name}.png"
    path.write_bytes(base64.b64decode(data["data"]))
    return path


@pytest.fixture(scope="module")
def driven(stack: Stack) -> Stack:
    """A short beige drive (a minute ago) so every page has something to show."""
    drive(stack, "beige", runs=2, ago_s=90)
    _wait(lambda: len(observations(stack, datetime.now(UTC) - timedelta(minutes=5))) >= 20, 60,
          "the beige frames in the feature store")
    return stack


def test_pages_load_without_console_errors(driven: Stack, browser: Any, artifacts: Path) -> None:
    from selenium.webdriver.common.by import By

    console_errors(browser)
    frame_id = observations(driven, datetime.now(UTC) - timedelta(minutes=5))[-1].observation_id
    pages = {"fleet": "/fleet", "deployments": "/deployments",
             "deployment": f"/deployments/{DEPLOYMENT}", "models": "/models",
             "lineage": f"/models/{MODEL}/1", "frames": "/frames", "frame": f"/frames/{frame_id}"}
    for name, path in pages.items():
        browser.get(driven.url(path))
        assert browser.find_element(By.TAG_NAME, "h1").text, name
        shot(browser, artifacts, name)
        assert console_errors(browser) == [], f"{path} logged console errors"
    browser.get(driven.url(f"/deployments/{DEPLOYMENT}"))
    robots = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#robots tbody td")]
    assert robots == [f"v{champion(driven)} on the server", "1"], robots  # SILENT never drove
    browser.get(driven.url("/fleet"))
    cells = [c.text for c in browser.find_elements(
        By.CSS_SELECTOR, f'tr[data-device="{DEVICE}"] td')]
    assert cells[2] == DEPLOYMENT and float(cells[6]) > 0 and cells[7].endswith(" mm"), cells
    assert cells[3] == f"v{champion(driven)} on the server", cells  # answered its newest frame
    silent = [c.text for c in browser.find_elements(
        By.CSS_SELECTOR, f'tr[data-device="{SILENT_DEVICE}"] td')]
    assert silent[3:8] == ["-", "offline", "none in 5 min", "0.0", "-"], silent
    spool = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#gateways tbody td")]
    # the gateway, recording (amber "disk low" where this machine's disk is nearly full), an
    # empty or nearly empty backlog of the default 1 GiB, the disk free where it spools
    assert driven.spool is not None
    disk = shutil.disk_usage(driven.spool)
    assert spool[1] == ("disk low" if disk.free < disk.total / 10 else "recording"), spool
    assert spool[2].endswith(" of 1024 MiB (0 %)"), spool
    assert re.fullmatch(r"[\d.]+ GB \(\d+ %\)", spool[3]), spool
    assert abs(float(spool[3].split()[0]) - disk.free / 1e9) < 1.0, spool
    assert spool[5].endswith(" ago") and spool[7] == "0", spool
    assert spool[8].startswith(f"{MODEL} v{champion(driven)} ("), spool  # and its runtime

    def backlog_drawn() -> bool:  # from the gateway's samples, through the features service
        browser.get(driven.url("/fleet"))
        return bool(browser.find_elements(By.CSS_SELECTOR, "#gateways svg.spark polyline"))

    _wait(backlog_drawn, 60, "the gateway's backlog drawn from its samples")

    def frame_with_gateway_spans() -> bool:
        # Every service writes its spans in its own batches (the features service's may come
        # first): reload until the gateway's part of the frame's tree is there too.
        browser.get(driven.url(f"/frames/{frame_id}"))
        spans = browser.find_elements(By.ID, "spans")
        return bool(spans) and "gateway" in spans[0].text

    _wait(frame_with_gateway_spans, 60, "the gateway's spans in the frame's span tree")
    _wait(lambda: browser.execute_script(
        "const i = document.getElementById('frame-image'); return i.complete && i.naturalWidth"),
        30, "the frame's image")
    assert console_errors(browser) == []


def test_drift_plot_shows_the_floor_change(driven: Stack, browser: Any, artifacts: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.get(driven.url(f"/drift/{DEPLOYMENT}"))
    _wait(lambda: int(browser.find_element(By.ID, "timeline").get_attribute("data-points") or 0),
          60, "the timeline's first points")
    assert "drift" not in (browser.find_element(By.ID, "timeline").get_attribute("data-markers")
                           or "")
    drive(driven, "red", runs=2, realtime=True)
    _wait(lambda: "drift" in (browser.find_element(By.ID, "timeline")
                              .get_attribute("data-markers") or ""), 180,
          "the drift event's marker on the timeline")
    marker = _wait(lambda: _current_text(browser, "#markers li.marker-drift"), 30,
                   "the drift marker's text")
    assert "saturation_band" in marker
    assert len(browser.find_elements(By.CSS_SELECTOR, "#timeline canvas")) >= 3
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#events tr.event"), 30,
          "the event in the events table")
    shot(browser, artifacts, "drift")
    assert console_errors(browser) == []


def _post(url: str, fields: dict[str, str], cookie: str = "") -> tuple[int, str]:
    request = urllib.request.Request(url, data=urllib.parse.urlencode(fields).encode(),
                                     headers={"Cookie": cookie} if cookie else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _notify(url: str, alerts: list[dict[str, Any]], secret: str = HOOK_SECRET) -> tuple[int, str]:
    """POST a notification as Grafana's webhook contact point does."""
    body = json.dumps({"receiver": "edgeloop-operators", "status": alerts[0]["status"],
                       "alerts": alerts}).encode()
    request = urllib.request.Request(url, data=body, headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {secret}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _gateway_alert(status: str, fingerprint: str, gateway: str, summary: str) -> dict[str, Any]:
    return {"status": status, "fingerprint": fingerprint, "startsAt": "2026-12-06T23:40:00.5Z",
            "endsAt": "0001-01-01T00:00:00Z", "values": {"A": 93.0, "C": 1},
            "labels": {"alertname": "gateway_spool_filling", "gateway": gateway,
                       "audience": "operators", "kind": "fleet"},
            "annotations": {"summary": summary}}


def test_grafanas_operator_alerts_show_on_the_fleet_page_until_resolved(
        driven: Stack, browser: Any, artifacts: Path) -> None:
    from selenium.webdriver.common.by import By

    hook = driven.url("/hooks/grafana")
    first = _gateway_alert("firing", "fp-1", "gw-east", "gw-east: spool 93 % full")
    status, body = _notify(hook, [first], secret="not-the-secret")
    assert status == 401 and "bearer secret" in body
    status, body = _notify(hook, [{"status": "firing"}])
    assert status == 400 and "alerts[0].labels" in body
    browser.get(driven.url("/fleet"))
    assert not browser.find_elements(By.ID, "alerts"), "refused notifications show nothing"
    second = _gateway_alert("firing", "fp-2", "gw-west", "gw-west: spool 85 % full")
    assert _notify(hook, [first, second]) == (200, '{"firing":2}')
    browser.get(driven.url("/fleet"))
    rows = {r.get_attribute("data-fingerprint"): r.text
            for r in browser.find_elements(By.CSS_SELECTOR, "#alerts tbody tr")}
    assert set(rows) == {"fp-1", "fp-2"}
    assert "gateway_spool_filling" in rows["fp-1"] and "gw-east: spool 93 % full" in rows["fp-1"]
    assert "2026-12-06 23:40:00" in rows["fp-1"]
    shot(browser, artifacts, "fleet-alerts")
    # A restarted console shows them at once (its alerts file), not after Grafana's repeat.
    driven.restart_console()
    browser.get(driven.url("/fleet"))
    assert {r.get_attribute("data-fingerprint")
            for r in browser.find_elements(By.CSS_SELECTOR, "#alerts tbody tr")} == set(rows)
    # Grafana says the first is resolved: the page's own refresh drops it.
    assert _notify(hook, [{**first, "status": "resolved"}]) == (200, '{"firing":1}')
    shown = ("return Array.from(document.querySelectorAll('#alerts tbody tr'), "
             "r => r.dataset.fingerprint)")  # in one call: the refresh replaces the rows
    _wait(lambda: browser.execute_script(shown) == ["fp-2"], 30, "the resolved alert to leave")
    assert _notify(hook, [{**second, "status": "resolved"}]) == (200, '{"firing":0}')
    _wait(lambda: browser.execute_script(shown) == [], 30, "the last alert to leave")
    assert not browser.find_elements(By.ID, "alerts")
    assert console_errors(browser) == []


def test_unauthenticated_writes_are_refused(driven: Stack, browser: Any) -> None:
    before = champion(driven)
    other = next(v for v in driven.versions if v != before)
    status, body = _post(driven.url(f"/models/{MODEL}/promote"),
                         {"version": other, "force": "on", "csrf": "guess"})
    assert status == 401 and "log in" in body
    status, _ = _post(driven.url(f"/devices/{DEVICE}/revoke"), {"csrf": ""})
    assert status == 401
    status, _ = _post(driven.url("/login"), {"name": "mallory", "token": "not-the-admin-token"})
    assert status == 401
    # A logged-in session without the form's CSRF token (a cross-site post) is refused too.
    browser.get(driven.url("/login"))
    _log_in(browser, driven, "csrf-probe")
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in browser.get_cookies())
    status, body = _post(driven.url(f"/models/{MODEL}/promote"),
                         {"version": other, "force": "on", "csrf": "wrong"}, cookie)
    assert status == 403 and "CSRF" in body
    assert champion(driven) == before
    browser.delete_all_cookies()


def _log_in(browser: Any, stack: Stack, name: str, back: str = "/") -> None:
    from selenium.webdriver.common.by import By

    browser.get(stack.url(f"/login?back={back}"))
    browser.find_element(By.ID, "name").send_keys(name)
    browser.find_element(By.ID, "token").send_keys(ADMIN)
    browser.find_element(By.ID, "login").click()
    _wait(lambda: browser.find_elements(By.ID, "operator"), 30, "the login")


def test_promote_from_the_page_changes_what_the_gateway_answers(
        driven: Stack, browser: Any, artifacts: Path) -> None:
    from selenium.webdriver.common.by import By

    before = champion(driven)
    other = next(v for v in driven.versions if v != before)
    _log_in(browser, driven, "tester", back=f"/deployments/{DEPLOYMENT}")
    row = browser.find_element(By.CSS_SELECTOR, f'#versions tr[data-version="{other}"]')
    row.find_element(By.NAME, "force").click()
    row.find_element(By.CSS_SELECTOR, "button.promote").click()
    flash = _wait(lambda: browser.find_elements(By.ID, "flash"), 60, "the promotion's outcome")
    assert "promoted" in flash[0].text, flash[0].text
    assert champion(driven) == other
    history = browser.find_element(By.ID, "history").text
    assert "tester@console" in history and "promote" in history
    shot(browser, artifacts, "deployment-after-promote")

    bias = driven.versions[other]

    def answered_by_other() -> bool:
        since = datetime.now(UTC) - timedelta(seconds=5)
        drive(driven, "beige", runs=1)
        recent = [o for o in observations(driven, since) if o.HasField("prediction_mm")]
        return any(o.model_version == other and bias <= o.prediction_mm <= bias + 100
                   for o in recent)

    _wait(answered_by_other, 120, f"the gateway answering with v{other}")
    assert console_errors(browser) == []
    (artifacts / "versions.json").write_text(json.dumps(driven.versions))
