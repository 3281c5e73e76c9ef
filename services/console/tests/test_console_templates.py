"""Fragments that the browser test cannot reach without a trainer (Ray's start costs
minutes there): sweeps and trials render from real contract messages."""

from __future__ import annotations

import dataclasses
import time

from edgeloop.console.gateways import GatewaySpool, gateway_trends, sampled_only
from edgeloop.console.links import Links
from edgeloop.console.rendering import TEMPLATES
from edgeloop.console.summaries import DEVICE, device_activity
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as fpb
from edgeloop.contracts.registry.v1 import device_pb2, model_pb2
from edgeloop.contracts.trainer.v1 import sweep_pb2
from edgeloop.platform.gateway_status import DeviceContact, GatewayStatus, ServedVersion


def _sweep() -> sweep_pb2.Sweep:
    sweep = sweep_pb2.Sweep(
        sweep_id="5d9c0f1e-0000-4000-8000-000000000001", model_name="distance",
        trigger="drift:abc", deployment="parking", num_trials=3,
        state=sweep_pb2.SWEEP_STATE_RUNNING, best_trial_id="t2", mlflow_experiment_id="4",
        mlflow_parent_run_id="parent", trace_id="f" * 32, model_version="3",
        holdout_mae_mm=12.5, promoted=True)
    sweep.created_at.GetCurrentTime()
    sweep.trials.add(trial_id="t1", state="TERMINATED", best_val_mae_mm=20.0, epochs_done=5,
                     mlflow_run_id="run1", params={"lr": "0.001"})
    sweep.trials.add(trial_id="t2", state="RUNNING", best_val_mae_mm=14.0, epochs_done=3)
    return sweep


def test_sweeps_and_versions_render_with_progress_and_links() -> None:
    version = model_pb2.ModelVersion(model_name="distance", version="3", aliases=["champion"],
                                     metrics={"holdout_mae_mm": 12.5,
                                              "holdout_mae_mm/world/red": 11.0},
                                     tags={"sweep_id": "5d9c0f1e"})
    html = TEMPLATES.env.get_template("models_live.html").render(
        sweeps=[_sweep()], versions={"distance": [version]}, trainer=True,
        links=Links(mlflow="http://mlflow.example", ray="http://ray.example"))
    assert "1/3" in html and "14.0 mm" in html and "12.5 mm" in html
    assert "red 11.0" in html and "http://mlflow.example/#/models/distance/versions/3" in html


def test_sweep_page_lists_trials_with_bars_and_run_links() -> None:
    html = TEMPLATES.env.get_template("sweep_live.html").render(
        s=_sweep(), links=Links(mlflow="http://mlflow.example"))
    assert "http://mlflow.example/#/experiments/4/runs/run1" in html
    assert "lr=0.001" in html and "best" in html and "width: 84px" in html


def test_fleet_lists_a_device_without_recent_frames_beside_one_streaming() -> None:
    """A registered device that sent nothing in the rate window (never streamed, or parked
    for the night) is a row like any other, not a page that fails to render."""
    streaming = fpb.DeviceTraffic(device_id="robot-1", frames=3, labelled=3, mae_mm=4.0,
                                  model_version="4", source=DEVICE, quantized=True)
    streaming.last_frame.GetCurrentTime()
    devices = [device_pb2.Device(device_id="robot-1", name="one", deployment="parking"),
               device_pb2.Device(device_id="robot-2", name="two", deployment="parking")]
    html = TEMPLATES.env.get_template("fleet_table.html").render(
        devices=devices, deployments=[], activity=device_activity([streaming]))
    rows = {row.split('data-device="')[1].split('"')[0]: row
            for row in html.split("<tr")[1:] if 'data-device="' in row}
    assert "online" in rows["robot-1"] and "s ago" in rows["robot-1"]
    assert "4.0 mm" in rows["robot-1"]
    assert "<td>v4 on the device (quantized twin)</td>" in rows["robot-1"]
    assert "<td>-</td>" in rows["robot-2"]  # nothing recorded: nothing known of what it runs
    assert "offline" in rows["robot-2"] and "none in 5 min" in rows["robot-2"]
    assert '<td class="num">0.0</td>' in rows["robot-2"]
    assert '<td class="num">-</td>' in rows["robot-2"]


def test_fleet_shows_a_device_the_gateway_answers_while_nothing_is_recorded() -> None:
    now = time.time()
    gateway = GatewayStatus(gateway_id="gw-a", pid=1, written_at=now - 1, stopped=False,
                            backlog_bytes=1 << 30, max_bytes=1 << 30, disk_refused=False,
                            not_recorded_since=now - 60, answered_not_recorded=1200,
                            forwarded_at=None, forward_failing_since=now - 60, interval_s=2.0,
                            devices=(DeviceContact("robot-2", 2, now - 70, None, now - 3, 1200,
                                                   7.5),))
    devices = [device_pb2.Device(device_id="robot-2", name="two", deployment="parking")]
    html = TEMPLATES.env.get_template("fleet_table.html").render(
        devices=devices, deployments=[], activity=device_activity([], [gateway]))
    row = html.split('data-device="robot-2"')[1].split("</tr>")[0]
    assert 'class="pill online">online' in row and "3 s ago" in row
    assert "(2 streams open, 7.5 frames/s)" in row and '<td class="num">0.0</td>' in row
    assert '<div class="big" id="online-count">1</div>' in html
    assert "clock" not in row, "a device whose clock is not measured is not marked"


def test_fleet_marks_a_device_whose_clock_is_off() -> None:
    """Its frames' capture times, behind by as much, leave it out of the rate window."""
    now = time.time()
    contacts = (DeviceContact("robot-1", 1, now - 70, None, now - 1, 300, 4.0, -2 * 3600.0),
                DeviceContact("robot-2", 1, now - 70, None, now - 1, 300, 4.0, 0.3))
    gateway = GatewayStatus(gateway_id="gw-a", pid=1, written_at=now - 1, stopped=False,
                            backlog_bytes=0, max_bytes=1 << 30, disk_refused=False,
                            not_recorded_since=None, answered_not_recorded=0, forwarded_at=now,
                            forward_failing_since=None, interval_s=2.0, devices=contacts)
    devices = [device_pb2.Device(device_id=f"robot-{n}", deployment="parking") for n in (1, 2)]
    html = TEMPLATES.env.get_template("fleet_table.html").render(
        devices=devices, deployments=[], activity=device_activity([], [gateway]))
    rows = {row.split('data-device="')[1].split('"')[0]: row
            for row in html.split("<tr")[1:] if 'data-device="' in row}
    assert 'class="pill pending" title=' in rows["robot-1"]
    assert ">clock 2.0 h behind</span>" in rows["robot-1"]
    assert "clock" not in rows["robot-2"], "0.3 s: in step"


def test_a_fast_clocks_last_frame_is_put_on_the_gateways_clock() -> None:
    """An hour-fast robot that stopped 10 minutes ago: its newest recorded frame is stamped
    50 minutes from now; the gateway that measured its clock puts it 10 minutes back."""
    now = time.time()
    frame = fpb.DeviceTraffic(device_id="robot-1", frames=3)
    frame.last_frame.FromSeconds(int(now + 3000))
    contact = DeviceContact("robot-1", 0, now - 900, now - 660, now - 600, 300, 0.0, 3600.0)
    gateway = GatewayStatus(gateway_id="gw-a", pid=1, written_at=now - 1, stopped=False,
                            backlog_bytes=0, max_bytes=1 << 30, disk_refused=False,
                            not_recorded_since=None, answered_not_recorded=0, forwarded_at=now,
                            forward_failing_since=None, interval_s=2.0, devices=(contact,))
    devices = [device_pb2.Device(device_id="robot-1", deployment="parking")]
    measured = device_activity([frame], [gateway])["robot-1"]
    assert not measured.online and abs(measured.last_contact.timestamp() - (now - 600)) < 1
    html = TEMPLATES.env.get_template("fleet_table.html").render(
        devices=devices, deployments=[], activity={"robot-1": measured})
    assert "10 min ago" in html and 'class="pill">offline' in html
    unmeasured = device_activity([frame])["robot-1"]  # no gateway said: shown as it came
    html = TEMPLATES.env.get_template("fleet_table.html").render(
        devices=devices, deployments=[], activity={"robot-1": unmeasured})
    assert "in the future" in html


def test_fleet_shows_each_gateway_spool_and_what_is_wrong() -> None:
    now = time.time()
    base = GatewayStatus(gateway_id="gw-a", pid=1, written_at=now - 1, stopped=False,
                       backlog_bytes=512 << 20, max_bytes=1 << 30, disk_refused=False,
                       not_recorded_since=None, answered_not_recorded=0, forwarded_at=now - 2,
                       forward_failing_since=None, interval_s=2.0,
                       serving=(ServedVersion("distance", "8", "litert-quantized"),))
    spools = [
        GatewaySpool("/s/spool", base, now),
        GatewaySpool("/s/spool-2", dataclasses.replace(
            base, gateway_id="gw-b", backlog_bytes=1 << 30, not_recorded_since=now - 30,
            answered_not_recorded=4321, forward_failing_since=now - 60), now),
        GatewaySpool("/s/spool-3", dataclasses.replace(base, written_at=now - 300), now),
        GatewaySpool("/s/spool-4", dataclasses.replace(base, stopped=True), now),
        GatewaySpool("/s/spool-5", None, now),
        GatewaySpool("/s/spool-6", dataclasses.replace(
            base, disk_free_bytes=9 * 10**9, disk_total_bytes=100 * 10**9), now),
        GatewaySpool("/s/spool-7", dataclasses.replace(
            base, disk_free_bytes=11 * 10**9, disk_total_bytes=100 * 10**9), now),
    ]
    html = TEMPLATES.env.get_template("fleet_table.html").render(
        devices=[], deployments=[], activity={}, spools=spools)
    rows = {row.split('data-spool="')[1].split('"')[0]: row
            for row in html.split("<tr")[1:] if 'data-spool="' in row}
    assert 'class="pill ok">recording' in rows["/s/spool"]
    # a spool's filesystem nearly full: amber before anything goes unrecorded
    low, roomy = rows["/s/spool-6"], rows["/s/spool-7"]
    assert 'class="pill pending">disk low' in low and "9.0 GB (9 %)" in low
    assert 'class="pill ok">recording' in roomy and "11.0 GB (11 %)" in roomy
    assert "512.0 of 1024 MiB (50 %)" in rows["/s/spool"] and "2 s ago" in rows["/s/spool"]
    assert 'distance v8 <span class="muted">(litert-quantized)</span>' in rows["/s/spool"]
    assert 'class="pill failed">not recording' in rows["/s/spool-2"]
    assert "4321" in rows["/s/spool-2"] and "(100 %)" in rows["/s/spool-2"]
    assert 'class="pill pending">stale' in rows["/s/spool-3"]
    assert 'class="pill ">stopped' in rows["/s/spool-4"] and "stopped at" in rows["/s/spool-4"]
    assert "no status file yet" in rows["/s/spool-5"]


def test_fleet_without_spool_folders_has_no_gateway_section() -> None:
    html = TEMPLATES.env.get_template("fleet_table.html").render(
        devices=[], deployments=[], activity={}, spools=[])
    assert 'id="gateways"' not in html


def _sample(gateway: str, at: float, backlog: int, **fields) -> fpb.GatewaySample:
    sample = fpb.GatewaySample(gateway_id=gateway, backlog_bytes=backlog, max_bytes=1000,
                               **{"recording": fpb.GATEWAY_RECORDING_STATE_RECORDING, **fields})
    sample.sampled_at.FromNanoseconds(int(at * 1e9))
    return sample


def _recording(gateway: str, now: float) -> GatewayStatus:
    """A gateway's status file, written a second ago: recording, its small spool empty."""
    return GatewayStatus(gateway_id=gateway, pid=1, written_at=now - 1, stopped=False,
                         backlog_bytes=0, max_bytes=1000, disk_refused=False,
                         not_recorded_since=None, answered_not_recorded=0, forwarded_at=now,
                         forward_failing_since=None, interval_s=2.0)


def test_fleet_draws_each_gateways_backlog_and_lists_gateways_known_from_samples() -> None:
    now = time.time()
    local = _recording("gw-a", now)
    trends = gateway_trends(
        [_sample("gw-a", now - 1800, 0), _sample("gw-a", now - 900, 1000),
         _sample("gw-a", now, 500),
         _sample("gw-far", now - 20, 100), _sample("gw-far", now - 10, 200, robots_streaming=3,
                                                   frames_per_s=12.0,
                                                   recording=fpb.GATEWAY_RECORDING_STATE_DISK_FULL),
         _sample("gw-gone", now - 600, 0),
         _sample("gw-low", now - 5, 0, disk_free_bytes=4 * 10**9, disk_total_bytes=80 * 10**9,
                 robots_streaming=2, robots_clock_off=2, worst_clock_offset_s=-3600.0)],
        read_at=now)
    spools = [GatewaySpool("/s/spool", local, now), GatewaySpool("/s/spool-2", None, now)]
    html = TEMPLATES.env.get_template("fleet_table.html").render(
        devices=[], deployments=[], activity={}, spools=spools, trends=trends,
        remote=sampled_only(spools, trends))
    rows = {row.split('data-')[1].split('"')[1]: row for row in html.split("<tr")[1:]
            if 'data-spool="' in row or 'data-gateway="' in row}
    # 30 minutes ago at the left and empty, full 15 minutes ago, half full now at the right
    assert '<polyline points="0.0,24.0 60.0,0.0 120.0,12.0"/>' in rows["/s/spool"]
    assert "now 50 %" in rows["/s/spool"]
    assert "no samples" not in rows["/s/spool"]
    assert list(rows) == ["/s/spool", "/s/spool-2", "gw-far", "gw-gone", "gw-low"]
    assert 'class="pill failed">disk full' in rows["gw-far"]
    assert "(20 %)" in rows["gw-far"]
    assert "3 robots streaming, 12.0 frames/s" in rows["gw-far"] and "10 s ago" in rows["gw-far"]
    assert 'class="pill pending">silent' in rows["gw-gone"], "no sample for 10 minutes"
    # from its samples: a gateway recording with a twentieth of its disk free
    assert 'class="pill pending">disk low' in rows["gw-low"] and "4.0 GB (5 %)" in rows["gw-low"]
    assert 'GB (' not in rows["gw-far"], "a gateway that does not measure its disk shows none"
    # its robots' clocks, which the console cannot list (their contacts are in that host's file)
    assert "2 robots with a clock off</span> (the furthest 60 min behind)" in rows["gw-low"]
    assert "clock off" not in rows["gw-far"]


def test_a_gateways_row_without_samples_says_so() -> None:
    now = time.time()
    status = _recording("gw-a", now)
    html = TEMPLATES.env.get_template("fleet_table.html").render(
        devices=[], deployments=[], activity={}, spools=[GatewaySpool("/s/spool", status, now)],
        trends={}, remote=[])
    assert "no samples" in html and "<polyline" not in html


def test_fleet_lists_the_operators_alerts_with_a_link_to_the_infrastructure_dashboard() -> None:
    from datetime import UTC, datetime

    from edgeloop.console.alerts import ShownAlert

    alert = ShownAlert(name="gateway_silent", fingerprint="fp-9",
                       since=datetime(2026, 12, 6, 23, 40, tzinfo=UTC),
                       summary="gw-b: no sample for 300 s", gateway="gw-b")
    template = TEMPLATES.env.get_template("fleet_table.html")
    html = template.render(devices=[], deployments=[], activity={}, spools=[], trends={},
                           remote=[], alerts=[alert],
                           links=Links(grafana="http://grafana.example:3000/"))
    row = html.split('data-fingerprint="fp-9"')[1].split("</tr>")[0]
    assert 'class="pill firing">gateway_silent' in row and ">gw-b<" in row
    assert "gw-b: no sample for 300 s" in row and "2026-12-06 23:40:00" in row
    assert 'href="http://grafana.example:3000/d/edgeloop-infrastructure"' in html
    quiet = template.render(devices=[], deployments=[], activity={}, spools=[], trends={},
                            remote=[], alerts=[], links=Links())
    assert 'id="alerts"' not in quiet and "Alerts firing" not in quiet


def test_a_frame_says_where_its_prediction_came_from() -> None:
    from edgeloop.contracts.features.v1 import observation_pb2

    template = TEMPLATES.env.get_template("frame.html")

    from starlette.requests import Request

    request = Request({"type": "http", "method": "GET", "path": "/frames/o1",
                       "query_string": b"", "headers": [], "server": ("console", 80),
                       "scheme": "http"})

    def prediction_cell(obs: observation_pb2.Observation) -> str:
        html = template.render(o=obs, spans=[], trace_dir="", links=Links(), refresh_s=5,
                               problems=[], operator=None, csrf="", request=request)
        return html.split('id="frame-prediction">')[1].split("</td>")[0]

    device = observation_pb2.Observation(
        observation_id="o1", prediction_mm=412.5, device_quantized=True,
        prediction_source=observation_pb2.PredictionSource.PREDICTION_SOURCE_DEVICE)
    assert "412.5 mm" in prediction_cell(device)
    assert "on the device, its quantized twin" in prediction_cell(device)
    device.device_quantized = False
    assert "on the device" in prediction_cell(device)
    assert "quantized" not in prediction_cell(device)
    served = observation_pb2.Observation(observation_id="o2", prediction_mm=400.0)
    assert "on the device" not in prediction_cell(served)
