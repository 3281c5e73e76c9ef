"""The console's own logic, without services: timeline numbers, actor names, span trees,
the lineage layout, per-device and per-arm summaries, the operators' alert board. The pages
themselves are tested in a real browser against a running stack (tests/test_console.py)."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edgeloop.console.alerts import AlertBoard
from edgeloop.console.auth import OperatorTokens, check_password, operator_name
from edgeloop.console.lineage_graph import NODE_W, Node, _layout
from edgeloop.console.spans import flatten, span_tree
from edgeloop.console.summaries import arm_traffic, device_activity, robots_by_runs
from edgeloop.console.timeline import band_of, rolling_mean
from edgeloop.contracts.features.v1 import feature_store_service_pb2 as fpb
from edgeloop.contracts.features.v1 import observation_pb2
from edgeloop.platform.gateway_status import DeviceContact, GatewayStatus
from edgeloop.platform.grafana_alerts import GrafanaAlert

DEVICE = observation_pb2.PredictionSource.PREDICTION_SOURCE_DEVICE
SERVER = observation_pb2.PredictionSource.PREDICTION_SOURCE_SERVER


def _alert(fingerprint: str, starts_at: str, status: str = "firing",
           gateway: str = "gw") -> GrafanaAlert:
    return GrafanaAlert(status=status, fingerprint=fingerprint, starts_at=starts_at,
                        labels={"alertname": "gateway_silent", "gateway": gateway},
                        annotations={"summary": f"{gateway}: no sample"})


def test_the_alert_board_keeps_firing_alerts_until_resolved_longest_firing_first() -> None:
    board = AlertBoard()
    board.receive([_alert("b", "2026-12-06T23:50:00.123456789Z", gateway="gw-b"),
                   _alert("a", "2026-12-06T23:40:00+01:00", gateway="gw-a"),
                   _alert("c", "not a time", gateway="gw-c")])
    shown = board.firing()
    # 22:40 UTC, then 23:50:00.123456 (Grafana's nanoseconds cut to microseconds), then the
    # alert whose start could not be read, last.
    assert [(a.fingerprint, a.gateway) for a in shown] == [("a", "gw-a"), ("b", "gw-b"),
                                                          ("c", "gw-c")]
    assert shown[0].since == datetime(2026, 12, 6, 22, 40, tzinfo=UTC)
    assert shown[1].since == datetime(2026, 12, 6, 23, 50, 0, 123456, tzinfo=UTC)
    assert shown[2].since is None and shown[2].summary == "gw-c: no sample"
    # A repeat of a firing alert keeps one row; a resolved one leaves; an unknown resolved
    # one changes nothing.
    board.receive([_alert("a", "2026-12-06T23:40:00+01:00"), _alert("b", "x", "resolved"),
                   _alert("zz", "x", "resolved")])
    assert [a.fingerprint for a in board.firing()] == ["a", "c"]


def test_the_alert_board_in_a_file_shows_the_firing_alerts_again_after_a_restart(
        tmp_path: Path) -> None:
    path = tmp_path / "state" / "alerts.json"
    board = AlertBoard(path=path)
    board.receive([_alert("a", "2026-12-06T23:40:00Z", gateway="gw-a"),
                   _alert("b", "not a time", gateway="gw-b")])
    restarted = AlertBoard(path=path)
    assert restarted.firing() == board.firing() and len(restarted.firing()) == 2
    restarted.receive([_alert("a", "2026-12-06T23:40:00Z", status="resolved")])
    assert [a.fingerprint for a in AlertBoard(path=path).firing()] == ["b"]
    assert not list(path.parent.glob(".*.tmp"))  # replaced whole, no staging file left


def test_an_alerts_file_that_cannot_be_read_or_written_leaves_a_board_in_memory(
        tmp_path: Path, caplog) -> None:
    broken = tmp_path / "alerts.json"
    broken.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="edgeloop.console.alerts"):
        board = AlertBoard(path=broken)
        assert board.firing() == [] and "alerts file unreadable" in caplog.text
        blocked = AlertBoard(path=tmp_path / "a-file" / "alerts.json")
        (tmp_path / "a-file").write_text("a file where the folder should be")
        blocked.receive([_alert("a", "2026-12-06T23:40:00Z")])
    assert [a.fingerprint for a in blocked.firing()] == ["a"]
    assert "alerts file not written" in caplog.text


def test_the_alert_board_forgets_the_oldest_news_beyond_its_limit() -> None:
    board = AlertBoard(limit=2)
    board.receive([_alert("1", "2026-12-06T10:00:00Z"), _alert("2", "2026-12-06T09:00:00Z")])
    board.receive([_alert("1", "2026-12-06T10:00:00Z")])  # news of "1": "2" is the oldest now
    board.receive([_alert("3", "2026-12-06T11:00:00Z")])
    assert [a.fingerprint for a in board.firing()] == ["1", "3"]


def test_rolling_mean_skips_missing_values_and_trails_the_window() -> None:
    times = [0.0, 10.0, 20.0, 45.0]
    assert rolling_mean(times, [1.0, None, 3.0, 5.0], 30.0) == [1.0, 1.0, 2.0, 4.0]
    assert rolling_mean([0.0], [None], 30.0) == [None]


def test_band_comes_from_the_band_rule_not_the_label_range() -> None:
    states = [observation_pb2.RuleState(rule="label_range", threshold="> 20% outside [80, 350] mm"),
              observation_pb2.RuleState(rule="saturation_band", threshold="outside [40.0, 60.0]")]
    assert band_of(states) == {"rule": "saturation_band", "lo": 40.0, "hi": 60.0}
    assert band_of(states[:1]) is None


def test_operator_names_fit_the_registry_actor_header() -> None:
    assert operator_name("Ada Lovelace") == "Ada-Lovelace"
    assert operator_name("  <script>  ") == "script"
    assert operator_name("") == "operator"
    assert len(operator_name("x" * 200)) == 40
    assert check_password("admin-token-123456", "admin-token-123456")
    assert not check_password("admin-token-12345", "admin-token-123456")


def test_kept_operator_tokens_expire_with_the_session_and_on_log_out() -> None:
    now = [0.0]
    kept = OperatorTokens(max_age_s=60.0, clock=lambda: now[0])
    first, second = kept.keep("token-a"), kept.keep("token-b")
    assert first != second and "token-a" not in first
    assert (kept.token(first), kept.token(second), kept.token("guess")) == (
        "token-a", "token-b", None)
    kept.forget(first)
    assert kept.token(first) is None and kept.token(second) == "token-b"
    now[0] = 61.0
    assert kept.token(second) is None


def _span(trace: str, span: str, parent: str | None, name: str, start_ms: int,
          links: tuple[str, ...] = ()) -> str:
    begin = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(milliseconds=start_ms)
    return json.dumps({
        "name": name, "context": {"trace_id": f"0x{trace}", "span_id": f"0x{span}"},
        "parent_id": f"0x{parent}" if parent else None,
        "start_time": begin.isoformat().replace("+00:00", "Z"),
        "end_time": (begin + timedelta(milliseconds=5)).isoformat().replace("+00:00", "Z"),
        "status": {"status_code": "UNSET"}, "attributes": {},
        "links": [{"context": {"trace_id": f"0x{t}"}} for t in links],
        "resource": {"attributes": {"service.name": "gateway"}}})


def test_span_tree_nests_children_and_adds_linked_batches(tmp_path: Path) -> None:
    frame, batch, other = "a" * 32, "b" * 32, "c" * 32
    (tmp_path / "gateway.jsonl").write_text("\n".join([
        _span(frame, "01", None, "Stream frame", 0),
        _span(frame, "02", "01", "predict", 1),
        _span(batch, "03", None, "Ingest batch", 20, links=(frame,)),
        _span(other, "04", None, "unrelated", 30),
        "not json",
    ]) + "\n")
    rows = flatten(span_tree(tmp_path, frame))
    assert [(depth, span.name) for depth, span, _ in rows] == [
        (0, "Stream frame"), (1, "predict"), (0, "Ingest batch")]
    assert rows[2][2] == 20.0
    assert span_tree(tmp_path / "missing", frame) == []


def test_lineage_layout_centres_columns_and_links_neighbours() -> None:
    columns = [[Node("a", "sweep", "a")], [Node("b", "trial", "b"), Node("c", "trial", "c")],
               [Node("d", "version", "d")]]
    graph = _layout(columns)
    assert [(a.key, b.key) for a, b in graph.edges] == [("a", "b"), ("a", "c"), ("b", "d"),
                                                        ("c", "d")]
    assert columns[1][0].x == columns[1][1].x > columns[0][0].x + NODE_W
    assert columns[0][0].y == columns[2][0].y > columns[1][0].y


def _device(device_id: str, seconds_ago: float, frames: int,
            mae_mm: float | None = None) -> fpb.DeviceTraffic:
    entry = fpb.DeviceTraffic(device_id=device_id, frames=frames, labelled=frames if mae_mm else 0)
    if mae_mm is not None:
        entry.mae_mm = mae_mm
    entry.last_frame.FromDatetime(datetime.now(UTC) - timedelta(seconds=seconds_ago))
    return entry


def _gateway(now: float, devices: tuple[DeviceContact, ...], age_s: float = 1.0
             ) -> GatewayStatus:
    return GatewayStatus(gateway_id="gw", pid=1, written_at=now - age_s, stopped=False,
                         backlog_bytes=0, max_bytes=1 << 30, disk_refused=False,
                         not_recorded_since=now - 100, answered_not_recorded=500,
                         forwarded_at=None, forward_failing_since=now - 100, interval_s=2.0,
                         devices=devices)


def test_a_device_streaming_while_nothing_is_recorded_is_online() -> None:
    """Features has no recent frame of r2 (the spool is full, features is down): the gateways
    say it streams; r3 closed its stream 10 minutes ago; r1's recorded frame is newer than
    what a stale gateway file says of it."""
    now = time.time()
    gateways = [
        _gateway(now, (DeviceContact("r2", 1, now - 300, None, now - 0.5, 900),
                       DeviceContact("r3", 0, now - 900, now - 600, now - 601, 40))),
        _gateway(now, (DeviceContact("r2", 1, now - 20, None, now - 2, 12),
                       DeviceContact("r1", 1, now - 4000, None, now - 3000, 7)),
                 age_s=120),  # stale: its open streams are not believed
    ]
    activity = device_activity([_device("r1", 4, 2, 20.0)], gateways)
    assert activity["r2"].online and activity["r2"].streams == 1
    assert activity["r2"].last_frame is None and activity["r2"].frames_per_min == 0
    assert abs((datetime.now(UTC) - activity["r2"].last_contact).total_seconds() - 0.5) < 1
    assert not activity["r3"].online and activity["r3"].streams == 0
    assert abs((datetime.now(UTC) - activity["r3"].last_contact).total_seconds() - 600) < 1
    assert activity["r1"].streams == 0 and activity["r1"].last_contact == activity["r1"].last_frame
    assert activity["r1"].online, "its recorded frame is 4 s old"


def test_a_device_says_what_answered_its_newest_recorded_frame() -> None:
    twin, on_device, served, unanswered = (_device(f"r{i}", 4, 2) for i in range(4))
    twin.model_version, twin.source, twin.quantized = "4", DEVICE, True
    on_device.model_version, on_device.source = "4", DEVICE
    served.model_version, served.source = "3", SERVER
    activity = device_activity([twin, on_device, served, unanswered])
    assert [activity[f"r{i}"].runs for i in range(4)] == [
        "v4 on the device (quantized twin)", "v4 on the device", "v3 on the server", ""]
    more_twins = _device("r4", 4, 2)
    more_twins.model_version, more_twins.source, more_twins.quantized = "4", DEVICE, True
    assert robots_by_runs([twin, on_device, served, unanswered, more_twins]) == [
        ("v4 on the device (quantized twin)", 2), ("v3 on the server", 1),
        ("v4 on the device", 1)]


def test_device_activity_and_arm_traffic_from_the_features_summary() -> None:
    activity = device_activity([_device("r1", 4, 2, 20.0), _device("r2", 120, 1)])
    assert activity["r1"].online and not activity["r2"].online
    assert activity["r1"].mae_mm == 20.0 and activity["r2"].mae_mm is None
    assert activity["r1"].frames_per_min == 2 / 5
    arms = [fpb.ArmTraffic(arm="champion", model_version="1", answered=3, labelled=2,
                           mae_mm=20.0),
            fpb.ArmTraffic(arm="challenger", model_version="9", shadowed=2),
            fpb.ArmTraffic(model_version="1", answered=1)]
    traffic = {(t.arm, t.version): t for t in arm_traffic(arms)}
    assert traffic[("champion", "1")].answered == 3 and traffic[("champion", "1")].mae_mm == 20.0
    assert traffic[("challenger", "9")].shadow == 2 and traffic[("challenger", "9")].mae_mm is None
    assert traffic[("-", "1")].answered == 1
