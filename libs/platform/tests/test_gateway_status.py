"""The spool status file's format: written padded and whole, read back, and refused when it is
not a status of this version. A real full disk (the in-place overwrite) is tested against a
gateway in services/gateway/tests/test_durability.py."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from edgeloop.platform.gateway_status import (
    PADDED_BYTES,
    STATUS_FILE,
    GatewayStatus,
    ServedVersion,
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
