"""The spool status file's format: written padded and whole, read back, and refused when it is
not a status of this version; device contacts and the recording state. A real full disk (the
in-place overwrite) is tested against a gateway in services/gateway/tests/test_durability.py."""

from __future__ import annotations

import dataclasses
import errno
import json
from pathlib import Path

import pytest
from edgeloop.platform.gateway_status import (
    CLOCK_OFF_S,
    PADDED_BYTES,
    STATUS_FILE,
    DeviceContact,
    GatewayStatus,
    ServedVersion,
    clock_offset_text,
    fleet_contacts,
    read_status,
    write_status,
)

STATUS = GatewayStatus(gateway_id="host-gateway-2", pid=4242, written_at=1_800_000_000.5,
                     stopped=False, backlog_bytes=3 << 20, max_bytes=1 << 30,
                     disk_refused=False, not_recorded_since=1_799_999_990.0,
                     answered_not_recorded=17, forwarded_at=None,
                     forward_failing_since=1_799_999_980.0, interval_s=2.0,
                     serving=(ServedVersion("distance", "7", "tensorflow"),
                              ServedVersion("distance", "8", "litert-quantized")))


def test_written_padded_and_read_back(tmp_path: Path) -> None:
    write_status(tmp_path, STATUS)
    path = tmp_path / STATUS_FILE
    assert path.stat().st_size == PADDED_BYTES, "room for a longer record in place"
    assert read_status(tmp_path) == STATUS
    assert [p.name for p in tmp_path.iterdir()] == [STATUS_FILE], "nothing left beside it"
    assert abs(STATUS.fill - 3 / 1024) < 1e-12 and STATUS.age_s(STATUS.written_at + 2) == 2


def test_stale_only_while_the_gateway_has_not_said_it_stopped() -> None:
    assert not STATUS.is_stale(STATUS.written_at + 29) and STATUS.is_stale(STATUS.written_at + 31)
    assert not dataclasses.replace(STATUS, stopped=True).is_stale(STATUS.written_at + 3600)
    slow = dataclasses.replace(STATUS, interval_s=60.0)  # rewritten every minute
    assert not slow.is_stale(STATUS.written_at + 179) and slow.is_stale(STATUS.written_at + 181)


def test_a_later_record_replaces_the_earlier_one(tmp_path: Path) -> None:
    write_status(tmp_path, STATUS)
    later = dataclasses.replace(STATUS, stopped=True, not_recorded_since=None)
    write_status(tmp_path, later)
    assert read_status(tmp_path) == later


def test_no_file_a_torn_one_or_another_version_reads_as_none(tmp_path: Path) -> None:
    assert read_status(tmp_path) is None
    path = tmp_path / STATUS_FILE
    path.write_text('{"version": 1, "backlog_')
    assert read_status(tmp_path) is None
    path.write_text(json.dumps({**dataclasses.asdict(STATUS), "version": 2}))
    assert read_status(tmp_path) is None
    path.write_text(json.dumps({"version": 1, "backlog_bytes": 3}))
    assert read_status(tmp_path) is None
    path.write_text(json.dumps({**dataclasses.asdict(STATUS), "serving": [{"model": "m"}]}))
    assert read_status(tmp_path) is None


def _contact(n: int, streams: int = 1) -> DeviceContact:
    return DeviceContact(f"robot-{n:04d}", streams, 1_799_999_000.0 + n, None if streams else
                         1_799_999_500.0 + n, 1_799_999_400.0 + n, 10 * n)


def test_devices_round_trip_and_a_larger_fleet_takes_more_blocks(tmp_path: Path) -> None:
    fleet = dataclasses.replace(STATUS, devices=tuple(_contact(n, n % 2) for n in range(200)))
    write_status(tmp_path, fleet)
    size = (tmp_path / STATUS_FILE).stat().st_size
    assert size > PADDED_BYTES and size % PADDED_BYTES == 0
    back = read_status(tmp_path)
    assert back == fleet and back.devices[3].last_contact == 1_799_999_403.0
    assert back.devices[4].last_contact == 1_799_999_504.0, "closed after its last frame"
    assert back.open_streams(STATUS.written_at) == {f"robot-{n:04d}": 1 for n in range(1, 200, 2)}
    older = json.loads((tmp_path / STATUS_FILE).read_text())
    del older["devices"]  # a file from a gateway before device contacts
    (tmp_path / STATUS_FILE).write_text(json.dumps(older))
    assert read_status(tmp_path) == STATUS


def test_the_frames_received_round_trip_and_an_older_file_reads_zero(tmp_path: Path) -> None:
    counted = dataclasses.replace(STATUS, frames_received=123_456)
    write_status(tmp_path, counted)
    assert read_status(tmp_path).frames_received == 123_456
    older = json.loads((tmp_path / STATUS_FILE).read_text())
    del older["frames_received"]  # a file from a gateway before the count
    (tmp_path / STATUS_FILE).write_text(json.dumps(older))
    assert read_status(tmp_path) == STATUS and STATUS.frames_received == 0


def test_a_stopped_or_stale_gateway_has_no_open_streams() -> None:
    status = dataclasses.replace(STATUS, devices=(_contact(1),))
    assert status.open_streams(STATUS.written_at + 1) == {"robot-0001": 1}
    assert status.open_streams(STATUS.written_at + 31) == {}
    assert dataclasses.replace(status, stopped=True).open_streams(STATUS.written_at) == {}


def test_recording_state_is_the_worst_of_what_the_status_says() -> None:
    now = STATUS.written_at + 1
    clear = dataclasses.replace(STATUS, not_recorded_since=None, forward_failing_since=None)
    assert clear.recording_state(now) == "recording"
    assert dataclasses.replace(clear, forward_failing_since=now).recording_state(now) \
        == "features failing"
    assert dataclasses.replace(clear, disk_refused=True, forward_failing_since=now) \
        .recording_state(now) == "disk full"
    assert STATUS.recording_state(now) == "not recording"
    assert STATUS.recording_state(now + 60) == "stale"
    assert dataclasses.replace(STATUS, stopped=True).recording_state(now) == "stopped"


def test_on_a_full_disk_a_record_too_long_for_the_file_keeps_the_spool_state(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No new file fits: the record is written in place; when its devices no longer fit in
    the file's blocks, without them."""
    write_status(tmp_path, dataclasses.replace(STATUS, devices=(_contact(1),)))

    def disk_full(self: Path, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    same_devices = dataclasses.replace(STATUS, backlog_bytes=5 << 20, devices=(_contact(2),))
    write_status(tmp_path, same_devices)
    assert read_status(tmp_path) == same_devices
    grown = dataclasses.replace(STATUS, disk_refused=True,
                                devices=tuple(_contact(n) for n in range(100)))
    write_status(tmp_path, grown)
    assert read_status(tmp_path) == dataclasses.replace(grown, devices=())
    assert (tmp_path / STATUS_FILE).stat().st_size == PADDED_BYTES
    assert [p.name for p in tmp_path.iterdir()] == [STATUS_FILE]


def test_fleet_contacts_add_streams_of_live_gateways_and_keep_the_newest_contact() -> None:
    now = STATUS.written_at + 1
    first = dataclasses.replace(STATUS, devices=(_contact(1), _contact(2, streams=0)))
    second = dataclasses.replace(STATUS, gateway_id="gw-2", devices=(_contact(1), _contact(3)))
    stale = dataclasses.replace(STATUS, written_at=now - 120, devices=(
        DeviceContact("robot-0002", 1, now - 200, None, now - 121, 9),))
    merged = fleet_contacts([first, second, stale], now)
    assert {d: c.streams for d, c in merged.items()} == {
        "robot-0001": 2, "robot-0002": 0, "robot-0003": 1}
    assert merged["robot-0002"].last_contact == now - 121, "newer than its closed stream"
    assert merged["robot-0001"].last_contact == _contact(1).last_contact
    paced = dataclasses.replace(first, devices=(dataclasses.replace(_contact(1), fps=4.0),))
    stale_paced = dataclasses.replace(paced, written_at=now - 120)
    assert fleet_contacts([paced, paced, stale_paced], now)["robot-0001"].fps == 8.0


def test_a_devices_clock_is_the_one_its_newest_contact_measured() -> None:
    now = STATUS.written_at + 1
    older = DeviceContact("car", 0, now - 100, now - 50, now - 51, 9, clock_offset_s=3600.0)
    newer = DeviceContact("car", 1, now - 10, None, now - 1, 30, 4.0, clock_offset_s=0.02)
    unmeasured = DeviceContact("car", 1, now - 5, None, now, 3)  # no capture times
    statuses = [dataclasses.replace(STATUS, gateway_id=f"gw-{i}", devices=(contact,))
                for i, contact in enumerate((older, newer, unmeasured))]
    merged = fleet_contacts(statuses, now)["car"]
    assert merged.clock_offset_s == 0.02 and not merged.clock_off
    off = fleet_contacts(statuses[:1], now)["car"]
    assert off.clock_offset_s == 3600.0 and off.clock_off and older.clock_off
    assert fleet_contacts(statuses[2:], now)["car"].clock_offset_s is None
    assert not DeviceContact("car", 0, now, None, None, 0, clock_offset_s=-CLOCK_OFF_S).clock_off


def test_a_devices_clock_round_trips_and_an_older_file_reads_none(tmp_path: Path) -> None:
    device = DeviceContact("car", 1, 1_800_000_000.0, None, 1_800_000_001.0, 8, 4.0, -42.5)
    status = dataclasses.replace(STATUS, devices=(device,))
    write_status(tmp_path, status)
    assert read_status(tmp_path) == status
    older = json.loads((tmp_path / STATUS_FILE).read_text())
    del older["devices"][0]["clock_offset_s"]  # a gateway before the clock
    (tmp_path / STATUS_FILE).write_text(json.dumps(older))
    (read,) = read_status(tmp_path).devices
    assert read.clock_offset_s is None and not read.clock_off


@pytest.mark.parametrize(("offset_s", "text"), [
    (3.24, "3.2 s ahead"), (-0.5, "0.5 s behind"), (-2460.0, "41 min behind"),
    (7200.0, "2.0 h ahead"), (-86400.0 * 400, "400 days behind")])
def test_a_clock_offset_in_words(offset_s: float, text: str) -> None:
    assert clock_offset_text(offset_s) == text


def test_the_spools_disk_round_trips_low_below_a_tenth_and_an_older_file_reads_none(
        tmp_path: Path) -> None:
    roomy = dataclasses.replace(STATUS, disk_free_bytes=11 << 30, disk_total_bytes=100 << 30)
    low = dataclasses.replace(roomy, disk_free_bytes=9 << 30)
    write_status(tmp_path, low)
    assert read_status(tmp_path) == low and low.disk_low
    assert not roomy.disk_low
    older = json.loads((tmp_path / STATUS_FILE).read_text())
    del older["disk_free_bytes"], older["disk_total_bytes"]  # a gateway before the disk
    (tmp_path / STATUS_FILE).write_text(json.dumps(older))
    assert read_status(tmp_path) == STATUS and not STATUS.disk_low
