"""`edgeloop status`'s spool lines, read from the status files gateways write.

The gateway side (what it writes when its spool fills, features fails, the disk is full) is
tested against a real gateway in ``services/gateway/tests/test_durability.py``; the whole
stack's `status` in ``test_stack.py``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from edgeloop.compose.cli import cli
from edgeloop.compose.stack import local
from edgeloop.compose.stack.local import PartStatus
from edgeloop.compose.stack.spools import read_spools
from edgeloop.compose.stack.topology import Topology
from edgeloop.platform.gateway_status import STATUS_FILE

NOW = 1_800_000_000.0
GIB = 1 << 30


def _status(**changes: Any) -> dict[str, Any]:
    return {"version": 1, "gateway_id": "host-gateway", "pid": 4242, "written_at": NOW - 1,
            "stopped": False, "backlog_bytes": 0, "max_bytes": GIB, "disk_refused": False,
            "not_recorded_since": None, "answered_not_recorded": 0, "forwarded_at": NOW - 0.4,
            "forward_failing_since": None, "interval_s": 2.0,
            "serving": [{"model": "distance", "version": "8", "runtime": "litert-quantized"}],
            **changes}


@pytest.fixture
def topology(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Topology:
    monkeypatch.delenv("EDGELOOP_GATEWAY_PROCESSES", raising=False)
    return Topology.from_env(tmp_path)


def _write(topology: Topology, part: str, status: dict[str, Any] | str) -> None:
    folder = topology.spool_dir(part)
    folder.mkdir(parents=True, exist_ok=True)
    text = status if isinstance(status, str) else json.dumps(status)
    (folder / STATUS_FILE).write_text(text)


def _lines(topology: Topology, parts: list[str], running: set[str]) -> list[str]:
    return [line for report in read_spools(topology, parts)
            for line in report.lines(running=report.part in running, now=NOW)]


def test_a_healthy_gateway_shows_its_backlog_and_what_it_serves(topology: Topology) -> None:
    _write(topology, "gateway", _status(backlog_bytes=3 << 20))
    assert _lines(topology, ["gateway"], {"gateway"}) == [
        "gateway spool: 3.0 MiB of 1.0 GiB waiting for features (0 %); last forwarded 0.4 s ago",
        "  serving distance v8 (litert-quantized)",
        "  0 robots streaming"]
    (report,) = read_spools(topology, ["gateway"])
    assert not report.in_trouble(running=True, now=NOW)


def _device(device_id: str, streams: int, last_s_ago: float) -> dict[str, Any]:
    return {"device_id": device_id, "streams": streams, "connected_at": NOW - 600,
            "disconnected_at": None if streams else NOW - last_s_ago,
            "last_frame_at": NOW - last_s_ago - (0 if streams else 1), "frames": 100}


def test_the_robots_streaming_and_those_seen_before(topology: Topology) -> None:
    _write(topology, "gateway", _status(devices=[
        _device("r1", 1, 0.2), _device("r2", 2, 0.1), _device("r3", 0, 42), _device("r4", 0, 300)]))
    assert _lines(topology, ["gateway"], {"gateway"})[2] == \
        "  2 robots streaming (3 streams); 2 more seen since it started (the last 42.0 s ago)"
    _write(topology, "gateway", _status(devices=[_device("r1", 1, 0.2)]))
    assert _lines(topology, ["gateway"], {"gateway"})[2] == "  1 robot streaming"
    _write(topology, "gateway", _status(devices=[{**_device("r1", 1, 0.2), "fps": 1041.3},
                                                 {**_device("r2", 0, 9), "fps": 0.0}]))
    assert _lines(topology, ["gateway"], {"gateway"})[2] == \
        "  1 robot streaming, 1,041 frames/s; 1 more seen since it started (the last 9.0 s ago)"


def test_robots_whose_clock_is_off_are_named_the_furthest_first(topology: Topology) -> None:
    offsets = {"r1": 0.004, "r2": -7200.0, "r3": 30.0, "r4": -3.5, "r5": 2.5}
    _write(topology, "gateway", _status(devices=[
        {**_device(name, 1, 0.2), "clock_offset_s": offset} for name, offset in offsets.items()]))
    assert _lines(topology, ["gateway"], {"gateway"})[3] == (
        "  clock off on 4 robots: r2 2.0 h behind, r3 30.0 s ahead, r4 3.5 s behind and 1 more "
        "(their frames' times are off by as much: set their clocks)")
    (report,) = read_spools(topology, ["gateway"])
    assert not report.in_trouble(running=True, now=NOW), "recording is not in trouble"
    _write(topology, "gateway", _status(devices=[{**_device("r1", 1, 0.2), "clock_offset_s": 1.0}]))
    assert not any("clock" in line for line in _lines(topology, ["gateway"], {"gateway"}))


def test_a_full_spool_says_what_is_not_recorded_and_why(topology: Topology) -> None:
    _write(topology, "gateway", _status(
        backlog_bytes=GIB, not_recorded_since=NOW - 90, answered_not_recorded=123_456,
        disk_refused=True, forwarded_at=None, forward_failing_since=NOW - 120))
    head, _, _, unrecorded, disk, features = _lines(topology, ["gateway"], {"gateway"})
    assert head == "gateway spool: 1.0 GiB of 1.0 GiB waiting for features (100 %)"
    assert "WITHOUT recording" in unrecorded and "123,456" in unrecorded
    assert "disk refused" in disk and str(topology.spool_dir("gateway")) in disk
    assert "features has not taken a batch since" in features
    (report,) = read_spools(topology, ["gateway"])
    assert report.in_trouble(running=True, now=NOW) and not report.in_trouble(False, NOW)
    for trouble in ({"not_recorded_since": NOW - 1}, {"disk_refused": True},
                    {"forward_failing_since": NOW - 1}, {"written_at": NOW - 95}):
        _write(topology, "gateway", _status(**trouble))
        (report,) = read_spools(topology, ["gateway"])
        assert report.in_trouble(running=True, now=NOW), trouble


def test_a_stale_file_of_a_running_gateway_shows_its_age(topology: Topology) -> None:
    _write(topology, "gateway", _status(written_at=NOW - 95))
    line, _, _ = _lines(topology, ["gateway"], {"gateway"})
    assert line.endswith("(status 95 s old: the gateway has not rewritten it)")


def test_spools_without_a_running_gateway_are_listed_with_their_backlog(
        topology: Topology) -> None:
    """A process `up` no longer starts (fewer EDGELOOP_GATEWAY_PROCESSES) keeps its spool."""
    _write(topology, "gateway", _status())
    _write(topology, "gateway-3", _status(backlog_bytes=2048, stopped=True))
    (topology.state_dir / "spool-old").mkdir()  # not a spool `up` made: not listed
    reports = read_spools(topology, ["gateway", "gateway-2"])
    assert [r.part for r in reports] == ["gateway", "gateway-2", "gateway-3"]
    assert reports[1].status is None and reports[1].folder == topology.state_dir / "spool-2"
    lines = _lines(topology, ["gateway", "gateway-2"], {"gateway", "gateway-2"})
    assert lines[3] == f"gateway-2 spool: no status yet ({topology.state_dir}/spool-2/status.json)"
    assert lines[4].startswith("gateway-3 spool: 2.0 KiB of 1.0 GiB waiting for features")
    assert "gateway stopped" in lines[4] and "kept for its next start" in lines[4]
    assert len(lines) == 5, "a stopped gateway serves nothing"
    assert reports[1].in_trouble(running=True), "a running gateway without a status file"
    assert not reports[2].in_trouble(running=False)


def test_a_gateway_that_died_without_saying_so_is_shown_stopped(topology: Topology) -> None:
    _write(topology, "gateway", _status(backlog_bytes=10))
    (line,) = _lines(topology, ["gateway"], running=set())
    assert "gateway stopped" in line and "kept for its next start" in line


def test_an_unreadable_file_reads_as_no_status(topology: Topology) -> None:
    _write(topology, "gateway", '{"version": 1, "backlog_')  # torn by an in-place write
    (report,) = read_spools(topology, ["gateway"])
    assert report.status is None


def test_down_says_what_stays_spooled(topology: Topology,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`edgeloop down` ends with the backlog a gateway keeps for the next `up`."""
    _write(topology, "gateway", _status(backlog_bytes=5 << 20, stopped=True))
    _write(topology, "gateway-2", _status(backlog_bytes=0, stopped=True))
    monkeypatch.setenv("EDGELOOP_STATE_DIR", str(topology.state_dir))
    result = CliRunner().invoke(cli, ["down"])
    assert result.exit_code == 0, result.output
    kept = [line for line in result.output.splitlines() if "spool" in line]
    assert len(kept) == 1 and kept[0].startswith("  gateway spool: 5.0 MiB of 1.0 GiB"), kept
    assert "kept for its next start" in kept[0] and result.output.endswith("stopped\n")


@pytest.mark.parametrize(("health", "spool", "code"), [
    ("SERVING", {}, 0),
    ("SERVING", {"forward_failing_since": "recent"}, 2),
    ("SERVING", {"not_recorded_since": "recent"}, 2),
    ("NOT_SERVING", {}, 1),
    ("NOT_SERVING", {"not_recorded_since": "recent"}, 1),
])
def test_status_exits_2_when_every_part_serves_but_a_gateway_does_not_record(
        topology: Topology, monkeypatch: pytest.MonkeyPatch, health: str,
        spool: dict[str, str], code: int) -> None:
    """A monitoring script reads the exit code: 1 a part is down, 2 the recording needs an
    operator. The parts' rows are given (the whole stack's `status` is in test_stack.py)."""
    now = time.time()
    _write(topology, "gateway", _status(written_at=now - 1, **{k: now - 5 for k in spool}))
    rows = [PartStatus("features", "127.0.0.1:1", 11, health),
            PartStatus("gateway", "127.0.0.1:2", 12, "SERVING")]
    monkeypatch.setattr(local, "status", lambda _: rows)
    monkeypatch.setenv("EDGELOOP_STATE_DIR", str(topology.state_dir))
    result = CliRunner().invoke(cli, ["status"])
    assert result.exit_code == code, result.output
    assert ("WITHOUT recording" in result.output) == ("not_recorded_since" in spool)
    as_json = CliRunner().invoke(cli, ["status", "--output", "json"])
    (report,) = json.loads(as_json.stdout)["spools"]
    assert report["in_trouble"] == bool(spool) and as_json.exit_code == code
    assert report["recording_state"] == ("recording" if not spool else "not recording"
                                         if "not_recorded_since" in spool
                                         else "features failing")
